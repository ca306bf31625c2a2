CREATE TABLE taxonomy (
    classifier_name     VARCHAR NOT NULL,
    classifier_version  VARCHAR NOT NULL,
    classes             VARCHAR[] NOT NULL,
    CONSTRAINT taxonomy_pkey PRIMARY KEY (classifier_name, classifier_version)
);
