"""Adversarial repros (trust3 d): bulk_insert after the RawBSONDocument path, recursive conversion."""

from __future__ import annotations

import copy
import datetime as dt
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

import dbp
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

THING = """
CREATE TABLE thing (
    id bigint PRIMARY KEY,
    i bigint,
    s text,
    a bigint[],
    j jsonb
);
"""


@pytest.fixture
def both(sql_db: SQLConnection, mongo_db: MongoConnection) -> Any:
    sql_db.execute(THING)
    return sql_db.query("thing"), mongo_db.query("thing")


def test_probe_mongo_no_id(both: Any) -> None:
    _, m = both
    rows = [{"i": 1}, {"i": 2}]
    before = copy.deepcopy(rows)
    assert m.bulk_insert(rows) == 2
    assert rows == before
    got = m.find_all({}, paginate=False)
    got = list(got)
    print(got)
    assert len(got) == 2 and all("_id" in g for g in got)


def test_probe_ignore_counts(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "i": 0}])
    m.bulk_insert([{"_id": 1, "i": 0}])
    rs = s.bulk_insert([{"id": 1, "i": 1}, {"id": 2, "i": 2}, {"id": 2, "i": 3}], on_conflict="ignore")
    rm = m.bulk_insert([{"_id": 1, "i": 1}, {"_id": 2, "i": 2}, {"_id": 2, "i": 3}], on_conflict="ignore")
    print(rs, rm)
    assert rs == rm == 1
    assert s.find_one({"id": 2})["i"] == m.find_one({"_id": 2})["i"] == 2


def test_probe_update_counts(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "i": 0}])
    m.bulk_insert([{"_id": 1, "i": 0}])
    rs = s.bulk_insert([{"id": 1, "i": 1}, {"id": 2, "i": 2}], on_conflict="update")
    rm = m.bulk_insert([{"_id": 1, "i": 1}, {"_id": 2, "i": 2}], on_conflict="update")
    print(rs, rm)
    assert rs == rm


def test_probe_np_id_ignore(both: Any) -> None:
    s, m = both
    m.bulk_insert([{"_id": 1, "i": 0}])
    rm = m.bulk_insert([{"_id": np.int64(1), "i": 1}, {"_id": np.int64(3), "i": 1}], on_conflict="ignore")
    assert rm == 1
    s.bulk_insert([{"id": 1, "i": 0}])
    rs = s.bulk_insert([{"id": np.int64(1), "i": 1}, {"id": np.int64(3), "i": 1}], on_conflict="ignore")
    assert rs == 1


def test_probe_nested_np(both: Any) -> None:
    s, m = both
    j = {"x": [np.int64(1), {"y": np.float32(0.5)}], "t": (np.int64(2), 3)}
    orig = copy.deepcopy(j)
    s.bulk_insert([{"id": 1, "j": j}])
    m.bulk_insert([{"_id": 1, "j": j}])
    assert j["x"][0].__class__ is np.int64 and orig.keys() == j.keys()
    a = s.find_one({"id": 1})["j"]
    b = m.find_one({"_id": 1})["j"]
    print(a, b)
    assert a == b == {"x": [1, {"y": 0.5}], "t": [2, 3]}


def test_probe_tuple_array(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "a": (np.int64(1), 2)}])
    s.bulk_insert([{"id": 2, "a": (1, 2)}])
    m.bulk_insert([{"_id": 1, "a": (np.int64(1), 2)}])
    assert s.find_one({"id": 1})["a"] == s.find_one({"id": 2})["a"] == [1, 2]
    assert m.find_one({"_id": 1})["a"] == [1, 2]


def test_probe_tuple_update(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "a": [0]}])
    m.bulk_insert([{"_id": 1, "a": [0]}])
    s.update({"id": 1}, {"a": (np.int64(1), 2)})
    m.update({"_id": 1}, {"a": (np.int64(1), 2)})
    assert s.find_one({"id": 1})["a"] == m.find_one({"_id": 1})["a"] == [1, 2]


