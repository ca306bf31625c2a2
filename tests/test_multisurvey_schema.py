"""The multi-survey schema set (sql/multisurvey) against ALeRCE's reference catalog, item by item.

The reference is parsed from its markdown (tests/multisurvey_reference.py). ``initdb`` of the set
must give it exactly: tables, columns in order with type, nullability and default, constraints,
indexes, partition keys and bounds, the index copies on every partition, sequences and seed rows,
and the reference's counts. A database built the way ALeRCE's ``create_db`` builds it (generated
here from the reference: SQLAlchemy's DDL, then the partitions, then the seeds) must be adopted,
and one that differs in a partition refused.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbp import OperationError
from dbp.sql import admin as sql_admin
from dbp.sql.catalog import LEDGER_TABLES as LEDGER
from dbp.sql.catalog import Catalog, read_catalog
from dbp.sql.cone_run import declarations
from dbp.sql.connection import SQLConnection
from dbp.sql.ledger import read_state
from dbp.sql.migrations import draft_migration, migrate, rollback, status
from dbp.sql.schema import StatementError
from dbp.sql.settings import SQLSettings

from .conftest import ROOT, sql_section
from .hyp import examples
from .multisurvey_reference import Reference, ReferenceFormatError, load, parse_row
from .test_cone import skip_without_q3c

SET = ROOT / "sql" / "multisurvey"
CONE_MIGRATION = "0001_cone_search_indexes"


@pytest.fixture(scope="module")
def ref() -> Reference:
    return load()


@pytest.fixture
def ms_settings(sql_settings: SQLSettings) -> SQLSettings:
    """A fresh database whose SCHEMA_DIR is the repository's multi-survey set."""
    return dataclasses.replace(sql_settings, schema_dir=SET)


def sql_init(settings: SQLSettings, **kw: Any) -> Any:
    with SQLConnection(settings=settings) as db:
        return sql_admin.initdb(db, **kw)


def public_tables(settings: SQLSettings) -> list[str]:
    with SQLConnection(settings=settings) as db:
        rows = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
    return sorted(r["table_name"] for r in rows)


# -- the live database in the reference's terms ---------------------------------------------------------------

_COLUMNS = """
SELECT table_name AS table, column_name AS name, is_nullable = 'NO' AS not_null, column_default AS default,
       CASE WHEN data_type = 'ARRAY' THEN ltrim(udt_name, '_') || '[]' ELSE data_type END AS type
FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position
"""

#: Every index on a leaf partition: its definition after USING, or its constraint's (a primary key).
_PARTITION_INDEXES = """
SELECT p.relname AS partition, i.relname AS name,
       COALESCE(pg_get_constraintdef(k.oid), split_part(pg_get_indexdef(i.oid), ' USING ', 2)) AS definition
FROM pg_class p JOIN pg_namespace n ON n.oid = p.relnamespace
JOIN pg_index x ON x.indrelid = p.oid JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint k ON k.conindid = i.oid AND k.conrelid = p.oid AND k.contype IN ('p', 'u', 'x')
WHERE n.nspname = 'public' AND p.relispartition ORDER BY 1, 2
"""

_SEQUENCES = """
SELECT s.seqrelid::regclass::text AS regclass, c.relname AS name, format_type(s.seqtypid, NULL) AS type,
       s.seqstart AS start, s.seqincrement AS increment, s.seqmin AS minvalue, s.seqmax AS maxvalue,
       s.seqcache AS cache, s.seqcycle AS cycle, t.relname AS owner_table, a.attname AS owner_column
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.deptype = 'a'
     AND d.refclassid = 'pg_class'::regclass
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE n.nspname = 'public' ORDER BY c.relname
"""


@dataclasses.dataclass
class Live:
    catalog: Catalog
    #: table -> [(name, type, not_null, default)] in order, leaf partitions included
    columns: dict[str, list[tuple[str, str, bool, Optional[str]]]]
    #: leaf partition -> [(index name, definition)]
    partition_indexes: dict[str, list[tuple[str, str]]]
    sequences: list[dict[str, Any]]
    server_version: int


def read_live(settings: SQLSettings) -> Live:
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        catalog = read_catalog(conn)
        cur = conn.cursor()
        columns: dict[str, list[tuple[str, str, bool, Optional[str]]]] = {}
        for row in cur.execute(_COLUMNS).fetchall():
            columns.setdefault(row["table"], []).append((row["name"], row["type"], row["not_null"], row["default"]))
        partition_indexes: dict[str, list[tuple[str, str]]] = {}
        for row in cur.execute(_PARTITION_INDEXES).fetchall():
            partition_indexes.setdefault(row["partition"], []).append((row["name"], row["definition"]))
        sequences = cur.execute(_SEQUENCES).fetchall()
        for seq in sequences:
            state = cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                sql.Identifier(seq["name"]))).fetchone()
            seq.update(state)
        version = cur.execute("SELECT current_setting('server_version_num')::int AS v").fetchone()["v"]
    return Live(catalog, columns, partition_indexes, sequences, version)


