"""make_migrations and partitioned tables: new ones, changes on a parent, partitions added and dropped, and the
changes it refuses (a partition key or bound: a data migration to write by hand), end to end through the CLI;
and test_ddl's round-trip property over random schemas with partitioned tables and random edits of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbp.sql.catalog import Catalog, diff, read_catalog
from dbp.sql.connection import SQLConnection
from dbp.sql.schema import SchemaFiles
from dbp.sql.settings import SQLSettings
from tests.hyp import examples
from tests.test_ddl import COLUMNS, DEFAULTS, create, round_trip, tables

from .projects import Project, make_sql_project

# -- end to end: make_migrations, migrate, rollback, check ------------------------------------------------

OBJECT = "CREATE TABLE object (oid bigint PRIMARY KEY, ndet integer NOT NULL DEFAULT 0);\n"

#: RANGE on a mixed-case column, one partition hash-partitioned in turn, an index on the parent.
DETECTION = """\
CREATE TABLE "Detection" (
    id bigint NOT NULL,
    oid bigint NOT NULL REFERENCES object (oid),
    "Mjd" integer NOT NULL,
    mag real,
    CONSTRAINT "Detection_pkey" PRIMARY KEY (id, "Mjd", oid)
) PARTITION BY RANGE ("Mjd");
CREATE TABLE "Detection_0" PARTITION OF "Detection" FOR VALUES FROM (0) TO (100) PARTITION BY HASH (oid);
CREATE TABLE "Detection_0_h0" PARTITION OF "Detection_0" FOR VALUES WITH (modulus 2, remainder 0);
CREATE TABLE "Detection_0_h1" PARTITION OF "Detection_0" FOR VALUES WITH (modulus 2, remainder 1);
CREATE TABLE "Detection_1" PARTITION OF "Detection" FOR VALUES FROM (100) TO (200);
CREATE INDEX detection_mag ON "Detection" (mag);
"""

ROWS = [(1, 1, 5, 20.5), (2, 2, 50, 19.0), (3, 1, 150, 18.0)]


def live_catalog(settings: SQLSettings) -> Catalog:
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        return read_catalog(conn)


def files_catalog(settings: SQLSettings, project: Project) -> Catalog:
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        return SchemaFiles(project.root / "sql").scratch_catalog(conn)


def execute(settings: SQLSettings, *statements: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with SQLConnection(settings=settings) as db, db.connection() as conn, conn.transaction():
        for statement in statements:
            cur = conn.execute(statement)
            if cur.description:
                rows = cur.fetchall()
    return rows


def insert_rows(settings: SQLSettings) -> None:
    execute(settings, "INSERT INTO object (oid) VALUES (1), (2)",
            *(f'INSERT INTO "Detection" (id, oid, "Mjd", mag) VALUES {row}' for row in ROWS))


def initialized(tmp_path: Path, settings: SQLSettings, run_dbp: Any, schema: str) -> Project:
    project = make_sql_project(tmp_path, settings, schema)
    result = run_dbp("initdb")
    assert result.returncode == 0, result.stderr
    return project


def edit(project: Project, schema: str) -> None:
    (project.sql_schema / "01_schema.sql").write_text(schema)


def made(run_dbp: Any, project: Project, name: str) -> tuple[str, str]:
    """make_migrations NAME (the first migration): the apply and rollback texts it wrote."""
    result = run_dbp("make_migrations", name)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in project.sql_migrations.iterdir()) == [
        f"0001_{name.replace(' ', '_')}.rollback.sql", f"0001_{name.replace(' ', '_')}.sql"], result.stdout
    stem = project.sql_migrations / f"0001_{name.replace(' ', '_')}"
    return stem.with_suffix(".sql").read_text(), stem.with_suffix(".rollback.sql").read_text()


def migrated_exactly(run_dbp: Any, settings: SQLSettings, project: Project) -> None:
    """migrate applies the migration, and the database then has exactly the schema files' catalog."""
    result = run_dbp("migrate")
    assert result.returncode == 0, result.stderr
    assert diff(live_catalog(settings), files_catalog(settings, project)) == []
    assert "no changes" in run_dbp("make_migrations", "again").stdout


