CREATE TABLE ss_ztf (
    oid       VARCHAR NOT NULL,
    candid    BIGINT NOT NULL,
    ssdistnr  DOUBLE PRECISION,
    ssmagnr   DOUBLE PRECISION,
    ssnamenr  VARCHAR,
    CONSTRAINT ss_ztf_pkey PRIMARY KEY (oid),
    CONSTRAINT ss_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX ix_ss_ztf_candid ON ss_ztf USING btree (candid);
CREATE INDEX ix_ss_ztf_ssnamenr ON ss_ztf USING btree (ssnamenr);
