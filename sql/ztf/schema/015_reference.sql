CREATE TABLE reference (
    oid          VARCHAR NOT NULL,
    rfid         BIGINT NOT NULL,
    candid       BIGINT NOT NULL,
    fid          INTEGER NOT NULL,
    rcid         INTEGER,
    field        INTEGER,
    magnr        DOUBLE PRECISION,
    sigmagnr     DOUBLE PRECISION,
    chinr        DOUBLE PRECISION,
    sharpnr      DOUBLE PRECISION,
    ranr         DOUBLE PRECISION NOT NULL,
    decnr        DOUBLE PRECISION NOT NULL,
    mjdstartref  DOUBLE PRECISION NOT NULL,
    mjdendref    DOUBLE PRECISION NOT NULL,
    nframesref   INTEGER NOT NULL,
    CONSTRAINT reference_pkey PRIMARY KEY (oid, rfid),
    CONSTRAINT reference_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX ix_reference_fid ON reference USING btree (fid);
