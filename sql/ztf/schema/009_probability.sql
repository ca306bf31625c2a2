CREATE TABLE probability (
    oid                 VARCHAR NOT NULL,
    class_name          VARCHAR NOT NULL,
    classifier_name     VARCHAR NOT NULL,
    classifier_version  VARCHAR NOT NULL,
    probability         DOUBLE PRECISION NOT NULL,
    ranking             INTEGER NOT NULL,
    CONSTRAINT probability_pkey PRIMARY KEY (oid, class_name, classifier_name, classifier_version),
    CONSTRAINT probability_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX ix_classification_rank1 ON probability USING btree (ranking) WHERE (ranking = 1);
CREATE INDEX ix_probabilities_oid ON probability USING hash (oid);
CREATE INDEX ix_probabilities_probability ON probability USING btree (probability);
CREATE INDEX ix_probabilities_ranking ON probability USING btree (ranking);
