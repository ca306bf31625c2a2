"""Faults with real processes: servers stopped, restarted and killed under a live connection.

These tests start their OWN embedded PostgreSQL and SecantusDB (the session's
shared servers are never touched). Each time, the call that meets the fault
raises ServerUnavailable, the next call succeeds with no reconnect code here,
and no committed write is lost.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dbp
from dbp.config import resolve_config
from dbp.errors import ServerUnavailable
from dbp.local import LocalServers, free_port, port_open
from dbp.mongo.connection import MongoConnection
from dbp.sql import local as sql_local
from dbp.sql.connection import SQLConnection

from .conftest import server_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.own_servers,
]

TABLE = "CREATE TABLE item (id integer PRIMARY KEY, note text)"


@dataclass
class OwnPostgres:
    root: Path
    url: str

    def stop(self) -> None:
        assert sql_local.stop(self.root)

    def start(self) -> None:
        assert sql_local.start(self.root) == self.url  # same data directory, same socket

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def own_pg() -> Iterator[OwnPostgres]:
    root = server_root("dbp-test-faults-pg-")
    servers = LocalServers(root)
    url = servers.start(["sql"])["sql"]
    config = resolve_config({"SQL": {"URL": sql_local.section(url, "faults")["URL"]}}, environ={})
    SQLConnection(config).create_db()
    try:
        yield OwnPostgres(root, url)
    finally:
        servers.delete()  # also the data kept outside root (as root, PostgreSQL's)


def pg_config(own: OwnPostgres, **extra: Any) -> dict[str, Any]:
    return {"SQL": {**sql_local.section(own.url, "faults"), **extra}}


@pytest.fixture
def pg(own_pg: OwnPostgres) -> Iterator[SQLConnection]:
    if not sql_local.status(own_pg.root).running:
        own_pg.start()  # a failed test may have left it stopped
    with dbp.connect(pg_config(own_pg), engine="sql") as db:
        assert isinstance(db, SQLConnection)
        db.execute("DROP TABLE IF EXISTS item")
        db.execute(TABLE)
        yield db


def ids(db: SQLConnection) -> list[int]:
    return [r["id"] for r in db.execute("SELECT id FROM item ORDER BY id").fetchall()]


# -- PostgreSQL ------------------------------------------------------------------------------------


def test_sql_call_while_down_then_after_restart(own_pg: OwnPostgres, pg: SQLConnection) -> None:
    q = pg.query("item")
    q.bulk_insert([{"id": 1, "note": "before"}])
    own_pg.stop()
    with pytest.raises(ServerUnavailable, match="PostgreSQL"):
        q.find_one({"id": 1})
    with pytest.raises(ServerUnavailable):  # still down: still ServerUnavailable, never "not open"
        q.bulk_insert([{"id": 2}])
    own_pg.start()
    assert q.find_one({"id": 1}) == {"id": 1, "note": "before"}  # no reconnect code: it just works
    q.bulk_insert([{"id": 2, "note": "after"}])
    assert ids(pg) == [1, 2]


def test_sql_restart_between_calls(own_pg: OwnPostgres, pg: SQLConnection) -> None:
    q = pg.query("item")
    q.get_or_create({"id": 1}, note="kept")
    own_pg.restart()
    # The old server closed the session when it stopped; dbp sees that before sending anything,
    # so the call runs on a new session.
    assert q.find_one({"id": 1}) == {"id": 1, "note": "kept"}
    assert pg.execute("SELECT 1 AS one").fetchone() == {"one": 1}


def test_sql_restart_mid_stream(own_pg: OwnPostgres, pg: SQLConnection) -> None:
    q = pg.query("item")
    q.bulk_insert([{"id": i} for i in range(500)])
    stream = q.find_all(paginate=False, sort=[("id", 1)], batch_size=10)
    assert isinstance(stream, Iterator)
    assert [next(stream)["id"] for _ in range(5)] == [0, 1, 2, 3, 4]
    own_pg.restart()
    with pytest.raises(ServerUnavailable):
        for _ in stream:
            pass
    assert q.count() == 500
    assert len(list(q.find_all(paginate=False, batch_size=50))) == 500


def test_sql_restart_mid_transaction(own_pg: OwnPostgres, pg: SQLConnection) -> None:
    q = pg.query("item")
    q.bulk_insert([{"id": 1}])
    with pytest.raises(ServerUnavailable), pg.transaction():
        q.bulk_insert([{"id": 2}])
        own_pg.restart()
        q.bulk_insert([{"id": 3}])
    assert ids(pg) == [1]  # the committed write survived; the lost transaction left nothing
    with pg.transaction():
        q.bulk_insert([{"id": 4}])
        q.update({"id": 1}, {"note": "after"})
    assert ids(pg) == [1, 4]
    assert q.find_one({"id": 1}) == {"id": 1, "note": "after"}


def test_sql_restart_under_a_pool(own_pg: OwnPostgres) -> None:
    pytest.importorskip("psycopg_pool")
    with dbp.connect(pg_config(own_pg, POOL={"min_size": 3, "max_size": 3}), engine="sql") as db:
        assert isinstance(db, SQLConnection)
        db.execute("DROP TABLE IF EXISTS item")
        db.execute(TABLE)
        q = db.query("item")
        q.bulk_insert([{"id": 1}])
        own_pg.restart()
        for _ in range(6):  # every pooled connection, not only the one that met the fault
            assert q.find_one({"id": 1}) == {"id": 1, "note": None}
        own_pg.stop()
        with pytest.raises(ServerUnavailable):
            q.count()
        own_pg.start()
        assert q.count() == 1


def test_pool_connect_to_a_silent_server_takes_connect_timeout() -> None:
    pytest.importorskip("psycopg_pool")
    with socket.socket() as silent:  # accepts TCP connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        config = {"SQL": {"URL": f"postgresql://u@127.0.0.1:{port}/x", "OPTIONS": {"connect_timeout": 2},
                          "POOL": {"min_size": 2}}}
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{port}"):
            dbp.connect(config, engine="sql")
        took = time.monotonic() - start
    assert took < 3.5, took  # one connect_timeout (2 s), not two (it took 4.26 s)


def test_sql_backend_terminated_between_and_during_calls(pg: SQLConnection) -> None:
    q = pg.query("item")
    q.bulk_insert([{"id": 1}])

    def backend() -> int:
        with pg.connection() as conn:
            return int(conn.info.backend_pid)

    with dbp.connect({"SQL": {"URL": _url_of(pg)}}, engine="sql") as other:
        assert isinstance(other, SQLConnection)
        gone = backend()
        other.execute("SELECT pg_terminate_backend(%s)", (gone,))
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (gone,)).fetchone():
            time.sleep(0.01)
        assert q.find_one({"id": 1}) == {"id": 1, "note": None}  # between calls: a new session, transparently
        victim = backend()
        timer = threading.Timer(0.5, lambda: other.execute("SELECT pg_terminate_backend(%s)", (victim,)))
        timer.start()
        with pytest.raises(ServerUnavailable, match="terminating connection"):
            pg.execute("SELECT pg_sleep(10)")  # during a call: that call fails
        timer.join()
    assert q.find_one({"id": 1}) == {"id": 1, "note": None}  # and the next one works


def _url_of(db: SQLConnection) -> str:
    params = db.settings.params
    return f"postgresql://{params['user']}@/{params['dbname']}?host={params['host']}&port={params['port']}"


# -- MongoDB ---------------------------------------------------------------------------------------


@dataclass
class OwnMongo:
    storage: Path
    port: int
    process: Any = None

    def start(self) -> None:
        exe = str(Path(sys.executable).parent / "secantusd-py")
        log = open(self.storage.parent / "mongo.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, "secantusd-py did not start"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        self.process.wait(30)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def own_mongo() -> Iterator[OwnMongo]:
    if not (Path(sys.executable).parent / "secantusd-py").exists():
        pytest.skip("secantusd-py is not installed")
    root = server_root("dbp-test-faults-mongo-")
    own = OwnMongo(root / "data", free_port())
    own.start()
    try:
        yield own
    finally:
        if own.process.poll() is None:
            own.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mongo(own_mongo: OwnMongo) -> Iterator[MongoConnection]:
    if own_mongo.process.poll() is not None:
        own_mongo.start()
    config = {"MONGO": {"URL": f"mongodb://127.0.0.1:{own_mongo.port}/", "DATABASE": "faults",
                        "server_selection_timeout_ms": 500}}
    with dbp.connect(config, engine="mongo") as db:
        assert isinstance(db, MongoConnection)
        db.database.drop_collection("item")
        db.database.item.create_index("name", unique=True)
        yield db


def test_mongo_calls_while_down_then_after_restart(own_mongo: OwnMongo, mongo: MongoConnection) -> None:
    q = mongo.query("item")
    q.bulk_insert([{"_id": 1, "name": "a"}])
    own_mongo.stop()
    calls = {
        "find_one": lambda: q.find_one({"_id": 1}),
        "count": lambda: q.count(),
        "paginate": lambda: q.paginate({}),
        "get_or_create": lambda: q.get_or_create({"name": "b"}),
        "get_or_create by _id": lambda: q.get_or_create({"_id": 9}),
        "update": lambda: q.update({"_id": 1}, {"x": 1}),
        "upsert": lambda: q.upsert({"_id": 1}, {"x": 1}),
        "bulk_insert": lambda: q.bulk_insert([{"_id": 2}]),
        "bulk_update": lambda: q.bulk_update([{"_id": 1}], [{"x": 1}]),
        "delete": lambda: q.delete({"_id": 5}),
        "stream": lambda: list(q.find_all(paginate=False)),
    }
    for name, call in calls.items():
        with pytest.raises(ServerUnavailable, match="MongoDB did not answer"):
            call()
            pytest.fail(name)
    own_mongo.start()
    assert q.find_one({"_id": 1}) == {"_id": 1, "name": "a"}
    row, created = q.get_or_create({"name": "b"})
    assert created and row["name"] == "b"


def test_mongo_restart_mid_stream(own_mongo: OwnMongo, mongo: MongoConnection) -> None:
    q = mongo.query("item")
    q.bulk_insert([{"_id": i, "name": str(i)} for i in range(300)])
    stream = q.find_all(paginate=False, sort=[("_id", 1)], batch_size=10)
    assert isinstance(stream, Iterator)
    assert [next(stream)["_id"] for _ in range(5)] == [0, 1, 2, 3, 4]
    own_mongo.restart()
    with pytest.raises(ServerUnavailable):
        for _ in stream:
            pass
    assert q.count() == 300  # nothing committed was lost
    assert len(list(q.find_all(paginate=False))) == 300


def test_mongo_restart_between_calls(own_mongo: OwnMongo, mongo: MongoConnection) -> None:
    q = mongo.query("item")
    q.upsert({"_id": 1}, {"name": "kept"})
    own_mongo.restart()
    for _ in range(3):  # pymongo reconnects by itself; the first call may or may not meet the fault
        try:
            found = q.find_one({"_id": 1})
        except ServerUnavailable:
            continue
        assert found == {"_id": 1, "name": "kept"}
        break
    else:
        pytest.fail("never recovered")
    assert q.find_one({"_id": 1}) == {"_id": 1, "name": "kept"}


def test_mongo_kill_9_keeps_acknowledged_writes_after_a_clean_stop(own_mongo: OwnMongo,
                                                                    mongo: MongoConnection) -> None:
    q = mongo.query("item")
    q.bulk_insert([{"_id": i, "name": str(i)} for i in range(50)])
    own_mongo.stop()  # a clean stop flushes
    own_mongo.start()
    own_mongo.stop(signal.SIGKILL)
    with pytest.raises(ServerUnavailable):
        q.count()
    own_mongo.start()
    assert q.count() == 50


# -- threads ---------------------------------------------------------------------------------------


def test_sql_restart_under_threads(own_pg: OwnPostgres, pg: SQLConnection) -> None:
    """Each thread's session meets the fault once, then reconnects on its own."""
    q = pg.query("item")
    errors: list[BaseException] = []
    after: list[int] = []
    restarted = threading.Event()
    ready = threading.Barrier(5)

    def work(n: int) -> None:
        q.bulk_insert([{"id": n}])
        ready.wait()
        restarted.wait()
        for _ in range(2):
            try:
                q.bulk_insert([{"id": 100 + n}])
                after.append(n)
                return
            except ServerUnavailable:
                continue
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    ready.wait()
    own_pg.restart()
    restarted.set()
    for t in threads:
        t.join(60)
    assert not errors and sorted(after) == [0, 1, 2, 3]
    assert ids(pg) == [0, 1, 2, 3, 100, 101, 102, 103]
