CREATE TABLE non_detection (
    oid         VARCHAR NOT NULL,
    fid         INTEGER NOT NULL,
    mjd         DOUBLE PRECISION NOT NULL,
    diffmaglim  DOUBLE PRECISION,
    CONSTRAINT non_detection_pkey PRIMARY KEY (oid, fid, mjd),
    CONSTRAINT non_detection_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX ix_non_detection_oid ON non_detection USING hash (oid);
