CREATE TABLE magstat (
    oid              VARCHAR NOT NULL,
    fid              INTEGER NOT NULL,
    stellar          BOOLEAN NOT NULL,
    corrected        BOOLEAN NOT NULL,
    ndet             INTEGER NOT NULL,
    ndubious         INTEGER NOT NULL,
    dmdt_first       DOUBLE PRECISION,
    dm_first         DOUBLE PRECISION,
    sigmadm_first    DOUBLE PRECISION,
    dt_first         DOUBLE PRECISION,
    magmean          DOUBLE PRECISION,
    magmedian        DOUBLE PRECISION,
    magmax           DOUBLE PRECISION,
    magmin           DOUBLE PRECISION,
    magsigma         DOUBLE PRECISION,
    maglast          DOUBLE PRECISION,
    magfirst         DOUBLE PRECISION,
    magmean_corr     DOUBLE PRECISION,
    magmedian_corr   DOUBLE PRECISION,
    magmax_corr      DOUBLE PRECISION,
    magmin_corr      DOUBLE PRECISION,
    magsigma_corr    DOUBLE PRECISION,
    maglast_corr     DOUBLE PRECISION,
    magfirst_corr    DOUBLE PRECISION,
    firstmjd         DOUBLE PRECISION,
    lastmjd          DOUBLE PRECISION,
    step_id_corr     VARCHAR NOT NULL,
    saturation_rate  DOUBLE PRECISION,
    CONSTRAINT magstat_pkey PRIMARY KEY (oid, fid),
    CONSTRAINT magstat_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX ix_magstats_dmdt_first ON magstat USING btree (dmdt_first);
CREATE INDEX ix_magstats_firstmjd ON magstat USING btree (firstmjd);
CREATE INDEX ix_magstats_lastmjd ON magstat USING btree (lastmjd);
CREATE INDEX ix_magstats_magfirst ON magstat USING btree (magfirst);
CREATE INDEX ix_magstats_maglast ON magstat USING btree (maglast);
CREATE INDEX ix_magstats_magmean ON magstat USING btree (magmean);
CREATE INDEX ix_magstats_magmin ON magstat USING btree (magmin);
CREATE INDEX ix_magstats_ndet ON magstat USING btree (ndet);
CREATE INDEX ix_magstats_oid ON magstat USING hash (oid);