def test_probe_dict_subclass(both: Any) -> None:
    s, m = both
    j = OrderedDict([("b", np.int64(1)), ("a", 2)])
    s.bulk_insert([{"id": 1, "j": j}])
    m.bulk_insert([{"_id": 1, "j": j}])
    assert s.find_one({"id": 1})["j"] == m.find_one({"_id": 1})["j"] == {"a": 2, "b": 1}


def test_probe_get_or_create_np(both: Any) -> None:
    s, m = both
    row, created = m.get_or_create({"_id": np.int64(5)}, j={"k": [np.int64(1)]})
    assert created and row["j"] == {"k": [1]}
    _row2, created2 = m.get_or_create({"_id": 5}, j={"k": [2]})
    assert not created2
    row, created = s.get_or_create({"id": np.int64(5)}, j={"k": [np.int64(1)]})
    assert created and row["j"] == {"k": [1]}


def test_probe_upsert_np(both: Any) -> None:
    s, m = both
    a = s.upsert({"id": 1}, {"j": {"k": np.array([1, 2])}, "a": np.array([3])})
    b = m.upsert({"_id": 1}, {"j": {"k": np.array([1, 2])}, "a": np.array([3])})
    assert a["j"] == b["j"] == {"k": [1, 2]}


def test_probe_error_rows(both: Any) -> None:
    _s, m = both
    m.bulk_insert([{"_id": 2}])
    with pytest.raises(dbp.BulkWriteError) as e:
        m.bulk_insert([{"_id": 1}, {"_id": 2}, {"_id": 3}], on_conflict="error")
    print(e.value, getattr(e.value, "rows", None))
    assert e.value.rows == [1]


def test_probe_unencodable(both: Any) -> None:
    _s, m = both
    with pytest.raises(dbp.DbpError):
        m.bulk_insert([{"_id": 1}, {"_id": 2, "x": object()}])
    assert m.count({}) == 0


def test_probe_timedelta_mongo(both: Any) -> None:
    _s, m = both
    with pytest.raises(dbp.DbpError):
        m.bulk_insert([{"_id": 1, "x": dt.timedelta(1)}])


def test_probe_update_nested_np(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "j": {"k": []}}])
    m.bulk_insert([{"_id": 1, "j": {"k": []}}])
    s.update({"id": 1}, {"$push": {"j.k": {"$each": [np.int64(1), {"z": np.float64(2.5)}]}}})
    m.update({"_id": 1}, {"$push": {"j.k": {"$each": [np.int64(1), {"z": np.float64(2.5)}]}}})
    assert s.find_one({"id": 1})["j"] == m.find_one({"_id": 1})["j"] == {"k": [1, {"z": 2.5}]}


def test_probe_filter_nested_np(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "a": [1, 2], "j": {"k": [1]}}])
    m.bulk_insert([{"_id": 1, "a": [1, 2], "j": {"k": [1]}}])
    assert s.count({"a": [np.int64(1), np.int64(2)]}) == m.count({"a": [np.int64(1), np.int64(2)]}) == 1
    assert s.count({"j": {"k": [np.int64(1)]}}) == m.count({"j": {"k": [np.int64(1)]}}) == 1


def test_probe_filter_plain(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "a": [1, 2], "j": {"k": [1]}}])
    m.bulk_insert([{"_id": 1, "a": [1, 2], "j": {"k": [1]}}])
    assert s.count({"a": [np.int64(1), np.int64(2)]}) == m.count({"a": [np.int64(1), np.int64(2)]}) == 1
    assert s.count({"j": {"k": [np.int64(1)]}}) == m.count({"j": {"k": [np.int64(1)]}}) == 1


def test_probe_frame_df_nullable_int_refused_documented(both: Any) -> None:
    import pandas as pd
    s, _m = both
    df = pd.DataFrame({"id": [1, 2], "i": [np.int64(5), None], "j": [{"k": np.int64(1)}, None],
                       "a": [np.array([1, 2]), None]})
    with pytest.raises(dbp.FilterError):  # README: float64 5.0 in a bigint column is refused
        s.bulk_insert(df)


