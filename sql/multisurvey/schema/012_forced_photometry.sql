-- forced_photometry: photometry measured at an object's position whether or not it was detected,
-- the fields all surveys share; ztf_forced_photometry and lsst_forced_photometry add the rest.

CREATE TABLE forced_photometry (
    oid             BIGINT NOT NULL,
    sid             SMALLINT NOT NULL,
    measurement_id  BIGINT NOT NULL,
    mjd             DOUBLE PRECISION NOT NULL,
    ra              DOUBLE PRECISION NOT NULL,
    dec             DOUBLE PRECISION NOT NULL,
    band            SMALLINT,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_forcedphotometry_oid_measurementid_sid PRIMARY KEY (oid, measurement_id, sid)
);

CREATE INDEX ix_forced_photometry_oid ON forced_photometry USING hash (oid);
