-- External catalogues that objects are crossmatched with: xmatch.catid (AllWISE is 0).

CREATE TABLE catalog_id_lut (
    catid         SMALLSERIAL NOT NULL,
    catalog_name  VARCHAR,
    created_date  DATE DEFAULT now(),
    CONSTRAINT pk_catalog_id_lut_catalog_name PRIMARY KEY (catid)
);
