-- Classifiers and their classes.
-- classifier: each classifier (name and version) whose probabilities are stored, for the
-- telescope tid. taxonomy: the classes each classifier gives (class_id is what the
-- probability table stores), with the order in which they are shown.
-- Their ids are SERIAL, as ALeRCE's SQLAlchemy models make an integer primary key: a sequence
-- owned by the column gives the default (nextval); the seed rows set the ids themselves.

CREATE TABLE classifier (
    classifier_id       SERIAL NOT NULL,
    classifier_name     VARCHAR NOT NULL,
    classifier_version  VARCHAR NOT NULL,
    tid                 SMALLINT NOT NULL,
    created_date        DATE DEFAULT now(),
    CONSTRAINT pk_classifier_classifierid PRIMARY KEY (classifier_id)
);

CREATE TABLE taxonomy (
    class_id       SERIAL NOT NULL,
    class_name     VARCHAR NOT NULL,
    "order"        INTEGER NOT NULL,
    classifier_id  SMALLINT NOT NULL,
    created_date   DATE DEFAULT now(),
    CONSTRAINT pk_taxonomy_classid PRIMARY KEY (class_id)
);
