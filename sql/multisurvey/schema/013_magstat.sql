-- magstat: magnitude statistics of each object per survey and band (means, extremes, first and
-- last magnitudes, their corrected versions, dm/dt at the first detection). Hash-partitioned on
-- oid into 16 partitions.

CREATE TABLE magstat (
    oid              BIGINT NOT NULL,
    sid              SMALLINT NOT NULL,
    band             SMALLINT NOT NULL,
    stellar          BOOLEAN,
    corrected        BOOLEAN,
    ndubious         INTEGER,
    dmdt_first       REAL,
    dm_first         REAL,
    sigmadm_first    REAL,
    dt_first         REAL,
    magmean          REAL,
    magmedian        REAL,
    magmax           REAL,
    magmin           REAL,
    magsigma         REAL,
    maglast          REAL,
    magfirst         REAL,
    magmean_corr     REAL,
    magmedian_corr   REAL,
    magmax_corr      REAL,
    magmin_corr      REAL,
    magsigma_corr    REAL,
    maglast_corr     REAL,
    magfirst_corr    REAL,
    step_id_corr     VARCHAR,
    n_det            INTEGER,
    firstmjd         DOUBLE PRECISION,
    lastmjd          DOUBLE PRECISION,
    saturation_rate  REAL,
    updated_date     DATE,
    CONSTRAINT pk_magstat_oid_sid_band PRIMARY KEY (oid, sid, band)
) PARTITION BY HASH (oid);

CREATE TABLE magstat_part_0 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE magstat_part_1 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE magstat_part_2 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE magstat_part_3 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE magstat_part_4 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE magstat_part_5 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE magstat_part_6 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE magstat_part_7 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE magstat_part_8 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE magstat_part_9 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE magstat_part_10 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE magstat_part_11 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE magstat_part_12 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE magstat_part_13 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE magstat_part_14 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE magstat_part_15 PARTITION OF magstat FOR VALUES WITH (MODULUS 16, REMAINDER 15);
