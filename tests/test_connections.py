"""Both connections against real servers: the shared contract, then each engine's extras."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import dbp
from dbp import MongoConnection, OperationError, ServerUnavailable, SQLConnection
from dbp.config import resolve_config
from dbp.mongo.settings import MongoSettings
from dbp.sql.settings import SQLSettings

from .conftest import ROOT, with_userinfo


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(params=["sql", "mongo"])
def engine_settings(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_settings")


def connection_for(settings: Any) -> Any:
    cls = SQLConnection if isinstance(settings, SQLSettings) else MongoConnection
    return cls(settings=settings)


# -- the contract, on both engines ---------------------------------------------


def test_contract_connect_ping_close(engine_settings: Any) -> None:
    db = connection_for(engine_settings)
    assert db.closed
    assert db.connect() is db
    assert not db.closed
    assert db.ping() >= 0
    assert db.server_version().split()[0] in ("PostgreSQL", "MongoDB")
    db.close()
    assert db.closed
    db.close()  # closing twice is harmless
    with pytest.raises(OperationError, match="not open"):
        db.ping()


def test_context_manager_closes_on_error(engine_settings: Any) -> None:
    db = connection_for(engine_settings)
    with pytest.raises(RuntimeError), db:
        assert not db.closed
        raise RuntimeError("boom")
    assert db.closed


def test_create_and_drop_db(engine_settings: Any) -> None:
    other = engine_settings.with_database(engine_settings.database + "_x")
    db = connection_for(other)
    assert db.create_db() is True
    assert db.create_db() is False  # idempotent
    with connection_for(other) as again:
        again.ping()
    assert db.drop_db() is True
    assert db.drop_db() is False


def test_connect_factory(engine_settings: Any) -> None:
    engine = "sql" if isinstance(engine_settings, SQLSettings) else "mongo"
    with dbp.connect(_config_for(engine_settings), engine=engine) as db:
        assert db.ping() >= 0
        assert db.address == engine_settings.address
    assert db.closed


def _config_for(settings: Any) -> dict[str, Any]:
    if isinstance(settings, SQLSettings):
        from .conftest import sql_section

        return {"SQL": sql_section(settings)}
    return {"MONGO": {"URL": settings.host, "DATABASE": settings.database}}


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_down_server_fails_fast_naming_host_port(engine: str) -> None:
    port = closed_port()
    section = (
        {"SQL": {"HOST": "127.0.0.1", "PORT": port, "USER": "u", "DB_NAME": "d", "OPTIONS": {"connect_timeout": 2}}}
        if engine == "sql"
        else {"MONGO": {"HOST": "127.0.0.1", "PORT": port, "DATABASE": "d", "SERVER_SELECTION_TIMEOUT_MS": 1500}}
    )
    start = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{port}"):
        dbp.connect(section, engine=engine)
    assert time.monotonic() - start < 2 + 1


# -- PostgreSQL ------------------------------------------------------------------


def test_sql_rows_are_dicts_and_params_are_bound(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
    sql_db.execute("INSERT INTO t VALUES (%s, %s), (%s, %s)", (1, "a'; DROP TABLE t; --", 2, "b"))
    rows = sql_db.execute("SELECT * FROM t WHERE id >= %(low)s ORDER BY id", {"low": 1}).fetchall()
    assert rows == [{"id": 1, "name": "a'; DROP TABLE t; --"}, {"id": 2, "name": "b"}]


def test_sql_transaction_commits_and_rolls_back(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with sql_db.transaction():
        sql_db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ZeroDivisionError), sql_db.transaction():
        sql_db.execute("INSERT INTO t VALUES (2)")
        _ = 1 / 0
    assert [r["id"] for r in sql_db.execute("SELECT id FROM t")] == [1]


def test_sql_nested_transactions_are_savepoints(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with sql_db.transaction():
        sql_db.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(dbp.QueryError) as info, sql_db.transaction():
            sql_db.execute("INSERT INTO t VALUES (3)")
            sql_db.execute("INSERT INTO t VALUES (1)")
        assert info.value.sqlstate == "23505"
        assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
        sql_db.execute("INSERT INTO t VALUES (2)")
    assert sorted(r["id"] for r in sql_db.execute("SELECT id FROM t")) == [1, 2]


def test_sql_unknown_role_is_refused_naming_address(sql_settings: SQLSettings) -> None:
    params = {**sql_settings.params, "user": "no_such_role_x"}
    with pytest.raises(dbp.AuthenticationFailed) as info:
        SQLConnection(settings=SQLSettings(params=params)).connect()
    assert sql_settings.address.split("/")[0] in str(info.value)
    assert "no_such_role_x" in str(info.value)


def test_sql_pool_serves_threads(sql_settings: SQLSettings) -> None:
    pooled = SQLSettings(params=sql_settings.params, pool={"min_size": 1, "max_size": 3})
    with SQLConnection(settings=pooled) as db:
        db.execute("CREATE TABLE hits (n int)")
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(10):
                    with db.transaction() as conn:
                        conn.execute("INSERT INTO hits VALUES (pg_backend_pid())")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with db.connection() as conn:
            stats = conn.execute("SELECT count(*) AS n, count(DISTINCT n) AS pids FROM hits").fetchone()
        assert stats is not None
        assert stats["n"] == 40
        assert 1 <= stats["pids"] <= 3
    assert db.closed


def test_sql_unclosed_pool_exits_cleanly(sql_settings: SQLSettings, tmp_path: Path) -> None:
    """A script that forgets close() must neither hang nor warn at interpreter exit."""
    script = tmp_path / "forget.py"
    script.write_text(
        "import sys, dbp\n"
        f"db = dbp.connect({{'SQL': {_sql_section_repr(sql_settings)}}}, engine='sql')\n"
        "db.execute('SELECT 1')\n"
        "print('done')\n"
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert proc.stderr == ""
    assert time.monotonic() - start < 10


def _sql_section_repr(settings: SQLSettings) -> str:
    from .conftest import sql_section

    section = sql_section(settings)
    section["POOL"] = {"min_size": 2, "max_size": 4}
    return repr(section)


# -- MongoDB ---------------------------------------------------------------------


def test_mongo_database_and_collection(mongo_db: MongoConnection) -> None:
    mongo_db.collection("things").insert_one({"_id": 1, "x": "y"})
    assert mongo_db.database.name == mongo_db.settings.database
    assert mongo_db.collection("things").find_one({"_id": 1}) == {"_id": 1, "x": "y"}


def test_mongo_refused_credentials(mongo_settings: MongoSettings) -> None:
    url = with_userinfo(mongo_settings.host, "nobody:wrong-pw-7")
    config = resolve_config({"MONGO": {"URL": url, "DATABASE": "d"}}, environ={})
    with pytest.raises(dbp.AuthenticationFailed) as info:
        dbp.connect(config, engine="mongo")
    message = str(info.value)
    assert "refused the credentials" in message
    assert mongo_settings.address.split("/")[0] in message
    assert "wrong-pw-7" not in message
