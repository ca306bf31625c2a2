"""A newcomer's path, part two, as a user runs it: one-engine projects, all-or-nothing commands, honest output.

Every command runs as ``python -m dbp`` in a temporary project against the session's servers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dbp import OperationError
from dbp.local import LocalServers
from dbp.migrations import write_files
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .conftest import server_root, sql_section
from .test_connections import closed_port
from .test_newcomer import mongo_url

ADD_OWNER = ("CREATE TABLE step (", "CREATE TABLE step (\n    owner varchar,")
ADD_MJD = ('{ name = "sid_1", keys = [["sid", 1]] },',
           '{ name = "sid_1", keys = [["sid", 1]] },\n    { name = "mjd", keys = [["mjd", -1]] },')


def edit(path: Path, change: tuple[str, str]) -> None:
    text = path.read_text()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))


def files_of(project: Path) -> list[str]:
    """Every file and folder of the project (hidden temporaries included), as relative paths."""
    return sorted(p.relative_to(project).as_posix() for p in project.rglob("*"))


def sql_applied(settings: SQLSettings) -> list[str]:
    with SQLConnection(settings=settings) as db:
        rows = db.execute("SELECT migration_id FROM _yoyo_migration ORDER BY migration_id").fetchall()
    return [r["migration_id"] for r in rows]


def mongo_ledger(settings: MongoSettings) -> list[tuple[str, str]]:
    with MongoConnection(settings=settings) as db:
        return sorted((str(d["_id"]), str(d.get("status"))) for d in db.database["_dbp_migrations"].find())


def ok(result: Any) -> Any:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def one_error_line(result: Any) -> str:
    """The one ``dbp: error:`` line on stderr (notices aside), without a traceback."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("notice: ")]
    assert len(lines) == 1 and lines[0].startswith("dbp: error: "), result.stderr
    return lines[0]


# -- a PostgreSQL-only project ---------------------------------------------------------------------


