-- ztf_reference: the ZTF reference images each object was measured against, and the reference
-- source nearest to it.

CREATE TABLE ztf_reference (
    oid             BIGINT NOT NULL,
    rfid            BIGINT NOT NULL,
    measurement_id  BIGINT NOT NULL,
    band            INTEGER,
    rcid            INTEGER,
    field           INTEGER,
    magnr           REAL,
    sigmagnr        REAL,
    chinr           REAL,
    sharpnr         REAL,
    ranr            DOUBLE PRECISION,
    decnr           DOUBLE PRECISION,
    mjdstartref     DOUBLE PRECISION,
    mjdendref       DOUBLE PRECISION,
    nframesref      INTEGER,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_ztfreference_oid_rfid PRIMARY KEY (oid, rfid)
);

CREATE INDEX ix_ztf_reference_oid ON ztf_reference USING btree (oid);
