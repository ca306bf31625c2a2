CREATE TABLE step (
    step_id   VARCHAR NOT NULL,
    name      VARCHAR NOT NULL,
    version   VARCHAR NOT NULL,
    comments  VARCHAR NOT NULL,
    date      TIMESTAMP NOT NULL,
    CONSTRAINT step_pkey PRIMARY KEY (step_id)
);
