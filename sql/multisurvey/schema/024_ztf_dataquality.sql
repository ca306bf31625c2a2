-- ztf_dataquality: the image-quality fields of each ZTF detection (shape, zero points, ...).

CREATE TABLE ztf_dataquality (
    oid             BIGINT NOT NULL,
    measurement_id  BIGINT NOT NULL,
    xpos            REAL,
    ypos            REAL,
    chipsf          REAL,
    sky             REAL,
    fwhm            REAL,
    classtar        REAL,
    mindtoedge      REAL,
    seeratio        REAL,
    aimage          REAL,
    bimage          REAL,
    aimagerat       REAL,
    bimagerat       REAL,
    nneg            INTEGER,
    nbad            INTEGER,
    sumrat          REAL,
    scorr           DOUBLE PRECISION,
    dsnrms          REAL,
    ssnrms          REAL,
    magzpsci        REAL,
    magzpsciunc     REAL,
    magzpscirms     REAL,
    nmatches        INTEGER,
    clrcoeff        REAL,
    clrcounc        REAL,
    zpclrcov        REAL,
    zpmed           REAL,
    clrmed          REAL,
    clrrms          REAL,
    exptime         REAL,
    created_date    DATE DEFAULT now(),
    CONSTRAINT pk_ztfdataquality_oid_measurement_id PRIMARY KEY (oid, measurement_id)
);

CREATE INDEX ix_ztf_dataquality_measurement_id ON ztf_dataquality USING btree (measurement_id);
CREATE INDEX ix_ztf_dataquality_oid ON ztf_dataquality USING btree (oid);
