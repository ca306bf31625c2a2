-- ztf_ss: the nearest known solar-system object that ZTF alerts carry.

CREATE TABLE ztf_ss (
    oid             BIGINT NOT NULL,
    measurement_id  BIGINT NOT NULL,
    ssdistnr        REAL,
    ssmagnr         REAL,
    ssnamenr        VARCHAR,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_ztfss_oid_measurement_id PRIMARY KEY (oid, measurement_id)
);

CREATE INDEX ix_zrt_ss_oid ON ztf_ss USING btree (oid);