def rolled_back_to(run_dbp: Any, settings: SQLSettings, before: Catalog) -> None:
    result = run_dbp("rollback", "--engine", "sql")
    assert result.returncode == 0, result.stderr
    after = live_catalog(settings)
    assert diff(after, before) == []
    assert {n: (t.partitioned_by, t.partitions) for n, t in after.tables.items()} == {
        n: (t.partitioned_by, t.partitions) for n, t in before.tables.items()}


def test_a_new_partitioned_table_is_created_with_its_partitions_parent_first(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp, OBJECT)
    before = live_catalog(sql_settings)
    edit(project, OBJECT + DETECTION + 'CREATE TABLE "Tag" (oid bigint, "Band" text) PARTITION BY LIST ("Band");\n'
         "CREATE TABLE tag_g PARTITION OF \"Tag\" FOR VALUES IN ('g', NULL);\n"
         'CREATE TABLE tag_other PARTITION OF "Tag" DEFAULT;\n')
    up, down = made(run_dbp, project, "detections")
    assert 'PARTITION BY RANGE ("Mjd");' in up
    assert "CREATE TABLE \"tag_g\" PARTITION OF \"Tag\" FOR VALUES IN ('g', NULL);" in up
    assert 'CREATE TABLE "tag_other" PARTITION OF "Tag" DEFAULT;' in up
    assert 'CREATE TABLE "Detection_0" PARTITION OF "Detection" FOR VALUES FROM (0) TO (100) PARTITION BY HASH (oid);' \
        in up
    order = [up.index(f'CREATE TABLE "{name}"') for name in ("Detection", "Detection_0", "Detection_0_h0")]
    assert order == sorted(order), up
    assert up.index('CREATE TABLE "Detection"') < up.index('CREATE INDEX detection_mag ON "Detection" USING btree')
    assert "CONCURRENTLY" not in up
    assert re.findall(r"^DROP TABLE .*$", down, re.M) == ['DROP TABLE "Detection";', 'DROP TABLE "Tag";']
    migrated_exactly(run_dbp, sql_settings, project)
    insert_rows(sql_settings)  # the rows reach their partitions, and the index is on every leaf
    leaves = execute(sql_settings, 'SELECT tableoid::regclass::text AS leaf FROM "Detection" ORDER BY id')
    assert [r["leaf"] for r in leaves][2] == '"Detection_1"'
    indexed = execute(sql_settings, "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%(mag)'")
    assert {r["tablename"] for r in indexed} >= {"Detection_0_h0", "Detection_0_h1", "Detection_1"}
    rolled_back_to(run_dbp, sql_settings, before)
    assert "Detection" not in live_catalog(sql_settings).tables


def test_columns_indexes_and_constraints_of_a_partitioned_parent_reach_every_partition(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp, OBJECT + DETECTION)
    insert_rows(sql_settings)
    before = live_catalog(sql_settings)
    changed = (OBJECT + DETECTION).replace("    mag real,\n", '    mag double precision NOT NULL DEFAULT 0,\n'
                                           '    "Flux Err" real DEFAULT 1,\n    CHECK (mag > -5),\n'
                                           '    CONSTRAINT detection_uniq UNIQUE (oid, "Mjd", mag),\n')
    changed = changed.replace("CREATE INDEX detection_mag ON \"Detection\" (mag);\n",
                              'CREATE INDEX detection_flux ON "Detection" ("Flux Err") WHERE "Flux Err" > 0;\n')
    edit(project, changed)
    up, down = made(run_dbp, project, "parent changes")
    assert 'DROP INDEX "detection_mag";' in up and 'ADD COLUMN "Flux Err" real DEFAULT 1' in up
    assert 'ALTER COLUMN "mag" TYPE double precision USING "mag"::double precision' in up
    assert "CONCURRENTLY" not in up + down
    migrated_exactly(run_dbp, sql_settings, project)
    leaves = {"Detection_0_h0", "Detection_0_h1", "Detection_1"}
    columns = execute(sql_settings, "SELECT table_name FROM information_schema.columns WHERE column_name = 'Flux Err' "
                                    "AND data_type = 'real'")
    assert {r["table_name"] for r in columns} >= leaves
    indexed = execute(sql_settings, "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%WHERE%Flux Err%'")
    assert {r["tablename"] for r in indexed} >= leaves
    assert [r["n"] for r in execute(sql_settings, 'SELECT count(*) AS n FROM "Detection"')] == [3]  # rows kept
    with pytest.raises(psycopg.errors.CheckViolation):  # the new check constraint holds on the partitions
        execute(sql_settings, 'INSERT INTO "Detection" (id, oid, "Mjd", mag) VALUES (9, 1, 150, -9)')
    rolled_back_to(run_dbp, sql_settings, before)
    assert [r["n"] for r in execute(sql_settings, 'SELECT count(*) AS n FROM "Detection"')] == [3]