def differences(ref: Reference, live: Live, *, copy_names: bool) -> list[str]:
    """Every way ``live`` differs from the reference (``copy_names``: compare the partitions' index copies'
    names too, which PostgreSQL chooses from the order the parent's indexes were made in)."""
    out: list[str] = []
    tables = live.catalog.tables
    if sorted(tables) != sorted(ref.tables):
        out.append(f"tables: {sorted(tables)} != {sorted(ref.tables)}")
    for name, want in ref.tables.items():
        have = tables.get(name)
        if have is None:
            continue
        cols = [(c.name, c.type, c.not_null) for c in want.columns]
        live_cols = live.columns.get(name, [])
        if [c[:3] for c in live_cols] != cols:
            out.append(f"{name}: columns {[c[:3] for c in live_cols]} != {cols}")
        defaults = {c[0]: c[3] for c in live_cols if c[3] is not None}
        if defaults != want.defaults:
            out.append(f"{name}: defaults {defaults} != {want.defaults}")
        constraints = {c.name: c.definition for c in have.constraints.values()}
        if constraints != want.constraints:
            out.append(f"{name}: constraints {constraints} != {want.constraints}")
        if want.no_primary_key != (have.primary_key is None):
            out.append(f"{name}: primary key {have.primary_key}, the reference says none: {want.no_primary_key}")
        indexes = {i.name: i.definition for i in have.indexes.values()}
        if indexes != want.indexes:
            out.append(f"{name}: indexes {indexes} != {want.indexes}")
        if have.partitioned_by != want.partitioned_by:
            out.append(f"{name}: partitioned by {have.partitioned_by}, the reference says {want.partitioned_by}")
        bounds = {p.name: p.bound for p in have.partitions.values()}
        if bounds != want.partitions:
            out.append(f"{name}: partitions {bounds} != {want.partitions}")
        for i, part in enumerate(want.partitions):
            out += _partition_differences(name, part, i, want.copied, want.copies, live, live_cols, copy_names)
    seqs = {s["name"]: s for s in live.sequences}
    if sorted(seqs) != sorted(ref.sequences):
        out.append(f"sequences {sorted(seqs)} != {sorted(ref.sequences)}")
    for name, seq in ref.sequences.items():
        got = seqs.get(name)
        if got is None:
            continue
        have_seq = (got["type"], got["start"], got["increment"], got["minvalue"], got["maxvalue"], got["cache"],
                    got["cycle"], got["owner_table"], got["owner_column"], got["last_value"], got["is_called"])
        want_seq = (seq.type, seq.start, seq.increment, seq.minvalue, seq.maxvalue, seq.cache, seq.cycle,
                    seq.owner_table, seq.owner_column, seq.last_value, seq.is_called)
        if have_seq != want_seq:
            out.append(f"sequence {name}: {have_seq} != {want_seq}")
    return out


def _partition_differences(table: str, part: str, i: int, copied: list[str], copies: list[Any], live: Live,
                           parent_cols: list[Any], copy_names: bool) -> list[str]:
    out = []
    if live.columns.get(part) != parent_cols:
        out.append(f"{part}: columns {live.columns.get(part)} != its table's {parent_cols}")
    have = live.partition_indexes.get(part, [])
    if sorted(d for _, d in have) != sorted(c.definition for c in copies):
        out.append(f"{part}: index definitions {sorted(d for _, d in have)} != "
                   f"{sorted(c.definition for c in copies)}")
    if copy_names and sorted(have) != sorted((c.name(i), c.definition) for c in copies):
        out.append(f"{part}: index copies {sorted(have)} != {sorted((c.name(i), c.definition) for c in copies)}")
    partition = live.catalog.tables[table].partitions.get(part)
    if partition is not None and (partition.copies != tuple(sorted(copied)) or partition.own_indexes):
        out.append(f"{part}: copies of {partition.copies} and own indexes {partition.own_indexes}, the "
                   f"reference says copies of {sorted(copied)}")
    return out


