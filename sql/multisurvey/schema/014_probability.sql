-- probability: each classifier's probability for each class of each object; ranking 1 marks the
-- most probable class (ix_classification_rank1 indexes those rows only). Hash-partitioned on oid
-- into 16 partitions. ix_probability_ranking is made before ix_classification_rank1, so that on
-- each partition PostgreSQL names the copy of the first probability_part_<i>_ranking_idx and the
-- partial one probability_part_<i>_ranking_idx1, as in ALeRCE's database.

CREATE TABLE probability (
    oid                 BIGINT NOT NULL,
    sid                 SMALLINT NOT NULL,
    classifier_id       SMALLINT NOT NULL,
    classifier_version  SMALLINT NOT NULL,
    class_id            SMALLINT NOT NULL,
    probability         REAL NOT NULL,
    ranking             SMALLINT,
    lastmjd             DOUBLE PRECISION NOT NULL,
    CONSTRAINT pk_probability_oid_classifierid_classid PRIMARY KEY (oid, sid, classifier_id, class_id)
) PARTITION BY HASH (oid);

CREATE INDEX ix_probability_oid ON probability USING hash (oid);
CREATE INDEX ix_probability_probability ON probability USING btree (probability);
CREATE INDEX ix_probability_ranking ON probability USING btree (ranking);
CREATE INDEX ix_classification_rank1 ON probability USING btree (ranking) WHERE (ranking = 1);

CREATE TABLE probability_part_0 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE probability_part_1 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE probability_part_2 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE probability_part_3 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE probability_part_4 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE probability_part_5 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE probability_part_6 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE probability_part_7 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE probability_part_8 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE probability_part_9 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE probability_part_10 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE probability_part_11 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE probability_part_12 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE probability_part_13 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE probability_part_14 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE probability_part_15 PARTITION OF probability FOR VALUES WITH (MODULUS 16, REMAINDER 15);
