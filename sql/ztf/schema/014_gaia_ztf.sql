CREATE TABLE gaia_ztf (
    oid             VARCHAR NOT NULL,
    candid          BIGINT NOT NULL,
    neargaia        DOUBLE PRECISION,
    neargaiabright  DOUBLE PRECISION,
    maggaia         DOUBLE PRECISION,
    maggaiabright   DOUBLE PRECISION,
    unique1         BOOLEAN NOT NULL,
    CONSTRAINT gaia_ztf_pkey PRIMARY KEY (oid),
    CONSTRAINT gaia_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);