def seed_differences(ref: Reference, settings: SQLSettings) -> list[str]:
    """Every seed row exact (every other table empty), created_date today's."""
    out = []
    seeded = {s.table for s in ref.seeds}
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        cur = conn.cursor()
        for seed in ref.seeds:
            table = ref.tables[seed.table]
            assert table.primary_key is not None
            order = sql.SQL(", ").join(map(sql.Identifier, _columns_of(table.primary_key[1])))
            rows = cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, seed.columns)), sql.Identifier(seed.table), order)).fetchall()
            got = [tuple(r[c] for c in seed.columns) for r in rows]
            if got != seed.rows:
                out.append(f"{seed.table}: rows {got} != {seed.rows}")
            if any(c.name == "created_date" for c in table.columns):
                dates = cur.execute(sql.SQL("SELECT count(*) AS n FROM {} WHERE created_date = current_date").format(
                    sql.Identifier(seed.table))).fetchone()["n"]
                if dates != len(seed.rows):
                    out.append(f"{seed.table}: {dates} of {len(seed.rows)} rows have today's created_date")
        for name in sorted(set(ref.tables) - seeded):
            n = cur.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(name))).fetchone()["n"]
            if n:
                out.append(f"{name}: {n} rows, the reference seeds none")
    return out


def live_counts(live: Live, settings: SQLSettings, seed_order: list[str]) -> dict[str, list[int]]:
    """The live numbers of the reference's Counts lines, in the order those lines give them."""
    tables = live.catalog.tables.values()
    constraints = [c for t in tables for c in t.constraints.values()]
    indexes = [i for t in tables for i in t.indexes.values()]
    parents = sorted((t for t in tables if t.partitioned_by), key=lambda t: t.name)
    copies = [d for part in live.partition_indexes.values() for _, d in part]
    defaults = [c[3] for t in live.catalog.tables for c in live.columns[t] if c[3] is not None]
    with SQLConnection(settings=settings) as db:
        not_null = db.execute(
            "SELECT count(*) FILTER (WHERE NOT c.relispartition) AS tables, count(*) FILTER (WHERE c.relispartition)"
            " AS partitions FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND k.contype = 'n'"
            " AND c.relname <> ALL(%s)", (sorted(LEDGER),)).fetchone()
        base_tables = db.execute(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE' AND table_name <> ALL(%s)", (sorted(LEDGER),)).fetchone()["n"]
        seeds = {}
        for table in live.catalog.tables:
            seeds[table] = db.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
                                      ).fetchone()["n"]
    return {
        "tables": [len(live.catalog.tables), sum(1 for t in tables if not t.partitioned_by), len(parents)],
        "columns": [sum(len(t.columns) for t in tables), len(live.catalog.tables)],
        "primary keys": [sum(c.kind == "p" for c in constraints)],
        "foreign keys": [sum(c.kind == "f" for c in constraints), sum(c.kind in "ucx" for c in constraints)],
        "secondary indexes": [len(indexes), sum(i.method == "btree" for i in indexes),
                              sum(i.method == "hash" for i in indexes),
                              sum(" WHERE " in i.definition for i in indexes)],
        "leaf partitions": [sum(len(t.partitions) for t in tables), sum(d.startswith("PRIMARY KEY") for d in copies),
                            sum(not d.startswith("PRIMARY KEY") for d in copies)],
        "sequences": [len(live.sequences)],
        "column defaults": [len(defaults), defaults.count("now()"), sum(d.startswith("nextval(") for d in defaults)],
        "seed rows": [sum(seeds.values())] + [seeds[s] for s in seed_order],
        "not null": [not_null["tables"], not_null["partitions"]],
        "base tables": [base_tables],
        "partitioned tables": [len(t.partitions) for t in parents],
    }


def assert_counts(ref: Reference, live: Live, settings: SQLSettings) -> None:
    have = live_counts(live, settings, [s.table for s in ref.seeds])
    seed_line = ref.numbers("seed rows")
    assert seed_line[1:] == [len(s.rows) for s in ref.seeds]  # the line names the tables in the seeds' order
    partitioned = dict(re.findall(r"(\w+) (\d+)", ref.counts["partitioned tables"].partition(" (")[0]))
    not_null = ref.numbers("NOT NULL constraint rows on PostgreSQL 18 only (not listed)")
    want = {
        "tables": ref.numbers("tables"),
        "columns": ref.numbers("columns"),
        "primary keys": ref.numbers("primary keys"),
        "foreign keys": ref.numbers("foreign keys"),
        "secondary indexes": ref.numbers("secondary indexes"),
        "leaf partitions": ref.numbers("leaf partitions"),
        "sequences": ref.numbers("sequences"),
        "column defaults": ref.numbers("column defaults"),
        "seed rows": seed_line,
        "not null": not_null[:2] if live.server_version >= 180000 else [not_null[3], not_null[3]],
        "base tables": ref.numbers("`information_schema.tables` rows of type BASE TABLE")[:1],
        "partitioned tables": [int(partitioned[t]) for t in sorted(partitioned)],
    }
    assert have == want
    assert want["tables"][0] == 30 and want["leaf partitions"][0] == 80 and want["seed rows"][0] == 178  # the brief's


