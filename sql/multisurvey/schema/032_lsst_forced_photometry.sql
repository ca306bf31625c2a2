-- lsst_forced_photometry: Rubin's DIAForcedSource fields; the shared fields are in
-- forced_photometry.

CREATE TABLE lsst_forced_photometry (
    oid                    BIGINT NOT NULL,
    sid                    SMALLINT NOT NULL,
    measurement_id         BIGINT NOT NULL,
    visit                  BIGINT NOT NULL,
    detector               INTEGER NOT NULL,
    "psfFlux"              REAL,
    "psfFluxErr"           REAL,
    "scienceFlux"          REAL,
    "scienceFluxErr"       REAL,
    "timeProcessedMjdTai"  DOUBLE PRECISION NOT NULL,
    "timeWithdrawnMjdTai"  DOUBLE PRECISION,
    created_date           DATE DEFAULT now(),
    CONSTRAINT pk_lsstforcedphotometry_oid_measurementid PRIMARY KEY (oid, measurement_id)
);

CREATE INDEX ix_lsst_forced_photometry_oid ON lsst_forced_photometry USING hash (oid);
