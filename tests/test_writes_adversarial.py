"""What an independent adversary found in the write paths, kept as tests (issues 8 and 13)."""

from __future__ import annotations

import datetime as dt
import decimal
from collections import OrderedDict
from typing import Any

import psycopg
import pytest

from dbp import ConcurrencyError, DbpError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

ENGINES = ("sql", "mongo")
PLUS5 = dt.timezone(dt.timedelta(hours=5))


@pytest.fixture
def both(sql_db: SQLConnection, mongo_db: MongoConnection) -> dict[str, Any]:
    sql_db.execute("""
        CREATE TABLE t (id bigint PRIMARY KEY, a int, b int, n bigint, f double precision, s text,
                        g text, doc jsonb, x numeric(30, 2));
        CREATE TABLE nn (id int PRIMARY KEY, a int NOT NULL, b text);
        CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text UNIQUE, w text);
        CREATE TABLE pct (id int PRIMARY KEY, "%" text, "%%" text, o text);
        CREATE TABLE tz (t timestamptz PRIMARY KEY, v text, w text);
    """)
    sql_db.catalog(refresh=True)
    return {"sql": sql_db.query("t"), "mongo": mongo_db.query("t"), "db": sql_db, "mongo_db": mongo_db}


def key(engine: str) -> str:
    return "id" if engine == "sql" else "_id"


def rows(q: Any, engine: str) -> list[dict[str, Any]]:
    out = []
    for row in q.find_all(sort=[(key(engine), 1)], paginate=False):
        row = {("id" if k == "_id" else k): v for k, v in row.items()}
        out.append({k: v for k, v in row.items() if v is not None})
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_other_mapping_types_are_applied_whole(both: dict[str, Any], engine: str) -> None:
    q, k = both[engine], key(engine)
    q.bulk_insert([{k: 1, "a": 0, "b": 0}])
    q.update({k: 1}, {"$set": OrderedDict(a=1)})
    q.update({k: 1}, {"$set": OrderedDict(a=2, b=3)})
    q.bulk_update([{k: 1}], [{"$set": OrderedDict(b=4)}])
    assert rows(q, engine) == [{"id": 1, "a": 2, "b": 4}]
    with pytest.raises(FilterError):
        q.update({k: 1}, {"$set": OrderedDict([("a", 5), ("$where", 1)])})
    assert rows(q, engine) == [{"id": 1, "a": 2, "b": 4}]


def test_percent_in_column_names_on_the_merge_path(both: dict[str, Any]) -> None:
    q = both["db"].query("pct")
    q.bulk_insert([{"id": 1, "%": "keep", "%%": "old"}])
    assert q.bulk_insert([{"id": 1, "%%": "new"}, {"id": 2, "o": "x"}], on_conflict="update") == 1
    assert q.find_one({"id": 1}) == {"id": 1, "%": "keep", "%%": "new", "o": None}


def test_mongo_bulk_update_writes_nothing_when_a_later_write_cannot_be_encoded(both: dict[str, Any]) -> None:
    m = both["mongo"]
    m.bulk_insert([{"_id": 1, "p": [{"c": "lc", "v": 1}, {"c": "x", "v": 2}], "n": 1}])
    with pytest.raises(FilterError, match="cannot store"):
        m.bulk_update([{"_id": 1}], [{"$pull": {"p": {"c": "lc"}}, "$push": {"p": {"$each": [{"v": 2**64}]}}}])
    with pytest.raises(FilterError, match="cannot store"):
        m.bulk_update([{"_id": 1}, {"_id": 1}], [{"$inc": {"n": 1}}, {"$set": {"s": decimal.Decimal(1)}}])
    assert m.find_one({"_id": 1}) == {"_id": 1, "p": [{"c": "lc", "v": 1}, {"c": "x", "v": 2}], "n": 1}


