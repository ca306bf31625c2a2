"""numpy and pandas values at any depth, timedelta64, jsonb inf operands, array equality (issue 20, adversary b)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .conftest import ROOT

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

ENGINES = ("sql", "mongo")
TABLE = """CREATE TABLE vals (id bigint PRIMARY KEY, t timestamp, tz timestamptz[], ts timestamp[], doc jsonb,
           d interval, nums bigint[], small int[], words text[])"""
YEAR0 = "is outside years 1..9999 in UTC"
FAR = "pandas Timestamp 10005-01-01 00:00:00 is outside years 1..9999, where Python datetimes are"


@pytest.fixture
def vals(sql_db: SQLConnection, mongo_db: MongoConnection) -> dict[str, Any]:
    sql_db.execute(TABLE)
    return {"sql": sql_db.query("vals"), "mongo": mongo_db.query("vals")}


def key(engine: str) -> str:
    return "id" if engine == "sql" else "_id"


def far() -> Any:
    return pd.Timestamp(np.datetime64("10005-01-01T00:00", "s"))


def year0() -> Any:
    return pd.Timestamp("0001-01-01 00:30", tz="Etc/GMT-1")  # year 0 in UTC


# -- 5/6/7: pd.Timestamp at any depth, with the top level's checks -------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_far_timestamp_is_a_filter_error_at_the_top_level(vals: dict[str, Any], engine: str) -> None:
    q = vals[engine]
    with pytest.raises(FilterError, match=FAR):
        q.count({"t": far()})
    with pytest.raises(FilterError, match=FAR):
        q.bulk_insert([{key(engine): 1, "t": far()}])
    assert q.count() == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("where", ["list", "nested_list", "document"])
def test_nested_far_timestamp_is_refused_on_every_write(vals: dict[str, Any], engine: str, where: str) -> None:
    q, k = vals[engine], key(engine)
    field, value = {"list": ("ts", [far()]), "nested_list": ("ts", [[far()]]), "document": ("doc", {"a": [far()]})
                    }[where]
    with pytest.raises(FilterError, match=FAR):
        q.bulk_insert([{k: 1, field: value}])
    q.bulk_insert([{k: 2}])
    with pytest.raises(FilterError, match=FAR):
        q.update({k: 2}, {"$set": {field: value}})
    with pytest.raises(FilterError, match=FAR):
        q.bulk_update([{k: 2}], [{field: value}])
    with pytest.raises(FilterError, match=FAR):
        q.count({field: value})
    assert [r.get(field) for r in q.find_all(paginate=False)] == [None]


@pytest.mark.parametrize("engine", ENGINES)
def test_nested_timestamp_in_utc_year_0_is_refused(vals: dict[str, Any], engine: str) -> None:
    """Stored, the value reads back as another date (MongoDB) or not at all (PostgreSQL, a BC timestamp)."""
    q, k = vals[engine], key(engine)
    field = "tz" if engine == "sql" else "l"
    # both engines name the years (MongoDB's bulk_insert checks every document before the first write)
    with pytest.raises(FilterError, match=YEAR0):
        q.bulk_insert([{k: 1, field: [[year0()]]}])
    q.bulk_insert([{k: 2}])
    with pytest.raises(FilterError, match=YEAR0):
        q.update({k: 2}, {"$set": {field: [[year0()]]}})
    if engine == "mongo":
        with pytest.raises(FilterError, match=YEAR0):
            q.update({k: 2}, {"$set": {"doc": {"t": year0()}}})
    assert q.count() == 1 and q.find_one({k: 2}).get(field) is None


def test_sql_parameter_with_a_nested_timestamp_is_checked(sql_db: SQLConnection) -> None:
    with pytest.raises(FilterError, match=YEAR0):
        sql_db.sql("SELECT %(x)s AS v", {"x": [[year0()]]}).find_one()
    with pytest.raises(FilterError, match=FAR):
        sql_db.sql("SELECT %(x)s AS v", {"x": [[far()]]}).find_one()
    got = sql_db.sql("SELECT %(x)s::timestamp[] AS v", {"x": [[pd.Timestamp("2020-01-02 03:04")]]}).find_one()
    assert got == {"v": [[dt.datetime(2020, 1, 2, 3, 4)]]}


@pytest.mark.parametrize("engine", ENGINES)
def test_nested_timestamp_is_truncated_to_the_microsecond_as_at_the_top_level(vals: dict[str, Any],
                                                                                engine: str) -> None:
    q, k = vals[engine], key(engine)
    ts = pd.Timestamp("2020-01-01 00:00:00.001001999")
    q.bulk_insert([{k: 1, "t": ts, "ts": [[ts]]}])
    row = q.find_one({k: 1})
    assert row["ts"][0][0] == row["t"]
    if engine == "sql":  # PostgreSQL would round the nanoseconds its text form carried (to ...1002)
        assert row["t"] == dt.datetime(2020, 1, 1, 0, 0, 0, 1001)


# -- 8: NaT and NA nested are None ----------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_nested_nat_and_na_are_none(vals: dict[str, Any], engine: str) -> None:
    q, k = vals[engine], key(engine)
    first = pd.Timestamp("2020-01-01")
    q.bulk_insert([{k: 1, "ts": [first, pd.NaT], "doc": {"a": [pd.NA, np.int64(2)], "t": pd.NaT}}])
    row = q.find_one({k: 1})
    assert row["ts"] == [dt.datetime(2020, 1, 1), None]
    assert row["doc"] == {"a": [None, 2], "t": None}
    q.update({k: 1}, {"$set": {"doc": {"t": pd.NaT, "n": [pd.NA]}}})
    assert q.find_one({k: 1})["doc"] == {"t": None, "n": [None]}
    q.update({k: 1}, {"$push": {"ts": {"$each": [pd.NaT]}}})
    assert q.find_one({k: 1})["ts"] == [dt.datetime(2020, 1, 1), None, None]


# -- 11/12: timedelta64 is a timedelta, never an integer ------------------------------------------------------------


def test_sql_timedelta64_is_an_interval(vals: dict[str, Any]) -> None:
    q = vals["sql"]
    q.bulk_insert([{"id": 1, "d": np.timedelta64(90, "s")}, {"id": 2, "d": np.timedelta64("NaT", "s")},
                   {"id": 3, "d": pd.Timedelta(minutes=1)}])
    assert [r["d"] for r in q.find_all(paginate=False, sort=[("id", 1)])] == [
        dt.timedelta(seconds=90), None, dt.timedelta(minutes=1)]
    assert sql_value(q, np.timedelta64(1500, "us")) == dt.timedelta(microseconds=1500)


def sql_value(q: Any, value: Any) -> Any:
    return q.update({"id": 1}, {"$set": {"d": value}}) and q.find_one({"id": 1})["d"]


@pytest.mark.parametrize("engine", ENGINES)
def test_timedelta64_is_not_a_number(vals: dict[str, Any], engine: str) -> None:
    q, k = vals[engine], key(engine)
    q.bulk_insert([{k: 1, "nums": [5]}])
    message = "vals.nums is bigint\\[\\]; it cannot hold timedelta" if engine == "sql" else "timedelta"
    with pytest.raises(FilterError, match=message):
        q.bulk_insert([{k: 2, "nums": [np.timedelta64(5, "ns")]}])
    # filters take no timedelta on either engine; a timedelta64 is refused as one
    for operand in (np.timedelta64(5, "ns"), {"$in": np.array([5], dtype="timedelta64[ns]")}):
        with pytest.raises(FilterError, match=r"nums(\.\$in)?: values of type timedelta are not supported"):
            q.count({"nums": operand})
    assert q.count() == 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("value", "message"), [
    (np.timedelta64(5), "numpy timedelta64 .* has no unit; dbp cannot tell which duration it is"),
    (np.timedelta64(1, "M"), "numpy timedelta64 .* counts years or months, which have no fixed length"),
])
def test_timedelta64_of_unknown_length_is_refused(vals: dict[str, Any], engine: str, value: Any,
                                                  message: str) -> None:
    q, k = vals[engine], key(engine)
    with pytest.raises(FilterError, match=message):
        q.bulk_insert([{k: 1, "d": value}])
    with pytest.raises(FilterError, match=message):
        q.count({"d": value})
    with pytest.raises(FilterError, match=message):
        q.bulk_insert([{k: 1, "doc": {"a": [value]}}])
    assert q.count() == 0


def test_mongo_refuses_a_timedelta64_as_a_timedelta(vals: dict[str, Any]) -> None:
    q = vals["mongo"]
    q.bulk_insert([{"_id": 1}])
    for write in (lambda v: q.bulk_insert([{"_id": 2, "d": v}]),
                  lambda v: q.update({"_id": 1}, {"$set": {"d": v}}),
                  lambda v: q.count({"d": v})):
        with pytest.raises(FilterError) as plain_error:
            write(dt.timedelta(seconds=1))
        with pytest.raises(FilterError) as numpy_error:
            write(np.timedelta64(1, "s"))
        assert str(numpy_error.value) == str(plain_error.value)
        assert "timedelta" in str(numpy_error.value)
    assert q.count() == 1


def test_sql_parameter_timedelta64(sql_db: SQLConnection) -> None:
    assert sql_db.sql("SELECT %(x)s AS v", {"x": np.timedelta64(1, "s")}).find_one() == {
        "v": dt.timedelta(seconds=1)}
    with pytest.raises(FilterError, match="has no unit"):
        sql_db.sql("SELECT %(x)s AS v", {"x": [np.timedelta64(1)]}).find_one()


# -- 10: $inc/$mul by inf on a jsonb path ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["$inc", "$mul"])
@pytest.mark.parametrize("operand", [float("inf"), float("-inf"), np.float32("inf")])
def test_sql_non_finite_operand_on_a_jsonb_path_is_refused(vals: dict[str, Any], op: str, operand: Any) -> None:
    q = vals["sql"]
    q.bulk_insert([{"id": 1, "doc": {"z": 1.5}}])
    message = f"\\{op} on vals.doc.z: jsonb cannot hold -?inf \\(doc is jsonb\\)"
    with pytest.raises(FilterError, match=message):
        q.update({"id": 1}, {op: {"doc.z": operand}})
    with pytest.raises(FilterError, match=message):
        q.bulk_update([{"id": 1}], [{op: {"doc.z": operand}}])
    assert q.find_one({"id": 1})["doc"] == {"z": 1.5}


# -- 16: whole-array equality on integer array columns --------------------------------------------------------------


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(st.integers(-2**31, 2**31 - 1), max_size=4),
       wanted=st.lists(st.integers(-2**31, 2**31 - 1), max_size=4))
def test_whole_array_equality_on_integer_arrays(vals: dict[str, Any], stored: list[int], wanted: list[int]) -> None:
    for engine in ENGINES:
        q, k = vals[engine], key(engine)
        q.delete({})
        q.bulk_insert([{k: 1, "nums": stored, "small": stored}])
        same = int(stored == wanted)
        for field in ("nums", "small"):
            assert q.count({field: wanted}) == same, (engine, field)
            assert q.count({field: {"$ne": wanted}}) == 1 - same, (engine, field)
            assert q.count({field: np.array(wanted, dtype=np.int64)}) == same, (engine, field)


@pytest.mark.parametrize("engine", ENGINES)
def test_whole_array_equality_on_text_and_timestamp_arrays(vals: dict[str, Any], engine: str) -> None:
    q, k = vals[engine], key(engine)
    q.bulk_insert([{k: 1, "words": ["a", "b"], "ts": [dt.datetime(2020, 1, 1)]}])
    assert q.count({"words": ["a", "b"]}) == 1
    assert q.count({"words": ["b", "a"]}) == 0
    assert q.count({"ts": [pd.Timestamp("2020-01-01")]}) == 1


# -- 17: a DataFrame with a repeated column -------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_dataframe_with_a_repeated_column_is_refused(vals: dict[str, Any], engine: str) -> None:
    q, k = vals[engine], key(engine)
    frame = pd.DataFrame([[1, 10, 20]], columns=[k, "a", "a"])
    with pytest.raises(FilterError, match="the DataFrame has more than one column named 'a'"):
        q.bulk_insert(frame)
    with pytest.raises(FilterError, match="the DataFrame has more than one column named 'a'"):
        q.bulk_update(frame)
    assert q.count() == 0


# -- the walk costs nothing without numpy and pandas ----------------------------------------------------------------


def test_containers_are_not_walked_before_numpy_or_pandas_is_imported() -> None:
    code = (
        "import sys, dbp, dbp._values as v\n"
        "row = {'a': [1, {'b': [2]}], 'c': 'x'}\n"
        "assert v.plan(tuple(map(type, row.values()))) is None\n"
        "assert v.plain(row['a']) is row['a'] and not v._FOREIGN\n"
        "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules\n"
        "import numpy\n"
        "steps = v.plan(tuple(map(type, row.values())))\n"
        "assert steps is not None and v.convert_row(list(row.values()), steps)[0] is row['a']\n"
        "assert v.plain([[numpy.int64(1)]]) == [[1]] and type(v.plain([[numpy.int64(1)]])[0][0]) is int\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
