"""Issue 20, values crossing the wire: pandas list-likes (item 20), uuids on MongoDB (12),
datetimes whose UTC time leaves years 1..9999 (11), jsonb floats (9); on both engines."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbp import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .conftest import ROOT

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

THING_SQL = """
CREATE TABLE thing (id bigint PRIMARY KEY, oid text UNIQUE, n integer, nums bigint[], tags text[], j jsonb,
                    u uuid, ts timestamptz, tn timestamp);
"""
ENGINES = ("sql", "mongo")


@pytest.fixture
def things(sql_db: SQLConnection, mongo_db: MongoConnection) -> dict[str, Any]:
    sql_db.execute(THING_SQL)
    mongo_db.collection("thing").create_index("oid", unique=True)
    return {"sql": sql_db.query("thing"), "mongo": mongo_db.query("thing")}


def key(engine: str) -> str:
    return "id" if engine == "sql" else "_id"


def load(q: Any, engine: str) -> None:
    k = key(engine)
    q.bulk_insert([{k: 1, "oid": "a", "n": 1, "nums": [1], "tags": ["x", "y"]},
                   {k: 2, "oid": "b", "n": 2, "nums": [2], "tags": ["y"]},
                   {k: 3, "oid": "c", "n": None, "nums": None, "tags": None}])


# -- item 20: pandas values that stand for a list ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_pandas_list_likes_in_filters(things: dict[str, Any], engine: str) -> None:
    q, k = things[engine], key(engine)
    load(q, engine)
    df = q.frame(sort=[(k, 1)])
    assert q.count({"oid": {"$in": df["oid"].unique()}}) == 3  # what ALeRCE code does with frame()
    assert q.count({"oid": {"$in": df["oid"]}}) == 3
    assert q.count({"oid": {"$in": pd.Index(["a", "b"])}}) == 2
    assert q.count({"oid": {"$in": pd.array(["a", "zz"], dtype="string")}}) == 1
    assert q.count({"oid": {"$nin": pd.Series(["a"], dtype="string").unique()}}) == 2
    assert q.count({"n": {"$in": pd.array([1, 2], dtype="Int64")}}) == 2
    assert q.count({"n": {"$in": pd.Series([2, None], dtype="Int64")}}) == 2  # NA is None: matches the null n
    assert q.count({"n": {"$in": pd.Series([1.0, np.nan])}}) == 2  # NaN in pandas is missing, as in bulk_insert
    assert q.count({"tags": {"$all": pd.Series(["x", "y"])}}) == 1
    assert q.count({"tags": {"$all": pd.array(["y"], dtype="string")}}) == 2
    assert q.count({"n": {"$in": pd.RangeIndex(1, 3)}}) == 2
    assert q.count({"nums": {"$elemMatch": {"$in": pd.Series([2, 5])}}}) == 1
    assert q.count({"tags": pd.Series(["y"])}) == 1 and q.count({"tags": {"$ne": np.array(["y"])}}) == 2
    assert q.count({"$or": [{"tags": {"$eq": pd.Index(["x", "y"])}}, {"oid": "c"}]}) == 2
    assert q.find_one({"oid": "a"}, projection=df[["oid", "n"]].columns) == {"oid": "a", "n": 1}
    with pytest.raises(FilterError, match=r"nums\.\$elemMatch: None is not supported on array elements"):
        q.count({"nums": {"$elemMatch": {"$in": pd.Series([2, None], dtype="Int64")}}})


@pytest.mark.parametrize("engine", ENGINES)
def test_pandas_list_likes_as_array_values_and_update_operands(things: dict[str, Any], engine: str) -> None:
    q, k = things[engine], key(engine)
    q.bulk_insert([{k: 1, "oid": "a", "nums": pd.array([1, 2], dtype="Int64"), "tags": pd.Series(["x"])}])
    q.bulk_insert(pd.DataFrame({k: [2], "oid": ["b"]}))
    assert q.update({"oid": "a"}, {"$push": {"nums": {"$each": np.array([3, 4])}}}) == 1
    assert q.update({"oid": "a"}, {"$addToSet": {"tags": {"$each": pd.Series(["x", "z"]).array}}}) == 1
    assert q.update({"oid": "b"}, {"$set": {"nums": pd.Series([7, 8], dtype="Int64")}}) == 1
    assert q.bulk_update([{k: 2}], [{"tags": pd.Index(["p", "q"])}]) == 1
    q.upsert({"oid": "a"}, {"$push": {"tags": {"$each": pd.Index(["w"])}}})
    rows = {r["oid"]: r for r in q.find_all(sort=[(k, 1)], paginate=False)}
    assert rows["a"]["nums"] == [1, 2, 3, 4] and rows["a"]["tags"] == ["x", "z", "w"]
    assert rows["b"]["nums"] == [7, 8] and rows["b"]["tags"] == ["p", "q"]
    for row in rows.values():
        assert all(type(v) in (int, str) for v in row["nums"] + row["tags"]), row
    with pytest.raises(FilterError, match=r"\$each takes a list"):
        q.update({"oid": "a"}, {"$push": {"nums": {"$each": "abc"}}})


def test_pandas_list_likes_do_not_import_pandas() -> None:
    code = ("import sys, numpy as np, dbp.filters, dbp.updates; "
            "dbp.filters.parse({'n': {'$in': np.array([1, 2])}}); "
            "dbp.updates.parse_update({'$push': {'n': {'$each': np.array([1])}}}); "
            "assert 'pandas' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- item 12: uuids on MongoDB ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_uuids_round_trip_on_every_path(things: dict[str, Any], engine: str) -> None:
    q, k = things[engine], key(engine)
    a, b, c, d = (uuid.UUID(int=i * 2**100 + i) for i in range(1, 5))
    assert q.bulk_insert([{k: 1, "oid": "a", "u": a}, {k: 2, "oid": "b", "u": b}]) == 2
    assert q.count({"u": a}) == 1 and q.count({"u": {"$in": [a, b]}}) == 2 and q.count({"u": {"$ne": a}}) == 1
    assert q.update({"u": a}, {"$set": {"u": c}}) == 1
    assert q.bulk_update([{"oid": "b"}], [{"u": d}], filter_fields=["oid"]) == 1
    row, created = q.get_or_create({"oid": "e"}, **{k: 5, "u": a})
    assert created and row["u"] == a
    assert q.upsert({"oid": "f"}, {k: 6, "u": b})["u"] == b
    got = {r["oid"]: r["u"] for r in q.find_all(sort=[(k, 1)], paginate=False)}
    assert got == {"a": c, "b": d, "e": a, "f": b}
    assert all(type(v) is uuid.UUID for v in got.values())
    assert q.find_one({"u": d})["oid"] == "b"
    page = q.paginate(sort=[("u", 1)], per_page=2, keyset=True)
    walked = [r["u"] for r in page.items] + [r["u"] for r in page.next().items]
    assert walked == sorted(got.values(), key=lambda u: u.bytes)


def test_mongo_stores_uuids_as_standard_binary(things: dict[str, Any], mongo_db: MongoConnection) -> None:
    from bson.binary import UUID_SUBTYPE, Binary
    from bson.codec_options import CodecOptions

    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    things["mongo"].bulk_insert([{"_id": 1, "u": value}])
    raw = mongo_db.database.get_collection("thing", codec_options=CodecOptions()).find_one({"_id": 1})
    assert raw is not None and isinstance(raw["u"], Binary) and raw["u"].subtype == UUID_SUBTYPE
    assert raw["u"] == Binary(value.bytes, UUID_SUBTYPE)


def test_a_chosen_uuid_representation_is_kept() -> None:
    from dbp.mongo.connection import client_options
    from dbp.mongo.settings import MongoSettings

    plain = MongoSettings.from_section({"URL": "mongodb://h/db"}, where="M")
    assert client_options(plain)["uuidRepresentation"] == "standard"
    in_url = MongoSettings.from_section({"URL": "mongodb://h/db?uuidRepresentation=pythonLegacy"}, where="M")
    assert "uuidRepresentation" not in client_options(in_url)
    as_key = MongoSettings.from_section({"URL": "mongodb://h/db", "UUID_REPRESENTATION": "csharpLegacy"}, where="M")
    assert client_options(as_key)["uuidRepresentation"] == "csharpLegacy"


# -- item 11: aware datetimes whose UTC time falls in year 0 or 10000 -------------------------------

EARLY = dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 0000-12-31 23:30 UTC
LATE = dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1)))  # 10000-01-01 00:30 UTC
EDGES = [dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(minutes=30))),  # 0001-01-01 00:00 UTC
         dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(minutes=30))), dt.datetime(1, 1, 1, 0, 0, 1)]


def _writes(q: Any, k: str, column: str, value: Any) -> list[tuple[str, Any]]:
    return [
        ("bulk_insert", lambda: q.bulk_insert([{k: 9, "oid": "z", column: value}])),
        ("bulk_insert", lambda: q.bulk_insert([{k: 8, "oid": "y"}, {k: 9, "oid": "z", column: [value]}])
         if column == "j" else q.bulk_insert(pd.DataFrame({k: [9], "oid": ["z"], column: [pd.Timestamp(value)]}))),
        ("update", lambda: q.update({"oid": "a"}, {"$set": {column: value}})),
        ("update", lambda: q.update({"oid": "a"}, {"$max": {column: value}})),
        ("upsert", lambda: q.upsert({"oid": "q"}, {k: 10, column: value})),
        ("get_or_create", lambda: q.get_or_create({"oid": "r"}, **{k: 11, column: value})),
        ("bulk_update", lambda: q.bulk_update([{k: 1}], [{column: value}])),
        ("bulk_update", lambda: q.bulk_update([{k: 1}, {k: 2}], [{column: value}, {"oid": "bb"}])),
    ]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("column", ["ts", "tn"])
@pytest.mark.parametrize("value", [EARLY, LATE], ids=["year0", "year10000"])
def test_datetimes_beyond_utc_years_are_refused_before_writing(things: dict[str, Any], engine: str, column: str,
                                                               value: dt.datetime) -> None:
    q, k = things[engine], key(engine)
    load(q, engine)
    before = list(q.find_all(sort=[(k, 1)], paginate=False))
    for what, write in _writes(q, k, column, value):
        with pytest.raises(FilterError, match=rf"{column}\b.*outside years 1\.\.9999 in UTC") as info:
            write()
        assert not isinstance(info.value.__cause__, (OverflowError,)), what
    assert list(q.find_all(sort=[(k, 1)], paginate=False)) == before  # nothing written, every row still reads
    for spec in ({column: value}, {column: {"$gte": value}}, {column: {"$in": [EDGES[2], value]}},
                 {"$or": [{column: {"$lt": value}}]}, {column: {"$ne": value}}):
        with pytest.raises(FilterError, match=rf"{column}\b.*outside years 1\.\.9999 in UTC"):
            q.count(spec)


@pytest.mark.parametrize("engine", ENGINES)
def test_datetimes_at_the_utc_edges_round_trip(things: dict[str, Any], engine: str) -> None:
    q, k = things[engine], key(engine)
    rows = [{k: i, "oid": str(i), "ts": v, "tn": v} for i, v in enumerate(EDGES)]
    q.bulk_insert(rows)
    for i, v in enumerate(EDGES):
        utc = v.astimezone(dt.timezone.utc).replace(tzinfo=None) if v.tzinfo else v
        got = q.find_one({k: i})
        assert q.count({"ts": v}) == 1 and q.count({"tn": v}) == 1
        assert got["tn"] == utc and got["ts"].replace(tzinfo=None) == utc


# -- item 9: jsonb numbers keep int vs float ------------------------------------------------------

_NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1))


def _same_number(got: Any, want: Any) -> bool:
    """``got`` is ``want``: equal, and a float exactly when ``want`` is one (bson's Int64 is an int)."""
    return isinstance(got, float) == isinstance(want, float) and isinstance(got, int) == isinstance(want, int) \
        and got == want


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_NUMBERS, other=_NUMBERS)
@example(value=1e16, other=1e23).via("issue 20")
@example(value=123456789012345678.0, other=10**16).via("issue 20")
@example(value=-1.7976931348623157e308, other=5e-324).via("issue 20")
def test_jsonb_numbers_read_back_as_written(things: dict[str, Any], engine: str, value: Any, other: Any) -> None:
    q, k = things[engine], key(engine)
    q.delete({})
    q.bulk_insert([{k: 1, "oid": "a", "j": value}, {k: 2, "oid": "b", "j": {"v": value, "l": [value, other]}}])
    q.update({"oid": "b"}, {"$set": {"j.w": other}, "$push": {"j.l": {"$each": [value]}}})
    q.bulk_update([{k: 1}, {k: 3}], [{"j": [other]}, {"j": other}])
    q.upsert({"oid": "c"}, {k: 4, "j": {"u": other}})
    q.get_or_create({"oid": "d"}, **{k: 5, "j": value})
    got = {r["oid"]: r["j"] for r in q.find_all(sort=[(k, 1)], paginate=False)}
    assert len(got["a"]) == 1 and _same_number(got["a"][0], other)
    b = got["b"]
    assert all(_same_number(x, y) for x, y in zip([b["v"], *b["l"], b["w"]], [value, value, other, value, other]))
    assert _same_number(got["c"]["u"], other) and _same_number(got["d"], value)
    assert q.count({"j.v": value}) == 1 and q.count({"j": {"v": value, "l": [value, other, value], "w": other}}) == 1