def test_identity_and_not_null_columns_on_the_merge_path(both: dict[str, Any]) -> None:
    ident = both["db"].query("ident")
    ident.bulk_insert([{"v": "a"}])
    assert ident.bulk_insert([{"v": "a"}, {"v": "b"}]) == 1
    assert [r["v"] for r in ident.find_all(sort=["id"], paginate=False)] == ["a", "b"]
    nn = both["db"].query("nn")
    nn.bulk_insert([{"id": 1, "a": 5, "b": "x"}])
    assert nn.bulk_insert([{"id": 1, "b": "y"}], on_conflict="update") == 0  # an existing row: a stays 5
    assert nn.bulk_insert([{"id": 1, "b": "z"}]) == 0  # ignore
    assert nn.find_one({"id": 1}) == {"id": 1, "a": 5, "b": "y"}
    with pytest.raises(DbpError, match=r'null value in column "a"'):  # a new row still needs a
        nn.bulk_insert([{"id": 1, "b": "w"}, {"id": 2, "b": "new"}], on_conflict="update")
    assert nn.count() == 1


def test_naive_and_aware_keys_of_one_instant_merge(both: dict[str, Any]) -> None:
    q = both["db"].query("tz")
    assert q.bulk_insert([{"t": dt.datetime(2024, 1, 1, 7), "v": "first"},
                          {"t": dt.datetime(2024, 1, 1, 12, tzinfo=PLUS5), "w": "second"}], on_conflict="update") == 1
    row = q.find_one()
    assert row is not None and (row["v"], row["w"]) == ("first", "second")


def test_numbers_compare_exactly_beyond_double_precision(both: dict[str, Any]) -> None:
    for engine in ENGINES:
        both[engine].bulk_insert([{key(engine): 1, "n": 2**53}, {key(engine): 2, "n": 2**53 + 1}])
    for filter_by, expected in [({"n": float(2**53)}, 1), ({"n": {"$in": [float(2**53)]}}, 1),
                                ({"n": {"$gt": float(2**53)}}, 1), ({"n": {"$ne": float(2**53)}}, 1),
                                ({"n": {"$lte": float(2**53)}}, 1)]:
        assert (both["sql"].count(filter_by), both["mongo"].count(filter_by)) == (expected, expected), filter_by


def test_numeric_columns_compare_exactly(both: dict[str, Any]) -> None:
    q = both["sql"]
    q.bulk_insert([{"id": 1, "x": decimal.Decimal("12345678901234567.10")},
                   {"id": 2, "x": decimal.Decimal("12345678901234567.20")}])
    value = decimal.Decimal("12345678901234567.10")
    assert q.count({"x": value}) == 1
    assert q.count({"x": {"$in": [value]}}) == 1
    assert q.count({"x": {"$nin": [value]}}) == 1
    assert q.count({"x": {"$in": [value, 1]}}) == 1  # a Decimal and an int in one list


@pytest.mark.parametrize("engine", ENGINES)
def test_bulk_update_takes_mixed_number_types(both: dict[str, Any], engine: str) -> None:
    q, k = both[engine], key(engine)
    q.bulk_insert([{k: 1, "f": 0.0}, {k: 2, "f": 0.0}])
    assert q.bulk_update([{k: 1}, {k: 2}], [{"f": 1}, {"f": 2.5}]) == 2
    assert q.bulk_update([{k: 1}, {k: 2}], [{"$inc": {"f": 1}}, {"$inc": {"f": 0.5}}]) == 2
    assert [r["f"] for r in rows(q, engine)] == [2.0, 3.0]


def test_locks_and_deadlocks_are_concurrency_errors(both: dict[str, Any]) -> None:
    db, q = both["db"], both["sql"]
    q.bulk_insert([{"id": 1, "a": 1}])
    other = psycopg.connect(db.settings.conninfo(), autocommit=False)
    try:
        other.execute("SELECT * FROM t WHERE id = 1 FOR UPDATE")
        db.execute("SET lock_timeout = '100ms'")
        for call in (lambda: q.update({"id": 1}, {"a": 2}), lambda: q.bulk_update([{"id": 1}], [{"a": 2}]),
                     lambda: q.upsert({"id": 1}, {"a": 2}), lambda: q.delete({"id": 1})):
            with pytest.raises(ConcurrencyError):
                call()
    finally:
        other.close()
        db.execute("SET lock_timeout = 0")
    assert q.find_one({"id": 1}) == {"id": 1, "a": 1, "b": None, "n": None, "f": None, "s": None, "g": None,
                                     "doc": None, "x": None}


