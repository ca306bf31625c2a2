"""Hostile input gets a fast, clear DbpError: settings files, URLs, migration names and secrets, API arguments."""

from __future__ import annotations

import ast
import json
import os
import traceback
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbp
from dbp import ConfigError, DbpError, FilterError, QueryError
from dbp.config import load_config, resolve_config
from dbp.errors import MAX_MESSAGE
from dbp.mongo.connection import MongoConnection
from dbp.mongo.migrations import make_migration as mongo_make_migration
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.migrations import make_migration as sql_make_migration
from dbp.sql.settings import SQLSettings
from dbp.sqltext import split_statements
from tests.hyp import examples

from .conftest import sql_section, with_userinfo
from .projects import make_project


def chain(exc: BaseException) -> list[BaseException]:
    out, todo = [], [exc]
    while todo:
        item = todo.pop()
        if item is not None and item not in out:
            out.append(item)
            todo += [item.__cause__, item.__context__]  # type: ignore[list-item]
    return out


def everything_said(exc: BaseException) -> str:
    return "\n".join(
        "".join(traceback.format_exception(type(e), e, e.__traceback__)) + repr(e.args) for e in chain(exc)
    )


# -- hostile settings files ------------------------------------------------------------------


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path, run_dbp: Any) -> None:
    path = tmp_path / "dbp.toml"
    path.write_text("[DB_CONFIG.SQL]\nOPTIONS = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"nests too deeply|more than 100 levels"):
        load_config(path, environ={})
    path.write_text("DB_CONFIG = {SQL = " + "{a = " * 200 + "1" + "}" * 200 + "}\n")
    with pytest.raises(ConfigError, match="nest"):
        load_config(path, environ={})
    result = run_dbp("status")
    assert result.returncode == 78, result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_deeply_nested_python_settings_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.py"
    path.write_text("x = 1\nfor _ in range(500):\n    x = {'a': x}\nDB_CONFIG = {'SQL': {'OPTIONS': x}}\n")
    with pytest.raises(ConfigError, match="more than 100 levels"):
        load_config(path, environ={})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_devices_are_refused_not_read(tmp_path: Path, run_dbp: Any) -> None:
    fifo = tmp_path / "dbp.toml"
    os.mkfifo(fifo)  # reading it would block for ever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo, environ={})
    result = run_dbp("status", timeout=30)
    assert result.returncode == 78 and "not a regular file" in result.stderr
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config("/dev/zero", environ={})  # reading it would never end
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(2 << 20)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big, environ={})


def test_half_a_million_unknown_keys_give_a_bounded_message(tmp_path: Path, run_dbp: Any) -> None:
    path = tmp_path / "settings.py"
    path.write_text("DB_CONFIG = {'SQL': {'HOST': 'h', 'USER': 'u', 'DB_NAME': 'd', "
                    "**{f'K{i}': 1 for i in range(500_000)}}}\n")
    with pytest.raises(ConfigError, match="unknown key") as info:
        load_config(path, environ={})
    assert len(str(info.value)) < 1000
    result = run_dbp("check-config")
    assert result.returncode == 78
    assert len(result.stderr) < 1000


@pytest.mark.parametrize("command", [["migrate"], ["status", "--exit-code"], ["dropdb", "--yes"], ["check-config"]])
@pytest.mark.parametrize("code", ["sys.exit(0)", "sys.exit('the password is hunter2-secret')", "raise SystemExit"])
def test_sys_exit_in_settings_is_a_config_error(tmp_path: Path, run_dbp: Any, command: list[str], code: str) -> None:
    (tmp_path / "settings.py").write_text(f"import sys\n{code}\nDB_CONFIG = {{}}\n")
    result = run_dbp(*command)
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert "sys.exit()" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_sys_exit_in_settings_does_not_exit_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "settings.py"
    path.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(ConfigError, match=r"sys.exit\(\) at line 2"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "code",
    [
        "secrets = {}\nDB_CONFIG = {'SQL': {'PASSWORD': secrets['Hunter2-secret-key']}}\n",
        "class C: pass\nDB_CONFIG = {'SQL': {'PASSWORD': C().Hunter2_secret_attr}}\n",
        "raise ValueError('Hunter2-secret-value')\n",
        "import json\njson.loads('{\"password\": \"Hunter2-secret\"')\n",
    ],
    ids=["KeyError", "AttributeError", "ValueError", "JSONDecodeError"],
)
def test_settings_exceptions_never_repeat_values(tmp_path: Path, run_dbp: Any, code: str) -> None:
    path = tmp_path / "settings.py"
    path.write_text(code)
    with pytest.raises(ConfigError, match="settings file raised") as info:
        load_config(path, environ={})
    assert "Hunter2" not in everything_said(info.value)  # __context__ and __cause__ included
    for verbose in ([], ["-vv"]):
        result = run_dbp(*verbose, "status")
        assert result.returncode == 78
        assert "Hunter2" not in result.stderr + result.stdout