def assert_is_the_reference(ref: Reference, settings: SQLSettings, *, copy_names: bool) -> Live:
    live = read_live(settings)
    assert differences(ref, live, copy_names=copy_names) == []
    assert seed_differences(ref, settings) == []
    assert_counts(ref, live, settings)
    return live


# -- initdb of the set ------------------------------------------------------------------------------------------


def test_initdb_creates_the_reference_exactly(ref: Reference, ms_settings: SQLSettings) -> None:
    report = sql_init(ms_settings)
    assert report.outcome == "created"
    assert report.counts == {"tables": 30, "indexes": 23}
    assert report.baseline == []  # the cone index migration waits for dbp migrate
    live = assert_is_the_reference(ref, ms_settings, copy_names=True)
    # the files make probability's indexes in the order that names the partial copy _idx1, as the reference has it
    assert ("probability_part_3_ranking_idx1", "btree (ranking) WHERE (ranking = 1)") in \
        live.partition_indexes["probability_part_3"]


def test_the_comparison_sees_a_difference(ref: Reference, ms_settings: SQLSettings) -> None:
    """The item-by-item comparison is not blind: one change each, each named."""
    sql_init(ms_settings)
    with SQLConnection(settings=ms_settings) as db:
        db.execute("ALTER TABLE lsst_ss_object ALTER COLUMN \"MOIDEarth\" TYPE double precision")
        db.execute("ALTER TABLE object ALTER COLUMN updated_date SET DEFAULT now()")
        db.execute("SELECT nextval('taxonomy_class_id_seq')")
        db.execute("UPDATE feature_name_lut SET feature_name = 'Power_rate_1/5' WHERE feature_id = 31")
    live = read_live(ms_settings)
    found = differences(ref, live, copy_names=True)
    assert len(found) == 3, found
    assert "lsst_ss_object: columns" in found[0] and "object: defaults" in found[1]
    assert "taxonomy_class_id_seq" in found[2]
    seeds = seed_differences(ref, ms_settings)
    assert len(seeds) == 1 and "Power_rate_1/5" in seeds[0]


def test_second_initdb_changes_nothing(ref: Reference, ms_settings: SQLSettings) -> None:
    sql_init(ms_settings)
    before = read_live(ms_settings)
    with SQLConnection(settings=ms_settings) as db:
        marker = db.execute("SELECT * FROM _dbp_schema").fetchall()
    again = sql_init(ms_settings)
    assert again.outcome == "already initialized"
    assert again.counts == {"tables": 30, "indexes": 23}
    assert read_live(ms_settings) == before
    assert seed_differences(ref, ms_settings) == []
    with SQLConnection(settings=ms_settings) as db:
        assert db.execute("SELECT * FROM _dbp_schema").fetchall() == marker


def broken_set(tmp_path: Path) -> Path:
    """The set with a failing statement after every partition and seed row went in."""
    import shutil

    root = tmp_path / "multisurvey"
    shutil.copytree(SET, root)
    seeds = root / "schema" / "900_seed_rows.sql"
    seeds.write_text(seeds.read_text() + "\nINSERT INTO band (sid, tid, band, band_name) VALUES (0, 0, 1, NULL);\n")
    return root


def test_failure_midway_leaves_no_trace(ref: Reference, ms_settings: SQLSettings, tmp_path: Path) -> None:
    broken = dataclasses.replace(ms_settings, schema_dir=broken_set(tmp_path))
    with pytest.raises(StatementError) as info:
        sql_init(broken)
    lines = (SET / "schema" / "900_seed_rows.sql").read_text().count("\n")
    assert f"900_seed_rows.sql:{lines + 2}" in str(info.value)
    assert "band_name" in str(info.value)
    assert public_tables(ms_settings) == []  # no table, partition, sequence, ledger or marker
    with SQLConnection(settings=ms_settings) as db:
        assert db.execute("SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE n.nspname = 'public'").fetchone()["n"] == 0
    assert sql_init(ms_settings).outcome == "created"
    assert_is_the_reference(ref, ms_settings, copy_names=True)


