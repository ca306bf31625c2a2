CREATE TABLE allwise (
    oid_catalog   VARCHAR NOT NULL,
    ra            DOUBLE PRECISION NOT NULL,
    "dec"         DOUBLE PRECISION NOT NULL,
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
    CONSTRAINT allwise_pkey PRIMARY KEY (oid_catalog)
);

CREATE INDEX ix_allwise_dec ON allwise USING btree ("dec");
CREATE INDEX ix_allwise_ra ON allwise USING btree (ra);