def test_frame_of_int_column_with_null_does_not_bulk_insert_back_sql(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "i": 5, "a": [1], "j": {"k": 1}}, {"id": 2}])
    m.bulk_insert([{"_id": 1, "i": 5, "a": [1], "j": {"k": 1}}, {"_id": 2}])
    fs = s.frame({}, sort=[("id", 1)])
    fm = m.frame({}, sort=[("_id", 1)])
    print(fs.dtypes, fm.dtypes)
    s.delete({})
    m.delete({})
    assert s.bulk_insert(fs) == 2
    assert m.bulk_insert(fm) == 2
    assert s.find_one({"id": 1}) == {"id": 1, "i": 5, "s": None, "a": [1], "j": {"k": 1}}
    assert m.find_one({"_id": 1}) == {"_id": 1, "i": 5, "a": [1], "j": {"k": 1}}


def test_probe_mongo_bad_keys(both: Any) -> None:
    _s, m = both
    for bad in ({"_id": 1, "$x": 1}, {"_id": 2, "a.b": 1}, {"_id": 3, "j": {"$y": 1}}):
        try:
            m.bulk_insert([bad])
        except dbp.DbpError as exc:
            print("refused", exc)
    print(list(m.find_all({}, paginate=False)))


def test_probe_mongo_too_large(both: Any) -> None:
    _s, m = both
    with pytest.raises(dbp.DbpError):
        m.bulk_insert([{"_id": 1, "x": "a" * (17 * 1024 * 1024)}])


def test_probe_mongo_id_order(both: Any) -> None:
    _s, m = both
    m.bulk_insert([{"i": 1, "_id": 7}])
    m.bulk_insert([{"i": 2}])
    rows = list(m.find_all({}, paginate=False))
    print(rows)
    assert all(next(iter(r)) == "_id" for r in rows)


def _diff(both: Any, start: Any, upd: dict[str, Any]) -> tuple[Any, Any]:
    s, m = both
    s.delete({})
    m.delete({})
    s.bulk_insert([{"id": 1, "j": start}])
    m.bulk_insert([{"_id": 1, "j": start}])
    out = []
    for q, k in ((s, "id"), (m, "_id")):
        try:
            q.update({k: 1}, upd)
            out.append(q.find_one({k: 1}).get("j"))
        except dbp.DbpError as exc:
            out.append(type(exc).__name__)
    return out[0], out[1]


CASES = [
    ({"x": [1]}, {"$addToSet": {"j.x": {"$each": [1.0, True, 2, 2.0]}}}),
    ({"x": [True]}, {"$addToSet": {"j.x": 1}}),
    ({"x": [{"a": 1, "b": 2}]}, {"$addToSet": {"j.x": {"a": 1, "b": 2}}}),
    ({"x": 5}, {"$min": {"j.x": "a"}}),
    ({"x": 5}, {"$max": {"j.x": "a"}}),
    ({"x": "a"}, {"$max": {"j.x": None}}),
    ({"x": None}, {"$min": {"j.x": 3}}),
    ({"x": [1]}, {"$max": {"j.x": {"a": 1}}}),
    ({"x": True}, {"$max": {"j.x": 7}}),
    ({}, {"$min": {"j.x": 3}}),
    ({"x": 1}, {"$inc": {"j.y": 2}}),
    ({"x": 1.5}, {"$inc": {"j.x": 1}}),
    ({"x": 2}, {"$mul": {"j.x": 1.5}}),
    ({"x": 1}, {"$mul": {"j.y": 2}}),
    ({"1": {"a": 1}}, {"$set": {"j.1.a": 2}}),
    ({"x": [5, 6]}, {"$set": {"j.x.0": 9}}),
    ({"x": [5, 6]}, {"$pull": {"j.x": {"$gte": 6}}}),
    ({"x": [1, 1.0, 2]}, {"$pull": {"j.x": 1}}),
    ({"x": [1, 2, 3]}, {"$pop": {"j.x": -1}}),
    ({"x": [1, 2]}, {"$push": {"j.x": {"$each": [3], "$position": 0}}}),
    ({"x": {"y": 1}}, {"$unset": {"j.x.y": ""}}),
    ({"x": 1}, {"$rename": {"j.x": "j.z"}}),
    ({"x": [3, 1, 2]}, {"$push": {"j.x": {"$each": [0], "$sort": 1, "$slice": 2}}}),
    ({"x": "s"}, {"$push": {"j.x": 1}}),
    ({"x": [1, "a", None, True, {"a": 1}]}, {"$push": {"j.x": {"$each": [], "$sort": 1}}}),
]