def test_initdb_killed_midway_leaves_no_trace(ref: Reference, ms_settings: SQLSettings, tmp_path: Path) -> None:
    """``dbp initdb`` killed (SIGKILL) after the whole schema went in, before it committed: nothing is left.

    A transaction of the test's creates the ledger's table names first, so initdb, once it has made every
    table, partition and seed row, waits on it: the kill lands there, mid-way, every time.
    """
    blocker = psycopg.connect(**dict(ms_settings.params))
    # watched from a connection of its own: in the blocker's transaction pg_stat_activity would not change
    monitor = psycopg.connect(**dict(ms_settings.params), autocommit=True)
    try:
        for name in sorted(LEDGER):
            blocker.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(name)))
        (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(ms_settings)["URL"]}"\n'
                                           f'SCHEMA_DIR = "{SET}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen([sys.executable, "-m", "dbp", "initdb", "--engine", "sql"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            backend = wait_for_waiting_backend(monitor, blocker.info.backend_pid, proc)
            held = monitor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'relation'",
                                   (backend,)).fetchone()
            assert held is not None and held[0] >= 110 + 80  # tables, partitions and their indexes: all made
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        blocker.rollback()
        deadline = time.monotonic() + 60
        while monitor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone():
            assert time.monotonic() < deadline, "initdb's server process outlived its client"
            time.sleep(0.05)
    finally:
        blocker.close()
        monitor.close()
    assert proc.returncode == -signal.SIGKILL
    assert public_tables(ms_settings) == []
    assert sql_init(ms_settings).outcome == "created"
    assert_is_the_reference(ref, ms_settings, copy_names=True)


def wait_for_waiting_backend(monitor: psycopg.Connection[Any], me: int, proc: subprocess.Popen[str]) -> int:
    """The server process of ``proc``'s initdb once it waits on the blocker's (server process ``me``) lock."""
    deadline = time.monotonic() + 120
    while True:
        row = monitor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s "
            "AND %s = ANY(pg_blocking_pids(pid)) AND query LIKE 'CREATE TABLE %%yoyo%%'", (me, me)).fetchone()
        if row is not None:
            return int(row[0])
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"initdb ended ({proc.returncode}) before it waited: {out} {err}")
        assert time.monotonic() < deadline, "initdb never reached the ledger's tables"
        time.sleep(0.05)


# -- what ALeRCE's create_db emits, and --adopt ------------------------------------------------------------------

#: SQLAlchemy 2.0's names for the reference's types, and for an integer primary key's SERIAL.
SA_TYPES = {"character varying": "VARCHAR", "double precision": "FLOAT", "real": "REAL", "bigint": "BIGINT",
            "integer": "INTEGER", "smallint": "SMALLINT", "boolean": "BOOLEAN", "date": "DATE", "jsonb": "JSONB"}
SA_SERIAL = {"smallint": "SMALLSERIAL", "integer": "SERIAL", "bigint": "BIGSERIAL"}


def _columns_of(definition: str) -> list[str]:
    inside = definition.partition("(")[2].partition(")")[0]
    return [c.strip().strip('"') for c in inside.split(",")]


