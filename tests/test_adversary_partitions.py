"""Adversary tests of partitioned tables (catalog, check, make_migrations, migrate, rollback) and schema sets.

Each xfail(strict=True) test is a finding: it asserts what should happen and fails today. The tests without
xfail are attacks that held up, kept as guards. Real servers only (``sql_settings``: embedded PostgreSQL 18, or
the server of ``$DBP_TEST_SQL_URL``); concurrency with real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbp.config import resolve_config
from dbp.errors import FilterError
from dbp.project import apply_schema_dirs
from dbp.sql.catalog import diff
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from tests.conftest import ROOT, sql_section
from tests.test_ddl_partitions import execute, files_catalog, live_catalog

from .projects import Project, make_sql_project

RANGE = """\
CREATE TABLE t (id bigint NOT NULL, k integer NOT NULL, v text) PARTITION BY RANGE (k);
CREATE TABLE t_0 PARTITION OF t FOR VALUES FROM (0) TO (10);
CREATE TABLE t_1 PARTITION OF t FOR VALUES FROM (10) TO (20);
"""


def initialized(tmp_path: Path, settings: SQLSettings, run_dbp: Any, schema: str = RANGE) -> Project:
    project = make_sql_project(tmp_path, settings, schema)
    result = run_dbp("initdb")
    assert result.returncode == 0, result.stderr
    return project


def edit(project: Project, schema: str) -> None:
    (project.sql_schema / "01_schema.sql").write_text(schema)


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def migration_files(project: Project) -> list[str]:
    return sorted(p.name for p in project.sql_migrations.iterdir() if not p.name.startswith("."))


# -- make_migrations writes a migration with no statement -------------------------------------------------

# Found by adding `CREATE INDEX ... ON t_0 (v)` (one partition alone) to a schema file: `dbp check` reports
# "index t_0_v on partition t_0 of t is missing", make_migrations writes 0001 with only that header line and no
# statement, migrate applies it, and check still reports the same drift (make_migrations again writes 0002, the
# same empty one). Cause: dbp/sql/ddl.py:migration_ddl reads neither Partition.own_indexes nor Partition.copies,
# which dbp/sql/catalog.py:_diff_partitions compares.
@pytest.mark.xfail(strict=True, reason="make_migrations writes an empty migration for an index on one partition")
def test_an_index_on_one_partition_alone_is_migrated(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp)
    edit(project, RANGE + "CREATE INDEX t_0_v ON t_0 (v);\n")
    assert run_dbp("check").returncode == 3
    ok(run_dbp("make_migrations", "own_index"))
    ok(run_dbp("migrate"))
    assert diff(live_catalog(sql_settings), files_catalog(sql_settings, project)) == []
    assert run_dbp("check").returncode == 0


# Found by `CREATE INDEX ix_v ON ONLY t (v)` on the live database (as ALeRCE-style tooling does before attaching
# each partition's index), with `CREATE INDEX ix_v ON t (v)` in the schema files: check reports "partition t_0 of
# t has no copy of index ix_v" (and t_1), make_migrations writes a migration with no statement (the index exists
# by name with the same definition), so the invalid parent index is never completed. Cause as above:
# dbp/sql/ddl.py:migration_ddl ignores Partition.copies.
@pytest.mark.xfail(strict=True, reason="an index made ON ONLY the parent is drift that make_migrations never fixes")
def test_an_index_made_on_only_the_parent_is_completed_by_make_migrations(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp)
    execute(sql_settings, "CREATE INDEX ix_v ON ONLY t (v)")
    edit(project, RANGE + "CREATE INDEX ix_v ON t (v);\n")
    assert run_dbp("check").returncode == 3
    result = run_dbp("make_migrations", "complete")
    if result.returncode != 0:  # a one-line refusal that writes nothing would do too
        assert len(result.stderr.strip().splitlines()) == 1 and migration_files(project) == []
        return
    ok(run_dbp("migrate"))
    assert run_dbp("check").returncode == 0
    valid = execute(sql_settings, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_v'::regclass")
    assert valid == [{"indisvalid": True}]


# -- dbp check passes where the database differs (false pass) ----------------------------------------------

# Found by `ALTER TABLE t_1 ADD CONSTRAINT ... CHECK` on a partition (in the database, not the schema files):
# `dbp check` says "no drift". Cause: dbp/sql/catalog.py:read_catalog keeps constraints only of tables
# (_CONSTRAINTS rows of a partition are dropped: `if row["table"] in catalog.tables`), and Partition has no
# constraints to compare. --adopt compares the same catalog, so it would accept such a database too.
@pytest.mark.xfail(strict=True, reason="a CHECK constraint on one partition alone is invisible to check")
def test_check_sees_a_check_constraint_on_one_partition(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp)
    execute(sql_settings, "ALTER TABLE t_1 ADD CONSTRAINT t_1_positive CHECK (id > 0)")
    assert diff(live_catalog(sql_settings), files_catalog(sql_settings, project)) != []
    assert run_dbp("check").returncode == 3


# Found by `ALTER TABLE t_0 ALTER COLUMN v SET DEFAULT 'y'` and `SET NOT NULL` on one partition: rows inserted
# through t then differ by partition (and NULLs are refused in t_0 alone), but `dbp check` says "no drift".
# Cause: dbp/sql/catalog.py:_COLUMNS reads columns only of tables (NOT c.relispartition); a partition's own
# defaults and NOT NULL are never read.
@pytest.mark.xfail(strict=True, reason="a partition's own column default and NOT NULL are invisible to check")
def test_check_sees_a_partitions_own_default_and_not_null(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp)
    execute(sql_settings, "ALTER TABLE t_0 ALTER COLUMN v SET DEFAULT 'y'",
            "ALTER TABLE t_0 ALTER COLUMN v SET NOT NULL")
    with pytest.raises(psycopg.errors.NotNullViolation):  # the database really behaves differently
        execute(sql_settings, "INSERT INTO t (id, k, v) VALUES (1, 1, NULL)")
    assert diff(live_catalog(sql_settings), files_catalog(sql_settings, project)) != []
    assert run_dbp("check").returncode == 3


# Found by replacing partition t_1 (a table in the schema files) with a foreign table attached as the partition
# of the same bounds (file_fdw): `dbp check` says "no drift", though t_1's rows now live in a file and writes to
# them fail. Cause: dbp/sql/catalog.py:_PARTITIONS reads a partition's name, bound, key and parent, not its kind
# (pg_class.relkind 'f'); dbp/sql/ddl.py:_create_partition would also make it a plain table.
@pytest.mark.xfail(strict=True, reason="a foreign table as a partition compares equal to a plain partition")
def test_check_sees_a_foreign_table_partition(tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp)
    try:
        execute(sql_settings, "CREATE EXTENSION IF NOT EXISTS file_fdw")
    except psycopg.Error as exc:
        pytest.skip(f"file_fdw is not available: {exc}")
    execute(
        sql_settings,
        "DROP TABLE t_1",
        "CREATE SERVER adv_files FOREIGN DATA WRAPPER file_fdw",
        "CREATE FOREIGN TABLE t_1 PARTITION OF t FOR VALUES FROM (10) TO (20) SERVER adv_files "
        "OPTIONS (filename '/dev/null')",
    )
    with pytest.raises(psycopg.Error):  # t_1 is not a table any more: writes to its range fail
        execute(sql_settings, "INSERT INTO t (id, k, v) VALUES (1, 15, 'x')")
    assert diff(live_catalog(sql_settings), files_catalog(sql_settings, project)) != []
    assert run_dbp("check").returncode == 3


# -- data loss -----------------------------------------------------------------------------------------------

# Found by `ALTER TABLE t DETACH PARTITION t_1` on a database whose t_1 holds rows (a maintenance step left
# half-way), the schema files unchanged: make_migrations writes `DROP TABLE "t_1"; CREATE TABLE "t_1" PARTITION
# OF "t" ...`, and migrate deletes the rows, where `ALTER TABLE t ATTACH PARTITION t_1 FOR VALUES ...` keeps
# them (or a refusal would). Cause: dbp/sql/ddl.py:migration_ddl treats a table that the schema files have as a
# partition as one to drop, then creates the partition anew.
@pytest.mark.xfail(strict=True, reason="make_migrations drops a detached partition's rows instead of re-attaching")
def test_a_detached_partition_keeps_its_rows(tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any) -> None:
    project = initialized(tmp_path, sql_settings, run_dbp)
    execute(sql_settings, "INSERT INTO t (id, k, v) VALUES (1, 1, 'a'), (2, 15, 'kept')",
            "ALTER TABLE t DETACH PARTITION t_1")
    result = run_dbp("make_migrations", "reattach")
    if result.returncode != 0:  # refusing, with nothing written, keeps the rows too
        assert len(result.stderr.strip().splitlines()) == 1 and migration_files(project) == []
        return
    ok(run_dbp("migrate"))
    assert execute(sql_settings, "SELECT id, v FROM t ORDER BY id") == [{"id": 1, "v": "a"}, {"id": 2, "v": "kept"}]


# -- odd names -----------------------------------------------------------------------------------------------

# Found with an index named `ix ON public.t` on a partitioned table: read_catalog's Index.create is
# `CREATE INDEX "ix ON t" ON t USING btree (v)` (the schema prefix is removed from the index's *name*, the
# first match). Dropping the index from the schema files, make_migrations, migrate, rollback: the rollback
# recreates it as "ix ON t", and check then reports drift. Cause: dbp/sql/catalog.py:read_catalog's
# `.replace(prefix, "ON ", 1)` on the whole statement, not on the table reference after the quoted name.
@pytest.mark.xfail(strict=True, reason="an index name holding 'ON public.' is renamed by the rollback")
def test_an_index_name_holding_the_schema_prefix_round_trips(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    with_index = RANGE + 'CREATE INDEX "ix ON public.t" ON t (v);\n'
    project = initialized(tmp_path, sql_settings, run_dbp, with_index)
    before = live_catalog(sql_settings)
    assert set(before.tables["t"].indexes) == {"ix ON public.t"}
    edit(project, RANGE)
    ok(run_dbp("make_migrations", "drop_index"))
    ok(run_dbp("migrate"))
    ok(run_dbp("rollback", "--engine", "sql"))
    assert diff(live_catalog(sql_settings), before) == []


# Guard (held up): reserved words, spaces, quotes, mixed case, a 63-byte name, non-ASCII, LIST with a DEFAULT
# partition, a RANGE sub-partition with MINVALUE and its own DEFAULT, a partial index and a unique index on the
# parent: make_migrations, migrate (check clean), rollback (the catalog as before).
def test_odd_names_and_partition_kinds_round_trip(tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any) -> None:
    base = "CREATE TABLE base (id integer PRIMARY KEY);\n"
    project = initialized(tmp_path, sql_settings, run_dbp, base)
    before = live_catalog(sql_settings)
    long = "p" * 62 + "X"
    assert len(long.encode()) == 63
    edit(project, base + f"""\
