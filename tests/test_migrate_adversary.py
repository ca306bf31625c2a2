"""Hostile inputs for initdb, migrate, make_migrations and check-config (issue 21's findings 2, 3, 4, 9, 10, 12).

The rule each test holds: a failure leaves no new file and no applied migration. Every command
runs as ``python -m dbp`` in a temporary project against the session's servers.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .conftest import ROOT, sql_section, with_userinfo
from .test_connections import closed_port
from .test_newcomer import mongo_url
from .test_newcomer2_cli import ADD_MJD, ADD_OWNER, edit, files_of, mongo_ledger, ok, one_error_line, sql_applied


@pytest.fixture
def project(run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings) -> Any:
    """A two-engine project from init-project, initialized and migrated; returns its environment."""
    ok(run_dbp("init-project"))
    env = {"DBP_SQL_URL": sql_section(sql_settings)["URL"], "DBP_MONGO_URL": mongo_url(mongo_settings)}
    ok(run_dbp("initdb", env=env))
    ok(run_dbp("migrate", env=env))
    return env


# -- finding 2: every Mongo migration is loaded while planning, before any SQL migration runs ---------------


BROKEN_MODULES = {
    "import error": ("import nonexistent_module_xyz\n\n\ndef up(db):\n    pass\n", "ModuleNotFoundError"),
    "value error": ('raise ValueError("x")\n\n\ndef up(db):\n    pass\n', "ValueError: x"),
    "SystemExit(3)": ("raise SystemExit(3)\n\n\ndef up(db):\n    pass\n", "sys.exit()"),
    "sys.exit()": ("import sys\nsys.exit()\n\n\ndef up(db):\n    pass\n", "sys.exit()"),
    "BaseException": ("class Odd(BaseException):\n    pass\n\n\nraise Odd('odd')\n", "Odd: odd"),
    "no up": ("def upx(db):\n    pass\n", "defines no up(db)"),
    "up = 5": ("up = 5\n", "up is a int"),
    "up()": ("def up():\n    pass\n", "cannot be called as up(db)"),
    "up(db, x)": ("def up(db, x):\n    pass\n", "cannot be called as up(db)"),
    "down = 'x'": ("def up(db):\n    pass\n\n\ndown = 'x'\n", "down is a str"),
}


@pytest.mark.slow
def test_migrate_loads_every_mongo_migration_before_the_first_sql_one(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    (tmp_path / "sql" / "migrations" / "0002_t.sql").write_text("-- add t\nCREATE TABLE t_half (x int);\n")
    (tmp_path / "sql" / "migrations" / "0002_t.rollback.sql").write_text("DROP TABLE t_half;\n")
    module = tmp_path / "mongo_migrations" / "0001_m.py"
    sql_before, mongo_before = sql_applied(sql_settings), mongo_ledger(mongo_settings)
    for case, (body, said) in BROKEN_MODULES.items():
        module.write_text('"""m"""\n' + body)
        for dry in ((), ("--dry-run",)):
            result = run_dbp("migrate", *dry, env=project)
            assert result.returncode == 1, (case, dry, result.stdout, result.stderr)
            line = one_error_line(result)
            assert "0001_m" in line and said in line, (case, line)
            assert "applied" not in result.stdout, (case, result.stdout)
            assert sql_applied(sql_settings) == sql_before, case
            assert mongo_ledger(mongo_settings) == mongo_before, case
        status = ok(run_dbp("status", env=project)).stdout
        assert "pending      0001_m" in status, (case, status)  # never recorded as failed: it never ran
    with SQLConnection(settings=sql_settings) as db:
        assert db.execute("SELECT to_regclass('public.t_half') AS t").fetchone() == {"t": None}
    module.write_text('"""m"""\nimport sys\nsys.modules.setdefault("dbp_adv_loaded", [])\n\n\n'
                      "def up(db):\n    db.create_collection('m_done')\n")
    done = ok(run_dbp("migrate", env=project))
    assert "sql: 1 migration(s) applied" in done.stdout and "mongo: 1 migration(s) applied" in done.stdout


def test_one_engine_migrate_and_rollback_load_every_module_before_the_first_runs(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], mongo_settings: MongoSettings
) -> None:
    folder = tmp_path / "mongo_migrations"
    good = ('"""{0}"""\n\n\ndef up(db):\n    db.create_collection("{0}")\n\n\n'
            'def down(db):\n    db.drop_collection("{0}")\n')
    (folder / "0001_a.py").write_text(good.format("a"))
    (folder / "0002_b.py").write_text('"""b"""\nraise ValueError("broken b")\n')
    result = run_dbp("migrate", "--engine", "mongo", env=project)
    assert result.returncode == 1 and "0002_b" in one_error_line(result), result.stderr
    with MongoConnection(settings=mongo_settings) as db:  # 0001_a did not run either
        assert "a" not in db.database.list_collection_names()
    (folder / "0002_b.py").write_text(good.format("b"))
    ok(run_dbp("migrate", "--engine", "mongo", env=project))
    # rollback of both: 0001_a's module breaks; 0002_b's down must not run
    (folder / "0001_a.py").write_text(good.format("a") + "\nraise RuntimeError('late')\n")
    back = run_dbp("rollback", "--engine", "mongo", "--steps", "2", env=project)
    assert back.returncode == 1 and "0001_a" in one_error_line(back) and "late" in back.stderr, back.stderr
    with MongoConnection(settings=mongo_settings) as db:
        assert {"a", "b"} <= set(db.database.list_collection_names())
    assert ("0002_b", "applied") in mongo_ledger(mongo_settings)


def test_a_python_sql_migration_that_exits_is_one_line(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], sql_settings: SQLSettings
) -> None:
    (tmp_path / "sql" / "migrations" / "0002_py.py").write_text("import sys\nsys.exit(5)\n")
    before = sql_applied(sql_settings)
    for dry in ((), ("--dry-run",)):
        result = run_dbp("migrate", *dry, env=project)
        assert result.returncode == 1, (result.stdout, result.stderr)
        line = one_error_line(result)
        assert "0002_py" in line and "sys.exit()" in line, line
    assert sql_applied(sql_settings) == before


# -- finding 3: initdb reaches every server before it creates anything --------------------------------------


def test_initdb_creates_nothing_when_a_server_is_down_or_refuses(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    ok(run_dbp("init-project"))
    absent = sql_settings.with_database(sql_settings.database + "_new")
    good_sql, good_mongo = sql_section(absent)["URL"], mongo_url(mongo_settings)
    down_sql = f"postgresql://postgres@127.0.0.1:{closed_port()}/x?connect_timeout=2"
    down_mongo = f"mongodb://127.0.0.1:{closed_port()}/x?serverSelectionTimeoutMS=500"
    refused_mongo = with_userinfo(good_mongo, "dbp:wrong-password")
    try:
        for sql_url, mongo, code in ((good_sql, down_mongo, 69), (good_sql, refused_mongo, 77),
                                     (down_sql, good_mongo, 69)):
            result = run_dbp("initdb", env={"DBP_SQL_URL": sql_url, "DBP_MONGO_URL": mongo})
            assert result.returncode == code, (mongo, result.stdout, result.stderr)
            one_error_line(result)
            assert result.stdout == ""
            assert not SQLConnection(settings=absent).database_exists()
            with MongoConnection(settings=mongo_settings) as db:
                assert db.database.list_collection_names() == []
        # a Mongo database with data but no ledger is refused before the SQL database is created
        with MongoConnection(settings=mongo_settings) as db:
            db.database["theirs"].insert_one({"x": 1})
        refused = run_dbp("initdb", env={"DBP_SQL_URL": good_sql, "DBP_MONGO_URL": good_mongo})
        assert refused.returncode == 1 and "theirs" in one_error_line(refused) and "--adopt" in refused.stderr
        assert not SQLConnection(settings=absent).database_exists()
        with MongoConnection(settings=mongo_settings) as db:
            db.database.drop_collection("theirs")
        done = ok(run_dbp("initdb", env={"DBP_SQL_URL": good_sql, "DBP_MONGO_URL": good_mongo}))
        assert "sql: created database" in done.stdout and "mongo: created" in done.stdout
    finally:
        SQLConnection(settings=absent).drop_db()


# -- finding 9: unknown keys in collections.toml (and positions.toml) -----------------------------------------


TYPOS = [
    ("indexes = [", "indexs = [", "'indexs'"),
    ("fields = [", "feilds = [", "'feilds'"),
    ("position = {", "positon = {", "'positon'"),
    ('name = "object"', 'name = "object"\nbogus = 1', "'bogus'"),
    ('{ name = "oid", keys = [["oid", 1]] }', '{ name = "oid", keys = [["oid", 1]], uniqe = true }', "'uniqe'"),
    ("[[collection]]", "[[collections]]\nname = \"x\"\n\n[[collection]]", "'collections'"),
    ("[[collection]]", "collection = 5\n[[other]]", "collection"),
]


@pytest.mark.parametrize("typo", [pytest.param(t, id=t[2], marks=[pytest.mark.slow] if k > 1 else [])
                                  for k, t in enumerate(TYPOS)])
def test_unknown_keys_in_collections_toml_are_refused_everywhere(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], mongo_settings: MongoSettings, typo: tuple[str, str, str]
) -> None:
    declared = tmp_path / "mongo_migrations" / "collections.toml"
    good = declared.read_text()
    edit(declared, typo[:2])
    before, ledger = files_of(tmp_path), mongo_ledger(mongo_settings)
    for command in (["check"], ["make_migrations", "typo"], ["initdb"], ["migrate"], ["status"]):
        result = run_dbp(*command, "--engine", "mongo", env=project)
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        line = one_error_line(result)
        assert str(declared) in line and typo[2] in line, (command, line)
        assert files_of(tmp_path) == before and mongo_ledger(mongo_settings) == ledger
    declared.write_text(good)
    assert ok(run_dbp("check", "--engine", "mongo", env=project)).stdout.count("no drift") == 1


def test_unknown_keys_in_positions_toml_are_refused_before_anything_runs(
    run_dbp: Any, tmp_path: Path, project: dict[str, str]
) -> None:
    positions = tmp_path / "sql" / "positions.toml"
    edit(positions, ('ra = "meanra"', 'ra = "meanra"\nrA = "x"'))
    for command in (["check"], ["migrate"], ["make_migrations", "x"]):
        result = run_dbp(*command, "--engine", "sql", env=project)
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        line = one_error_line(result)
        assert "positions.toml" in line and "'rA'" in line, line


# -- finding 4: make_migrations stopped between its file moves -----------------------------------------------


HOOK = """
import os, signal
# Python keeps SIGINT ignored when it starts ignored (under a shell's background job): act as on a terminal
signal.signal(signal.SIGINT, signal.default_int_handler)
_link = os.link
_calls = [0]


