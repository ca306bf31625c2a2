"""Bulk writes, adversary b's findings (test_adversary_trust3_b.py has the repros; these go further).

- MongoDB encodes every document before the first write: a value BSON cannot hold at row 150,000 (past
  pymongo's split at maxWriteBatchSize) is a FilterError naming the caller's row, with nothing written.
- Aware datetimes are compared by their UTC instant wherever dbp de-duplicates keys or values (two of one zone
  an hour apart, ``fold``, are equal to Python).
- SQL bulk_insert's merge path groups keys as the server does (char(n), citext, nondeterministic collation).
- MongoDB's write errors name the caller's row and count the writes of earlier rounds; keys are compared at
  BSON's millisecond precision.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from dbp import DbpError, FilterError
from dbp.errors import BulkWriteError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

N_BIG = 150_001


def _fold_pair() -> tuple[dt.datetime, dt.datetime]:
    zoneinfo = pytest.importorskip("zoneinfo")
    first = dt.datetime(2021, 11, 7, 1, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York"))  # 05:30 UTC
    second = first.replace(fold=1)  # 06:30 UTC
    assert first == second
    return first, second


def _db(request: pytest.FixtureRequest, engine: str) -> Any:
    return request.getfixturevalue(f"{engine}_db")


# -- encoding before the first write (MongoDB) ----------------------------------------------------------


def test_mongo_bulk_insert_late_unencodable_row_is_named(mongo_db: MongoConnection) -> None:
    rows = [{"_id": i, "v": i} for i in range(N_BIG)]
    rows[-1] = {"_id": N_BIG - 1, "v": decimal.Decimal("1.5")}
    q = mongo_db.query("late_named")
    for mode in ("ignore", "error", "update"):
        with pytest.raises(FilterError, match=f"^bulk_insert into late_named: row {N_BIG - 1}: MongoDB cannot store"):
            q.bulk_insert(rows, on_conflict=mode)  # type: ignore[arg-type]
        assert q.collection.count_documents({}) == 0


@pytest.mark.slow
def test_mongo_bulk_update_late_unencodable_row_is_named(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("late_upd")
    q.collection.insert_many([{"_id": i, "v": 0} for i in range(N_BIG)])
    attrs: list[dict[str, Any]] = [{"$inc": {"v": 1}} for _ in range(N_BIG)]
    attrs[-1] = {"$set": {"w": 2**64}}  # operators: the rounds path (the repro takes the columnar one)
    instances = [{"_id": i} for i in range(N_BIG)]
    with pytest.raises(FilterError, match=f"^bulk_update on late_upd: row {N_BIG - 1}: MongoDB cannot store"):
        q.bulk_update(instances, attrs)
    assert q.collection.count_documents({"v": 1}) == 0


def test_mongo_bulk_insert_still_counts_and_keeps_ids(mongo_db: MongoConnection) -> None:
    """Documents sent pre-encoded: the count is right, the caller's dicts are untouched, an _id is still made."""
    q = mongo_db.query("raw_ins")
    rows: list[dict[str, Any]] = [{"v": 1}, {"_id": 5, "v": 2}, {"_id": 5, "v": 3}]
    assert q.bulk_insert(rows) == 2
    assert rows[0] == {"v": 1}
    assert q.count() == 2 and q.find_one({"_id": 5})["v"] == 2  # type: ignore[index]


# -- fold: one instant each ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_fold_instants_are_two_keys(request: pytest.FixtureRequest, engine: str) -> None:
    first, second = _fold_pair()
    db = _db(request, engine)
    key = "k" if engine == "sql" else "_id"
    if engine == "sql":
        db.execute("CREATE TABLE foldk (k timestamptz PRIMARY KEY, v int, w int)")
    q = db.query("foldk")
    assert q.bulk_insert([{key: first, "v": 0}]) == 1
    assert q.bulk_insert([{key: first, "v": 1}, {key: second, "v": 2}]) == 1  # ignore: the new instant goes in
    assert q.bulk_insert([{key: first, "v": 3}, {key: second, "v": 4}], on_conflict="update") == 0
    assert [r["v"] for r in q.find_all(paginate=False, sort=[(key, 1)])] == [3, 4]
    assert q.bulk_update([{key: first}, {key: second}], [{"v": 10}, {"w": 20}]) == 2
    assert [(r["v"], r.get("w")) for r in q.find_all(paginate=False, sort=[(key, 1)])] == [(10, None), (4, 20)]


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_add_to_set_keeps_both_fold_instants(request: pytest.FixtureRequest, engine: str) -> None:
    first, second = _fold_pair()
    db = _db(request, engine)
    if engine == "sql":
        db.execute("CREATE TABLE folds (id int PRIMARY KEY, ts timestamptz[])")
    q = db.query("folds")
    q.bulk_insert([{"id": 1, "ts": []}])
    q.update({"id": 1}, {"$addToSet": {"ts": {"$each": [first, second, first]}}})
    assert len(q.find_one({"id": 1})["ts"]) == 2


