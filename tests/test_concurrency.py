"""Migrations under concurrency and crashes, with real processes: two at once, and kill -9 mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .conftest import ROOT
from .projects import Project, add_logging_migrations, make_project

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings, run_dbp: Any) -> Project:
    made = make_project(tmp_path, sql_settings, mongo_settings)
    assert run_dbp("initdb").returncode == 0
    return made


def start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbp", "migrate", *args], cwd=project.root,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def sql_count(settings: SQLSettings, query: str) -> int:
    with SQLConnection(settings=settings) as db:
        row = db.execute(query).fetchone()
    assert row is not None
    return int(next(iter(row.values())))


def mongo_applied(settings: MongoSettings) -> int:
    with MongoConnection(settings=settings) as db:
        return db.database["_dbp_migrations"].count_documents({"status": "applied"})


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_all_applied_once(sql: SQLSettings, mongo: MongoSettings, count: int, *, mongo_exactly: bool) -> None:
    assert sql_count(sql, "SELECT count(*) FROM applied_log") == count
    assert sql_count(sql, "SELECT count(*) FROM _yoyo_migration") == count
    # yoyo's log: one apply per migration, never two
    assert sql_count(
        sql, "SELECT count(*) FROM (SELECT migration_id FROM _yoyo_log WHERE operation = 'apply' "
        "GROUP BY migration_id HAVING count(*) > 1) AS repeated"
    ) == 0
    with MongoConnection(settings=mongo) as db:
        ledger = list(db.database["_dbp_migrations"].find())
        assert sorted(d["status"] for d in ledger) == ["applied"] * count
        counts = [d["n"] for d in db.collection("applied_log").find()]
    assert len(counts) == count
    if mongo_exactly:
        assert counts == [1] * count
    else:
        assert all(n >= 1 for n in counts)


def test_two_migrate_runs_at_once(
    project: Project, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    add_logging_migrations(project, 20, sleep=0.02)
    procs = [start(project), start(project)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied = "".join(out for out, _ in outputs)
    assert applied.count("sql: applied ") == 20
    assert applied.count("mongo: applied ") == 20
    assert_all_applied_once(sql_settings, mongo_settings, 20, mongo_exactly=True)


def test_kill_9_during_sql_then_a_third_run_completes(
    project: Project, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    add_logging_migrations(project, 20, sleep=0.15, mongo_sleep=0)
    first = start(project)
    wait_until(lambda: sql_count(sql_settings, "SELECT count(*) FROM applied_log") >= 3)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    done = sql_count(sql_settings, "SELECT count(*) FROM _yoyo_migration")
    assert 3 <= done < 20
    # the server released the dead session's advisory lock: no wait, no repair
    third = run_dbp("migrate", "--lock-timeout", "10")
    assert third.returncode == 0, third.stderr
    assert third.stdout.count("sql: applied ") == 20 - done
    assert_all_applied_once(sql_settings, mongo_settings, 20, mongo_exactly=True)


@pytest.mark.parametrize("recovery", ["lease-expiry", "break-lock"])
def test_kill_9_during_mongo_then_a_third_run_completes(
    project: Project, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings, recovery: str
) -> None:
    add_logging_migrations(project, 20, sleep=0, mongo_sleep=0.15)
    first = start(project, "--lease", "3")
    wait_until(lambda: mongo_applied(mongo_settings) >= 3)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    with MongoConnection(settings=mongo_settings) as db:
        assert db.database["_dbp_locks"].count_documents({}) == 1  # the dead run's lease is still there
    started = time.monotonic()
    if recovery == "break-lock":
        third = run_dbp("migrate", "--break-lock", "--lock-timeout", "1")
    else:
        blocked = run_dbp("migrate", "--engine", "mongo", "--lock-timeout", "0.2")
        assert blocked.returncode == 75
        assert "holds the Mongo migration lock" in blocked.stderr
        third = run_dbp("migrate", "--lock-timeout", "30")
    assert third.returncode == 0, third.stderr
    if recovery == "lease-expiry":
        assert time.monotonic() - started > 0.5  # it waited for the lease to run out
    assert_all_applied_once(sql_settings, mongo_settings, 20, mongo_exactly=False)
    with MongoConnection(settings=mongo_settings) as db:
        assert db.database["_dbp_locks"].count_documents({}) == 0


def test_sql_lock_timeout_is_a_clean_error(project: Project, run_dbp: Any, sql_settings: SQLSettings) -> None:
    from dbp.sql.ledger import advisory_key

    add_logging_migrations(project, 1)
    with SQLConnection(settings=sql_settings) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key(sql_settings.database),))
        result = run_dbp("migrate", "--engine", "sql", "--lock-timeout", "0.3")
    assert result.returncode == 75
    lines = result.stderr.strip().splitlines()
    assert "another dbp run holds the migration lock" in lines[0] and "waiting up to 0.3 s" in lines[0]  # said at once
    errors = [line for line in lines if line.startswith("dbp: error:")]
    assert len(errors) == 1 and "holds the migration lock" in errors[0]