def _hooked(*args, **kwargs):
    _link(*args, **kwargs)
    _calls[0] += 1
    if _calls[0] == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["SIG"]))


os.link = _hooked
"""


@pytest.fixture
def hooked(tmp_path: Path) -> dict[str, str]:
    """An environment whose dbp sends itself a signal right after its n-th os.link (fault injection)."""
    folder = tmp_path.parent / f"{tmp_path.name}-hook"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(textwrap.dedent(HOOK))
    return {"PYTHONPATH": f"{ROOT}:{folder}"}


def migration_files(project: Path) -> list[str]:
    return [f for f in files_of(project) if f.startswith(("sql/migrations/", "mongo_migrations/0"))]


@pytest.mark.parametrize(("after", "sig"), [(1, "INT"), *(pytest.param(a, s, marks=pytest.mark.slow)
                                                         for a, s in [(1, "TERM"), (2, "INT"), (2, "TERM")])])
def test_make_migrations_interrupted_between_moves_leaves_nothing(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], hooked: dict[str, str], sig: str, after: int
) -> None:
    edit(tmp_path / "sql" / "schema" / "002_step.sql", ADD_OWNER)
    edit(tmp_path / "mongo_migrations" / "collections.toml", ADD_MJD)
    before = files_of(tmp_path)
    result = run_dbp("make_migrations", "sig", env={**project, **hooked, "SIG": sig, "KILL_AFTER": str(after)})
    expected = 130 if sig == "INT" else -signal.SIGTERM
    assert result.returncode == expected, (result.returncode, result.stdout, result.stderr)
    assert "wrote" not in result.stdout
    assert files_of(tmp_path) == before  # no file of the run, no temporary file, no journal
    made = ok(run_dbp("make_migrations", "sig", env=project))
    assert len(made.stdout.splitlines()) == 3, made.stdout


def test_make_migrations_killed_between_moves_is_refused_by_migrate_and_undone_by_the_next_run(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], hooked: dict[str, str], sql_settings: SQLSettings,
    mongo_settings: MongoSettings
) -> None:
    edit(tmp_path / "sql" / "schema" / "002_step.sql", ADD_OWNER)
    edit(tmp_path / "mongo_migrations" / "collections.toml", ADD_MJD)
    before = migration_files(tmp_path)
    killed = run_dbp("make_migrations", "kill", env={**project, **hooked, "SIG": "KILL", "KILL_AFTER": "2"})
    assert killed.returncode == -signal.SIGKILL
    left = migration_files(tmp_path)
    # the Mongo migration and the SQL rollback are in place; the SQL migration (placed last) is not
    assert "sql/migrations/0002_kill.rollback.sql" in left and "sql/migrations/0002_kill.sql" not in left, left
    sql_before, mongo_before = sql_applied(sql_settings), mongo_ledger(mongo_settings)
    for command in (["migrate"], ["migrate", "--dry-run"], ["check"], ["initdb"]):
        refused = run_dbp(*command, env=project)
        assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
        line = one_error_line(refused)
        assert "make_migrations" in line and "0001_kill.py" in line, line
    assert sql_applied(sql_settings) == sql_before and mongo_ledger(mongo_settings) == mongo_before
    made = ok(run_dbp("make_migrations", "again", env=project))
    assert "stopped before it wrote all its files" in made.stderr
    assert sorted(set(migration_files(tmp_path)) - set(before)) == [
        "mongo_migrations/0001_again.py", "sql/migrations/0002_again.rollback.sql", "sql/migrations/0002_again.sql"]
    assert not [f for f in files_of(tmp_path) if ".tmp" in f or ".dbp-writing" in f]  # no temporary, no journal
    ok(run_dbp("migrate", env=project))


def test_a_run_killed_after_its_last_move_is_kept(
    run_dbp: Any, tmp_path: Path, project: dict[str, str], hooked: dict[str, str]
) -> None:
    edit(tmp_path / "sql" / "schema" / "002_step.sql", ADD_OWNER)
    killed = run_dbp("make_migrations", "done", env={**project, **hooked, "SIG": "KILL", "KILL_AFTER": "2"})
    assert killed.returncode == -signal.SIGKILL
    assert "sql/migrations/0002_done.sql" in files_of(tmp_path)  # both placed, then killed before its clean-up
    leftovers = [f for f in files_of(tmp_path) if ".tmp" in f or ".dbp-writing" in f]
    assert leftovers  # its temporary files and journal: ignored by migrate, removed by the next make_migrations
    assert "sql: 1 migration(s) applied" in ok(run_dbp("migrate", "--engine", "sql", env=project)).stdout
    assert "no changes" in ok(run_dbp("make_migrations", "--engine", "sql", "none", env=project)).stdout
    assert not [f for f in files_of(tmp_path) if ".tmp" in f or ".dbp-writing" in f]
    assert "sql/migrations/0002_done.sql" in files_of(tmp_path)


# -- finding 10: a Mongo database that does not exist is MISSING, as on PostgreSQL -----------------------------


def test_check_config_says_missing_for_a_missing_database_on_both_engines(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    absent_sql = sql_settings.with_database(sql_settings.database + "_absent")
    env = {"DBP_SQL_URL": sql_section(absent_sql)["URL"], "DBP_MONGO_URL": mongo_url(mongo_settings)}
    ok(run_dbp("init-project"))
    for engine in ("sql", "mongo"):
        result = run_dbp("check-config", "--engine", engine, env=env)
        assert result.returncode == 66, (engine, result.stdout, result.stderr)
        assert result.stdout.splitlines()[-1].split()[2] == "MISSING", result.stdout
        line = one_error_line(result)
        assert "does not exist" in line and "dbp initdb" in line, line
        status = run_dbp("status", "--engine", engine, "--exit-code", env=env)
        assert status.returncode == 4 and "not initialized" in status.stdout, (engine, status.stdout)
    try:
        ok(run_dbp("initdb", env=env))
        assert ok(run_dbp("check-config", env=env)).stdout.count("reachable") == 2
    finally:
        SQLConnection(settings=absent_sql).drop_db()


# -- finding 12: check's wording for a migration whose file is gone ----------------------------------------


def test_check_does_not_call_a_missing_migration_not_applied(
    run_dbp: Any, tmp_path: Path, project: dict[str, str]
) -> None:
    (tmp_path / "sql" / "migrations" / "0001_cone_search_indexes.sql").rename(tmp_path / "gone.sql")
    result = run_dbp("check", "--engine", "sql", env=project)
    assert result.returncode == 4, result.stdout
    assert "0001_cone_search_indexes (missing)" in result.stdout and "not applied" not in result.stdout