CREATE TABLE "select" ("Order" bigint NOT NULL, "from" text NOT NULL, "my col" integer,
    CONSTRAINT "select pk" PRIMARY KEY ("Order", "from")) PARTITION BY LIST ("from");
CREATE TABLE "Part ""0"" x" PARTITION OF "select" FOR VALUES IN ('a', 'it''s') PARTITION BY RANGE ("Order");
CREATE TABLE "{long}" PARTITION OF "Part ""0"" x" FOR VALUES FROM (MINVALUE) TO (100);
CREATE TABLE "sub default" PARTITION OF "Part ""0"" x" DEFAULT;
CREATE TABLE "table" PARTITION OF "select" DEFAULT;
CREATE TABLE "ÄÖÜ_ünïcødé" PARTITION OF "select" FOR VALUES IN ('b');
CREATE INDEX "ix on ""select"" my col" ON "select" ("my col") WHERE ("my col" > 0);
CREATE UNIQUE INDEX "user" ON "select" ("Order", "from");
""")
    ok(run_dbp("make_migrations", "weird"))
    ok(run_dbp("migrate"))
    assert diff(live_catalog(sql_settings), files_catalog(sql_settings, project)) == []
    assert run_dbp("check").returncode == 0
    execute(sql_settings, """INSERT INTO "select" VALUES (1, 'a', 1), (500, 'it''s', 2), (3, 'b', 3), (4, 'zz', 4)""")
    ok(run_dbp("rollback", "--engine", "sql"))
    assert diff(live_catalog(sql_settings), before) == []


# -- concurrency, with real processes ------------------------------------------------------------------------

def dbp_process(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "dbp", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def multisurvey_project(tmp_path: Path, settings: SQLSettings, run_dbp: Any) -> Path:
    """``init-project --schema-set multisurvey``, its dbp.toml given the test database's URL."""
    ok(run_dbp("init-project", "--engine", "sql", "--schema-set", "multisurvey", "proj"))
    root = tmp_path / "proj"
    toml = root / "dbp.toml"
    url = sql_section(settings)["URL"]
    toml.write_text(toml.read_text().replace("[DB_CONFIG.SQL]\n", f'[DB_CONFIG.SQL]\nURL = "{url}"\n'))
    return root


