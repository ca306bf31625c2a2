-- Crossmatches with external catalogues.
-- xmatch: the catalogue source (oid_catalog) matched to an object, and their distance (dist);
-- catid is catalog_id_lut's. allwise: the AllWISE sources matched, with their WISE
-- (w1 .. w4) and 2MASS (j, h, k) magnitudes.

CREATE TABLE xmatch (
    oid           BIGINT NOT NULL,
    sid           SMALLINT NOT NULL,
    catid         SMALLINT NOT NULL,
    dist          REAL NOT NULL,
    oid_catalog   VARCHAR NOT NULL,
    created_date  DATE DEFAULT now(),
    updated_date  DATE,
    CONSTRAINT pk_xmatch_oid_sid_catid PRIMARY KEY (oid, sid, catid)
);

CREATE TABLE allwise (
    oid_catalog   VARCHAR NOT NULL,
    ra            DOUBLE PRECISION NOT NULL,
    dec           DOUBLE PRECISION NOT NULL,
    w1mpro        DOUBLE PRECISION,
    w2mpro        DOUBLE PRECISION,
    w3mpro        DOUBLE PRECISION,
    w4mpro        DOUBLE PRECISION,
    w1sigmpro     DOUBLE PRECISION,
    w2sigmpro     DOUBLE PRECISION,
    w3sigmpro     DOUBLE PRECISION,
    w4sigmpro     DOUBLE PRECISION,
    j_m_2mass     DOUBLE PRECISION,
    h_m_2mass     DOUBLE PRECISION,
    k_m_2mass     DOUBLE PRECISION,
    j_msig_2mass  DOUBLE PRECISION,
    h_msig_2mass  DOUBLE PRECISION,
    k_msig_2mass  DOUBLE PRECISION,
    CONSTRAINT pk_allwise_oid_catalog PRIMARY KEY (oid_catalog)
);