def test_partitions_added_and_dropped(tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any) -> None:
    """A new RANGE partition and a DEFAULT one are created; a partition gone from the files is dropped with its
    rows, as a table or column gone from the files is; the rollback makes it again (empty)."""
    project = initialized(tmp_path, sql_settings, run_dbp, OBJECT + DETECTION)
    insert_rows(sql_settings)
    before = live_catalog(sql_settings)
    edit(project, (OBJECT + DETECTION).replace(
        'CREATE TABLE "Detection_1" PARTITION OF "Detection" FOR VALUES FROM (100) TO (200);\n',
        'CREATE TABLE "Detection_2" PARTITION OF "Detection" FOR VALUES FROM (200) TO (300);\n'
        'CREATE TABLE "Detection_rest" PARTITION OF "Detection" DEFAULT PARTITION BY HASH (id);\n'
        'CREATE TABLE "Detection_rest_0" PARTITION OF "Detection_rest" FOR VALUES WITH (modulus 1, remainder 0);\n'))
    up, down = made(run_dbp, project, "more partitions")
    assert "-- partition Detection_1 of Detection is not in the schema files" in up
    assert "-- partition Detection_rest_0 of Detection is missing" in up
    assert 'DROP TABLE "Detection_1";' in up
    assert up.index('CREATE TABLE "Detection_rest" ') < up.index('CREATE TABLE "Detection_rest_0" ')
    assert 'CREATE TABLE "Detection_1" PARTITION OF "Detection" FOR VALUES FROM (100) TO (200);' in down
    assert 'DROP TABLE "Detection_rest";' in down and 'DROP TABLE "Detection_rest_0"' not in down
    migrated_exactly(run_dbp, sql_settings, project)
    assert [r["id"] for r in execute(sql_settings, 'SELECT id FROM "Detection" ORDER BY id')] == [1, 2]
    execute(sql_settings, 'INSERT INTO "Detection" (id, oid, "Mjd") VALUES (4, 1, 250), (5, 1, 999)')
    assert [r["leaf"] for r in execute(sql_settings, 'SELECT tableoid::regclass::text AS leaf FROM "Detection" '
                                                     "WHERE id > 3 ORDER BY id")] == ['"Detection_2"',
                                                                                      '"Detection_rest_0"']
    execute(sql_settings, 'DELETE FROM "Detection" WHERE id > 3')
    rolled_back_to(run_dbp, sql_settings, before)


