CREATE TABLE feature (
    oid      VARCHAR NOT NULL,
    name     VARCHAR NOT NULL,
    value    DOUBLE PRECISION,
    fid      INTEGER NOT NULL,
    version  VARCHAR NOT NULL,
    CONSTRAINT feature_pkey PRIMARY KEY (oid, name, fid, version),
    CONSTRAINT feature_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid),
    CONSTRAINT feature_version_fkey FOREIGN KEY (version) REFERENCES feature_version (version)
);

CREATE INDEX ix_feature_oid_2 ON feature USING hash (oid);
