"""A newcomer's path: honest status, a database created when missing, a project of one's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

import dbp
from dbp import DatabaseMissing
from dbp.admin import initdb
from dbp.config import resolve_config
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .conftest import ROOT, sql_section, unique_name


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
    # initdb makes the ALeRCE catalog only: dbp's cone search indexes wait for migrate
    assert run_dbp("status", "--exit-code", "--engine", "sql").returncode == 3
    assert run_dbp("migrate", "--engine", "sql").returncode == 0
    assert run_dbp("status", "--exit-code", "--engine", "sql").returncode == 0

    assert run_dbp("initdb", "--engine", "mongo").returncode == 0
    done = run_dbp("status", "--format", "json", "--exit-code")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ok"] is True and json.loads(done.stdout)["initialized"] is True


# -- a project of one's own -----------------------------------------------------------------------


def test_init_project_copies_the_schema_and_refuses_to_overwrite(run_dbp: Any, tmp_path: Path) -> None:
    from dbp._bundled import bundled

    made = run_dbp("init-project", "proj")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "proj"
    shipped = sorted(p.name for p in (bundled("sql/ztf") / "schema").glob("*.sql"))
    assert sorted(p.name for p in (project / "sql" / "schema").glob("*.sql")) == shipped
    assert len(shipped) == 17
    assert (project / "mongo_migrations" / "collections.toml").read_bytes() == (
        bundled("mongo_migrations") / "collections.toml").read_bytes()
    assert not list(project.rglob("__init__.py"))
    from dbp.project import schema_dirs

    assert schema_dirs(project / "dbp.toml") == {"SQL": str(project / "sql"),
                                                 "MONGO": str(project / "mongo_migrations")}
    before = (project / "dbp.toml").read_text()
    (project / "sql" / "schema" / "001_object.sql").write_text("-- mine\n")
    again = run_dbp("init-project", "proj")
    assert again.returncode == 1
    assert "already exist" in again.stderr and "dbp.toml" in again.stderr
    assert (project / "sql" / "schema" / "001_object.sql").read_text() == "-- mine\n"  # untouched
    assert (project / "dbp.toml").read_text() == before
    # one engine only
    only = run_dbp("init-project", "--engine", "mongo", "mongo-only")
    assert only.returncode == 0, only.stderr
    assert sorted(p.name for p in (tmp_path / "mongo-only").iterdir()) == [".gitignore", "dbp.toml", "mongo_migrations"]
    assert "[DB_CONFIG.SQL]" not in (tmp_path / "mongo-only" / "dbp.toml").read_text()


def mongo_url(settings: MongoSettings) -> str:
    """The session's Mongo URL (credentials and options included) naming ``settings``' database."""
    head, mark, options = settings.host.partition("?")
    return f"{head.rstrip('/')}/{settings.database}{mark}{options}"


def test_a_project_from_init_project_runs_the_whole_cycle(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    """init-project, then initdb / edit / make_migrations / migrate / status on servers named by $DBP_*_URL."""
    assert run_dbp("init-project").returncode == 0
    env = {"DBP_SQL_URL": sql_section(sql_settings)["URL"],
           "DBP_MONGO_URL": mongo_url(mongo_settings)}
    first = run_dbp("initdb", env=env)
    assert first.returncode == 0, first.stderr
    assert "created 17 tables" in first.stdout
    assert run_dbp("migrate", env=env).returncode == 0  # dbp's cone search indexes (0001), not part of initdb
    schema = tmp_path / "sql" / "schema" / "002_step.sql"
    schema.write_text(schema.read_text().replace("CREATE TABLE step (", "CREATE TABLE step (\n    owner varchar,", 1))
    declared = tmp_path / "mongo_migrations" / "collections.toml"
    declared.write_text(declared.read_text().replace(
        '{ name = "sid_1", keys = [["sid", 1]] },', '{ name = "sid_1", keys = [["sid", 1]] },\n'
        '    { name = "mjd", keys = [["mjd", -1]] },', 1))
    made = run_dbp("make_migrations", "owner and mjd", env=env)
    assert made.returncode == 0, made.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("000[12]_owner*"))
    assert written == ["mongo_migrations/0001_owner_and_mjd.py", "sql/migrations/0002_owner_and_mjd.rollback.sql",
                       "sql/migrations/0002_owner_and_mjd.sql"]
    made_sql = (tmp_path / "sql" / "migrations" / "0002_owner_and_mjd.sql").read_text()
    assert "owner" in made_sql and "meandec_meanra" not in made_sql  # the cone indexes are wanted, not dropped
    assert run_dbp("status", "--exit-code", env=env).returncode == 3
    applied = run_dbp("migrate", env=env)
    assert applied.returncode == 0, applied.stderr
    final = run_dbp("status", "--exit-code", env=env)
    assert final.returncode == 0, final.stdout
    assert "1 applied" in final.stdout


def test_make_migrations_refuses_to_write_into_installed_packages(
    sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    import sysconfig

    from dbp import ConfigError
    from dbp.admin import make_migrations

    site_packages = Path(sysconfig.get_paths()["purelib"])
    for engine, section in (("sql", {"SQL": {**sql_section(sql_settings)}}),
                            ("mongo", {"MONGO": {"URL": mongo_settings.host, "DATABASE": mongo_settings.database}})):
        section[engine.upper()]["SCHEMA_DIR"] = str(site_packages / "dbp" / "_bundled" / "somewhere")
        config = resolve_config(section, environ={})
        with pytest.raises(ConfigError, match=r"installed package.*dbp init-project"):
            make_migrations(config, [engine], "nope", empty=True)
        assert not (site_packages / "dbp" / "_bundled" / "somewhere").exists()


# -- a database that does not exist ------------------------------------------------------------------


@pytest.fixture
def missing_sql(sql_server_url: str) -> Iterator[SQLSettings]:
    """Settings for a database that does not exist (dropped after the test if it was created)."""
    base = resolve_config({"SQL": {"URL": sql_server_url}}, environ={}).settings("sql")
    assert isinstance(base, SQLSettings)
    settings = base.with_database(unique_name("dbp_missing"))
    yield settings
    SQLConnection(settings=settings).drop_db()


def test_initdb_creates_a_missing_database(
    run_dbp: Any, tmp_path: Path, missing_sql: SQLSettings, mongo_settings: MongoSettings
) -> None:
    write_settings(tmp_path, missing_sql, mongo_settings)
    with pytest.raises(DatabaseMissing, match=r"does not exist.*dbp initdb"):
        dbp.connect({"SQL": sql_section(missing_sql)}, engine="sql")
    status = run_dbp("status", "--exit-code", "--engine", "sql")
    assert status.returncode == 4, status.stderr
    assert "not initialized (the database does not exist" in status.stdout
    result = run_dbp("initdb")
    assert result.returncode == 0, result.stderr
    sql_line = next(line for line in result.stdout.splitlines() if line.startswith("sql:"))
    assert sql_line.startswith(f"sql: created database {missing_sql.database}; created 17 tables"), sql_line
    assert "created database" not in next(line for line in result.stdout.splitlines() if line.startswith("mongo:"))
    again = run_dbp("initdb", "--engine", "sql")
    assert again.returncode == 0 and "already initialized" in again.stdout and "created database" not in again.stdout
    assert run_dbp("status", "--exit-code").returncode == 3  # dbp's cone search indexes wait for migrate
    assert run_dbp("migrate").returncode == 0
    assert run_dbp("status", "--exit-code").returncode == 0


def test_create_db_on_an_unconnected_configuration(missing_sql: SQLSettings) -> None:
    config = {"SQL": sql_section(missing_sql)}
    db = dbp.SQLConnection(config)
    assert db.create_db() is True  # no connect() first: it works on a server-level connection
    assert db.closed
    assert dbp.SQLConnection(config).create_db() is False
    with dbp.connect(config, engine="sql") as connected:
        assert connected.execute("SELECT current_database() AS d").fetchone() == {"d": missing_sql.database}


def test_initdb_without_the_right_to_create_names_the_sql_and_is_not_retryable(
    run_dbp: Any, tmp_path: Path, sql_db: SQLConnection, missing_sql: SQLSettings
) -> None:
    role = unique_name("dbp_role")
    sql_db.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        limited = SQLSettings(params={**missing_sql.params, "user": role})
        (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(limited)["URL"]}"\n')
        refused = run_dbp("initdb")
        assert refused.returncode == 66, refused.stderr  # not 69: no retry makes the database appear
        statement = f'CREATE DATABASE "{missing_sql.database}" OWNER "{role}"'
        assert statement in refused.stderr, refused.stderr
        assert "permission denied to create database" in refused.stderr
        with pytest.raises(DatabaseMissing) as caught:
            initdb(resolve_config({"SQL": sql_section(limited)}, environ={}), ["sql"])
        assert not isinstance(caught.value, dbp.ServerUnavailable)
        assert caught.value.create_sql == statement
        sql_db.execute(statement)  # what an administrator runs, as the message says
        done = run_dbp("initdb")
        assert done.returncode == 0, done.stderr
        assert "created 17 tables" in done.stdout and "created database" not in done.stdout
    finally:
        SQLConnection(settings=missing_sql).drop_db()
        sql_db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# -- a half-set test environment ------------------------------------------------------------------

PROBE_ENV = "DBP_TEST_PROBE_OUT"


@pytest.mark.skipif(not os.environ.get(PROBE_ENV), reason="run by test_each_test_server_variable_alone only")
def test_probe_the_session_servers(sql_db: SQLConnection, mongo_db: Any, sql_server_url: str,
                                   mongo_server_url: str) -> None:
    sql_db.ping()
    mongo_db.ping()
    Path(os.environ[PROBE_ENV]).write_text(json.dumps({"sql": sql_server_url, "mongo": mongo_server_url}))


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["DBP_TEST_SQL_URL", "DBP_TEST_MONGO_URL"])
def test_each_test_server_variable_alone(
    tmp_path: Path, variable: str, sql_server_url: str, mongo_server_url: str
) -> None:
    """One variable names one engine's server; the other engine's stays the embedded one."""
    given = sql_server_url if variable == "DBP_TEST_SQL_URL" else mongo_server_url
    out = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    env.update({variable: given, PROBE_ENV: str(out), "PYTHONPATH": str(ROOT)})
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:randomly", "-p", "no:cacheprovider",
         f"{Path(__file__).relative_to(ROOT)}::test_probe_the_session_servers"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    seen = json.loads(out.read_text())
    if variable == "DBP_TEST_SQL_URL":
        assert seen["sql"] == sql_server_url
        assert seen["mongo"] != mongo_server_url  # an embedded server of its own, credentials and all
        assert seen["mongo"].partition("://")[2].rpartition("@")[2].startswith("127.0.0.1:")
    else:
        assert seen["mongo"] == mongo_server_url
        assert seen["sql"] != sql_server_url and seen["sql"].startswith("postgresql://")


# -- smaller frictions -----------------------------------------------------------------------------


def test_dbp_admin_is_reachable_from_the_package() -> None:
    code = ("import sys, dbp; a = dbp.admin; p = dbp.project; "
            "print(a.initdb.__module__, p.init_project.__module__, 'pymongo' in sys.modules, 'psycopg' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert shown == ["dbp.admin", "dbp.project", "False", "False"]
    with pytest.raises(AttributeError):
        dbp.no_such_thing  # noqa: B018


def test_admin_functions_take_what_connect_takes(
    tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbp import admin

    sql_part = sql_section(sql_settings)
    mongo_part = {"URL": mongo_settings.host, "DATABASE": mongo_settings.database}
    full = {"SQL": sql_part, "MONGO": mongo_part}
    assert admin.configured_engines(full) == ["sql", "mongo"]
    assert {r.outcome for r in admin.initdb(full, ["sql", "mongo"])} == {"created"}
    assert all(r.initialized for r in admin.status({"DB_CONFIG": full}, ["sql", "mongo"]))
    # a lone section, db-plugins style; after initdb, dbp's cone search indexes are the one pending migration
    assert admin.migrate(sql_part, ["sql"]) == {"sql": ["0001_cone_search_indexes"]}
    assert [r.reachable for r in admin.check(mongo_part, ["mongo"])] == [True]
    path = write_settings(tmp_path, sql_settings, mongo_settings)
    assert [s.engine for s in admin.status(str(path), ["sql"])] == ["sql"]
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("DBP_")]:
        monkeypatch.delenv(key)
    assert [s.engine for s in admin.status(None, ["sql", "mongo"])] == ["sql", "mongo"]  # ./dbp.toml
    assert admin.rollback(full, "sql") == ["0001_cone_search_indexes"]  # the one migrate applied


def test_no_settings_error_mentions_local_and_init_project(run_dbp: Any) -> None:
    result = run_dbp("status")
    assert result.returncode == 78
    assert "--local" in result.stderr and "init-project" in result.stderr


def test_a_checkout_of_dbp_keeps_its_bundled_schema_writable() -> None:
    import sysconfig

    from dbp._bundled import bundled, installed_location, require_writable

    if not str(bundled("sql")).startswith(str(ROOT)):
        pytest.skip("dbp is installed, not run from its checkout")
    assert bundled("sql") == ROOT / "sql"
    assert installed_location(ROOT / "sql") is None
    require_writable(ROOT / "mongo_migrations")  # no error: the repository's own folders
    assert installed_location(Path(sysconfig.get_paths()["purelib"]) / "x") is not None


def test_init_project_races_and_unwritable_folders_give_one_line_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    env["PYTHONPATH"] = str(ROOT)
    procs = [subprocess.Popen([sys.executable, "-m", "dbp", "init-project", "shared"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and all(c == 1 for c in codes[1:]), outs  # one wins; the others stop cleanly
    for proc, (_, err) in zip(procs, outs):
        if proc.returncode:
            assert err.startswith("dbp: error: ") and len(err.strip().splitlines()) == 1, err
            assert "Traceback" not in err
    shared = tmp_path / "shared"
    assert len(list((shared / "sql" / "schema").glob("*.sql"))) == 17
    assert "SCHEMA_DIR" in (shared / "dbp.toml").read_text()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = subprocess.run([sys.executable, "-m", "dbp", "init-project", str(locked)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "cannot write" in result.stderr
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = subprocess.run([sys.executable, "-m", "dbp", "init-project", str(afile)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "is not a folder" in result.stderr


@pytest.mark.parametrize("name", ['we"ird db', "dbp é; DROP DATABASE postgres --", "MixedCase"])
def test_a_missing_database_with_an_odd_name_is_created_or_named_exactly(
    sql_db: SQLConnection, missing_sql: SQLSettings, name: str
) -> None:
    params = missing_sql.params
    odd = f"{name} {unique_name('')}"
    section = {"HOST": str(params.get("host") or "127.0.0.1"), "PORT": int(params.get("port") or 5432),
               "USER": str(params.get("user") or "postgres"), "DB_NAME": odd}
    try:
        with pytest.raises(DatabaseMissing) as caught:
            dbp.connect({"SQL": section}, engine="sql")
        assert caught.value.create_sql.startswith("CREATE DATABASE ")
        sql_db.execute(caught.value.create_sql)  # the statement it names is valid and creates exactly that
        sql_db.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(odd)))
        reports = initdb({"SQL": section}, ["sql"])
        assert reports[0].created_database and reports[0].outcome == "created"
        with dbp.connect({"SQL": section}, engine="sql") as db:
            assert db.execute("SELECT current_database() AS d").fetchone() == {"d": odd}
        assert sql_db.execute("SELECT count(*) AS n FROM pg_database WHERE datname = 'postgres'").fetchone() == {"n": 1}
    finally:
        sql_db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(odd)))
