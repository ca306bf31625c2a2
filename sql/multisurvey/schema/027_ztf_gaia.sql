-- ztf_gaia: the nearest Gaia sources that ZTF alerts carry.

CREATE TABLE ztf_gaia (
    oid             BIGSERIAL NOT NULL,
    measurement_id  BIGINT NOT NULL,
    neargaia        REAL,
    neargaiabright  REAL,
    maggaia         REAL,
    maggaiabright   REAL,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_ztfgaia_oid PRIMARY KEY (oid)
);
