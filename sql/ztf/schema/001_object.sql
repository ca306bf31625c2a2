CREATE TABLE object (
    oid               VARCHAR NOT NULL,
    ndethist          INTEGER,
    ncovhist          INTEGER,
    mjdstarthist      DOUBLE PRECISION,
    mjdendhist        DOUBLE PRECISION,
    corrected         BOOLEAN,
    stellar           BOOLEAN,
    ndet              INTEGER,
    g_r_max           DOUBLE PRECISION,
    g_r_max_corr      DOUBLE PRECISION,
    g_r_mean          DOUBLE PRECISION,
    g_r_mean_corr     DOUBLE PRECISION,
    meanra            DOUBLE PRECISION,
    meandec           DOUBLE PRECISION,
    sigmara           DOUBLE PRECISION,
    sigmadec          DOUBLE PRECISION,
    deltajd           DOUBLE PRECISION,
    firstmjd          DOUBLE PRECISION,
    lastmjd           DOUBLE PRECISION,
    step_id_corr      VARCHAR,
    diffpos           BOOLEAN,
    reference_change  BOOLEAN,
    CONSTRAINT object_pkey PRIMARY KEY (oid)
);

CREATE INDEX ix_object_firstmjd ON object USING btree (firstmjd);
CREATE INDEX ix_object_g_r_max ON object USING btree (g_r_max);
CREATE INDEX ix_object_g_r_mean_corr ON object USING btree (g_r_mean_corr);
CREATE INDEX ix_object_meandec ON object USING btree (meandec);
CREATE INDEX ix_object_meanra ON object USING btree (meanra);
CREATE INDEX ix_object_ndet ON object USING btree (ndet);
