-- object: one row per astronomical object and survey (oid, sid), the survey-independent summary
-- the pipeline keeps up to date as alerts arrive: mean position (meanra, meandec, in degrees),
-- first and last detection (MJD) and the numbers of detections, forced photometry points and
-- non-detections. Hash-partitioned on oid into 8 partitions, object_part_0 .. object_part_7;
-- the indexes are made on the parent first, so each partition gets a copy of every one.

CREATE TABLE object (
    oid           BIGINT NOT NULL,
    tid           SMALLINT NOT NULL,
    sid           SMALLINT NOT NULL,
    meanra        DOUBLE PRECISION NOT NULL,
    meandec       DOUBLE PRECISION NOT NULL,
    sigmara       DOUBLE PRECISION,
    sigmadec      DOUBLE PRECISION,
    firstmjd      DOUBLE PRECISION NOT NULL,
    lastmjd       DOUBLE PRECISION NOT NULL,
    deltamjd      DOUBLE PRECISION NOT NULL,
    n_det         INTEGER NOT NULL,
    n_forced      INTEGER NOT NULL,
    n_non_det     INTEGER NOT NULL,
    created_date  DATE DEFAULT now(),
    updated_date  DATE,
    CONSTRAINT pk_object_oid_sid PRIMARY KEY (oid, sid)
) PARTITION BY HASH (oid);

CREATE INDEX ix_object_firstmjd ON object USING btree (firstmjd);
CREATE INDEX ix_object_lastmjd ON object USING btree (lastmjd);
CREATE INDEX ix_object_meandec ON object USING btree (meandec);
CREATE INDEX ix_object_meanra ON object USING btree (meanra);
CREATE INDEX ix_object_n_det ON object USING btree (n_det);

CREATE TABLE object_part_0 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE object_part_1 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE object_part_2 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE object_part_3 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE object_part_4 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE object_part_5 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE object_part_6 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE object_part_7 PARTITION OF object FOR VALUES WITH (MODULUS 8, REMAINDER 7);
