"""A newcomer's path: honest status, a database created when missing, a project of one's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dbp.mongo.settings import MongoSettings
from dbp.sql.settings import SQLSettings

from .conftest import sql_section


def write_settings(folder: Path, sql: SQLSettings, mongo: MongoSettings, extra: str = "") -> Path:
    path = folder / "dbp.toml"
    path.write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql)["URL"]}"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo.host}"\nDATABASE = "{mongo.database}"\n' + extra
    )
    return path


# -- status on a database dbp never initialized ----------------------------------------------------


def test_status_exit_code_fails_on_a_never_initialized_database(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    write_settings(tmp_path, sql_settings, mongo_settings)
    text = run_dbp("status", "--exit-code")
    assert text.returncode == 4, (text.stdout, text.stderr)
    lines = text.stdout.splitlines()
    assert any(line.startswith("sql: ") and "not initialized" in line for line in lines), text.stdout
    assert any(line.startswith("mongo: ") and "not initialized" in line for line in lines), text.stdout
    assert "no migrations" not in text.stdout

    shown = run_dbp("status", "--format", "json", "--exit-code")
    assert shown.returncode == 4
    document = json.loads(shown.stdout)
    assert document["ok"] is False and document["initialized"] is False
    assert document["engines"]["sql"]["initialized"] is False
    assert document["engines"]["mongo"]["initialized"] is False
    assert run_dbp("status").returncode == 0  # without --exit-code it only reports

    # one engine initialized, the other not: still not ok
    assert run_dbp("initdb", "--engine", "sql").returncode == 0
    half = run_dbp("status", "--format", "json", "--exit-code")
    assert half.returncode == 4
    halves = json.loads(half.stdout)
    assert halves["engines"]["sql"]["initialized"] is True and halves["engines"]["mongo"]["initialized"] is False
    assert halves["ok"] is False
    assert run_dbp("status", "--exit-code", "--engine", "sql").returncode == 0

    assert run_dbp("initdb", "--engine", "mongo").returncode == 0
    done = run_dbp("status", "--format", "json", "--exit-code")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ok"] is True and json.loads(done.stdout)["initialized"] is True
