-- detection: every detection of every survey, the fields all surveys share (when, where, in
-- which band); measurement_id is the survey's own id of the detection. The survey-specific
-- fields are in ztf_detection and lsst_detection, keyed by the same (oid, measurement_id).

CREATE TABLE detection (
    oid             BIGINT NOT NULL,
    sid             SMALLINT NOT NULL,
    measurement_id  BIGINT NOT NULL,
    mjd             DOUBLE PRECISION NOT NULL,
    ra              DOUBLE PRECISION NOT NULL,
    dec             DOUBLE PRECISION NOT NULL,
    band            SMALLINT,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_detection_oid_measurementid_sid PRIMARY KEY (oid, measurement_id, sid)
);

CREATE INDEX ix_detection_oid ON detection USING hash (oid);