_SMALL = st.one_of(st.integers(-(2**20), 2**20), st.floats(-1e20, 1e20, allow_nan=False).map(lambda f: round(f, 3)),
                   st.sampled_from([1.0, 2.0, 0.0, 1e16, -3.0]))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.one_of(st.none(), _SMALL), inc=_SMALL, mul=_SMALL)
@example(start=1, inc=1.0, mul=2).via("issue 20: $inc of a float keeps a float")
@example(start=None, inc=2.0, mul=1).via("issue 20")
@example(start=1e16, inc=1, mul=1).via("issue 20")
def test_jsonb_arithmetic_keeps_int_and_float_as_mongodb(things: dict[str, Any], start: Any, inc: Any, mul: Any
                                                         ) -> None:
    out = {}
    for engine in ENGINES:
        q, k = things[engine], key(engine)
        q.delete({})
        q.bulk_insert([{k: 1, "j": {} if start is None else {"a": start}}])
        q.update({k: 1}, {"$inc": {"j.a": inc}})
        q.update({k: 1}, {"$mul": {"j.a": mul}})
        out[engine] = q.find_one({k: 1})["j"]["a"]
    assert _same_number(out["sql"], out["mongo"]), out


@pytest.mark.parametrize("engine", ENGINES)
def test_numpy_datetimes_outside_python_years_are_refused(things: dict[str, Any], engine: str) -> None:
    q, k = things[engine], key(engine)
    for value in (np.datetime64("0000-06-01"), np.array(["12000-01-01"], dtype="datetime64[D]")):
        with pytest.raises(FilterError, match=r"numpy datetime64 .* is outside years 1\.\.9999"):
            q.bulk_insert([{k: 1, "tn": value}])
        with pytest.raises(FilterError, match=r"numpy datetime64 .* is outside years 1\.\.9999"):
            q.count({"tn": {"$in": value if isinstance(value, np.ndarray) else [value]}})
    assert q.count() == 0


def _same_json(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same_json(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same_json, got, want))
    return type(got) is type(want) and got == want


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), _NUMBERS, st.text(alphabet=st.sampled_from(
    list('1e+6.-"\\\u00e9\n ab')))), lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.text(alphabet=st.sampled_from(list('1e+6"\\ k')), max_size=6), inner, max_size=4)), max_leaves=12)


@settings(max_examples=examples(1500), deadline=None)
@given(value=_JSON)
@example(value={"1e+16": "x 1e+16 \\\"2e+16", "v": [1e16, -1.5e300, 1e-7, 10**20]})
def test_jsonb_text_keeps_every_float_a_float_and_every_string_as_it_was(value: Any) -> None:
    from dbp.sql.types import dumps

    assert _same_json(json.loads(dumps(value), parse_float=_as_jsonb_prints), value)


def _as_jsonb_prints(token: str) -> Any:
    """A JSON number with a '.' or an exponent as jsonb's numeric prints it back: an int unless its scale is > 0."""
    exponent = decimal.Decimal(token).as_tuple().exponent
    assert isinstance(exponent, int)
    return float(token) if exponent < 0 else int(decimal.Decimal(token))
