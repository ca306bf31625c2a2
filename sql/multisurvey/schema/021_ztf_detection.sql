-- ztf_detection: the ZTF alert fields of each detection (PSF and aperture magnitudes, real-bogus
-- scores, the corrected magnitudes); the shared fields are in detection.

CREATE TABLE ztf_detection (
    oid                BIGINT NOT NULL,
    sid                SMALLINT NOT NULL,
    measurement_id     BIGINT NOT NULL,
    pid                BIGINT,
    diffmaglim         REAL,
    isdiffpos          INTEGER,
    nid                INTEGER,
    magpsf             REAL,
    sigmapsf           REAL,
    magap              REAL,
    sigmagap           REAL,
    distnr             REAL,
    rb                 REAL,
    rbversion          VARCHAR,
    drb                REAL,
    drbversion         VARCHAR,
    magapbig           REAL,
    sigmagapbig        REAL,
    rfid               BIGINT,
    magpsf_corr        REAL,
    sigmapsf_corr      REAL,
    sigmapsf_corr_ext  REAL,
    corrected          BOOLEAN,
    dubious            BOOLEAN,
    parent_candid      BIGINT,
    has_stamp          BOOLEAN,
    created_date       DATE DEFAULT now(),
    CONSTRAINT pk_ztfdetection_oid_measurementid PRIMARY KEY (oid, measurement_id)
);

CREATE INDEX ix_ztfdetection_oid ON ztf_detection USING hash (oid);