# Found by running three `dbp make_migrations` at once in a project copied with `init-project --schema-set
# multisurvey` (one index added to object.sql): each wrote its own 0002_<name> with the same CREATE INDEX, and
# `dbp migrate` then applies 0002_a and fails on 0002_b ("relation ... already exists"), leaving a failed
# migration in the ledger. Cause: dbp/sql/migrations.py:draft_migration chooses the number and diffs without a
# lock (migration_lock is only for migrate/rollback); write_files' journal lock only guards half-written files.
def test_concurrent_make_migrations_write_one_migration(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    root = multisurvey_project(tmp_path, sql_settings, run_dbp)
    ok(run_dbp("initdb", cwd=root))
    ok(run_dbp("migrate", cwd=root))
    with open(root / "sql" / "schema" / "010_object.sql", "a") as f:
        f.write("CREATE INDEX ix_object_sigmara ON object USING btree (sigmara);\n")
    procs = [dbp_process(root, "make_migrations", name) for name in ("a", "b", "c")]
    outs = [proc.communicate(timeout=120) for proc in procs]
    written = sorted(p.name for p in (root / "sql" / "migrations").glob("0002_*.sql")
                     if not p.name.endswith(".rollback.sql"))
    migrate = run_dbp("migrate", cwd=root)
    assert (len(written), migrate.returncode) == (1, 0), (written, migrate.stderr)
    # the two that came second waited for the first, found its migration pending, and refused in one line
    assert sorted(p.returncode for p in procs) == [0, 1, 1], outs
    for proc, (_, err) in zip(procs, outs):
        if proc.returncode:
            assert "apply or resolve 0002_" in err and len(err.strip().splitlines()) == 1, err


# Guard (held up): two initdb and a migrate at once on the multisurvey set: one creates, the other finds it
# initialized, migrate waits for the lock; the result is exactly the set's catalog, check clean, no secret shown.
def test_concurrent_initdb_and_migrate_of_the_multisurvey_set(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    root = multisurvey_project(tmp_path, sql_settings, run_dbp)
    procs = [dbp_process(root, "initdb"), dbp_process(root, "initdb"), dbp_process(root, "migrate")]
    outs = [proc.communicate(timeout=180) for proc in procs]
    assert [p.returncode for p in procs[:2]] == [0, 0], outs
    if procs[2].returncode != 0:  # migrate may come before initdb: "not initialized", one line
        assert "not initialized" in outs[2][1] and len(outs[2][1].strip().splitlines()) == 1, outs[2]
        ok(run_dbp("migrate", cwd=root))
    assert run_dbp("check", cwd=root).returncode == 0
    catalog = live_catalog(sql_settings)
    assert len(catalog.tables) == 30
    assert sum(len(t.partitions) for t in catalog.tables.values()) == 80
    assert not any(name.endswith(tuple(f"_part_{i}" for i in range(16))) for name in catalog.tables)


# -- configuration -------------------------------------------------------------------------------------------

# Found with `SCHEMA_SET = "${DBP_ADV_SET}"` in dbp.toml: without --local it names the set (the file's values are
# expanded), but --local reads SCHEMA_SET from the file itself and passes "${DBP_ADV_SET}" on verbatim: every
# --local command fails with "unknown schema set '${DBP_ADV_SET}'". Cause: dbp/project.py:_project_keys expands
# ${VAR} in SCHEMA_DIR only, not in SCHEMA_SET. (apply_schema_dirs is what cli._config runs for --local, after
# starting the local servers; here it is given the test server's section instead.)
def test_local_expands_an_env_ref_in_schema_set(
    tmp_path: Path, sql_settings: SQLSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbp.config import load_config

    monkeypatch.setenv("DBP_ADV_SET", "multisurvey")
    toml = tmp_path / "dbp.toml"
    toml.write_text('[DB_CONFIG.SQL]\nSCHEMA_SET = "${DBP_ADV_SET}"\n')
    assert load_config(toml, engines=()).get("SQL", {}).get("SCHEMA_SET") == "multisurvey"  # holds
    config = resolve_config({"SQL": {"URL": sql_section(sql_settings)["URL"]}}, environ={})
    apply_schema_dirs(config, toml)
    settings = config.settings("sql")
    assert isinstance(settings, SQLSettings) and settings.schema_set == "multisurvey"


# Found by `db.query("object_part_0")` on the multisurvey set (here a small RANGE table): the error says
# "no table 't_0' in ...; its tables are t", though t_0 exists (a partition of t). Refusing is reasonable; the
# message misleads a user who sees t_0 in psql. Cause: dbp/sql/connection.py:_table_exists treats a partition
# as no relation at all.
def test_querying_a_partition_says_which_table_it_belongs_to(
    tmp_path: Path, sql_settings: SQLSettings, run_dbp: Any
) -> None:
    initialized(tmp_path, sql_settings, run_dbp)
    with SQLConnection(settings=sql_settings) as db, pytest.raises(FilterError) as caught:
        db.query("t_0")
    message = str(caught.value)
    assert "\n" not in message and "partition" in message and "of t" in message, message