# -- server-equal keys on SQL's merge path ------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "same"), [("character(3)", ["a", "a  ", "a "]), ("citext", ["a", "A", "a"]),
                                            ("text COLLATE ci", ["a", "A", "a"])])
def test_sql_bulk_insert_server_equal_keys(sql_db: SQLConnection, kind: str, same: list[str]) -> None:
    """The server groups the keys: on 'update' the last value wins (existing and new rows), on 'ignore' the
    first; no 'cannot affect row a second time'."""
    sql_db.execute("CREATE EXTENSION IF NOT EXISTS citext")
    if "ci" in kind.split():
        try:
            sql_db.execute("CREATE COLLATION IF NOT EXISTS ci "
                           "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        except DbpError:
            pytest.skip("no ICU here; run with DBP_TEST_SQL_URL=postgresql://postgres@127.0.0.1:5432/postgres")
    sql_db.execute(f"CREATE TABLE seq (k {kind} PRIMARY KEY, v int)")
    q = sql_db.query("seq")
    q.bulk_insert([{"k": "z", "v": 0}])
    rows = [{"k": s, "v": i} for i, s in enumerate(same)] + [{"k": "z " if kind.startswith("char") else "Z", "v": 7}]
    assert q.bulk_insert(rows, on_conflict="update") == 1
    assert sorted(r["v"] for r in q.find_all(paginate=False)) == [2, 7]
    assert q.bulk_insert([{"k": "b", "v": 1}, {"k": "b " if kind.startswith("char") else "B", "v": 2}]) == 1
    assert q.find_one({"k": "b"})["v"] == 1  # type: ignore[index]


# -- MongoDB: errors name the caller's row; keys at millisecond precision ----------------------------------------


def test_mongo_bulk_update_merged_row_error_names_the_last_instance(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("mrow")
    q.bulk_insert([{"_id": 1}, {"_id": 2}, {"_id": 3, "u": 7}])
    q.collection.create_index("u", unique=True, sparse=True)
    with pytest.raises(BulkWriteError) as info:
        q.bulk_update([{"_id": 2}, {"_id": 1}, {"_id": 1}], [{"v": 2}, {"v": 1}, {"u": 7}])
    assert info.value.rows == [2]
    assert "row 2: " in str(info.value) and "the other 1 write(s) went through" in str(info.value)


def test_mongo_bulk_update_later_round_type_clash_is_refused_before_any_write(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("mround")
    q.bulk_insert([{"_id": 1, "v": 0, "s": "x"}, {"_id": 2, "v": 0}])
    with pytest.raises(FilterError, match=r"'s' holds a non-number .*nothing was changed$"):
        q.bulk_update([{"_id": 1}, {"_id": 2}, {"_id": 1}], [{"$inc": {"v": 1}}, {"$inc": {"v": 1}},
                                                             {"$inc": {"s": 1}}])
    assert sorted((r["_id"], r["v"]) for r in q.find_all(paginate=False)) == [(1, 0), (2, 0)]


def test_mongo_bulk_update_later_round_server_error(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("mround2")
    q.bulk_insert([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}, {"_id": 3, "u": 7}])
    q.collection.create_index("u", unique=True, sparse=True)
    with pytest.raises(BulkWriteError) as info:
        q.bulk_update([{"_id": 1}, {"_id": 2}, {"_id": 1}], [{"$inc": {"v": 1}}, {"$inc": {"v": 1}},
                                                             {"$set": {"u": 7}}])
    assert info.value.rows == [2]
    assert str(info.value).startswith("bulk_update into mround2: row 2: ")
    assert str(info.value).endswith("the other 2 write(s) went through")


def test_mongo_keys_one_microsecond_apart_are_one_document(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("msk2")
    base = dt.datetime(2020, 1, 1, 0, 0, 0, 5000)
    assert q.bulk_insert([{"_id": base.replace(microsecond=5100), "v": 1},
                          {"_id": base.replace(microsecond=5900), "v": 2}], on_conflict="update") == 1
    assert [r["v"] for r in q.find_all(paginate=False)] == [2]
    assert q.bulk_update([{"_id": base}, {"_id": base.replace(microsecond=5999)}],
                         [{"$inc": {"v": 1}}, {"$inc": {"v": 1}}]) == 1
    assert [r["v"] for r in q.find_all(paginate=False)] == [4]
