-- The feature table's lookups.
-- feature_name_lut: the name of each feature_id (colours, periods, light-curve statistics, ...);
-- feature_version_lut: the versions of the feature extractor (feature.version).

CREATE TABLE feature_name_lut (
    feature_id    SMALLSERIAL NOT NULL,
    feature_name  VARCHAR NOT NULL,
    sid           SMALLINT NOT NULL,
    tid           SMALLINT NOT NULL,
    created_date  DATE DEFAULT now(),
    CONSTRAINT pk_feature_name_lut_featureid PRIMARY KEY (feature_id)
);

CREATE TABLE feature_version_lut (
    version_id    SMALLSERIAL NOT NULL,
    version_name  VARCHAR NOT NULL,
    sid           SMALLINT NOT NULL,
    tid           SMALLINT NOT NULL,
    CONSTRAINT pk_feature_version_lut_versionid PRIMARY KEY (version_id)
);
