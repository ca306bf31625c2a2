CREATE TABLE feature_version (
    version             VARCHAR NOT NULL,
    step_id_feature     VARCHAR,
    step_id_preprocess  VARCHAR,
    CONSTRAINT feature_version_pkey PRIMARY KEY (version),
    CONSTRAINT feature_version_step_id_feature_fkey FOREIGN KEY (step_id_feature) REFERENCES step (step_id),
    CONSTRAINT feature_version_step_id_preprocess_fkey FOREIGN KEY (step_id_preprocess) REFERENCES step (step_id)
);