@pytest.mark.parametrize("mongo_section", ["none", "schema-dir-only", "empty"])
def test_a_postgresql_only_project_runs_every_command(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_section: str
) -> None:
    made = ok(run_dbp("init-project", "--engine", "sql"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "dbp.toml", "sql"], made.stdout
    settings = tmp_path / "dbp.toml"
    assert "MONGO" not in settings.read_text() and "mongo_migrations" not in settings.read_text()
    if mongo_section == "schema-dir-only":
        settings.write_text(settings.read_text() + '\n[DB_CONFIG.MONGO]\nSCHEMA_DIR = "mongo_migrations"\n')
    elif mongo_section == "empty":
        settings.write_text(settings.read_text() + "\n[DB_CONFIG.MONGO]\n")
    env = {"DBP_SQL_URL": sql_section(sql_settings)["URL"]}

    def dbp(*args: str) -> Any:
        result = run_dbp(*args, env=env)
        notices = [line for line in result.stderr.splitlines() if line.startswith("notice: ")]
        if mongo_section == "none":
            assert not notices, result.stderr
        else:  # one line, once, saying why mongo is skipped
            held = "holds only SCHEMA_DIR" if mongo_section == "schema-dir-only" else "is empty"
            assert notices == [f"notice: DB_CONFIG.MONGO {held}: mongo is not configured, skipped"], result.stderr
        return result

    first = ok(dbp("initdb"))
    assert first.stdout.startswith("sql: created database") or first.stdout.startswith("sql: created 17 tables")
    assert "mongo" not in first.stdout
    # honest: dbp's cone search indexes are not part of initdb; initdb says so and names them
    assert "1 migration(s) pending (0001_cone_search_indexes): run dbp migrate" in first.stdout, first.stdout
    assert "no migrations" not in first.stdout
    again = ok(dbp("initdb"))
    assert "already initialized" in again.stdout and "0001_cone_search_indexes" in again.stdout

    behind = dbp("check")
    assert behind.returncode == 4, behind.stdout
    assert "cannot compare" in behind.stdout and "0001_cone_search_indexes" in behind.stdout

    assert "sql: 1 migration(s) applied" in ok(dbp("migrate")).stdout
    assert "pending" not in ok(dbp("initdb")).stdout
    assert ok(dbp("status", "--exit-code")).stdout.startswith("sql: ")
    clean = ok(dbp("check"))
    assert clean.stdout.strip().splitlines() == [f"sql: {sql_settings.address}: no drift: the schema files match "
                                                 "the migrations"]
    assert "no changes" in ok(dbp("make_migrations", "nothing")).stdout

    # a schema file edited without a migration: check fails, names it, writes nothing
    edit(tmp_path / "sql" / "schema" / "002_step.sql", ADD_OWNER)
    before = files_of(tmp_path)
    drift = dbp("check")
    assert drift.returncode == 3, (drift.stdout, drift.stderr)
    assert "sql: drift: column step.owner is missing" in drift.stdout.splitlines()
    assert "make_migrations" in drift.stdout
    assert files_of(tmp_path) == before
    made_migration = ok(dbp("make_migrations", "owner"))
    assert [line.rsplit("/", 1)[-1] for line in made_migration.stdout.splitlines()] == [
        "0002_owner.sql", "0002_owner.rollback.sql"]
    assert dbp("check").returncode == 4  # written, not applied yet
    ok(dbp("migrate"))
    assert ok(dbp("check")).returncode == 0
    assert ok(dbp("status", "--exit-code")).stdout.count("applied") >= 2

    # asking for the engine that is not configured is a clear configuration error
    asked = run_dbp("status", "--engine", "mongo", env=env)
    assert asked.returncode == 78
    line = one_error_line(asked)
    assert "mongo" in line.lower() and ("not configured" in line or "no DB_CONFIG.MONGO" in line), line


def test_a_mongo_only_project_runs_every_command(
    run_dbp: Any, tmp_path: Path, mongo_settings: MongoSettings
) -> None:
    ok(run_dbp("init-project", "--engine", "mongo"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "dbp.toml", "mongo_migrations"]
    assert "[DB_CONFIG.SQL]" not in (tmp_path / "dbp.toml").read_text()
    env = {"DBP_MONGO_URL": mongo_url(mongo_settings)}

    def dbp(*args: str) -> Any:
        result = run_dbp(*args, env=env)
        assert "notice" not in result.stderr and "sql" not in result.stdout, (result.stdout, result.stderr)
        return result

    first = ok(dbp("initdb"))
    assert first.stdout.startswith("mongo: created 5 collections"), first.stdout
    assert "pending" not in first.stdout  # the bundled Mongo schema has no migration waiting
    assert "mongo: up to date" in ok(dbp("migrate")).stdout
    ok(dbp("status", "--exit-code"))
    assert "no drift" in ok(dbp("check")).stdout
    assert "no changes" in ok(dbp("make_migrations", "nothing")).stdout

    edit(tmp_path / "mongo_migrations" / "collections.toml", ADD_MJD)
    drift = dbp("check")
    assert drift.returncode == 3, drift.stdout
    assert "mongo: drift: index detection.mjd (mjd -1) is missing" in drift.stdout.splitlines(), drift.stdout
    made = ok(dbp("make_migrations", "mjd index"))
    assert made.stdout.strip().endswith("mongo_migrations/0001_mjd_index.py")
    assert dbp("check").returncode == 4
    ok(dbp("migrate"))
    ok(dbp("check"))
    ok(dbp("status", "--exit-code"))


# -- --engine sql never trips over the Mongo section -----------------------------------------------

BROKEN_MONGO = {
    "unset-variable": '[DB_CONFIG.MONGO]\nURL = "${DBP_TEST_NEVER_SET_X}"\n',
    "incomplete": '[DB_CONFIG.MONGO]\nDATABASE = "d"\n',
    "bad-port": '[DB_CONFIG.MONGO]\nHOST = "h"\nPORT = "nope"\nDATABASE = "d"\n',
    "not-a-table": '[DB_CONFIG]\nMONGO = "mongodb://h/d"\n',
    "wrong-scheme": '[DB_CONFIG.MONGO]\nURL = "mysql://h/d"\n',
}


@pytest.mark.parametrize("case", sorted(BROKEN_MONGO))
def test_engine_sql_works_with_a_broken_mongo_section(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, case: str
) -> None:
    text = BROKEN_MONGO[case]
    sql_part = f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
    # TOML: a [DB_CONFIG] table's own keys come before its sub-tables
    (tmp_path / "dbp.toml").write_text(text + sql_part if text.startswith("[DB_CONFIG]\n") else sql_part + text)
    assert "reachable" in ok(run_dbp("check-config", "--engine", "sql")).stdout
    ok(run_dbp("initdb", "--engine", "sql"))
    ok(run_dbp("migrate", "--engine", "sql"))
    ok(run_dbp("status", "--engine", "sql", "--exit-code"))
    ok(run_dbp("check", "--engine", "sql"))
    ok(run_dbp("make_migrations", "--engine", "sql", "nothing"))
    # every engine: the Mongo section's mistake is the error
    for command in (["status"], ["migrate"], ["check"]):
        refused = run_dbp(*command)
        assert refused.returncode == 78, (command, refused.stdout, refused.stderr)
        assert "MONGO" in one_error_line(refused)
    checked = run_dbp("check-config")  # a row per engine: the SQL one is still reported
    assert checked.returncode == 78
    rows = {line.split()[0]: line for line in checked.stdout.splitlines()[1:]}
    assert "reachable" in rows["sql"] and "INVALID" in rows["mongo"], checked.stdout
    assert "MONGO" in one_error_line(checked)


def test_no_engine_configured_names_every_section(run_dbp: Any, tmp_path: Path) -> None:
    ok(run_dbp("init-project"))
    result = run_dbp("status")
    assert result.returncode == 78
    line = one_error_line(result)
    assert "no engine is configured" in line
    assert "DB_CONFIG.SQL holds only SCHEMA_SET and SCHEMA_DIR" in line  # what init-project writes
    assert "DB_CONFIG.MONGO holds only SCHEMA_SET and SCHEMA_DIR" in line
    assert "$DBP_SQL_URL" in line and "--local" in line
    assert "notice" not in result.stderr  # the error says it all, once


# -- all or nothing ----------------------------------------------------------------------------------


@pytest.fixture
def project(run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings) -> Any:
    """A two-engine project from init-project, initialized and migrated; returns its environment."""
    ok(run_dbp("init-project"))
    env = {"DBP_SQL_URL": sql_section(sql_settings)["URL"], "DBP_MONGO_URL": mongo_url(mongo_settings)}
    ok(run_dbp("initdb", env=env))
    ok(run_dbp("migrate", env=env))
    return env


def test_make_migrations_with_a_bad_collections_toml_writes_nothing(
    run_dbp: Any, tmp_path: Path, project: dict[str, str]
) -> None:
    edit(tmp_path / "sql" / "schema" / "002_step.sql", ADD_OWNER)
    declared = tmp_path / "mongo_migrations" / "collections.toml"
    good = declared.read_text()
    for bad in ("garbage = [\n", '[[collection]]\nname = "x"\nindexes = [{ name = "i", keys = [["a", 7]] }]\n'):
        declared.write_text(good + bad)
        before = files_of(tmp_path)
        result = run_dbp("make_migrations", "owner", env=project)
        assert result.returncode == 78, (result.stdout, result.stderr)
        assert "collections.toml" in one_error_line(result)
        assert "wrote" not in result.stdout
        assert files_of(tmp_path) == before  # not the SQL migration either, nor a temporary file
    declared.write_text(good)
    done = ok(run_dbp("make_migrations", "owner", env=project))  # the rerun is not refused
    assert [line.rsplit("/", 1)[-1] for line in done.stdout.splitlines()] == ["0002_owner.sql",
                                                                             "0002_owner.rollback.sql"]


def test_migrate_with_a_bad_collections_toml_applies_nothing(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], sql_settings: SQLSettings,
    mongo_settings: MongoSettings
) -> None:
    (tmp_path / "sql" / "migrations" / "0002_extra.sql").write_text("-- extra\nCREATE TABLE extra (id int);\n")
    (tmp_path / "mongo_migrations" / "0001_extra.py").write_text(
        '"""extra"""\n\n\ndef up(db):\n    db.create_collection("extra")\n')
    sql_before, mongo_before = sql_applied(sql_settings), mongo_ledger(mongo_settings)
    declared = tmp_path / "mongo_migrations" / "collections.toml"
    good = declared.read_text()
    declared.write_text(good + "garbage = [\n")
    result = run_dbp("migrate", env=project)
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert "collections.toml" in one_error_line(result)
    assert "applied" not in result.stdout
    assert sql_applied(sql_settings) == sql_before and "0002_extra" not in sql_before
    assert mongo_ledger(mongo_settings) == mongo_before
    with SQLConnection(settings=sql_settings) as db:
        assert db.execute("SELECT to_regclass('public.extra') AS t").fetchone() == {"t": None}
    with MongoConnection(settings=mongo_settings) as db:
        assert "extra" not in db.database.list_collection_names()
    declared.write_text(good)
    applied = ok(run_dbp("migrate", env=project))
    assert "sql: 1 migration(s) applied" in applied.stdout and "mongo: 1 migration(s) applied" in applied.stdout
    assert "0002_extra" in sql_applied(sql_settings)


def test_migrate_refuses_before_sql_when_mongo_is_not_initialized(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    ok(run_dbp("init-project"))
    env = {"DBP_SQL_URL": sql_section(sql_settings)["URL"], "DBP_MONGO_URL": mongo_url(mongo_settings)}
    ok(run_dbp("initdb", "--engine", "sql", env=env))
    result = run_dbp("migrate", env=env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "mongo" in one_error_line(result) and "initdb" in result.stderr
    assert "0001_cone_search_indexes" not in sql_applied(sql_settings)  # the SQL migration waits too
    ok(run_dbp("initdb", "--engine", "mongo", env=env))
    assert "sql: 1 migration(s) applied" in ok(run_dbp("migrate", env=env)).stdout


def test_write_files_writes_all_or_none(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    first, second = tmp_path / "migrations" / "0002_a.sql", blocker / "0002_a.rollback.sql"
    with pytest.raises(OperationError, match=r"cannot write .*0002_a.rollback.sql.*nothing was written"):
        write_files([(first, "-- a\n"), (second, "-- b\n")])
    assert files_of(tmp_path) == ["migrations", "not-a-folder"]  # no first file, no temporary file
    # a file that exists already is never replaced, and the run's other files go too
    existing = tmp_path / "migrations" / "0003_b.rollback.sql"
    existing.write_text("mine")
    with pytest.raises(OperationError, match="appeared"):
        write_files([(tmp_path / "migrations" / "0003_b.sql", "-- b\n"), (existing, "-- theirs\n")])
    assert existing.read_text() == "mine"
    assert files_of(tmp_path) == ["migrations", "migrations/0003_b.rollback.sql", "not-a-folder"]
    written = write_files([(tmp_path / "migrations" / "0004_c.sql", "-- c é\n")])
    assert written == [tmp_path / "migrations" / "0004_c.sql"] and written[0].read_text("utf-8") == "-- c é\n"


# -- honest check-config -----------------------------------------------------------------------------


def test_check_config_says_missing_once(run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings) -> None:
    absent = sql_settings.with_database(sql_settings.database + "_absent")
    (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(absent)["URL"]}"\n')
    result = run_dbp("check-config")
    assert result.returncode == 66, (result.stdout, result.stderr)
    row = result.stdout.splitlines()[1]
    assert row.split()[0] == "sql" and row.split()[2] == "MISSING", row
    assert "UNREACHABLE" not in result.stdout
    line = one_error_line(result)
    assert "does not exist" in line and "dbp initdb" in line
    assert (result.stdout + result.stderr).count("does not exist") == 1  # each problem once


def test_check_config_reports_every_engine(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    port = closed_port()
    good_sql = f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
    down_mongo = f'[DB_CONFIG.MONGO]\nURL = "mongodb://127.0.0.1:{port}/d"\nserverSelectionTimeoutMS = 500\n'
    (tmp_path / "dbp.toml").write_text(good_sql + down_mongo)
    half = run_dbp("check-config")
    assert half.returncode == 69, (half.stdout, half.stderr)  # SQL fine, Mongo down: not 0
    rows = {line.split()[0]: line.split()[2] for line in half.stdout.splitlines()[1:]}
    assert rows == {"sql": "reachable", "mongo": "UNREACHABLE"}
    assert f"127.0.0.1:{port}" in one_error_line(half)

    absent = sql_settings.with_database(sql_settings.database + "_absent")
    (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(absent)["URL"]}"\n' + down_mongo)
    both = run_dbp("check-config")
    rows = {line.split()[0]: line.split()[2] for line in both.stdout.splitlines()[1:]}
    assert rows == {"sql": "MISSING", "mongo": "UNREACHABLE"}, both.stdout
    errors = both.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("dbp: error: ") for e in errors), both.stderr
    assert "does not exist" in errors[0] and f"127.0.0.1:{port}" in errors[1]
    assert both.returncode == 66  # a retry cannot create the database: not 69

    bad_mongo = '[DB_CONFIG.MONGO]\nURL = "mongodb://h/"\n'  # no database
    (tmp_path / "dbp.toml").write_text(good_sql + bad_mongo)
    invalid = run_dbp("check-config")
    assert invalid.returncode == 78
    rows = {line.split()[0]: line.split()[2] for line in invalid.stdout.splitlines()[1:]}
    assert rows == {"sql": "reachable", "mongo": "INVALID"}
    assert "DATABASE" in one_error_line(invalid)

    (tmp_path / "dbp.toml").write_text(good_sql + f'[DB_CONFIG.MONGO]\nURL = "{mongo_url(mongo_settings)}"\n')
    with MongoConnection(settings=mongo_settings) as db:  # an empty Mongo database does not exist: MISSING
        db.create_db()
    assert ok(run_dbp("check-config")).stdout.count("reachable") == 2


def test_a_fresh_project_is_clean_everywhere(
    run_dbp: Any, tmp_path: Path, project: dict[str, str]
) -> None:
    """After initdb + migrate of a fresh project, status, check and initdb agree that nothing is pending."""
    status = json.loads(ok(run_dbp("status", "--format", "json", "--exit-code", env=project)).stdout)
    assert status["ok"] is True
    assert ok(run_dbp("check", env=project)).stdout.count("no drift") == 2
    again = ok(run_dbp("initdb", env=project))
    assert again.stdout.count("already initialized") == 2 and "pending" not in again.stdout


def test_the_library_checks_only_the_engine_it_connects_to(
    tmp_path: Path, sql_settings: SQLSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dbp
    from dbp import ConfigError
    from dbp.admin import configured_engines, skipped_engines, status
    from dbp.config import load_config

    path = tmp_path / "dbp.toml"
    path.write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
                    '[DB_CONFIG.MONGO]\nHOST = "h"\nPORT = "nope"\nDATABASE = "d"\n')
    with pytest.raises(ConfigError, match=r"MONGO\.PORT"):
        load_config(path, environ={})  # every section, as before
    config = load_config(path, environ={}, engines=["sql"])
    assert config.settings("sql").database == sql_settings.database
    with pytest.raises(ConfigError, match=r"MONGO\.PORT"):
        config.settings("mongo")  # the mistake waits for whoever asks for Mongo
    for key in [k for k in os.environ if k.startswith("DBP_")]:
        monkeypatch.delenv(key)
    with dbp.connect(str(path), engine="sql") as db:
        assert db.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert [s.engine for s in status(str(path), ["sql"])] == ["sql"]

    path.write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
                    '[DB_CONFIG.MONGO]\nSCHEMA_DIR = "mongo_migrations"\nQUERIES_DIR = "queries"\n')
    loaded = load_config(path, environ={})
    assert configured_engines(loaded) == ["sql"]
    assert skipped_engines(loaded) == {
        "mongo": "DB_CONFIG.MONGO holds only SCHEMA_DIR and QUERIES_DIR: mongo is not configured, skipped"}
    with pytest.raises(ConfigError, match=r"mongo is not configured.*\$DBP_MONGO_URL"):
        load_config(path, environ={}, engines=["mongo"])
    with_url = load_config(path, environ={"DBP_MONGO_URL": "mongodb://h:1/d"})
    assert configured_engines(with_url) == ["sql", "mongo"] and not skipped_engines(with_url)


@pytest.mark.skipif(bool(os.environ.get("DBP_TEST_SQL_URL") and os.environ.get("DBP_TEST_MONGO_URL")),
                    reason="the suite runs against external servers")
def test_local_starts_only_the_engine_a_one_engine_project_names(run_dbp: Any, tmp_path: Path) -> None:
    root = server_root("dbp-test-one-engine-") / "data"
    env = {"DBP_LOCAL_DIR": str(root)}
    ok(run_dbp("init-project", "--engine", "mongo", env=env))
    try:
        first = ok(run_dbp("--local", "initdb", env=env))
        assert first.stdout.startswith("mongo: created 5 collections") and "sql" not in first.stdout
        assert "local sql server" not in first.stderr
        states = {s.engine: s.running for s in LocalServers(root).status()}
        assert states == {"sql": False, "mongo": True}
        assert "no drift" in ok(run_dbp("--local", "check", env=env)).stdout
    finally:
        run_dbp("local", "stop", env=env)
        LocalServers(root).delete()
        shutil.rmtree(root.parent, ignore_errors=True)
