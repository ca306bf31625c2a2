CREATE TABLE xmatch (
    oid            VARCHAR NOT NULL,
    catid          VARCHAR NOT NULL,
    oid_catalog    VARCHAR NOT NULL,
    dist           DOUBLE PRECISION NOT NULL,
    class_catalog  VARCHAR,
    period         DOUBLE PRECISION,
    CONSTRAINT xmatch_pkey PRIMARY KEY (oid, catid),
    CONSTRAINT xmatch_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);