def alerce_create_db(
    ref: Reference,
    *,
    skip_partition: Optional[str] = None,
    bounds: Optional[dict[str, tuple[int, int]]] = None,
    on_only: Optional[tuple[str, str]] = None,
) -> list[sql.Composable]:
    """The statements ALeRCE's ``create_db`` runs, generated from the reference: ``create_all`` (CREATE TABLE,
    then each CREATE INDEX, the tables in another order than the set's files and probability's partial index
    first), then ``CREATE TABLE IF NOT EXISTS <t>_part_<i> PARTITION OF ...`` per partitioned table, then one
    INSERT ... ON CONFLICT DO NOTHING per seeded table (values as parameters: see :func:`run`).

    Faults: ``skip_partition`` is never made; ``bounds`` gives partitions another (modulus, remainder);
    ``on_only`` = (index, partition): that index is made ON ONLY its table and attached on every partition
    but that one.
    """
    tables: list[sql.Composable] = []
    later: list[sql.Composable] = []
    for table in sorted(ref.tables.values(), key=lambda t: t.name, reverse=True):
        t = sql.Identifier(table.name)
        lines = []
        for c in table.columns:
            serial = table.defaults.get(c.name, "").startswith("nextval(")
            text = sql.SQL(SA_SERIAL[c.type] if serial else SA_TYPES[c.type])
            if not serial and c.name in table.defaults:
                assert table.defaults[c.name] == "now()", table.defaults[c.name]
                text = sql.SQL("{} DEFAULT now()").format(text)
            lines.append(sql.SQL("{} {}{}").format(sql.Identifier(c.name), text,
                                                    sql.SQL(" NOT NULL" if c.not_null else "")))
        for name, definition in table.constraints.items():
            assert definition.startswith("PRIMARY KEY ("), definition
            lines.append(sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, _columns_of(definition)))))
        tail = sql.SQL(" PARTITION BY HASH ({})").format(sql.Identifier(table.partitioned_by[6:-1])) \
            if table.partitioned_by else sql.SQL("")
        assert table.partitioned_by in (None, "HASH (oid)")
        tables.append(sql.SQL("CREATE TABLE {} (\n\t{}\n){}").format(t, sql.SQL(",\n\t").join(lines), tail))
        for name, definition in sorted(table.indexes.items(), key=lambda i: (" WHERE " not in i[1], i[0])):
            method, _, rest = definition.partition(" ")
            predicate = rest.partition(" WHERE ")[2]
            index = sql.SQL("CREATE INDEX {} ON {}{} USING {} ({}){}").format(
                sql.Identifier(name), sql.SQL("ONLY ") if on_only and on_only[0] == name else sql.SQL(""), t,
                sql.SQL(method), sql.SQL(", ").join(map(sql.Identifier, _columns_of(rest))),
                sql.SQL(f" WHERE {predicate}") if predicate else sql.SQL(""))
            if on_only and on_only[0] == name:
                later.append(index)
                for part in table.partitions:
                    if part == on_only[1]:
                        continue
                    copy = f"{part}_{name}"
                    later.append(sql.SQL("CREATE INDEX {} ON {} USING {} ({})").format(
                        sql.Identifier(copy), sql.Identifier(part), sql.SQL(method),
                        sql.SQL(", ").join(map(sql.Identifier, _columns_of(rest)))))
                    later.append(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
                        sql.Identifier(name), sql.Identifier(copy)))
            else:
                tables.append(index)
    partitions: list[sql.Composable] = []
    for table in sorted(ref.tables.values(), key=lambda t: t.name):
        n = len(table.partitions)
        for i, part in enumerate(table.partitions):
            if part == skip_partition:
                continue
            modulus, remainder = (bounds or {}).get(part, (n, i))
            partitions.append(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
                sql.Identifier(part), sql.Identifier(table.name), sql.Literal(modulus), sql.Literal(remainder)))
    return tables + partitions + later


def seed_statements(ref: Reference) -> list[tuple[sql.Composable, list[tuple[Any, ...]]]]:
    out = []
    for seed in ref.seeds:
        values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(seed.columns)))
                                    for _ in seed.rows)
        statement = sql.SQL("INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO NOTHING").format(
            sql.Identifier(seed.table), sql.SQL(", ").join(map(sql.Identifier, seed.columns)), values,
            sql.SQL(", ").join(map(sql.Identifier, seed.conflict)))
        out.append((statement, [v for row in seed.rows for v in row]))
    return out


def build_as_alerce(ref: Reference, settings: SQLSettings, **faults: Any) -> None:
    """Run :func:`alerce_create_db`'s statements and the seeds, committed together, as create_db does."""
    with SQLConnection(settings=settings) as db, db.transaction() as conn:
        for statement in alerce_create_db(ref, **faults):
            conn.execute(statement)
        for statement, params in seed_statements(ref):
            conn.execute(statement, params)


