"""One session per thread on a plain SQLConnection, and streams on a session of their own (issue 8, items 6-7)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dbp.errors import OperationError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings


@pytest.fixture
def table(sql_db: SQLConnection) -> SQLConnection:
    sql_db.execute("CREATE TABLE item (id integer PRIMARY KEY, owner text)")
    sql_db.catalog(refresh=True)
    return sql_db


def stored(db: SQLConnection) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM item ORDER BY id").fetchall()


def test_eight_threads_one_rolls_back_nobody_else_loses_a_write(table: SQLConnection) -> None:
    q = table.query("item")
    opened = threading.Event()
    written = threading.Barrier(8)  # the rolling-back thread + 7 writers
    errors: list[BaseException] = []

    def rolls_back() -> None:
        try:
            with table.transaction():
                q.bulk_insert([{"id": 1000, "owner": "doomed"}])
                opened.set()
                written.wait(30)  # the others write while this transaction is open
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writes(n: int) -> None:
        try:
            opened.wait(30)
            assert q.bulk_insert([{"id": n, "owner": f"t{n}"}]) == 1  # autocommit
            with table.transaction():  # and a transaction of its own
                q.bulk_insert([{"id": 100 + n, "owner": f"t{n}"}])
                q.update({"id": n}, {"owner": f"t{n}!"})
            table.execute("INSERT INTO item VALUES (%s, %s)", (200 + n, f"t{n}"))
            written.wait(30)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=rolls_back)] + [threading.Thread(target=writes, args=(n,)) for n in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    rows = stored(table)
    assert [r["id"] for r in rows] == [*range(7), *range(100, 107), *range(200, 207)]  # 1000 is gone, nothing else
    assert {r["owner"] for r in rows if r["id"] < 7} == {f"t{n}!" for n in range(7)}


def test_threads_do_not_see_each_others_open_transaction(table: SQLConnection) -> None:
    q = table.query("item")
    inside = threading.Event()
    checked = threading.Event()
    seen: list[Any] = []

    def holder() -> None:
        with table.transaction():
            q.bulk_insert([{"id": 1, "owner": "a"}])
            inside.set()
            checked.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(30)
    seen.append(q.find_one({"id": 1}))  # another session: not committed yet, so not visible
    checked.set()
    t.join(30)
    assert seen == [None]
    assert q.find_one({"id": 1}) == {"id": 1, "owner": "a"}


def test_close_closes_every_threads_session(sql_settings: SQLSettings) -> None:
    db = SQLConnection(settings=sql_settings).connect()
    pids: set[int] = set()
    used = threading.Barrier(5)
    release = threading.Event()

    def use() -> None:
        with db.connection() as conn:
            pids.add(conn.info.backend_pid)
        used.wait(30)
        release.wait(30)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    used.wait(30)
    with db.connection() as conn:
        pids.add(conn.info.backend_pid)
    assert len(pids) == 5  # one session per thread

    def backends(other: SQLConnection) -> set[int]:
        return {r["pid"] for r in other.execute("SELECT pid FROM pg_stat_activity").fetchall()}

    def gone(other: SQLConnection, wanted: set[int]) -> bool:
        deadline = time.monotonic() + 10
        while wanted & backends(other):  # a backend exits just after its client hangs up
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    with SQLConnection(settings=sql_settings) as other:
        assert pids <= backends(other)
        db.close()
        assert gone(other, pids)
        release.set()
        for t in threads:
            t.join()
        # A thread that has ended gives its session back when another thread opens one.
        db.connect()
        first: list[int] = []

        def worker() -> None:
            with db.connection() as conn:
                first.append(conn.info.backend_pid)

        for _ in range(2):
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
        assert len(set(first)) == 2 and first[1] in backends(other)
        assert gone(other, {first[0]})
        db.close()
    with pytest.raises(OperationError, match="was closed"):
        db.execute("SELECT 1")


# -- streams ---------------------------------------------------------------------------------------


@pytest.fixture
def filled(table: SQLConnection) -> SQLConnection:
    table.query("item").bulk_insert([{"id": i, "owner": "seed"} for i in range(50)])
    return table


@pytest.mark.parametrize("ending", ["break", "exception", "exhausted"])
def test_writes_inside_a_stream_loop_are_kept_sql(filled: SQLConnection, ending: str) -> None:
    q = filled.query("item")
    try:
        for row in q.find_all(paginate=False, sort=[("id", 1)], batch_size=7):
            q.update({"id": row["id"]}, {"owner": "seen"})
            q.bulk_insert([{"id": 1000 + row["id"], "owner": "new"}])
            if row["id"] == 20 and ending == "break":
                break
            if row["id"] == 20 and ending == "exception":
                raise KeyError("stop")
    except KeyError:
        pass
    last = 49 if ending == "exhausted" else 20
    assert q.count({"owner": "seen"}) == last + 1
    assert q.count({"owner": "new"}) == last + 1


def test_writes_inside_a_stream_loop_are_kept_mongo(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("item")
    q.bulk_insert([{"_id": i} for i in range(30)])
    for row in q.find_all(paginate=False, batch_size=7):
        q.update({"_id": row["_id"]}, {"seen": True})
        if row["_id"] == 10:
            break
    assert q.count({"seen": True}) == 11


def test_a_stream_inside_a_transaction_sees_it_and_ends_with_it(filled: SQLConnection) -> None:
    q = filled.query("item")
    with pytest.raises(ZeroDivisionError), filled.transaction():
        q.bulk_insert([{"id": 500, "owner": "tx"}])
        seen = [r["id"] for r in q.find_all({"owner": "tx"}, paginate=False)]
        assert seen == [500]
        with pytest.raises(Exception, match="has no column"):
            list(q.find_all({"nope": 1}, paginate=False))
        assert q.count({"owner": "tx"}) == 1  # a bad stream did not abort the transaction
        1 / 0  # noqa: B018
    assert q.count({"owner": "tx"}) == 0


def test_a_stream_does_not_hold_the_callers_session(filled: SQLConnection) -> None:
    q = filled.query("item")
    stream = q.find_all(paginate=False, batch_size=5)
    assert isinstance(stream, Iterator)
    next(stream)
    with filled.connection() as conn:  # the caller's session is idle (no transaction) while the stream is open
        assert conn.info.transaction_status.name == "IDLE"
    stream.close()


def test_a_stream_returned_out_of_its_with_block_says_so(sql_settings: SQLSettings) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        with SQLConnection(settings=sql_settings) as db:
            db.execute("CREATE TABLE IF NOT EXISTS item (id integer PRIMARY KEY)")
            db.query("item").bulk_insert([{"id": i} for i in range(20)])
            stream = db.query("item").find_all(paginate=False, batch_size=5)
            assert isinstance(stream, Iterator)
            return stream

    with pytest.raises(OperationError, match=r"not open: it was closed .*with block.*stream must be read before"):
        list(rows())


def test_a_stream_cut_by_close_says_so(filled: SQLConnection) -> None:
    stream = filled.query("item").find_all(paginate=False, batch_size=5)
    assert isinstance(stream, Iterator)
    next(stream)
    filled.close()
    with pytest.raises(OperationError, match="closed it before the stream was read to the end"):
        list(stream)
