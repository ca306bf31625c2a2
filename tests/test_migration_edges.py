"""Migrations at the edges (issue 10, items 9-13): every refusal happens before anything changes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .conftest import ROOT
from .projects import Project, add_logging_migrations, make_project
from .test_migrations import mongo_snapshot, sql_rows, sql_snapshot, states, status_json


@pytest.fixture
def project(tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings, run_dbp: Any) -> Project:
    made = make_project(tmp_path, sql_settings, mongo_settings)
    result = run_dbp("initdb")
    assert result.returncode == 0, result.stderr
    return made


# -- 9: dropdb ---------------------------------------------------------------------------------


def test_dropdb_checks_every_target_before_dropping_any(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    make_project(tmp_path, sql_settings, mongo_settings)
    assert run_dbp("initdb", "--engine", "sql").returncode == 0
    with MongoConnection(settings=mongo_settings) as mongo:  # someone else's Mongo database
        mongo.collection("theirs").insert_one({"_id": 1})
    result = run_dbp("dropdb", "--yes")
    assert result.returncode == 1
    assert "refusing to drop mongo" in result.stderr and "nothing was dropped" in result.stderr
    assert SQLConnection(settings=sql_settings).database_exists()  # the SQL one is still there
    with MongoConnection(settings=mongo_settings) as mongo:
        assert mongo.collection("theirs").count_documents({}) == 1
    with SQLConnection(settings=sql_settings) as db:  # now neither is dbp's: both are named
        db.execute("DROP TABLE _dbp_schema")
    both = run_dbp("dropdb", "--yes")
    assert both.returncode == 1
    assert "refusing to drop sql" in both.stderr and "refusing to drop mongo" in both.stderr
    assert run_dbp("dropdb", "--yes", "--force").returncode == 0
    assert not SQLConnection(settings=sql_settings).database_exists()


# -- 10: a deleted migration file ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_a_deleted_applied_migration_is_refused(project: Project, run_dbp: Any, engine: str) -> None:
    add_logging_migrations(project, 2)
    assert run_dbp("migrate").returncode == 0
    if engine == "sql":
        (project.sql_migrations / "0001_step_1.sql").unlink()
        (project.sql_migrations / "0001_step_1.rollback.sql").unlink()
    else:
        (project.mongo / "0001_step_1.py").unlink()
    add_logging_migrations(project, 1, start=3)
    assert states(status_json(run_dbp, "--engine", engine), engine)["0001_step_1"] == "missing"
    refused = run_dbp("migrate", "--engine", engine)
    assert refused.returncode == 1
    assert "0001_step_1 have no file any more" in refused.stderr and "--allow-missing" in refused.stderr
    assert states(status_json(run_dbp, "--engine", engine), engine)["0003_step_3"] == "pending"
    allowed = run_dbp("migrate", "--engine", engine, "--allow-missing")
    assert allowed.returncode == 0, allowed.stderr
    assert states(status_json(run_dbp, "--engine", engine), engine)["0003_step_3"] == "applied"


# -- 11: rollback stops at the baseline ------------------------------------------------------------


def test_rollback_stops_at_the_baseline(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    add_logging_migrations(project, 2)  # these exist at initdb: baselined, never run
    project.mongo_migration("0002_step_2", "pass", "db.down_ran.insert_one({'_id': 'baseline down ran'})")
    assert run_dbp("initdb").returncode == 0
    add_logging_migrations(project, 1, start=3)
    assert run_dbp("migrate").returncode == 0
    for engine in ("sql", "mongo"):
        result = run_dbp("rollback", "--engine", engine, "--steps", "100")
        assert result.returncode == 1
        assert "cannot roll back 0002_step_2" in result.stderr and "baseline" in result.stderr
        assert "1 migration(s) can be rolled back" in result.stderr and "nothing was rolled back" in result.stderr
        assert run_dbp("rollback", "--engine", engine, "--to", "0001_step_1").returncode == 1  # reaches 0002 too
        within = run_dbp("rollback", "--engine", engine, "--to", "0002_step_2")  # within reach: fine
        assert within.returncode == 0, within.stderr
        assert states(status_json(run_dbp, "--engine", engine), engine)["0003_step_3"] == "pending"
    assert sql_rows(sql_settings, "SELECT migration FROM applied_log ORDER BY 1") == []
    with MongoConnection(settings=mongo_settings) as mongo:
        assert "down_ran" not in mongo.database.list_collection_names()  # a baselined down() never ran


def test_rollback_steps_100_leaves_the_database_exactly_as_it_was(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    add_logging_migrations(project, 2)
    assert run_dbp("initdb").returncode == 0
    add_logging_migrations(project, 2, start=3)
    assert run_dbp("migrate").returncode == 0
    sql_before, mongo_before = sql_snapshot(sql_settings), mongo_snapshot(mongo_settings)
    for engine in ("sql", "mongo"):
        assert run_dbp("rollback", "--engine", engine, "--steps", "100").returncode == 1
    assert sql_snapshot(sql_settings) == sql_before
    assert mongo_snapshot(mongo_settings) == mongo_before


# -- 12 and 13: a live lock, a running migration, a wait ------------------------------------------------


@pytest.mark.slow
def test_break_lock_refuses_a_live_holder_and_status_says_running(
    project: Project, run_dbp: Any, tmp_path: Path
) -> None:
    add_logging_migrations(project, 1, mongo_sleep=12)  # outlasts three dbp runs on a loaded 2-core machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
    first = subprocess.Popen([sys.executable, "-m", "dbp", "migrate", "--engine", "mongo"], cwd=tmp_path,
                             env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            doc = status_json(run_dbp, "--engine", "mongo")
            entry = doc["engines"]["mongo"]["migrations"][0]
            if entry["error"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert entry["error"].startswith("running: another run is applying it now")  # not "interrupted"
        broken = run_dbp("migrate", "--engine", "mongo", "--break-lock")
        assert broken.returncode == 1
        assert "refusing --break-lock" in broken.stderr and "alive on this host" in broken.stderr
        waiting = run_dbp("migrate", "--engine", "mongo", "--lock-timeout", "1")
        assert waiting.returncode == 75
        assert "holds the Mongo migration lock until" in waiting.stderr  # said while waiting, and at the end
        assert "waiting up to 1 s" in waiting.stderr
    finally:
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    with MongoConnection(settings=project_mongo(project)) as mongo:
        assert mongo.collection("applied_log").find_one({"_id": "0001_step_1"}) == {"_id": "0001_step_1", "n": 1}


def project_mongo(project: Project) -> MongoSettings:
    from dbp.config import load_config

    settings = load_config(project.root / "dbp.toml").settings("mongo")
    assert isinstance(settings, MongoSettings)
    return settings


def test_select_output_stays_off_stdout(project: Project, run_dbp: Any) -> None:
    project.sql_migration("0001_select", "-- a select\nSELECT 'forty-two' AS the_answer;\n", "SELECT 1 AS undone;\n")
    result = run_dbp("migrate", "--engine", "sql")
    assert result.returncode == 0, result.stderr
    assert "the_answer" not in result.stdout and "forty-two" not in result.stdout
    back = run_dbp("rollback", "--engine", "sql")
    assert back.returncode == 0 and "undone" not in back.stdout


def test_adopt_with_a_leftover_scratch_schema(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    with SQLConnection(settings=sql_settings) as db:
        db.execute((project.sql_schema / "01_log.sql").read_text())
        db.execute("CREATE SCHEMA dbp_scratch")
        db.execute("CREATE TABLE dbp_scratch.applied_log (x int)")
    result = run_dbp("initdb", "--engine", "sql", "--adopt")
    assert result.returncode == 0, result.stderr
    assert "adopted" in result.stdout
    schemas = sql_rows(sql_settings, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dbp_scratch%'")
    assert schemas == [{"nspname": "dbp_scratch"}]  # the user's leftover, untouched; ours always dropped


def test_a_non_utf8_migration_file_is_named(project: Project, run_dbp: Any) -> None:
    add_logging_migrations(project, 1)
    (project.sql_migrations / "0002_latin1.sql").write_bytes(b"-- caf\xe9\nSELECT 1;\n")
    (project.mongo / "0002_latin1.py").write_bytes(b'"""caf\xe9"""\ndef up(db):\n    pass\n')
    for args in (("status",), ("migrate", "--dry-run"), ("rollback", "--engine", "sql"),
                 ("rollback", "--engine", "mongo")):
        result = run_dbp(*args)
        assert result.returncode == 1, args
        assert "0002_latin1" in result.stderr and "is not UTF-8: byte 6 (0xe9)" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert run_dbp("check-config").returncode == 0  # the other commands keep working


def test_commit_in_a_schema_file_or_a_migration_is_refused(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    (project.sql_schema / "02_more.sql").write_text("CREATE TABLE a (x int);\n\ncommit;\nCREATE TABLE b (x int);\n")
    result = run_dbp("initdb", "--engine", "sql")
    assert result.returncode == 78
    assert "02_more.sql:3: COMMIT is not allowed in a schema file" in result.stderr
    assert sql_rows(sql_settings, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
    (project.sql_schema / "02_more.sql").unlink()
    assert run_dbp("initdb", "--engine", "sql").returncode == 0
    add_logging_migrations(project, 1)
    project.sql_migration("0002_commits", "CREATE TABLE c (x int);\nCOMMIT;\nCREATE TABLE d (x int);\n",
                          "DROP TABLE d;\nDROP TABLE c;\n")
    refused = run_dbp("migrate", "--engine", "sql")
    assert refused.returncode == 1
    assert "0002_commits.sql:2: COMMIT is not allowed in a transactional migration" in refused.stderr
    assert sql_rows(sql_settings, "SELECT migration FROM applied_log") == []  # not even 0001 ran
    assert not sql_rows(sql_settings, "SELECT 1 FROM pg_tables WHERE tablename IN ('c', 'd')")