def test_alerce_build_is_the_reference_and_is_adopted(
    ref: Reference, ms_settings: SQLSettings, run_dbp: Any, tmp_path: Path
) -> None:
    build_as_alerce(ref, ms_settings)
    live = assert_is_the_reference(ref, ms_settings, copy_names=False)
    # made in another order: PostgreSQL named the partial copy _ranking_idx this time
    assert ("probability_part_3_ranking_idx", "btree (ranking) WHERE (ranking = 1)") in \
        live.partition_indexes["probability_part_3"]
    with SQLConnection(settings=ms_settings) as db, db.connection() as conn:
        assert read_state(conn).user_tables == tuple(sorted(ref.tables))  # no partition among them
    with pytest.raises(OperationError, match=r"already has 30 table\(s\).*--adopt"):
        sql_init(ms_settings)
    report = sql_init(ms_settings, adopt=True)
    assert report.outcome == "adopted"
    assert report.counts == {"tables": 30, "indexes": 23}
    assert_is_the_reference(ref, ms_settings, copy_names=False)  # adopting changed nothing
    (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(ms_settings)["URL"]}"\n'
                                       f'SCHEMA_DIR = "{SET}"\n')
    state = run_dbp("status")
    assert state.returncode == 0, state.stderr
    assert re.search(rf"pending\s+{CONE_MIGRATION}", state.stdout), state.stdout
    assert "_part_" not in state.stdout + state.stderr
    migrated = run_dbp("migrate")
    assert migrated.returncode == 0, migrated.stderr
    check = run_dbp("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no drift" in check.stdout and "_part_" not in check.stdout + check.stderr


@pytest.mark.parametrize(
    ("faults", "named"),
    [
        ({"skip_partition": "magstat_part_7"}, "partition magstat_part_7 of magstat is missing"),
        ({"bounds": {"object_part_7": (16, 7)}},
         "partition object_part_7 of object is FOR VALUES WITH (modulus 16, remainder 7), the schema files say "
         "FOR VALUES WITH (modulus 8, remainder 7)"),
        ({"on_only": ("ix_probability_ranking", "probability_part_5")},
         "partition probability_part_5 of probability has no copy of index ix_probability_ranking"),
    ],
    ids=["missing partition", "other modulus", "missing index copy"],
)
def test_adopt_refuses_a_partition_that_differs(
    ref: Reference, ms_settings: SQLSettings, faults: dict[str, Any], named: str
) -> None:
    build_as_alerce(ref, ms_settings, **faults)
    with pytest.raises(OperationError) as info:
        sql_init(ms_settings, adopt=True)
    assert named in str(info.value)
    assert info.value.details == [named]
    assert not LEDGER & set(public_tables(ms_settings))


def test_adopt_refuses_an_index_of_a_partition_alone(ref: Reference, ms_settings: SQLSettings) -> None:
    build_as_alerce(ref, ms_settings)
    with SQLConnection(settings=ms_settings) as db:
        db.execute("CREATE INDEX feature_part_3_value ON feature_part_3 (value)")
    with pytest.raises(OperationError) as info:
        sql_init(ms_settings, adopt=True)
    assert info.value.details == ["index feature_part_3_value on partition feature_part_3 of feature is not in "
                                  "the schema files"]


def test_diff_names_each_partition_index_difference() -> None:
    """dbp.sql.catalog.diff on partitions' index copies and own indexes, both ways; an index only one table has
    is that table's difference, not one per partition."""
    from dbp.sql.catalog import Constraint, Index, Partition, Table, diff

    def catalog(copies: tuple[str, ...], own: tuple[str, ...], indexes: tuple[str, ...]) -> Catalog:
        table = Table("t", partitioned_by="HASH (oid)")
        table.constraints["pk_t"] = Constraint("pk_t", "p", "PRIMARY KEY (oid)", ("oid",))
        for name in indexes:
            table.indexes[name] = Index(name, "btree (a)", False, f"CREATE INDEX {name} ON t USING btree (a)")
        table.partitions["t_part_0"] = Partition("t_part_0", "FOR VALUES WITH (modulus 1, remainder 0)",
                                                 copies=copies, own_indexes=own)
        return Catalog("public", {"t": table})

    wanted = catalog(("ix_a", "pk_t"), (), ("ix_a",))
    assert diff(catalog(("ix_a", "pk_t"), (), ("ix_a",)), wanted) == []
    assert diff(catalog(("pk_t",), (), ("ix_a",)), wanted) == ["partition t_part_0 of t has no copy of index ix_a"]
    assert diff(wanted, catalog(("pk_t",), (), ("ix_a",))) == [
        "partition t_part_0 of t has a copy of index ix_a; in the schema files it has none"]
    assert diff(catalog(("pk_t",), (), ()), wanted) == ["index ix_a on t is missing"]
    assert diff(catalog(("ix_a", "pk_t"), ("mine",), ("ix_a",)), wanted) == [
        "index mine on partition t_part_0 of t is not in the schema files"]
    assert diff(wanted, catalog(("ix_a", "pk_t"), ("mine",), ("ix_a",))) == [
        "index mine on partition t_part_0 of t is missing"]


# -- positions and the cone index migration ------------------------------------------------------------------------


def test_positions_are_every_ra_dec_pair_of_the_reference(ref: Reference) -> None:
    declared = declarations(SET)
    assert {t: (p.ra, p.dec) for t, p in declared.items()} == {
        "object": ("meanra", "meandec"), "detection": ("ra", "dec"), "forced_photometry": ("ra", "dec"),
        "lsst_dia_object": ("ra", "dec"), "allwise": ("ra", "dec"),
    }
    with_ra_dec = {t.name for t in ref.tables.values() if {"ra", "dec"} <= {c.name for c in t.columns}}
    assert with_ra_dec == set(declared) - {"object"}
    for table, position in declared.items():
        columns = {c.name: c for c in ref.tables[table].columns}
        for name in (position.ra, position.dec):
            assert (columns[name].type, columns[name].not_null) == ("double precision", True), (table, name)


def index_names(db: SQLConnection) -> set[str]:
    return {r["indexname"] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


@pytest.mark.parametrize("with_q3c", [False, True])
def test_the_cone_migration_after_initdb(ref: Reference, ms_settings: SQLSettings, with_q3c: bool) -> None:
    with SQLConnection(settings=ms_settings) as db:
        if with_q3c:
            skip_without_q3c(db)
            db.execute("CREATE EXTENSION q3c")
        report = sql_admin.initdb(db)
        assert report.baseline == []
        before = index_names(db)
        assert [(s.id, s.state) for s in status(db).migrations] == [(CONE_MIGRATION, "pending")]
        assert migrate(db) == [CONE_MIGRATION]
        cone = {"ix_object_meandec_meanra", "ix_detection_dec_ra", "ix_forced_photometry_dec_ra",
                "ix_lsst_dia_object_dec_ra", "ix_allwise_dec_ra"} | ({"ix_object_q3c"} if with_q3c else set())
        with db.connection() as conn:
            catalog = read_catalog(conn)
        added = {i for t in catalog.tables.values() for i in t.indexes} - {
            i for t in ref.tables.values() for i in t.indexes}
        assert added == cone
        for table in ("object", "lsst_dia_object"):  # made on the parent: a copy on every partition
            mine = {i for i in cone if i in catalog.tables[table].indexes}
            for partition in catalog.tables[table].partitions.values():
                assert mine <= set(partition.copies), partition
        # $cone on the partitioned object table, on the path the indexes give
        db.catalog(refresh=True)
        rows = [{"oid": oid, "tid": 0, "sid": 0, "meanra": ra, "meandec": dec, "firstmjd": 1.0, "lastmjd": 2.0,
                 "deltamjd": 1.0, "n_det": 1, "n_forced": 0, "n_non_det": 0}
                for oid, ra, dec in [(1, 10.0, 20.0), (2, 10.0, 20.0005), (3, 10.0, 20.01), (4, 190.0, -20.0)]]
        db.query("object").bulk_insert(rows)
        found = db.query("object").find_all({"$cone": {"ra": 10.0, "dec": 20.0, "radius": 2.0}}, paginate=False)
        assert sorted(r["oid"] for r in found) == [1, 2]
        from dbp.sql import cone_run
        from dbp.sql.query import SQLQuery

        assert cone_run.path(SQLQuery(db, "object")) == ("q3c" if with_q3c else "portable")
        assert rollback(db, steps=1) == [CONE_MIGRATION]
        assert index_names(db) == before


@pytest.mark.parametrize("with_q3c", [False, True])
def test_check_after_migrate_is_clean(ms_settings: SQLSettings, with_q3c: bool) -> None:
    """make_migrations' comparison (files + after-initdb migrations vs the database) finds nothing, also where
    q3c is installed: the scratch schema sees q3c's functions, and prints them as public does."""
    with SQLConnection(settings=ms_settings) as db:
        if with_q3c:
            skip_without_q3c(db)
            db.execute("CREATE EXTENSION q3c")
        sql_admin.initdb(db)
        migrate(db)
        assert draft_migration(db, "nothing", writing=False).changes == []


# -- the reference's parser ------------------------------------------------------------------------------------------


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))


