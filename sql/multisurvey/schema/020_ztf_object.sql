-- ztf_object: what ZTF alone says about an object (colours, the alert history's counts and
-- dates, whether magnitudes could be corrected).

CREATE TABLE ztf_object (
    oid               BIGSERIAL NOT NULL,
    g_r_max           REAL,
    g_r_max_corr      REAL,
    g_r_mean          REAL,
    g_r_mean_corr     REAL,
    corrected         BOOLEAN NOT NULL,
    stellar           BOOLEAN,
    reference_change  BOOLEAN,
    diffpos           BOOLEAN,
    ndethist          INTEGER,
    ncovhist          INTEGER,
    mjdstarthist      DOUBLE PRECISION,
    mjdendhist        DOUBLE PRECISION,
    created_date      DATE DEFAULT now(),
    CONSTRAINT pk_ztfobject_oid PRIMARY KEY (oid)
);