def test_mongo_streams_refuse_what_bson_cannot_carry(both: dict[str, Any]) -> None:
    m = both["mongo"]
    for value in (2**64, decimal.Decimal(1), "\ud800"):
        with pytest.raises(FilterError):
            list(m.find_all({"n": value}, paginate=False))


@pytest.mark.parametrize("engine", ENGINES)
def test_jsonb_paths_refuse_what_mongodb_refuses(both: dict[str, Any], engine: str) -> None:
    q, k = both[engine], key(engine)
    q.bulk_insert([{k: 1, "doc": {"s": "5", "a": [1, 2, 3], "o": {"x": 1}, "z": None}}])
    before = rows(q, engine)
    for update in ({"$inc": {"doc.s": 1}}, {"$mul": {"doc.s": 2}}, {"$push": {"doc.o": 1}},
                   {"$inc": {"doc.z": 1}}, {"$push": {"doc.s": 1}}):
        with pytest.raises(DbpError):
            q.update({k: 1}, update)
    for update in ({"$unset": {"doc.a.0": ""}}, {"$set": {"doc.a.3": 9}}):
        with pytest.raises(FilterError, match="array positions"):
            q.update({k: 1}, update)
    assert rows(q, engine) == before
    q.update({k: 1}, {"$set": {"doc.m": 0.1}})
    q.update({k: 1}, {"$mul": {"doc.m": 3}})
    q.update({k: 1}, {"$inc": {"doc.i": 2**62}})
    q.update({k: 1}, {"$inc": {"doc.i": 5}})
    doc = rows(q, engine)[0]["doc"]
    assert doc["m"] == 0.1 * 3 and doc["i"] == 2**62 + 5  # double arithmetic for doubles, exact for integers


def test_pull_and_add_to_set_agree_across_engines(both: dict[str, Any]) -> None:
    docs = [{"p": None, "k": 1}, {"q": 2}, {"p": ["lc", "x"]}, {"p": "lc"}, {"p": "st"}]
    for engine in ENGINES:
        q, k = both[engine], key(engine)
        q.bulk_insert([{k: 1, "doc": list(docs)}, {k: 2, "doc": [1]}])
        q.update({k: 1}, {"$pull": {"doc": {"p": None}}})
        q.update({k: 1}, {"$pull": {"doc": {"p": "lc"}}})
        q.update({k: 2}, {"$addToSet": {"doc": {"$each": [1, True, 1.0, "1"]}}})
    assert rows(both["sql"], "sql") == rows(both["mongo"], "mongo")
    assert rows(both["sql"], "sql")[0]["doc"] == [{"p": "st"}]
    assert rows(both["sql"], "sql")[1]["doc"] == [1, True, "1"]
    with pytest.raises(FilterError, match="plain field values"):
        both["sql"].update({"id": 1}, {"$pull": {"doc": {"p.q": 1}}})


def test_keys_on_mongodb(both: dict[str, Any]) -> None:
    m, q = both["mongo"], both["sql"]
    for engine, query in (("sql", q), ("mongo", m)):
        query.bulk_insert([{key(engine): 1, "g": "a"}, {key(engine): 2, "g": "a"}])
        assert query.bulk_update([{"g": "a"}], [{"s": "x"}], filter_fields=["g"]) == 2  # every match, both
    assert [r["s"] for r in rows(m, "mongo")] == ["x", "x"]
    assert m.bulk_insert([{"_id": 10, "s": "one"}, {"_id": True, "s": "true"}], on_conflict="update") == 2
    assert m.count({"_id": 10}) == 1 and m.count({"_id": True}) == 1
    with pytest.raises(FilterError, match="non-null _id"):
        m.bulk_insert([{"_id": None, "s": "a"}], on_conflict="update")