@given(st.lists(values, min_size=1, max_size=6))
@settings(max_examples=examples(300))
def test_a_row_of_sql_literals_reads_back(row: list[Any]) -> None:
    text = "(" + ", ".join(_literal(v) for v in row) + ")"

    def bad(why: str) -> ReferenceFormatError:
        return ReferenceFormatError(why)

    assert parse_row(text, bad) == tuple(row)


@pytest.mark.parametrize("text", ["(1, 'a'", "(1, 'it's')", "(1 2)", "(foo)", "(1,)", "(1) x"])
def test_a_row_the_parser_does_not_understand_is_refused(text: str) -> None:
    def bad(why: str) -> ReferenceFormatError:
        return ReferenceFormatError(why)

    with pytest.raises(ReferenceFormatError):
        parse_row(text, bad)


def test_a_reference_line_the_parser_does_not_understand_is_refused(tmp_path: Path, ref: Reference) -> None:
    text = ref.path.read_text(encoding="utf-8")
    changed = tmp_path / "changed.md"
    changed.write_text(text.replace("- index `ix_detection_oid`: USING hash (oid)",
                                    "- index `ix_detection_oid` USING hash (oid)"), encoding="utf-8")
    from .multisurvey_reference import parse

    with pytest.raises(ReferenceFormatError, match=r"changed\.md:\d+: unknown line in table detection"):
        parse(changed)


def test_a_missing_reference_fails_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from . import multisurvey_reference as module

    monkeypatch.setattr(module, "candidates", lambda: [tmp_path / "nowhere.md"])
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match=r"nowhere\.md"):
        module.load()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="DBP_SHARED_REFERENCE"):
        module.load()