@pytest.mark.parametrize(("start", "upd"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_probe_jsonb_updates_agree(both: Any, start: Any, upd: dict[str, Any]) -> None:
    a, b = _diff(both, start, upd)
    print(upd, a, b)
    assert a == b


UTC = dt.timezone.utc
P2 = dt.timezone(dt.timedelta(hours=2))


def test_probe_keys_server_way(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    sql_db.execute("CREATE TABLE k (c char(3) PRIMARY KEY, v int); CREATE TABLE t (ts timestamptz PRIMARY KEY, v int);"
                   "CREATE TABLE n (x numeric PRIMARY KEY, v int)")
    k, t, n = sql_db.query("k"), sql_db.query("t"), sql_db.query("n")
    assert k.bulk_insert([{"c": "ab", "v": 1}, {"c": "ab ", "v": 2}], on_conflict="ignore") == 1
    assert k.find_all({}, paginate=False).__iter__().__next__()["v"] == 1
    assert k.bulk_insert([{"c": "ab", "v": 3}, {"c": "ab ", "v": 4}], on_conflict="update") == 0 or True
    assert [r["v"] for r in k.find_all({}, paginate=False)] == [4]
    a = dt.datetime(2020, 1, 1, 12, tzinfo=UTC)
    b = dt.datetime(2020, 1, 1, 14, tzinfo=P2)
    assert t.bulk_insert([{"ts": a, "v": 1}, {"ts": b, "v": 2}], on_conflict="ignore") == 1
    assert t.bulk_update([{"ts": a}, {"ts": b}], [{"v": 5}, {"v": 6}], ["ts"]) == 1
    assert [r["v"] for r in t.find_all({}, paginate=False)] == [6]
    assert n.bulk_insert([{"x": 1, "v": 1}, {"x": 1.0, "v": 2}], on_conflict="ignore") == 1
    from decimal import Decimal
    assert n.bulk_insert([{"x": Decimal("2.0"), "v": 1}, {"x": Decimal("2.00"), "v": 2}], on_conflict="ignore") == 1
    m = mongo_db.query("m")
    d1 = dt.datetime(2020, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    d2 = dt.datetime(2020, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)
    assert m.bulk_insert([{"_id": d1, "v": 1}, {"_id": d2, "v": 2}], on_conflict="ignore") == 1
    assert m.bulk_insert([{"_id": d1, "v": 3}, {"_id": d2, "v": 4}], on_conflict="update") == 0
    assert [r["v"] for r in m.find_all({}, paginate=False)] == [4]
    assert m.bulk_insert([{"_id": 1, "v": 1}, {"_id": 1.0, "v": 2}, {"_id": True, "v": 3}], on_conflict="ignore") == 2


def test_named_params_header_repeats_a_name_silently() -> None:
    """`-- params: x integer, x text` gives x two types; the last silently wins (a typo goes unnoticed)."""
    from dbp.errors import ConfigError
    from dbp.named import parse_sql
    with pytest.raises(ConfigError):
        parse_sql("q", "-- params: x integer, x text\nSELECT %(x)s AS a", "q.sql")


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_regex_admitted_by_the_linear_subset_is_quadratic_unanchored(both: Any, engine: str) -> None:
    """'[a-z]+[0-9]' passes dbp.regex (the quantifier's body and what follows start differently), yet an
    unanchored search backtracks from every start: 100,000 letters took 35 s on the test MongoDB server
    (blocking it), 0.001 s on PostgreSQL. 10,000 letters here: 6.6 s for 20,000."""
    import time

    from dbp.errors import FilterError
    from dbp.regex import translate
    with pytest.raises(FilterError, match="which can also start the pattern"):  # fixed: refused (rule 5)
        translate("[a-z]+[0-9]")
    s, m = both
    q, k = (s, "id") if engine == "sql" else (m, "_id")
    q.bulk_insert([{k: 1, "s": "a" * 10_000}])
    for admitted in ("[a-z][0-9]", "^[a-z]+[0-9]", "ZTF[0-9]+x"):  # what it suggests instead, and a safe loop
        t0 = time.perf_counter()
        assert q.count({"s": {"$regex": admitted}}) == 0
        took = time.perf_counter() - t0
        assert took < 0.5, (admitted, took)


def test_probe_update_mode_np(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "i": 0, "s": "keep"}])
    m.bulk_insert([{"_id": 1, "i": 0, "s": "keep"}])
    rows = [{"id": np.int64(1), "i": np.int64(5), "j": {"k": [np.int64(1), (np.float32(0.5),)]}},
            {"id": np.int64(2), "a": np.array([1, 2]), "j": None}]
    rs = s.bulk_insert(rows, on_conflict="update")
    rm = m.bulk_insert([{("_id" if k == "id" else k): v for k, v in r.items()} for r in rows], on_conflict="update")
    print(rs, rm)
    a = [dict(r) for r in s.find_all({}, sort=[("id", 1)], paginate=False)]
    b = [dict(r) for r in m.find_all({}, sort=[("_id", 1)], paginate=False)]
    print(a, b)
    assert a[0]["j"] == b[0]["j"] == {"k": [1, [0.5]]}
    assert a[0]["s"] == b[0]["s"] == "keep"
    assert a[1]["a"] == b[1]["a"] == [1, 2]


def test_probe_bulk_update_np(both: Any) -> None:
    s, m = both
    s.bulk_insert([{"id": 1, "i": 0}, {"id": 2, "i": 0}])
    m.bulk_insert([{"_id": 1, "i": 0}, {"_id": 2, "i": 0}])
    inst = [{"id": np.int64(1)}, {"id": np.int64(2)}]
    attrs = [{"j": {"x": np.int64(3)}}, {"a": (np.int64(4),)}]
    assert s.bulk_update(inst, attrs) == 2
    assert m.bulk_update([{"_id": np.int64(1)}, {"_id": np.int64(2)}], attrs) == 2
    assert s.find_one({"id": 1})["j"] == m.find_one({"_id": 1})["j"] == {"x": 3}
    assert s.find_one({"id": 2})["a"] == m.find_one({"_id": 2})["a"] == [4]


def test_probe_ignore_with_other_error_mongo(mongo_db: MongoConnection) -> None:
    mongo_db.database.create_collection("v", validator={"$jsonSchema": {"properties": {"n": {"bsonType": "int"}}}})
    m = mongo_db.query("v")
    m.bulk_insert([{"_id": 1, "n": 1}])
    with pytest.raises(dbp.BulkWriteError) as e:
        m.bulk_insert([{"_id": 1, "n": 1}, {"_id": 2, "n": "x"}, {"_id": 3, "n": 3}], on_conflict="ignore")
    print(e.value, e.value.rows)
    assert e.value.rows == [1]


def test_get_or_create_twice_with_microsecond_key_mongo(mongo_db: MongoConnection) -> None:
    """The same get_or_create twice: the second should find the first's document (SQL does)."""
    mongo_db.database["g"].create_index("t", unique=True)
    g = mongo_db.query("g")
    t = dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    _, created = g.get_or_create({"t": t}, v=1)
    assert created
    row, created = g.get_or_create({"t": t}, v=2)
    assert not created and row["v"] == 1


def test_probe_get_or_create_twice_sql(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE g (t timestamp PRIMARY KEY, v int)")
    g = sql_db.query("g")
    t = dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    assert g.get_or_create({"t": t}, v=1)[1]
    row, created = g.get_or_create({"t": t}, v=2)
    assert not created and row["v"] == 1


def test_frame_of_int_field_with_missing_comes_back_float_mongo(mongo_db: MongoConnection) -> None:
    """frame() then bulk_insert(frame) turns a stored int 5 into the double 5.0 (SQL refuses the same frame)."""
    m, copy_ = mongo_db.query("m"), mongo_db.query("m2")
    m.bulk_insert([{"_id": 1, "i": 5}, {"_id": 2}])
    df = m.frame({}, sort=[("_id", 1)])
    df_before = df.copy()
    assert copy_.bulk_insert(df) == 2
    assert df.equals(df_before)
    got = copy_.find_one({"_id": 1})["i"]
    assert type(got) is int, repr(got)


NESTED = [
    {"k": [float("nan")]},
    {"k": [np.float64("nan")]},
    {"k": [float("inf")]},
    {"k": [np.datetime64("2020-01-01T00:00:00")]},
    {"k": [dt.datetime(2020, 1, 1)]},
    {np.str_("k"): [np.bool_(True)]},
    {"k": (1, (2, 3))},
    {"k": [b"x"]},
    {"k": [dt.timedelta(1)]},
    {"k": [dt.date(2020, 1, 1)]},
]


@pytest.mark.parametrize("value", NESTED, ids=[str(i) for i in range(len(NESTED))])
def test_probe_nested_values_agree(both: Any, value: Any) -> None:
    s, m = both
    out = []
    for q, k in ((s, "id"), (m, "_id")):
        try:
            q.bulk_insert([{k: 1, "j": value}])
            out.append(q.find_one({k: 1})["j"])
        except dbp.DbpError as exc:
            out.append(type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 (a raw exception is the finding)
            out.append("RAW " + type(exc).__name__ + str(exc)[:80])
    print(value, out)
    assert not any(isinstance(o, str) and o.startswith("RAW") for o in out)


def test_probe_naive_and_aware_one_key_sql(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE t (ts timestamptz PRIMARY KEY, v int)")
    t = sql_db.query("t")
    a = dt.datetime(2020, 1, 1, 12, tzinfo=UTC)
    n = dt.datetime(2020, 1, 1, 12)
    out = []
    for call in (lambda: t.bulk_insert([{"ts": a, "v": 1}, {"ts": n, "v": 2}], on_conflict="ignore"),
                 lambda: t.bulk_insert([{"ts": a, "v": 3}, {"ts": n, "v": 4}], on_conflict="update"),
                 lambda: t.bulk_update([{"ts": a}, {"ts": n}], [{"v": 5}, {"v": 6}], ["ts"])):
        try:
            out.append((call(), [r["v"] for r in t.find_all({}, paginate=False)]))
        except dbp.DbpError as exc:
            out.append(type(exc).__name__ + ": " + str(exc)[:100])
    print(out)
    assert not any(isinstance(o, str) for o in out)
    assert out[-1][1] == [6]


PARTS = ["it's", "a b", 'q"x', "x}", "{x", "a,b", "NULL", "", " ", "\\", "%s", "%(x)s", "-1", "é"]


@pytest.mark.parametrize("part", PARTS, ids=[str(i) for i in range(len(PARTS))])
def test_probe_jsonb_path_parts(both: Any, part: str) -> None:
    out = []
    for upd in ({"$set": {f"j.{part}": 1}}, {"$inc": {f"j.{part}": 2}}, {"$push": {f"j.l{part}": 1}},
                {"$unset": {f"j.{part}": ""}}):
        out.append(_diff(both, {"z": 0}, upd))
    print(repr(part), out)
    for a, b in out:
        assert a == b or (isinstance(a, str) and isinstance(b, str))


ARRAY_PATHS = [
    {"$set": {"j.x.-1": 9}},
    {"$set": {"j.x.5": 9}},
    {"$set": {"j.x.01": 9}},
    {"$set": {"j.x.1.y": 9}},
    {"$inc": {"j.x.4": 1}},
    {"$unset": {"j.x.0": ""}},
    {"$set": {"j.x.+1": 9}},
    {"$min": {"j.x.3": 1}},
    {"$push": {"j.x.0": 1}},
]


@pytest.mark.parametrize("upd", ARRAY_PATHS, ids=[str(i) for i in range(len(ARRAY_PATHS))])
def test_probe_jsonb_array_positions(both: Any, upd: dict[str, Any]) -> None:
    a, b = _diff(both, {"x": [5, 6]}, upd)
    print(upd, a, b)
    assert a == b or (isinstance(a, str) and isinstance(b, str))


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_probe_huge_int_everywhere(both: Any, engine: str) -> None:
    s, m = both
    q, k = (s, "id") if engine == "sql" else (m, "_id")
    big = 2**70
    calls = {
        "count": lambda: q.count({"i": big}),
        "find": lambda: q.find_one({"i": {"$in": [big]}}),
        "insert": lambda: q.bulk_insert([{k: 1, "i": big}]),
        "insert_j": lambda: q.bulk_insert([{k: 2, "j": {"x": [big]}}]),
        "update": lambda: q.update({k: 1}, {"$inc": {"i": big}}),
        "upsert": lambda: q.upsert({k: 3}, {"i": big}),
        "goc": lambda: q.get_or_create({k: 4}, i=big),
        "bulk_update": lambda: q.bulk_update([{k: 1}], [{"i": big}]),
        "ins_update": lambda: q.bulk_insert([{k: 5, "i": big}], on_conflict="update"),
    }
    raw = {}
    for name, call in calls.items():
        try:
            call()
        except dbp.DbpError:
            pass
        except Exception as exc:  # noqa: BLE001 (a raw exception is the finding)
            raw[name] = f"{type(exc).__name__}: {exc}"[:100]
    print(engine, raw)
    assert raw == {}


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_probe_caller_values_untouched(both: Any, engine: str) -> None:
    s, m = both
    q, k = (s, "id") if engine == "sql" else (m, "_id")
    j = {"x": [np.int64(1), {"y": np.array([1, 2])}], "d": OrderedDict(z=np.float32(1.5))}
    rows = [{k: np.int64(1), "j": j, "a": np.array([3])}]
    keep = repr(rows)
    q.bulk_insert(rows)
    q.bulk_insert(rows, on_conflict="update")
    q.update({k: 1}, {"$set": {"j": j}})
    q.upsert({k: 2}, {"j": j})
    q.get_or_create({k: 3}, j=j)
    q.bulk_update([{k: 1}], [{"j": j}])
    assert repr(rows) == keep
    assert q.find_one({k: 1})["j"] == {"x": [1, {"y": [1, 2]}], "d": {"z": 1.5}}


def test_probe_frame_roundtrip_other_types(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    sql_db.execute("CREATE TABLE f (id int PRIMARY KEY, ts timestamptz, t timestamp, x float8, s text, "
                   "a int[], j jsonb, b boolean, d date, n numeric); CREATE TABLE f2 (LIKE f INCLUDING ALL)")
    f, f2 = sql_db.query("f"), sql_db.query("f2")
    rows = [{"id": 1, "ts": dt.datetime(2020, 1, 1, 1, 2, 3, 456789, tzinfo=UTC), "t": dt.datetime(2020, 1, 1),
             "x": 1.5, "s": "a", "a": [1, 2], "j": {"k": [1]}, "b": True, "d": dt.date(2020, 1, 2), "n": 5},
            {"id": 2}]
    f.bulk_insert(rows)
    df = f.frame({}, sort=[("id", 1)])
    print(df.dtypes)
    try:
        f2.bulk_insert(df)
    except dbp.DbpError as exc:
        pytest.fail(str(exc))
    assert list(f2.find_all({}, sort=[("id", 1)], paginate=False)) == list(f.find_all({}, sort=[("id", 1)],
                                                                                        paginate=False))
