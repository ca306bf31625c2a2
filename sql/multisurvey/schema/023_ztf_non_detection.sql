-- ztf_non_detection: ZTF's upper limits, the epochs at which an object was not detected, with
-- the limiting magnitude.

CREATE TABLE ztf_non_detection (
    oid           BIGINT NOT NULL,
    sid           SMALLINT NOT NULL,
    band          SMALLINT NOT NULL,
    mjd           DOUBLE PRECISION NOT NULL,
    diffmaglim    REAL NOT NULL,
    created_date  DATE DEFAULT now(),
    CONSTRAINT pk_oid_mjd PRIMARY KEY (oid, mjd)
);

CREATE INDEX ix_non_detection_oid ON ztf_non_detection USING hash (oid);
