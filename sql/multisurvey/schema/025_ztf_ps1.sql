-- ztf_ps1: the three nearest Pan-STARRS1 sources that ZTF alerts carry, with their magnitudes,
-- star-galaxy scores and distances.

CREATE TABLE ztf_ps1 (
    oid             BIGINT NOT NULL,
    measurement_id  BIGINT NOT NULL,
    objectidps1     BIGINT,
    sgmag1          REAL,
    srmag1          REAL,
    simag1          REAL,
    szmag1          REAL,
    sgscore1        REAL,
    distpsnr1       REAL,
    objectidps2     BIGINT,
    sgmag2          REAL,
    srmag2          REAL,
    simag2          REAL,
    szmag2          REAL,
    sgscore2        REAL,
    distpsnr2       REAL,
    objectidps3     BIGINT,
    sgmag3          REAL,
    srmag3          REAL,
    simag3          REAL,
    szmag3          REAL,
    sgscore3        REAL,
    distpsnr3       REAL,
    nmtchps         INTEGER,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_ztfps1_oid_measurement_id PRIMARY KEY (oid, measurement_id)
);

CREATE INDEX ix_ztf_ps1_oid ON ztf_ps1 USING btree (oid);