REFUSED = {
    "partition key": (
        lambda s: s.replace(') PARTITION BY RANGE ("Mjd");', ") PARTITION BY RANGE (oid);"),
        'table Detection from partitioned by RANGE ("Mjd") to partitioned by RANGE (oid)',
        'table Detection is partitioned by RANGE ("Mjd"), the schema files say partitioned by RANGE (oid)',
    ),
    "hash modulus": (
        lambda s: s.replace("(modulus 2, remainder 0)", "(modulus 4, remainder 0)")
        .replace("(modulus 2, remainder 1)", "(modulus 4, remainder 1)"),
        "partition Detection_0_h0 of Detection from FOR VALUES WITH (modulus 2, remainder 0) "
        "to FOR VALUES WITH (modulus 4, remainder 0)",
        "partition Detection_0_h0 of Detection is FOR VALUES WITH (modulus 2, remainder 0), "
        "the schema files say FOR VALUES WITH (modulus 4, remainder 0)",
    ),
    "range bound": (
        lambda s: s.replace("FROM (100) TO (200)", "FROM (100) TO (300)"),
        "partition Detection_1 of Detection from FOR VALUES FROM (100) TO (200) to FOR VALUES FROM (100) TO (300)",
        "partition Detection_1 of Detection is FOR VALUES FROM (100) TO (200), "
        "the schema files say FOR VALUES FROM (100) TO (300)",
    ),
    "sub-partition key": (
        lambda s: s.replace("PARTITION BY HASH (oid);", "PARTITION BY HASH (id);"),
        "partition Detection_0 of Detection from partitioned by HASH (oid) to partitioned by HASH (id)",
        "partition Detection_0 of Detection is partitioned by HASH (oid), the schema files say partitioned by "
        "HASH (id)",
    ),
    "plain to partitioned": (
        lambda s: s.replace("DEFAULT 0);", "DEFAULT 0) PARTITION BY HASH (oid);\n"
                            "CREATE TABLE object_0 PARTITION OF object FOR VALUES WITH (modulus 1, remainder 0);"),
        "table object from not partitioned to partitioned by HASH (oid)",
        "table object is not partitioned, the schema files say partitioned by HASH (oid)",
    ),
    "partitioned to plain": (
        lambda s: s.split("CREATE TABLE \"Detection_0\"")[0].replace(') PARTITION BY RANGE ("Mjd");', ");")
        + 'CREATE INDEX detection_mag ON "Detection" (mag);\n',
        'table Detection from partitioned by RANGE ("Mjd") to not partitioned',
        'table Detection is partitioned by RANGE ("Mjd"), the schema files say not partitioned',
    ),
    "key column type": (
        lambda s: s.replace('"Mjd" integer NOT NULL', '"Mjd" bigint NOT NULL'),
        "column Detection.Mjd, in a partition key, from integer to bigint",
        "column Detection.Mjd is integer, the schema files say bigint",
    ),
    "sub-partition key column type": (
        lambda s: s.replace("oid bigint NOT NULL REFERENCES object (oid)", "oid numeric NOT NULL"),
        "column Detection.oid, in a partition key, from bigint to numeric",
        "column Detection.oid is bigint, the schema files say numeric",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_needs_a_data_migration_is_refused_and_nothing_is_written(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any, case: str
) -> None:
    change, refusal, drift = REFUSED[case]
    project = initialized(tmp_path, sql_settings, run_dbp, OBJECT + DETECTION)
    edit(project, change(OBJECT + DETECTION))
    result = run_dbp("make_migrations", "repartition")
    assert result.returncode == 1, result.stdout
    message = result.stderr.strip().splitlines()
    assert len(message) == 1, result.stderr
    assert message[0].startswith(f"dbp: error: sql: make_migrations cannot change {refusal}"), message[0]
    assert "data migration by hand" in message[0] and "nothing was written" in message[0]
    assert f"  {refusal}" in result.stdout.splitlines()
    assert list(project.sql_migrations.iterdir()) == []  # not even a temporary file or journal
    check = run_dbp("check")  # the drift is still reported, as drift
    assert check.returncode == 3, check.stdout + check.stderr
    assert f"sql: drift: {drift}" in check.stdout.splitlines()


def test_check_reports_a_missing_partition(tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any) -> None:
    initialized(tmp_path, sql_settings, run_dbp, OBJECT + DETECTION)
    assert run_dbp("check").returncode == 0
    execute(sql_settings, 'DROP TABLE "Detection_0_h1"', 'CREATE TABLE "Detection_9" PARTITION OF "Detection" '
                                                       "FOR VALUES FROM (900) TO (1000)")
    check = run_dbp("check")
    assert check.returncode == 3, check.stdout + check.stderr
    assert [line for line in check.stdout.splitlines() if "drift:" in line] == [
        "sql: drift: partition Detection_0_h1 of Detection is missing",
        "sql: drift: partition Detection_9 of Detection is not in the schema files",
    ]


# -- the property: random schemas with partitioned tables, random edits ---------------------------------

#: Columns a partition key may use (never edited, so keys and bounds stay valid), mixed case among them.
KEYS = {"oid": "bigint", "Mjd": "integer", "fid": "smallint", "Band": "text"}
#: Columns an edit adds, drops or changes: test_ddl's, and one that needs quoting.
EDITABLE = {**COLUMNS, "Flux Err": ["real", "double precision"]}
RANGE_KEYS = ["oid", "Mjd", "fid"]
SLOTS = 6  # a RANGE or LIST table's partitions are some of slots 0..5 (and DEFAULT): a slot's bound never changes


def q(name: str) -> str:
    return sql.Identifier(name).as_string(None)


@st.composite
def designs(draw: Any) -> dict[str, Any]:
    """What an edit keeps: partition method, key, hash modulus, which slot is partitioned again, primary key."""
    method = draw(st.sampled_from(["HASH", "RANGE", "LIST"]))
    if method == "HASH":
        key = draw(st.lists(st.sampled_from(sorted(KEYS)), min_size=1, max_size=2, unique=True))
    elif method == "RANGE":
        key = draw(st.lists(st.sampled_from(RANGE_KEYS), min_size=1, max_size=2, unique=True))
    else:
        key = [draw(st.sampled_from(["fid", "Band"]))]
    modulus = draw(st.integers(2, 8))
    slots = list(range(modulus if method == "HASH" else SLOTS)) + ([] if method == "HASH" else ["default"])
    subs: dict[Any, Any] = {}
    for slot in draw(st.lists(st.sampled_from(slots), max_size=2, unique=True)):
        if draw(st.booleans()):
            subs[slot] = ("HASH", draw(st.sampled_from(sorted(KEYS))), draw(st.integers(1, 3)))
        else:
            subs[slot] = ("RANGE", draw(st.sampled_from(RANGE_KEYS)), 2)
    pk = draw(st.booleans())
    return {"method": method, "key": key, "modulus": modulus, "slots": slots, "subs": subs, "pk": pk,
            "nulls": not pk and draw(st.booleans())}


@st.composite
def states(draw: Any, design: dict[str, Any]) -> dict[str, Any]:
    """What an edit redraws: columns, the index and check constraint on the parent, which partitions exist."""
    cols = {}
    for col in draw(st.lists(st.sampled_from(sorted(EDITABLE)), max_size=4, unique=True)):
        cols[col] = (draw(st.sampled_from(EDITABLE[col])), draw(st.booleans()), draw(st.booleans()))
    return {
        "columns": cols,
        "index": draw(st.sampled_from([None, *sorted(KEYS), *sorted(cols)])),
        "check": draw(st.booleans()),
        "partitions": draw(st.lists(st.sampled_from(design["slots"]), max_size=len(design["slots"]), unique=True)),
    }


def bound(design: dict[str, Any], slot: Any) -> str:
    if slot == "default":
        return "DEFAULT"
    if design["method"] == "HASH":
        return f"FOR VALUES WITH (MODULUS {design['modulus']}, REMAINDER {slot})"
    if design["method"] == "RANGE":
        tail = ", MINVALUE" * (len(design["key"]) - 1)
        return f"FOR VALUES FROM ({slot * 10}{tail}) TO ({slot * 10 + 10}{tail})"
    values = [f"'b{slot}'", f"'c{slot}'"] if design["key"] == ["Band"] else [str(slot * 3), str(slot * 3 + 1)]
    return f"FOR VALUES IN ({', '.join(values + (['NULL'] if slot == 0 and design['nulls'] else []))})"


def create_partitioned(name: str, design: dict[str, Any], state: dict[str, Any]) -> list[str]:
    parts = ["id bigint"] + [f"{q(c)} {kind}" for c, kind in KEYS.items()]
    for col, (kind, not_null, default) in state["columns"].items():
        parts.append(f"{q(col)} {kind}" + (f" DEFAULT {DEFAULTS[kind]}" if default else "")
                     + (" NOT NULL" if not_null else ""))
    if design["pk"]:  # a primary key of a partitioned table holds every partition key's columns
        keyed = dict.fromkeys(["id", *design["key"], *(sub[1] for sub in design["subs"].values())])
        parts.append(f"CONSTRAINT {q(name + '_pkey')} PRIMARY KEY ({', '.join(q(c) for c in keyed)})")
    if state["check"]:
        parts.append(f"CONSTRAINT {q(name + '_fid_small')} CHECK (fid < 100)")
    key = ", ".join(q(c) for c in design["key"])
    statements = [f"CREATE TABLE {q(name)} ({', '.join(parts)}) PARTITION BY {design['method']} ({key})"]
    for slot in state["partitions"]:
        partition = f"{name}_{slot}"
        sub = design["subs"].get(slot)
        statements.append(f"CREATE TABLE {q(partition)} PARTITION OF {q(name)} {bound(design, slot)}"
                          + (f" PARTITION BY {sub[0]} ({q(sub[1])})" if sub else ""))
        for n in range(sub[2] if sub else 0):
            inner = (f"FOR VALUES WITH (MODULUS {sub[2]}, REMAINDER {n})" if sub[0] == "HASH"
                     else f"FOR VALUES FROM ({n * 5}) TO ({n * 5 + 5})")
            statements.append(f"CREATE TABLE {q(f'{partition}_{n}')} PARTITION OF {q(partition)} {inner}")
    if state["index"]:
        statements.append(f"CREATE INDEX {q(name + '_' + state['index'] + '_idx')} ON {q(name)} "
                          f"({q(state['index'])})")
    return statements


@st.composite
def partitioned_pairs(draw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Partitioned tables before and after an edit: each kept (its state redrawn) or dropped, new ones added."""
    names = ["Pt", "pq"]
    before = {n: (d := draw(designs()), draw(states(d))) for n in draw(st.lists(st.sampled_from(names), unique=True))}
    after: dict[str, Any] = {}
    for name in names:
        if name in before and draw(st.integers(0, 4)):
            after[name] = (before[name][0], draw(states(before[name][0])))
        elif name not in before and draw(st.booleans()):
            after[name] = (d := draw(designs()), draw(states(d)))
    return before, after


def create_all(plain: dict[str, Any], partitioned: dict[str, Any]) -> list[str]:
    return create(plain) + [s for name, (d, state) in partitioned.items() for s in create_partitioned(name, d, state)]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=partitioned_pairs(), plain_before=tables(), plain_after=tables())
def test_generated_ddl_round_trips_partitioned_tables(
    sql_db: SQLConnection, pair: Any, plain_before: Any, plain_after: Any
) -> None:
    before, after = pair
    round_trip(sql_db, create_all(plain_before, before), create_all(plain_after, after))


def test_the_hand_written_data_migration_of_the_docs_repartitions(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    """docs/migrations.md's recipe: rename the old table away, the schema file's statements, copy, drop."""
    project = initialized(tmp_path, sql_settings, run_dbp, OBJECT + DETECTION)
    insert_rows(sql_settings)
    by_hash = DETECTION.split('CREATE TABLE "Detection_0"')[0].replace('RANGE ("Mjd")', "HASH (oid)") + (
        'CREATE TABLE "Detection_h0" PARTITION OF "Detection" FOR VALUES WITH (modulus 2, remainder 0);\n'
        'CREATE TABLE "Detection_h1" PARTITION OF "Detection" FOR VALUES WITH (modulus 2, remainder 1);\n'
        'CREATE INDEX detection_mag ON "Detection" (mag);\n')
    edit(project, OBJECT + by_hash)
    assert run_dbp("make_migrations", "by hash").returncode == 1
    assert run_dbp("make_migrations", "by hash", "--empty").returncode == 0
    project.sql_migration(
        "0001_by_hash",
        'ALTER TABLE "Detection" RENAME TO "Detection_old";\n'
        'ALTER TABLE "Detection_old" DROP CONSTRAINT "Detection_pkey", DROP CONSTRAINT "Detection_oid_fkey";\n'
        "DROP INDEX detection_mag;\n" + by_hash
        + 'INSERT INTO "Detection" (id, oid, "Mjd", mag) SELECT id, oid, "Mjd", mag FROM "Detection_old";\n'
        'DROP TABLE "Detection_old";\n')
    result = run_dbp("migrate")
    assert result.returncode == 0, result.stderr
    check = run_dbp("check")
    assert check.returncode == 0, check.stdout
    assert [r["id"] for r in execute(sql_settings, 'SELECT id FROM "Detection" ORDER BY id')] == [1, 2, 3]
