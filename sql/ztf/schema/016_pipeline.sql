CREATE TABLE pipeline (
    pipeline_id    VARCHAR NOT NULL,
    step_id_corr   VARCHAR,
    step_id_feat   VARCHAR,
    step_id_clf    VARCHAR,
    step_id_out    VARCHAR,
    step_id_stamp  VARCHAR,
    date           TIMESTAMP NOT NULL,
    CONSTRAINT pipeline_pkey PRIMARY KEY (pipeline_id)
);
