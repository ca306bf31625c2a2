"""migrate / status / rollback / make_migrations on real servers, through the CLI as users run it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.catalog import read_catalog
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .projects import Project, add_logging_migrations, make_project


@pytest.fixture
def project(tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings, run_dbp: Any) -> Project:
    """An initialized project with no migrations yet."""
    made = make_project(tmp_path, sql_settings, mongo_settings)
    result = run_dbp("initdb")
    assert result.returncode == 0, result.stderr
    return made


def status_json(run_dbp: Any, *args: str) -> dict[str, Any]:
    result = run_dbp("status", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def states(document: dict[str, Any], engine: str) -> dict[str, str]:
    return {m["id"]: m["state"] for m in document["engines"][engine]["migrations"]}


def sql_rows(settings: SQLSettings, query: str) -> list[dict[str, Any]]:
    with SQLConnection(settings=settings) as db:
        return db.execute(query).fetchall()


def sql_snapshot(settings: SQLSettings) -> Any:
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        catalog = read_catalog(conn, exclude=())
        rows = {
            t: conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(t))).fetchall()
            for t in catalog.tables if not t.startswith("_yoyo_log")
        }
    return catalog, rows


def mongo_snapshot(settings: MongoSettings) -> Any:
    with MongoConnection(settings=settings) as db:
        return {n: list(db.collection(n).find()) for n in sorted(db.database.list_collection_names())}


# -- migrate and status ------------------------------------------------------------------------


def test_migrate_applies_in_order_and_status_reports(
    project: Project, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    add_logging_migrations(project, 3)
    before = status_json(run_dbp)
    assert before["ok"] is False
    assert set(states(before, "sql").values()) == {"pending"}
    assert before["engines"]["mongo"]["counts"]["pending"] == 3
    assert run_dbp("status", "--exit-code").returncode == 3
    result = run_dbp("migrate")
    assert result.returncode == 0, result.stderr
    assert "sql: applied 0001_step_1 (1 of 3" in result.stdout
    assert result.stdout.index("sql: applied") < result.stdout.index("mongo: applied")  # SQL first
    after = status_json(run_dbp)
    assert after["ok"] is True
    assert states(after, "sql") == {f"{n:04d}_step_{n}": "applied" for n in (1, 2, 3)}
    assert after["engines"]["sql"]["migrations"][0]["description"] == "log step 1"
    assert after["engines"]["mongo"]["migrations"][2]["applied_at"].endswith("+00:00")
    assert run_dbp("status", "--exit-code").returncode == 0
    assert [r["migration"] for r in sql_rows(sql_settings, "SELECT migration FROM applied_log ORDER BY 1")] == [
        "0001_step_1", "0002_step_2", "0003_step_3"]
    again = run_dbp("migrate")
    assert "sql: up to date" in again.stdout and "mongo: up to date" in again.stdout


def test_yoyo_list_agrees_with_status(project: Project, run_dbp: Any, sql_settings: SQLSettings) -> None:
    from dbp.sql.ledger import yoyo_url

    add_logging_migrations(project, 3)
    assert run_dbp("migrate", "--engine", "sql", "--to", "0002_step_2").returncode == 0
    yoyo = Path(sys.executable).parent / "yoyo"
    listed = subprocess.run(
        [str(yoyo), "list", "--batch", "--database", yoyo_url(sql_settings), str(project.sql_migrations)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    yoyo_states = {mid: state for state, mid in re.findall(r"^([AU])\s+(\d{4}_\S+)", listed, re.M)}
    dbp_states = states(status_json(run_dbp, "--engine", "sql"), "sql")
    assert yoyo_states == {"0001_step_1": "A", "0002_step_2": "A", "0003_step_3": "U"}
    assert {k: "A" if v == "applied" else "U" for k, v in dbp_states.items()} == yoyo_states


def test_dry_run_changes_nothing(
    project: Project, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    add_logging_migrations(project, 2)
    sql_before, mongo_before = sql_snapshot(sql_settings), mongo_snapshot(mongo_settings)
    result = run_dbp("migrate", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "sql: would apply 0001_step_1: log step 1" in result.stdout
    assert "INSERT INTO applied_log (migration) VALUES ('0001_step_1');" in result.stdout
    assert "mongo: would apply 0002_step_2: log step 2" in result.stdout
    assert sql_snapshot(sql_settings) == sql_before
    assert mongo_snapshot(mongo_settings) == mongo_before


def test_to_stops_after_the_named_migration(project: Project, run_dbp: Any) -> None:
    add_logging_migrations(project, 3)
    assert run_dbp("migrate", "--to", "0002_step_2").returncode == 0
    doc = status_json(run_dbp)
    assert states(doc, "sql")["0003_step_3"] == "pending"
    assert states(doc, "mongo")["0002_step_2"] == "applied"
    assert run_dbp("migrate", "--to", "9999_nothing").returncode == 1


# -- failures ----------------------------------------------------------------------------------


def test_failing_sql_migration_leaves_the_previous_state(
    project: Project, run_dbp: Any, sql_settings: SQLSettings
) -> None:
    add_logging_migrations(project, 1)
    project.sql_migration(
        "0002_broken",
        "INSERT INTO applied_log (migration) VALUES ('0002_broken');\n"
        "ALTER TABLE applied_log ADD COLUMN x nosuchtype;\n",
    )
    add_logging_migrations(project, 1, start=3)
    result = run_dbp("migrate", "--engine", "sql")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert "migration 0002_broken failed" in error
    assert 'type "nosuchtype" does not exist' in error
    assert "ALTER TABLE applied_log ADD COLUMN x nosuchtype" in error
    assert [r["migration"] for r in sql_rows(sql_settings, "SELECT migration FROM applied_log")] == ["0001_step_1"]
    doc = status_json(run_dbp, "--engine", "sql")
    assert states(doc, "sql") == {"0001_step_1": "applied", "0002_broken": "failed", "0003_step_3": "pending"}
    assert "nosuchtype" in doc["engines"]["sql"]["migrations"][1]["error"]
    project.sql_migration("0002_broken", "ALTER TABLE applied_log ADD COLUMN x int;\n")
    assert run_dbp("migrate", "--engine", "sql").returncode == 0  # the next run retries it
    assert set(states(status_json(run_dbp, "--engine", "sql"), "sql").values()) == {"applied"}


def test_failing_mongo_migration_is_recorded_and_retried(
    project: Project, run_dbp: Any, mongo_settings: MongoSettings
) -> None:
    add_logging_migrations(project, 1)
    project.mongo_migration("0002_broken", "raise ValueError('no such field: colour')")
    result = run_dbp("migrate", "--engine", "mongo")
    assert result.returncode == 1
    assert "mongo: migration 0002_broken failed: ValueError: no such field: colour" in result.stderr
    doc = status_json(run_dbp, "--engine", "mongo")
    entry = doc["engines"]["mongo"]["migrations"][1]
    assert entry["state"] == "failed" and "no such field" in entry["error"]
    project.mongo_migration("0002_broken", "db.applied_log.insert_one({'_id': 'fixed'})")
    assert run_dbp("migrate", "--engine", "mongo").returncode == 0
    assert states(status_json(run_dbp, "--engine", "mongo"), "mongo")["0002_broken"] == "applied"


def test_non_transactional_migration(project: Project, run_dbp: Any, sql_settings: SQLSettings) -> None:
    project.sql_migration(
        "0001_concurrent_index",
        "-- transactional: false\nCREATE INDEX CONCURRENTLY applied_log_pid ON applied_log (pid);\n",
        "DROP INDEX CONCURRENTLY applied_log_pid;\n",
    )
    result = run_dbp("migrate", "--engine", "sql")
    assert result.returncode == 0, result.stderr
    assert sql_rows(sql_settings, "SELECT indexname FROM pg_indexes WHERE indexname = 'applied_log_pid'")
    assert run_dbp("rollback", "--engine", "sql").returncode == 0
    assert not sql_rows(sql_settings, "SELECT indexname FROM pg_indexes WHERE indexname = 'applied_log_pid'")


# -- safety: checksums and order ------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_edited_migration_is_reported_and_refused(project: Project, run_dbp: Any, engine: str) -> None:
    add_logging_migrations(project, 2)
    assert run_dbp("migrate").returncode == 0
    add_logging_migrations(project, 1, start=3)
    path = (project.sql_migrations / "0001_step_1.sql") if engine == "sql" else (project.mongo / "0001_step_1.py")
    path.write_text(path.read_text() + ("\n-- edited\n" if engine == "sql" else "\n# edited\n"))
    assert run_dbp("status", "--exit-code").returncode == 3
    assert states(status_json(run_dbp), engine)["0001_step_1"] == "changed"
    refused = run_dbp("migrate", "--engine", engine)
    assert refused.returncode == 1
    assert "0001_step_1 changed since they were applied" in refused.stderr
    assert states(status_json(run_dbp), engine)["0003_step_3"] == "pending"  # nothing applied
    accepted = run_dbp("migrate", "--engine", engine, "--allow-changed")
    assert accepted.returncode == 0, accepted.stderr
    assert set(states(status_json(run_dbp), engine).values()) == {"applied"}


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_out_of_order_migration_is_refused_until_allowed(project: Project, run_dbp: Any, engine: str) -> None:
    add_logging_migrations(project, 1, start=1)
    add_logging_migrations(project, 1, start=3)
    assert run_dbp("migrate").returncode == 0
    add_logging_migrations(project, 1, start=2)  # a late file, numbered below the last applied
    assert states(status_json(run_dbp), engine)["0002_step_2"] == "out-of-order"
    refused = run_dbp("migrate", "--engine", engine)
    assert refused.returncode == 1
    assert "0002_step_2 are numbered below the last applied one" in refused.stderr
    assert run_dbp("migrate", "--engine", engine, "--allow-out-of-order").returncode == 0
    assert states(status_json(run_dbp), engine)["0002_step_2"] == "applied"


# -- rollback ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_rollback_steps_and_to(project: Project, run_dbp: Any, engine: str) -> None:
    add_logging_migrations(project, 4)
    assert run_dbp("migrate").returncode == 0
    one = run_dbp("rollback", "--engine", engine)
    assert one.returncode == 0, one.stderr
    assert f"{engine}: rolled back 0004_step_4" in one.stdout
    assert states(status_json(run_dbp), engine)["0004_step_4"] == "pending"
    to = run_dbp("rollback", "--engine", engine, "--to", "0001_step_1")
    assert to.returncode == 0
    assert to.stdout.index("0003_step_3") < to.stdout.index("0002_step_2")  # newest first
    assert states(status_json(run_dbp), engine) == {
        "0001_step_1": "applied", "0002_step_2": "pending", "0003_step_3": "pending", "0004_step_4": "pending"}
    assert run_dbp("migrate", "--engine", engine).returncode == 0  # and forward again


def test_rollback_without_a_rollback_stops_before_changing_anything(project: Project, run_dbp: Any) -> None:
    add_logging_migrations(project, 1)
    project.sql_migration("0002_one_way", "INSERT INTO applied_log (migration) VALUES ('one way');\n")
    project.mongo_migration("0002_one_way", "db.applied_log.insert_one({'_id': 'one way'})")
    assert run_dbp("migrate").returncode == 0
    for engine, hint in (("sql", "0002_one_way.rollback.sql"), ("mongo", "defines no down(db)")):
        result = run_dbp("rollback", "--engine", engine, "--steps", "2")
        assert result.returncode == 1
        assert hint in result.stderr
        assert set(states(status_json(run_dbp), engine).values()) == {"applied"}


def test_rollback_needs_one_engine(project: Project, run_dbp: Any) -> None:
    result = run_dbp("rollback")
    assert result.returncode == 2
    assert "--engine" in result.stderr


def test_migrate_refuses_an_uninitialized_database(tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings,
                                                   mongo_settings: MongoSettings) -> None:
    make_project(tmp_path, sql_settings, mongo_settings)
    for engine in ("sql", "mongo"):
        result = run_dbp("migrate", "--engine", engine)
        assert result.returncode == 1
        assert "not initialized; run initdb first" in result.stderr


# -- make_migrations ----------------------------------------------------------------------------


def _catalog_ignoring_order(settings: SQLSettings) -> Any:
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        catalog = read_catalog(conn)
    return {
        name: (sorted((c.name, c.type, c.not_null, c.default) for c in t.columns),
               sorted((c.name, c.definition) for c in t.constraints.values()),
               sorted((i.name, i.definition) for i in t.indexes.values()))
        for name, t in catalog.tables.items()
    }


def test_make_migrations_round_trip(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    """Edit the schema files; make_migrations + migrate equals a fresh initdb; rollback restores."""
    from dbp._bundled import bundled

    from .conftest import unique_name

    project = make_project(tmp_path, sql_settings, mongo_settings)
    shutil.rmtree(project.sql_schema)
    shutil.copytree(bundled("sql/ztf") / "schema", project.sql_schema)
    assert run_dbp("initdb").returncode == 0
    before = _catalog_ignoring_order(sql_settings)
    nothing = run_dbp("make_migrations", "nothing yet")
    assert nothing.returncode == 0 and "no changes" in nothing.stdout
    assert list(project.sql_migrations.glob("*.sql")) == []

    # add a column, an index and a table; drop a table
    obj = project.sql_schema / "001_object.sql"
    obj.write_text(obj.read_text().replace("    reference_change  BOOLEAN,",
                                           "    reference_change  BOOLEAN,\n    brightness        REAL DEFAULT 0,"))
    obj.write_text(obj.read_text() + "CREATE INDEX ix_object_lastmjd ON object USING btree (lastmjd);\n")
    (project.sql_schema / "018_watchlist.sql").write_text(
        "CREATE TABLE watchlist (\n    oid VARCHAR NOT NULL REFERENCES object (oid),\n"
        "    owner TEXT NOT NULL,\n    note TEXT CHECK (length(note) < 500),\n    PRIMARY KEY (oid, owner)\n);\n"
    )
    (project.sql_schema / "016_pipeline.sql").unlink()
    made = run_dbp("make_migrations", "Watchlist and brightness")
    assert made.returncode == 0, made.stderr
    assert "0001_watchlist_and_brightness.sql" in made.stdout
    assert (project.sql_migrations / "0001_watchlist_and_brightness.rollback.sql").exists()
    migrated = run_dbp("migrate")
    assert migrated.returncode == 0, migrated.stderr

    fresh = sql_settings.with_database(unique_name())
    SQLConnection(settings=fresh).create_db()
    try:
        fresh_toml = tmp_path / "fresh.toml"
        fresh_toml.write_text((tmp_path / "dbp.toml").read_text().replace(sql_settings.database, fresh.database))
        assert run_dbp("--settings", str(fresh_toml), "initdb", "--engine", "sql").returncode == 0
        assert _catalog_ignoring_order(sql_settings) == _catalog_ignoring_order(fresh)
    finally:
        SQLConnection(settings=fresh).drop_db()
    again = run_dbp("make_migrations", "again")
    assert "no changes" in again.stdout

    back = run_dbp("rollback", "--engine", "sql")
    assert back.returncode == 0, back.stderr
    assert _catalog_ignoring_order(sql_settings) == before


def test_make_migrations_for_mongo_indexes(project: Project, run_dbp: Any, mongo_settings: MongoSettings) -> None:
    (project.mongo / "collections.toml").write_text(
        '[[collection]]\nname = "applied_log"\nindexes = [{ name = "pid", keys = [["pid", -1]], sparse = true }]\n'
        '[[collection]]\nname = "alert"\nindexes = [{ name = "by_mjd", keys = [["mjd", 1]], unique = true }]\n'
    )
    made = run_dbp("make_migrations", "alerts", "--engine", "mongo")
    assert made.returncode == 0, made.stderr
    written = project.mongo / "0001_alerts.py"
    assert written.exists()
    assert run_dbp("migrate", "--engine", "mongo").returncode == 0
    with MongoConnection(settings=mongo_settings) as db:
        info = db.collection("applied_log").index_information()
        assert info["pid"]["key"] == [("pid", -1)] and info["pid"]["sparse"] is True
        assert db.collection("alert").index_information()["by_mjd"]["unique"] is True
    assert "no changes" in run_dbp("make_migrations", "again", "--engine", "mongo").stdout
    assert run_dbp("rollback", "--engine", "mongo").returncode == 0
    with MongoConnection(settings=mongo_settings) as db:
        assert db.collection("applied_log").index_information()["pid"]["key"] == [("pid", 1)]
        assert "alert" not in db.database.list_collection_names()


def test_make_migrations_empty(project: Project, run_dbp: Any) -> None:
    result = run_dbp("make_migrations", "hand written", "--empty")
    assert result.returncode == 0
    assert (project.sql_migrations / "0001_hand_written.sql").exists()
    assert (project.sql_migrations / "0001_hand_written.rollback.sql").exists()
    assert (project.mongo / "0001_hand_written.py").exists()
    assert run_dbp("migrate").returncode == 0


# -- progress ---------------------------------------------------------------------------------


def test_progress_on_a_tty_and_in_a_pipe(project: Project) -> None:
    """On a terminal, one line updates in place (k of n); in a pipe, plain lines."""
    import os
    import pty

    from .conftest import ROOT

    add_logging_migrations(project, 3)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbp", "migrate", "--engine", "sql"], cwd=project.root, stdin=slave,
        stdout=slave, stderr=slave, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0, shown
    assert "\rsql: applying 1 of 3: 0001_step_1" in shown.replace("\x1b[K", "")
    assert "sql: applied 0003_step_3 (3 of 3" in shown
    piped = subprocess.run([sys.executable, "-m", "dbp", "migrate", "--engine", "mongo"], cwd=project.root,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert "\r" not in piped.stdout and "\x1b" not in piped.stdout
    assert [line.split(" (")[0] for line in piped.stdout.splitlines()] == [
        "mongo: applied 0001_step_1", "mongo: applied 0002_step_2", "mongo: applied 0003_step_3",
        "mongo: 3 migration(s) applied"]