def test_bad_percent_escape_in_url_keeps_no_secret_in_the_chain() -> None:
    url = "postgresql://u:Pa%" + "zz" + "SECRET@h/d"  # not spelt out: the traceback shows this line
    with pytest.raises(ConfigError) as info:
        resolve_config({"SQL": {"URL": url}}, environ={})
    assert "zzSECRET" not in everything_said(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None


@pytest.mark.parametrize("password", ["Tr0ub4dor&3/x", "Tr0ub4dor#3x", "Tr0ub4dor?3x", "p@ss"])
def test_unescaped_url_passwords_are_refused_without_quoting_them(password: str) -> None:
    for section in ({"SQL": {"URL": f"postgresql://alerce:{password}@127.0.0.1:5432/db"}},
                    {"MONGO": {"URL": f"mongodb://alerce:{password}@127.0.0.1:27017/db"}}):
        with pytest.raises(ConfigError, match="percent-encode") as info:
            resolve_config(section, environ={})
        said = everything_said(info.value)
        assert "Tr0ub4dor" not in said and "ss@127" not in said
    config_like = dbp.config.Config({"SQL": {"URL": f"postgresql://alerce:{password}@h:5432/db"}})
    assert "Tr0ub4dor" not in repr(config_like) and "p@ss" not in repr(config_like)


# -- a migration's own secrets ------------------------------------------------------------------


def test_failing_migration_keeps_no_literal(tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings,
                                            mongo_settings: MongoSettings) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    assert run_dbp("initdb", "--engine", "sql").returncode == 0
    project.sql_migration(
        "0001_role",
        "-- make a role\nCREATE ROLE dbp_hostile_role LOGIN PASSWORD 'Sekr1t-in-migration' NOSUCHOPTION;\n",
        "DROP ROLE dbp_hostile_role;\n",
    )
    result = run_dbp("-vv", "migrate", "--engine", "sql")
    assert result.returncode == 1
    assert "0001_role" in result.stderr and "CREATE ROLE dbp_hostile_role LOGIN PASSWORD '...'" in result.stderr
    outputs = [result.stdout + result.stderr]
    outputs += [run_dbp("status", "--engine", "sql").stdout, run_dbp("status", "--format", "json").stdout]
    with SQLConnection(settings=sql_settings) as db:
        outputs.append(str(db.execute("SELECT error FROM _dbp_migrations").fetchall()))
    assert "failed" in outputs[1]
    for text in outputs:
        assert "Sekr1t" not in text


def test_sys_exit_in_mongo_migration_is_a_failed_migration(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    assert run_dbp("initdb", "--engine", "mongo").returncode == 0
    project.mongo_migration("0001_exit", "import sys\nsys.exit(0)")
    result = run_dbp("migrate", "--engine", "mongo")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sys.exit()" in result.stderr
    status = json.loads(run_dbp("status", "--format", "json", "--engine", "mongo").stdout)
    assert status["engines"]["mongo"]["migrations"][0]["state"] == "failed"


def test_sys_exit_in_a_python_sql_migration_is_a_failure(
    tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    project = make_project(tmp_path, sql_settings, mongo_settings)
    assert run_dbp("initdb", "--engine", "sql").returncode == 0
    (project.sql_migrations / "0001_exit.py").write_text(
        "import sys\nfrom yoyo import step\nsys.exit('Hunter2-in-exit')\nsteps = [step('SELECT 1')]\n")
    result = run_dbp("migrate", "--engine", "sql")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sys.exit()" in result.stderr and "Hunter2" not in result.stdout + result.stderr


# -- make_migrations NAME ------------------------------------------------------------------------

HOSTILE_NAMES = [
    "add index\nDROP TABLE victim;",
    'x"""\nimport os; os.system("touch /tmp/pwned")\n"""',
    "tab\r\nDROP TABLE victim; --",
    "back\\slash\\\nquote'\"",
    "line\u2028separator\x0bvertical\x0cform\x1cfile\x85next",
]


@given(name=st.text(
    alphabet=st.sampled_from(list("ab_ 01\n\r\"'\\#;-*/$\u2028\x00\x0b\x85")) | st.characters(),
    min_size=1, max_size=80,
).filter(lambda n: any(c.isascii() and c.isalnum() for c in n)))
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_make_migrations_name_writes_only_the_intended_text(name: str, tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("names")
    (folder / "sql" / "schema").mkdir(parents=True)
    (folder / "mongo").mkdir()
    (folder / "mongo" / "collections.toml").write_text("")
    sql_db = SQLConnection(settings=SQLSettings(params={"dbname": "unused"}, schema_dir=folder / "sql"))
    mongo_db = MongoConnection(settings=MongoSettings(host="h", database="unused", schema_dir=folder / "mongo"))
    (apply_path, rollback_path) = sql_make_migration(sql_db, name, empty=True)
    (module_path,) = mongo_make_migration(mongo_db, name, empty=True)
    for path in (apply_path, rollback_path, module_path):
        assert all(c.isascii() and (c.isalnum() or c in "_.") for c in path.name)
    assert split_statements(apply_path.read_text()) == []  # comments only: nothing runs
    assert split_statements(rollback_path.read_text()) == []
    lines = apply_path.read_text().splitlines()
    assert all(line.startswith("--") or not line.strip() for line in lines)
    tree = ast.parse(module_path.read_text())
    assert [type(node).__name__ for node in tree.body] == ["Expr", "FunctionDef", "FunctionDef"]
    assert [f.name for f in tree.body[1:]] == ["up", "down"]  # type: ignore[attr-defined]
    for function in tree.body[1:]:
        assert [type(n).__name__ for n in function.body] == ["Pass"]  # type: ignore[attr-defined]
    compile(module_path.read_text(), str(module_path), "exec")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_make_migrations_name_cannot_inject(
    name: str, tmp_path: Path, run_dbp: Any, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    """The generated migrations, applied by migrate, run nothing: the victim table survives."""
    make_project(tmp_path, sql_settings, mongo_settings)
    assert run_dbp("initdb").returncode == 0
    with SQLConnection(settings=sql_settings) as db:
        db.execute("CREATE TABLE victim (id int)")
    made = run_dbp("make_migrations", name, "--empty")
    assert made.returncode == 0, made.stderr
    migrated = run_dbp("migrate")
    assert migrated.returncode == 0, migrated.stderr
    with SQLConnection(settings=sql_settings) as db:
        assert db.execute("SELECT count(*) AS n FROM victim").fetchone() == {"n": 0}
    assert not Path("/tmp/pwned").exists()


# -- URLs ------------------------------------------------------------------------------------------


def test_sql_url_parameters_are_decoded_as_libpq_does(sql_settings: SQLSettings) -> None:
    url = sql_section(sql_settings)["URL"]
    joiner = "&" if "?" in url else "?"
    url += f"{joiner}options=-c%20statement_timeout%3D1234&application_name=my%20app+x"
    with dbp.connect({"SQL": {"URL": url}}, engine="sql") as db:
        assert db.execute("SHOW statement_timeout").fetchone() == {"statement_timeout": "1234ms"}
        assert db.execute("SHOW application_name").fetchone() == {"application_name": "my app+x"}


def test_url_may_come_with_user_and_password(sql_settings: SQLSettings, mongo_settings: MongoSettings) -> None:
    url = sql_section(sql_settings)["URL"].replace("postgres@", "nobody@")
    config = resolve_config({"SQL": {"URL": url, "USER": "postgres", "PASSWORD": "unused-pw-1"}}, environ={})
    assert config.settings("sql").params["user"] == "postgres"  # type: ignore[attr-defined]
    assert "unused-pw-1" not in repr(config) + repr(config.settings("sql"))
    with dbp.connect(config, engine="sql") as db:
        assert db.execute("SELECT current_user AS u").fetchone() == {"u": "postgres"}
    with pytest.raises(ConfigError, match="either URL or HOST"):
        resolve_config({"SQL": {"URL": url, "HOST": "h"}}, environ={})
    mongo = resolve_config({"MONGO": {"URL": mongo_settings.host, "DATABASE": "d", "USERNAME": "u",
                                      "PASSWORD": "mongo-pw-2"}}, environ={}).settings("mongo")
    assert mongo.options["username"] == "u" and mongo.options["password"] == "mongo-pw-2"  # type: ignore[attr-defined]
    assert "mongo-pw-2" not in repr(mongo) and "u:***@" in mongo.masked_url()


def test_mongo_url_server_selection_timeout_is_honoured() -> None:
    settings_ = resolve_config({"MONGO": {"URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=700",
                                          "DATABASE": "d"}}, environ={}).settings("mongo")
    assert settings_.timeout_seconds == 0.7  # type: ignore[attr-defined]
    assert "serverSelectionTimeoutMS" not in settings_.options  # type: ignore[attr-defined]  # the URL's wins
    with pytest.raises(dbp.ServerUnavailable, match=r"timeout 0.7 s"):
        dbp.connect(settings_and_config(settings_), engine="mongo")


def settings_and_config(settings_: Any) -> dict[str, Any]:
    return {"MONGO": {"URL": settings_.host, "DATABASE": settings_.database}}


def test_pool_max_size_alone_works(sql_settings: SQLSettings) -> None:
    section = {**sql_section(sql_settings), "POOL": {"max_size": 2}}
    with dbp.connect({"SQL": section}, engine="sql") as db:
        assert db.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    with pytest.raises(ConfigError, match="min_size"):
        resolve_config({"SQL": {**section, "POOL": {"max_size": 2, "min_size": 3}}}, environ={}).settings("sql")


@pytest.mark.parametrize("url", [
    "mongodb://u:pw@{hosts}/d?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:Tok3nSecret",
    "mongodb+srv://u:pw@no-such-host.invalid/d",
])
def test_mongo_urls_pymongo_cannot_use_are_config_errors(
    url: str, run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    url = url.format(hosts=mongo_settings.address.split("/")[0])
    (tmp_path / "settings.py").write_text(
        f"DB_CONFIG = {{'SQL': {sql_section(sql_settings)!r}, 'MONGO': {{'URL': {url!r}}}}}\n")
    result = run_dbp("check-config", timeout=60)
    assert result.returncode == 78, result.stderr  # a configuration pymongo cannot use: never a raw error
    assert "Traceback" not in result.stderr and "Tok3nSecret" not in result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "reachable" in lines["sql"], result.stdout  # the SQL row is still there
    assert "mongo" in lines


# -- the public API: every malformed argument is a DbpError ---------------------------------------

BAD_CALLS: dict[str, Callable[[Any], Any]] = {
    "paginate page str": lambda q: q.paginate(page="2"),
    "paginate page None": lambda q: q.paginate(page=None),
    "paginate page float": lambda q: q.paginate(page=1.5),
    "paginate per_page str": lambda q: q.paginate(per_page="10"),
    "paginate per_page None": lambda q: q.paginate(per_page=None),
    "paginate per_page float": lambda q: q.paginate(per_page=2.5),
    "paginate max_results str": lambda q: q.paginate(max_results="5"),
    "paginate huge page": lambda q: q.paginate(page=10**30, per_page=10),
    "paginate after int": lambda q: q.paginate(after=5),
    "find_all batch_size str": lambda q: list(q.find_all(paginate=False, batch_size="x")),
    "find_all batch_size 0": lambda q: list(q.find_all(paginate=False, batch_size=0)),
    "find_all batch_size -1": lambda q: list(q.find_all(paginate=False, batch_size=-1)),
    "find_all batch_size huge": lambda q: list(q.find_all(paginate=False, batch_size=10**12)),
    "find_all unknown kwarg": lambda q: list(q.find_all(paginate=False, bogus=1)),
    "count limit str": lambda q: q.count(limit="3"),
    "count limit float": lambda q: q.count(limit=2.5),
    "count limit huge": lambda q: q.count(limit=10**30),
    "find_one filter list": lambda q: q.find_one(["a"]),
    "find_one sort str": lambda q: q.find_one(sort="n"),
    "find_one projection int": lambda q: q.find_one(projection=5),
    "find_one nested 500": lambda q: q.find_one(_nested(500)),
    "find_one long name": lambda q: q.find_one({"a" * 100_000: 1}),
    "check_exists filter int": lambda q: q.check_exists(5),
    "update empty": lambda q: q.update({"n": 1}, {}),
    "delete filter str": lambda q: q.delete("everything"),
    "bulk_insert bad mode": lambda q: q.bulk_insert([{"n": 1}], on_conflict="maybe"),
    "get_or_create operator filter": lambda q: q.get_or_create({"n": {"$gt": 1}}),
    "get_or_create filter str": lambda q: q.get_or_create("n"),
    "update attrs str": lambda q: q.update({"n": 1}, "n=2"),
    "update attrs list": lambda q: q.update({"n": 1}, [("n", 2)]),
    "bulk_insert rows int": lambda q: q.bulk_insert(5),
    "bulk_insert rows str": lambda q: q.bulk_insert("rows"),
    "bulk_insert rows of ints": lambda q: q.bulk_insert([1, 2]),
    "bulk_update unequal": lambda q: q.bulk_update([{"n": 1}], [{"n": 2}, {"n": 3}]),
    "bulk_update instances dict": lambda q: q.bulk_update({"n": 1}, [{"n": 2}]),
    "bulk_update attrs of str": lambda q: q.bulk_update([{"n": 1}], ["n"]),
}


#: Calls that are malformed for a table's catalog only: MongoDB takes any field name.
SQL_ONLY = {"find_one long name"}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"n": 1}
    for _ in range(depth):
        value = {"$or": [value]}
    return value


@pytest.fixture(params=["sql", "mongo"])
def query(request: pytest.FixtureRequest) -> Any:
    if request.param == "sql":
        db: Any = request.getfixturevalue("sql_db")
        db.execute("CREATE TABLE t (n int PRIMARY KEY)")
        db.catalog(refresh=True)
    else:
        db = request.getfixturevalue("mongo_db")
    db.query("t").bulk_insert([{"n": 1}, {"n": 2}] if request.param == "sql" else [{"_id": 1, "n": 1}])
    return db.query("t")


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_public_methods_raise_dbp_errors_naming_the_argument(query: Any, call: str) -> None:
    if call in SQL_ONLY and not isinstance(query.db, SQLConnection):
        pytest.skip("a valid call on MongoDB")
    with pytest.raises(DbpError) as info:
        BAD_CALLS[call](query)
    assert len(str(info.value)) <= MAX_MESSAGE + 100
    argument = call.split()[1]
    if argument in ("page", "per_page", "batch_size", "limit", "max_results", "after"):
        assert argument in str(info.value)


@pytest.mark.parametrize("engine", ["sql", "mongo"])
@pytest.mark.parametrize("name", [["x"], None, 5, "", "a\x00b", "x" * 10_000])
def test_query_name_must_be_a_name(engine: str, name: Any, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue(f"{engine}_db")
    with pytest.raises(FilterError, match="name"):
        db.query(name)


def test_paginate_page_float_never_gives_a_wrong_page(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (n int PRIMARY KEY)")
    sql_db.query("t").bulk_insert([{"n": i} for i in range(30)])
    with pytest.raises(FilterError, match="page must be an integer"):
        sql_db.query("t").paginate(page=1.5, per_page=10)
    assert [r["n"] for r in sql_db.query("t").paginate(page=2, per_page=10).items] == list(range(10, 20))


def test_execute_wraps_driver_errors(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (n int PRIMARY KEY)")
    with pytest.raises(QueryError) as info:
        sql_db.execute("INSERT INTO t VALUES (%s::int)", ("x" * 1_000_000,))
    error = info.value
    assert error.sqlstate == "22P02"  # invalid_text_representation
    assert isinstance(error, DbpError)
    assert isinstance(error.__cause__, psycopg.errors.InvalidTextRepresentation)
    assert error.__context__ is None
    assert len(str(error)) <= MAX_MESSAGE and len(str(error.__cause__)) <= MAX_MESSAGE  # the value is cut
    with pytest.raises(QueryError) as dup:
        sql_db.execute("INSERT INTO t VALUES (1), (1)")
    assert dup.value.sqlstate == "23505"


def test_huge_values_and_names_fail_with_bounded_messages(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE u (id uuid PRIMARY KEY, n int)")
    queries = sql_db.query("u")
    for bad in ({"a" * 100_000: 1}, {"id": "x" * 10_000_000}, {"n": {"$exists": "x" * 10_000_000}}):
        with pytest.raises(DbpError) as info:
            queries.find_one(bad)
        assert len(str(info.value)) <= MAX_MESSAGE + 100


def test_unknown_tables_are_cheap_and_evict_nothing(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (n int PRIMARY KEY)")
    sql_db.query("t").find_one({"n": 1})
    catalog = sql_db.catalog()
    cached = dict(sql_db.statement_cache)
    assert cached
    for _ in range(20):
        with pytest.raises(FilterError, match="no table 'nope'"):
            sql_db.query("nope")
    assert sql_db.catalog() is catalog  # not re-read
    assert dict(sql_db.statement_cache) == cached  # nothing evicted
    sql_db.execute("CREATE TABLE nope (n int)")
    assert sql_db.query("nope").count() == 0  # a table created meanwhile is still found


def test_mongo_url_password_with_space_is_masked_everywhere(mongo_settings: MongoSettings) -> None:
    url = with_userinfo(mongo_settings.host, f"alerce:{quote('Summer 2024!')}")
    raw = with_userinfo(mongo_settings.host, "alerce:Summer 2024!")
    for given_url in (url, raw):
        config = resolve_config({"MONGO": {"URL": given_url, "DATABASE": "d"}}, environ={})
        conn = MongoConnection(config)
        for text in (repr(config), str(config), repr(config.settings("mongo")), repr(conn)):
            assert "Summer" not in text and "2024" not in text
