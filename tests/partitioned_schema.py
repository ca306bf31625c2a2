"""Tables modelled on ALeRCE's multi-survey schema (shared/reference/alerce-multisurvey-sql-schema.md), for the
partitioned-table and keyless-table tests: ``object`` (primary key oid, sid; 8 hash partitions on oid),
``magstat`` (primary key oid, sid, band; 16) and ``feature`` (no primary key, only a btree on oid; 32).

Each can be made partitioned, as ALeRCE's ``create_db`` makes it, or as one plain table with the same
columns, keys and indexes: the oracle the partitioned one must match. A mixed-case column (``"sigmaRa"``,
``"magFirst"``) stands for the LSST tables' names.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from dbp.sql.connection import SQLConnection

#: name: (partitions, columns and constraints, indexes)
TABLES: dict[str, tuple[int, str, list[str]]] = {
    "object": (8, """
        oid bigint NOT NULL,
        tid smallint NOT NULL DEFAULT 0,
        sid smallint NOT NULL,
        meanra double precision NOT NULL,
        meandec double precision NOT NULL,
        "sigmaRa" double precision,
        n_det integer,
        updated_date date,
        CONSTRAINT pk_object_oid_sid PRIMARY KEY (oid, sid)""",
               ["CREATE INDEX ix_object_meanra ON object (meanra)",
                "CREATE INDEX ix_object_meandec ON object (meandec)",
                "CREATE INDEX ix_object_n_det ON object (n_det)"]),
    "magstat": (16, """
        oid bigint NOT NULL,
        sid smallint NOT NULL,
        band smallint NOT NULL,
        stellar boolean,
        ndubious integer,
        magmean real,
        "magFirst" real,
        n_det integer,
        CONSTRAINT pk_magstat_oid_sid_band PRIMARY KEY (oid, sid, band)""", []),
    "feature": (32, """
        oid bigint NOT NULL,
        sid smallint NOT NULL,
        feature_id smallint NOT NULL,
        band smallint NOT NULL,
        version smallint NOT NULL,
        value double precision,
        updated_date date""", ["CREATE INDEX idx_feature_oid ON feature USING btree (oid)"]),
}
#: The columns that identify a feature (its model's primary key, which PostgreSQL never got).
FEATURE_KEY = ["oid", "sid", "feature_id", "band", "version"]
KEYS = {"object": ["oid", "sid"], "magstat": ["oid", "sid", "band"], "feature": FEATURE_KEY}


def schema(partitioned: bool, names: tuple[str, ...] = tuple(TABLES)) -> str:
    """The DDL of ``names``: hash-partitioned on oid as ALeRCE makes them, or plain."""
    out = []
    for name in names:
        parts, body, indexes = TABLES[name]
        out.append(f"CREATE TABLE {name} ({body}\n)" + (" PARTITION BY HASH (oid)" if partitioned else "") + ";")
        if partitioned:
            out += [f"CREATE TABLE {name}_part_{i} PARTITION OF {name} FOR VALUES WITH (MODULUS {parts}, "
                    f"REMAINDER {i});" for i in range(parts)]
        out += [f"{index};" for index in indexes]
    return "\n".join(out)


def oid_pool(db: SQLConnection, per_partition: int = 2) -> list[int]:
    """Oids that reach every partition of every table (``db`` holds the partitioned ``feature``).

    A row goes to the partition whose remainder is its hash modulo the modulus, so oids covering
    feature's 32 remainders cover object's 8 and magstat's 16 too. Half are beyond 2**40 (bigint values).
    """
    pool: list[int] = []
    for start in (1, 2**40):
        rows = db.execute(
            "SELECT r, ARRAY(SELECT g FROM generate_series(%s::bigint, %s::bigint + 5000) AS g "
            "WHERE satisfies_hash_partition('feature'::regclass, 32, r, g) ORDER BY g LIMIT %s) AS oids "
            "FROM generate_series(0, 31) AS r ORDER BY r", (start, start, per_partition)).fetchall()
        for row in rows:
            assert len(row["oids"]) == per_partition, row
            pool += row["oids"]
    return pool


def partitions_used(db: SQLConnection, table: str) -> int:
    """How many partitions of ``table`` hold rows."""
    row = db.execute(sql.SQL("SELECT count(DISTINCT tableoid) AS n FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row["n"])


def partition_of(db: SQLConnection, table: str, oid: int) -> str:
    """The leaf partition of ``table`` that a row with ``oid`` goes to."""
    parts = TABLES[table][0]
    row = db.execute("SELECT r FROM generate_series(0, %s) AS r WHERE satisfies_hash_partition(%s::regclass, %s, r, "
                     "%s::bigint)", (parts - 1, table, parts, oid)).fetchone()
    assert row is not None
    return f"{table}_part_{row['r']}"


def plan_relations(plan: Any) -> list[str]:
    """The relations an EXPLAIN (FORMAT JSON) plan scans (an UPDATE's or DELETE's target is not scanned)."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node and node["Node Type"] != "ModifyTable":
            found.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found
