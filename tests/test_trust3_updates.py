"""Issue 20, the update language: where SQL differed from MongoDB (items 1, 2, 5, 6, 7 and 24).

A table ``item`` and a collection ``item`` hold the same fields (SQL ``id`` is
MongoDB's ``_id``). Each test runs one update through ``update`` and
``bulk_update`` (the row-by-row path; the columnar fast path takes top-level
``$set``/``$inc``/``$mul``/``$min``/``$max`` only) on both engines and compares
what reads back.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp import DbpError, FilterError
from dbp.filters import parse
from dbp.mongo.connection import MongoConnection
from dbp.query import BaseQuery
from dbp.sql.connection import SQLConnection
from dbp.sql.query import SQLQuery
from dbp.updates import parse_update, unique
from tests.hyp import examples

from .test_updates import _changes

ITEM_SQL = """
CREATE TABLE item (
    id bigint PRIMARY KEY,
    n bigint,
    x double precision,
    s text,
    t timestamp,
    tags text[],
    nums bigint[],
    vals double precision[],
    doc jsonb,
    probs jsonb
);
"""
FIELDS = ["n", "x", "s", "t", "tags", "nums", "vals", "doc", "probs"]
ENGINES = ("sql", "mongo")
METHODS = ("update", "bulk_update")
NAN = "NaN"  # NaN read back, as a value that equals itself


def normal(value: Any) -> Any:
    """``value`` with every float NaN replaced by :data:`NAN`, so that rows compare with ``==``."""
    if isinstance(value, float) and math.isnan(value):
        return NAN
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


class Duo:
    """The table and the collection, written alike and read back alike."""

    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.q: dict[str, Any] = {"sql": sql.query("item"), "mongo": mongo.query("item")}

    @staticmethod
    def key(engine: str) -> str:
        return "id" if engine == "sql" else "_id"

    def seed(self, rows: list[dict[str, Any]]) -> None:
        for engine in ENGINES:
            self.q[engine].delete({})
            self.q[engine].bulk_insert([{self.key(engine): r["id"], **{k: v for k, v in r.items() if k != "id"}}
                                        for r in rows])

    def run(self, engine: str, method: str, ids: list[int], update: dict[str, Any]) -> Any:
        """``method`` with ``update`` on rows ``ids``; a DbpError is returned as its class."""
        q, key = self.q[engine], self.key(engine)
        try:
            if method == "update":
                return q.update({key: {"$in": ids}}, update)
            if method == "upsert":
                return "row" if q.upsert({key: ids[0]}, update) else None
            return q.bulk_update([{key: i} for i in ids], [update] * len(ids))
        except DbpError as exc:
            return type(exc)

    def rows(self, engine: str) -> list[dict[str, Any]]:
        key = self.key(engine)
        out = []
        for row in self.q[engine].find_all(sort=[(key, 1)], paginate=False):
            out.append(normal({"id": row[key], **{f: row.get(f) for f in FIELDS}}))
        return out

    def same(self) -> list[dict[str, Any]]:
        sql_rows, mongo_rows = self.rows("sql"), self.rows("mongo")
        assert sql_rows == mongo_rows
        return sql_rows


@pytest.fixture
def duo(sql_db: SQLConnection, mongo_db: MongoConnection) -> Duo:
    sql_db.execute(ITEM_SQL)
    return Duo(sql_db, mongo_db)


def both(duo: Duo, method: str, row: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Seed ``row`` as id 1, run ``update`` on it on both engines; the row each engine reads back."""
    duo.seed([{"id": 1, **row}])
    results = {engine: duo.run(engine, method, [1], update) for engine in ENGINES}
    assert results["sql"] == results["mongo"] == 1, (update, results)
    return duo.same()[0]


# -- item 1: a $pull condition keeps the elements that lack its fields --------------------------------

MIXED = [{"c": "lc", "p": 1}, {"p": 2}, 5, "lc", {"c": "st", "p": 3}, {"c": ["lc", "x"]}, {"c": None}, None]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("condition", "kept"), [
    ({"c": "lc"}, [{"p": 2}, 5, "lc", {"c": "st", "p": 3}, {"c": None}, None]),
    ({"c": "lc", "p": 1}, [{"p": 2}, 5, "lc", {"c": "st", "p": 3}, {"c": ["lc", "x"]}, {"c": None}, None]),
    ({"q": 1}, MIXED),
    ({"c": None}, [{"c": "lc", "p": 1}, 5, "lc", {"c": "st", "p": 3}, {"c": ["lc", "x"]}, None]),
])
def test_pull_condition_keeps_elements_without_its_fields(duo: Duo, method: str, condition: dict[str, Any],
                                                          kept: list[Any]) -> None:
    for path, row in (("probs", {"probs": MIXED}), ("doc.list", {"doc": {"list": MIXED}})):
        got = both(duo, method, row, {"$pull": {path: condition}})
        assert (got["probs"] if path == "probs" else got["doc"]["list"]) == kept


def test_readme_pull_then_push_keeps_entries_of_other_shapes(duo: Duo) -> None:
    """The README's recipe replaces one classifier's entries; entries without a classifier_name stay."""
    old = [{"classifier_name": "lc", "probability": 0.4}, {"class_name": "SN", "probability": 0.1},
           {"classifier_name": "stamp", "probability": 0.9}]
    duo.seed([{"id": k, "probs": old} for k in (1, 2)])
    new = [{"classifier_name": "lc", "probability": 0.7}]
    for engine in ENGINES:
        assert duo.run(engine, "bulk_update", [1, 2], {"$pull": {"probs": {"classifier_name": "lc"}},
                                                       "$push": {"probs": {"$each": new}}}) == 2
    for row in duo.same():
        assert row["probs"] == [old[1], old[2], *new]


# -- item 2: path parts PostgreSQL reads as array positions are field names ---------------------------

POSITIONS = ["-1", "+1", " 1", "\t1", "-0", " -2", "+0"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("part", POSITIONS)
def test_unset_of_a_position_like_part_below_an_array_changes_nothing(duo: Duo, method: str, part: str) -> None:
    row = {"doc": {"arr": [1, 2, 3], "objs": [{"x": 1}, {"x": 2}]}}
    for path in (f"doc.arr.{part}", f"doc.objs.{part}.x", f"doc.objs.{part}"):
        assert both(duo, method, row, {"$unset": {path: ""}})["doc"] == row["doc"], path


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("part", POSITIONS)
def test_position_like_parts_are_field_names_in_objects(duo: Duo, method: str, part: str) -> None:
    row = {"doc": {"o": {part: 1, "k": 2}}}
    assert both(duo, method, row, {"$set": {f"doc.o.{part}": 9}})["doc"] == {"o": {part: 9, "k": 2}}
    assert both(duo, method, row, {"$inc": {f"doc.o.{part}": 2}})["doc"] == {"o": {part: 3, "k": 2}}
    assert both(duo, method, row, {"$unset": {f"doc.o.{part}": ""}})["doc"] == {"o": {"k": 2}}
    assert both(duo, method, {}, {"$set": {f"doc.{part}.{part}": 1}})["doc"] == {part: {part: 1}}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("part", POSITIONS)
@pytest.mark.parametrize("op", ["$set", "$inc", "$mul", "$push", "$addToSet", "$min", "$max"])
def test_writes_below_an_array_by_a_position_like_part_are_refused(duo: Duo, method: str, part: str,
                                                                   op: str) -> None:
    """MongoDB cannot create a field in an array; SQL must not write an array element instead."""
    row = {"doc": {"arr": [1, 2, 3]}}
    duo.seed([{"id": 1, **row}])
    results = {engine: duo.run(engine, method, [1], {op: {f"doc.arr.{part}": 2}}) for engine in ENGINES}
    assert results["sql"] is FilterError and results["mongo"] is not None and issubclass(results["mongo"], DbpError)
    with pytest.raises(FilterError, match=r"^update on item: \$\w+ on doc\.arr\..*: doc\.arr is a jsonb array, "
                                          r"not an object$"):
        duo.q["sql"].update({"id": 1}, {op: {f"doc.arr.{part}": 2}})
    assert duo.same()[0]["doc"] == row["doc"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("row", "path"), [
    ({"doc": 5}, "doc.a"), ({"doc": [1, 2]}, "doc.a"), ({"doc": "s"}, "doc.a.b"), ({"doc": {"a": 5}}, "doc.a.b"),
    ({"doc": {"a": [1, {"b": 1}]}}, "doc.a.b"), ({"doc": {"a": "text"}}, "doc.a.b.c"),
    ({"doc": {"a": None}}, "doc.a.b"), ({"doc": {"a": True}}, "doc.a.b"), ({}, "doc.a.b"), ({"doc": {}}, "doc.a.b"),
])
def test_unset_below_a_scalar_or_an_array_changes_nothing(duo: Duo, method: str, row: dict[str, Any],
                                                          path: str) -> None:
    assert both(duo, method, row, {"$unset": {path: ""}})["doc"] == row.get("doc")
    assert both(duo, method, row, {"$set": {path: None}})["doc"] == row.get("doc")  # None unsets


# -- item 5: $addToSet of nothing into a jsonb value that is no array ----------------------------------

@pytest.mark.parametrize("method", [*METHODS, "upsert"])
@pytest.mark.parametrize("value", [{"a": 1}, 5, "s", True])
@pytest.mark.parametrize("path", ["doc", "probs", "doc.k"])
def test_add_to_set_of_nothing_into_a_non_array_is_refused(duo: Duo, method: str, value: Any, path: str) -> None:
    row = {"doc": {"k": value}} if path == "doc.k" else {path: value}
    duo.seed([{"id": 1, **row}])
    update: dict[str, Any] = {"$addToSet": {path: {"$each": []}}}
    results = {engine: duo.run(engine, method, [1], update) for engine in ENGINES}
    assert results["sql"] is FilterError and results["mongo"] is not None and issubclass(results["mongo"], DbpError)
    with pytest.raises(FilterError, match=rf"\$addToSet needs an array at {path}"):
        duo.q["sql"].update({"id": 1}, update)
    duo.same()


@pytest.mark.parametrize("method", METHODS)
def test_add_to_set_of_nothing_into_a_missing_value_starts_an_empty_array(duo: Duo, method: str) -> None:
    got = both(duo, method, {"n": 1}, {"$addToSet": {"probs": {"$each": []}, "doc.k": {"$each": []}}})
    assert got["probs"] == [] and got["doc"] == {"k": []}


# -- item 6: a list pushed into an array column --------------------------------------------------------

@pytest.mark.parametrize("method", [*METHODS, "upsert"])
@pytest.mark.parametrize(("column", "update"), [
    ("nums", {"$push": {"nums": [3, 4]}}), ("nums", {"$push": {"nums": {"$each": [5, [3, 4]]}}}),
    ("nums", {"$addToSet": {"nums": [1, 2]}}), ("tags", {"$addToSet": {"tags": {"$each": [["a"]]}}}),
    ("vals", {"$push": {"vals": ()}}),
])
def test_sql_refuses_a_list_inside_an_array_column(duo: Duo, method: str, column: str, update: dict[str, Any]
                                                   ) -> None:
    duo.seed([{"id": 1, "nums": [1, 2], "tags": ["a"], "vals": [0.5]}])
    before = duo.rows("sql")
    assert duo.run("sql", method, [1], update) is FilterError
    with pytest.raises(FilterError, match=rf"item\.{column}: an array column cannot hold a nested list"):
        duo.q["sql"].update({"id": 1}, update)
    assert duo.rows("sql") == before


def test_mongo_pushes_a_list_as_one_element(duo: Duo) -> None:
    """What the SQL refusal stands for: MongoDB nests the list (README)."""
    duo.seed([{"id": 1, "nums": [1, 2]}])
    assert duo.run("mongo", "update", [1], {"$push": {"nums": [3, 4]}}) == 1
    assert duo.rows("mongo")[0]["nums"] == [1, 2, [3, 4]]


# -- item 7: NaN is added to a set once ----------------------------------------------------------------

@pytest.mark.parametrize("method", [*METHODS, "upsert"])
@pytest.mark.parametrize(("stored", "items", "expected"), [
    (None, [math.nan, math.nan], [NAN]),
    ([1.5], [math.nan, 2.0, math.nan, 1.5], [1.5, NAN, 2.0]),
    ([math.nan], [math.nan, 1.0], [NAN, 1.0]),
    ([1.0], [1.0, -0.0, 0.0, math.nan], [1.0, -0.0, NAN]),
])
def test_add_to_set_adds_nan_once(duo: Duo, method: str, stored: Any, items: list[float], expected: list[Any]
                                  ) -> None:
    duo.seed([{"id": 1, "vals": stored}])
    assert {e: duo.run(e, method, [1], {"$addToSet": {"vals": {"$each": items}}}) for e in ENGINES} in (
        {"sql": 1, "mongo": 1}, {"sql": "row", "mongo": "row"})
    assert duo.same()[0]["vals"] == expected


def test_unique_takes_nan_for_one_value() -> None:
    nan = float("nan")
    assert normal(unique([nan, 1, nan, float("nan"), True, 1.0])) == [NAN, 1, True]


def test_max_and_min_order_a_stored_nan_below_every_number(duo: Duo) -> None:
    """MongoDB orders NaN below every number; PostgreSQL above. dbp follows MongoDB."""
    for method in METHODS:
        for op, expected in (("$max", 5.0), ("$min", NAN)):
            assert both(duo, method, {"x": math.nan}, {op: {"x": 5.0}})["x"] == expected


# -- item 24: $addToSet, $pull, $min and $max below the top of a jsonb column --------------------------

DOC_CASES: list[tuple[Any, dict[str, Any], Any]] = [
    # $addToSet
    ({"m": [1, 2]}, {"$addToSet": {"doc.m": {"$each": [2, 3, 3]}}}, {"m": [1, 2, 3]}),
    ({"m": [1, True]}, {"$addToSet": {"doc.m": {"$each": [1.0, True, False]}}}, {"m": [1, True, False]}),
    ({"m": [{"c": "a", "p": 1}]}, {"$addToSet": {"doc.m": {"c": "a", "p": 1}}}, {"m": [{"c": "a", "p": 1}]}),
    ({"m": [{"c": "a", "p": 1}]}, {"$addToSet": {"doc.m": {"c": "b", "p": 1}}},
     {"m": [{"c": "a", "p": 1}, {"c": "b", "p": 1}]}),
    ({}, {"$addToSet": {"doc.a.b": {"$each": ["x", "x"]}}}, {"a": {"b": ["x"]}}),
    (None, {"$addToSet": {"doc.a": "x"}}, {"a": ["x"]}),
    # $pull
    ({"m": [1, 1.0, True, 2]}, {"$pull": {"doc.m": 1}}, {"m": [True, 2]}),
    ({"m": [{"c": ["a", "b"]}, {"c": "b"}, {"d": 1}, 3]}, {"$pull": {"doc.m": {"c": "a"}}},
     {"m": [{"c": "b"}, {"d": 1}, 3]}),
    ({"m": [{"c": 1}, {"c": 1.0, "d": 2}, {"c": True}]}, {"$pull": {"doc.m": {"c": 1}}}, {"m": [{"c": True}]}),
    ({"a": {"m": [{"c": 1}, {"c": 2}]}}, {"$pull": {"doc.a.m": {"c": 2}}}, {"a": {"m": [{"c": 1}]}}),
    ({"m": [{"c": [None, 1]}, {"c": [1]}, {"d": 1}, {"c": None}]}, {"$pull": {"doc.m": {"c": None}}},
     {"m": [{"c": [1]}]}),
    ({"a": 1}, {"$pull": {"doc.m": 1}}, {"a": 1}),  # nothing to pull from: nothing changes
    ({"a": 1}, {"$pull": {"doc.a.m": 1}}, {"a": 1}),  # below a scalar: the same
    ({"a": [{"m": [1]}]}, {"$pull": {"doc.a.m": 1}}, {"a": [{"m": [1]}]}),  # below an array: the same
    (None, {"$pull": {"doc.a": 1}}, None),
    # $min, $max: MongoDB's order (null < numbers < strings < objects < arrays < booleans), strings by code point
    ({"m": 5}, {"$min": {"doc.m": 3}}, {"m": 3}),
    ({"m": 5}, {"$max": {"doc.m": 3}}, {"m": 5}),
    ({"m": 5}, {"$min": {"doc.m": 5.0}}, {"m": 5}),
    ({"m": 2.5}, {"$max": {"doc.m": 10}}, {"m": 10}),
    ({"m": 5}, {"$min": {"doc.m": "x"}}, {"m": 5}),
    ({"m": "x"}, {"$max": {"doc.m": 5}}, {"m": "x"}),
    ({"m": "b"}, {"$max": {"doc.m": "é"}}, {"m": "é"}),
    ({"m": "b"}, {"$min": {"doc.m": "B"}}, {"m": "B"}),
    ({"m": "a"}, {"$min": {"doc.m": "Z"}}, {"m": "Z"}),
    ({"m": {"z": 1}}, {"$min": {"doc.m": 5}}, {"m": 5}),
    ({"m": {"z": 1}}, {"$max": {"doc.m": "zz"}}, {"m": {"z": 1}}),
    ({"m": [1, 2]}, {"$min": {"doc.m": 5}}, {"m": 5}),
    ({"m": [1, 2]}, {"$max": {"doc.m": 5}}, {"m": [1, 2]}),
    ({"m": [1]}, {"$max": {"doc.m": True}}, {"m": True}),
    ({"m": [1]}, {"$min": {"doc.m": True}}, {"m": [1]}),
    ({"m": False}, {"$max": {"doc.m": True}}, {"m": True}),
    ({"m": True}, {"$min": {"doc.m": False}}, {"m": False}),
    ({"m": 1}, {"$max": {"doc.m": True}}, {"m": True}),
    ({"m": None}, {"$max": {"doc.m": 1}}, {"m": 1}),
    ({"m": None}, {"$min": {"doc.m": 1}}, {"m": None}),
    ({}, {"$min": {"doc.a.b": 3}}, {"a": {"b": 3}}),
    (None, {"$max": {"doc.a": "x"}}, {"a": "x"}),
]


@pytest.mark.parametrize("method", [*METHODS, "upsert"])
@pytest.mark.parametrize(("doc", "update", "expected"), DOC_CASES)
def test_array_and_order_operators_below_the_top_of_jsonb(duo: Duo, method: str, doc: Any,
                                                          update: dict[str, Any], expected: Any) -> None:
    row = {} if doc is None else {"doc": doc}
    duo.seed([{"id": 1, **row}])
    results = {engine: duo.run(engine, method, [1], update) for engine in ENGINES}
    assert results["sql"] == results["mongo"] and results["sql"] in (1, "row"), results
    assert duo.same()[0]["doc"] == expected


@pytest.mark.parametrize("update", [
    {"$addToSet": {"doc.a.k": 1}}, {"$pull": {"doc.a": 1}}, {"$addToSet": {"doc.a": 1}}, {"$min": {"doc.a.k": 1}},
    {"$max": {"doc.a.k": 1}},
])
def test_array_and_order_operators_refuse_what_mongodb_refuses(duo: Duo, update: dict[str, Any]) -> None:
    duo.seed([{"id": 1, "doc": {"a": 5}}])
    results = {engine: duo.run(engine, "update", [1], update) for engine in ENGINES}
    assert results["sql"] is FilterError and results["mongo"] is not None and issubclass(results["mongo"], DbpError)
    assert duo.same()[0]["doc"] == {"a": 5}


@pytest.mark.parametrize("operand", [1.5, "x", True])
def test_min_and_max_on_a_whole_jsonb_column(duo: Duo, operand: Any) -> None:
    for stored in (None, 2, "b", {"k": 1}, [1], False):
        for op in ("$min", "$max"):
            row = {} if stored is None else {"doc": stored}
            both(duo, "update", row, {op: {"doc": operand}})


def test_min_and_max_on_a_jsonb_path_refuse_what_jsonb_cannot_order_alike(duo: Duo) -> None:
    duo.seed([{"id": 1, "doc": {"a": 1}}])
    with pytest.raises(FilterError, match=r"\$min on item\.doc\.a: .*a number, a string or a bool"):
        duo.q["sql"].update({"id": 1}, {"$min": {"doc.a": dt.datetime(2024, 1, 1)}})



# -- the differential test, on the cases above: random update sequences, the same rows on both engines --

_small = st.integers(-1000, 1000)
_words = st.sampled_from(["a", "b", "c", "Z", "é"])
_parts = st.sampled_from(["-1", "+1", " 1", "\t1", "-0", " -2", "k"])
_nan_floats = st.sampled_from([math.nan, 0.5, 1.5, -2.25])
_plain_floats = st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))
#: Array elements: objects with and without the fields conditions name, an array field, scalars.
_element = st.one_of(st.builds(lambda c, p: {"c": c, "p": p}, _words, _small), st.builds(lambda p: {"p": p}, _small),
                     st.builds(lambda c: {"c": [c, "z"]}, _words), st.integers(0, 3), _words, st.just(True))
_conditions = st.one_of(st.builds(lambda c: {"c": c}, _words), st.builds(lambda p: {"p": p}, _small),
                        st.builds(lambda c, p: {"c": c, "p": p}, _words, _small), st.just({"q": 1}),
                        st.just({"c": None}))
_ordered = st.one_of(_small, _words, st.booleans(), _plain_floats)
_arrays = st.sampled_from(["probs", "doc.list", "doc.g.list"])  # jsonb arrays: a column, and inside documents

#: Updates that never fail on either engine (so an update of several rows changes all or none on both).
_safe = st.one_of(
    _changes,
    st.builds(lambda a, v: {"$push": {a: {"$each": v}}}, _arrays, st.lists(_element, max_size=3)),
    st.builds(lambda a, v: {"$addToSet": {a: {"$each": v}}}, _arrays, st.lists(_element, max_size=3)),
    st.builds(lambda a, v: {"$addToSet": {a: v}}, _arrays, _element),
    st.builds(lambda a, v: {"$pull": {a: v}}, _arrays, _conditions | st.integers(0, 3) | _words),
    st.builds(lambda a, c, v: {"$pull": {a: c}, "$push": {a: {"$each": v}}}, _arrays, _conditions,
              st.lists(_element, max_size=2)),
    st.builds(lambda op, v: {op: {"doc.m": v}}, st.sampled_from(["$min", "$max"]), _ordered),
    st.builds(lambda c, e, v, p: {"$pull": {"doc.list": c}, "$addToSet": {"doc.g.list": e}, "$max": {"doc.m": v},
                                  "$inc": {f"doc.c.{p}": 1}, "$unset": {f"doc.arr.{p}": ""}},  # one column, folded
              _conditions, _element, _ordered, _parts),
    st.builds(lambda v: {"$set": {"doc.m": v}}, _ordered | st.just({"z": 1}) | st.just([1, 2])),
    st.builds(lambda op, v: {op: {"doc.h.m": v}}, st.sampled_from(["$min", "$max"]), _ordered),
    st.builds(lambda p: {"$unset": {f"doc.arr.{p}": ""}}, _parts),
    st.builds(lambda p: {"$unset": {f"doc.list.{p}.c": ""}}, _parts),
    st.builds(lambda p, q: {"$unset": {f"doc.{q}.{p}": ""}}, _parts, st.sampled_from(["a", "c", "m", "list"])),
    st.builds(lambda p, v: {"$set": {f"doc.c.{p}": v}}, _parts, _small),
    st.builds(lambda p, v: {"$inc": {f"doc.c.{p}": v}}, _parts, _small),
    st.builds(lambda v: {"$push": {"vals": {"$each": v}}}, st.lists(_nan_floats, max_size=3)),
    st.builds(lambda v: {"$addToSet": {"vals": {"$each": v}}}, st.lists(_nan_floats, max_size=3)),
    st.builds(lambda v: {"$pull": {"vals": v}}, _nan_floats),
    st.builds(lambda v: {"$set": {"x": v}}, _nan_floats),
    st.builds(lambda op, v: {op: {"x": v}}, st.sampled_from(["$min", "$max", "$inc"]), _plain_floats),
)
#: Updates both engines refuse on some rows (a field below an array): run on one row, which changes or not.
#: Only doc.arr takes them (where doc.arr is missing they make it an object), and safe updates only unset in it:
#: MongoDB, with no transaction, would change some rows of an update that fails on others.
_risky = st.builds(lambda op, p, v: {op: {f"doc.arr.{p}": v}},
                   st.sampled_from(["$set", "$inc", "$push", "$addToSet", "$min", "$max"]), _parts, _small)
#: Lists into array columns: SQL refuses them (MongoDB nests the list), so MongoDB does not run them.
_sql_only = st.one_of(
    st.builds(lambda v: {"$push": {"nums": v}}, st.lists(st.integers(0, 3), max_size=2)),
    st.builds(lambda v: {"$addToSet": {"tags": {"$each": [v]}}}, st.lists(_words, max_size=2)),
    st.builds(lambda v: {"$push": {"vals": {"$each": [0.5, v]}}}, st.lists(_nan_floats, min_size=1, max_size=2)),
)
_KINDS = {"safe": _safe, "risky": _risky, "sql only": _sql_only}
_hard_steps = st.lists(st.tuples(
    st.sampled_from(["update", "bulk_update", "upsert"]), st.lists(st.integers(1, 4), min_size=1, max_size=3),
    st.sampled_from(["safe"] * 4 + ["risky", "sql only"]).flatmap(
        lambda kind: _KINDS[kind].map(lambda update: (kind, update)))), min_size=1, max_size=8)
SEED: list[dict[str, Any]] = [
    {"id": 1, "n": 3, "x": 0.5, "s": "m", "tags": ["a"], "nums": [1, 1], "vals": [0.5, math.nan],
     "doc": {"a": 1, "c": {"a": 1}, "arr": [1, 2, 3], "list": [{"c": "a", "p": 1}, {"p": 2}, 3], "m": "b",
             "g": {"list": [{"c": ["a", "b"]}, "a"]}},
     "probs": [{"c": "a", "p": 1}, {"p": 5}, "a", {"c": ["b", "z"]}, True]},
    {"id": 2},
    {"id": 3, "vals": [math.nan], "doc": {"m": [1], "list": [], "arr": [{"x": 1}]}, "probs": []},
]


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(steps=_hard_steps)
def test_random_updates_agree_on_the_hard_cases(duo: Duo, steps: list[tuple[str, list[int], tuple[str, Any]]]
                                                ) -> None:
    """jsonb arrays of objects, conditions naming missing fields, parts like -1, lists into arrays, NaN."""
    duo.seed(SEED)
    for method, ids, (kind, update) in steps:
        if kind == "sql only":
            before = duo.rows("sql")
            assert duo.run("sql", method, ids, update) is FilterError
            with pytest.raises(FilterError, match=r"an array column cannot hold a nested list"):
                duo.q["sql"].update({"id": ids[0]}, update)
            assert duo.rows("sql") == before
            continue
        ids = ids[:1] if kind == "risky" else ids
        results = {engine: duo.run(engine, method, ids, update) for engine in ENGINES}
        outcome = {engine: "refused" if isinstance(r, type) else r for engine, r in results.items()}
        assert outcome["sql"] == outcome["mongo"], (method, ids, update, results)
        if isinstance(results["sql"], type):
            assert results["sql"] is FilterError, results
        duo.same()


def test_changes_folded_into_one_jsonb_column_grow_the_sql_linearly(duo: Duo) -> None:
    """Each change names the value before it once: 16 paths in one column, not 2**16 copies of the column."""
    q = duo.q["sql"]
    assert isinstance(q, SQLQuery)

    def length(count: int) -> int:
        changes = parse_update({"$set": {f"doc.k{i}.v": i for i in range(count)}})
        text, _ = q._update_sql(parse({"id": 1}), changes)
        return len(text.as_string())

    assert length(16) < 3 * length(8)
    update = {"$set": {f"doc.k{i}.v": i for i in range(20)}, "$inc": {"doc.n": 1}, "$push": {"doc.l": 1},
              "$addToSet": {"doc.s": "a"}, "$pull": {"doc.p": 1}, "$max": {"doc.m": 2}, "$unset": {"doc.u": ""}}
    got = both(duo, "update", {"doc": {"p": [1, 2], "u": 1, "m": 1}}, update)
    assert got["doc"] == {**{f"k{i}": {"v": i} for i in range(20)}, "n": 1, "l": [1], "s": ["a"], "p": [2], "m": 2}


@pytest.mark.parametrize("method", METHODS)
def test_columns_named_like_the_updates_own_names(sql_db: SQLConnection, method: str) -> None:
    """A column named e, o, y, h, have or c is read as that column inside the array operators' subqueries."""
    names = ["e", "o", "y", "h", "have", "c", "u", "x"]
    sql_db.execute("CREATE TABLE clash_j (id int PRIMARY KEY, {});".format(", ".join(f"{n} jsonb" for n in names))
                   + "CREATE TABLE clash_a (id int PRIMARY KEY, {});".format(", ".join(f"{n} bigint[]" for n in names)))
    for table in ("clash_j", "clash_a"):
        q = sql_db.query(table)
        q.bulk_insert([{"id": 1, **{n: [2, 3] for n in names}}])

        def run(update: dict[str, Any], q: BaseQuery = q) -> None:
            assert (q.update({"id": 1}, update) if method == "update" else q.bulk_update([{"id": 1}], [update])) == 1

        run({"$addToSet": {n: {"$each": [1, 2, 1]} for n in names}})
        run({"$pull": {n: 3 for n in names}})
        assert q.find_one({"id": 1}) == {"id": 1, **{n: [2, 1] for n in names}}, table
    q = sql_db.query("clash_j")
    q.bulk_update([{"id": 1}], [{"$pull": {n: 2 for n in names}, "$push": {n: {"$each": [5]} for n in names}}])
    assert q.find_one({"id": 1}) == {"id": 1, **{n: [1, 5] for n in names}}
    q.update({"id": 1}, {n: {"k": [2]} for n in names})
    run_path = {"$addToSet": {f"{n}.k": {"$each": [1, 2]} for n in names}}
    assert (q.update({"id": 1}, run_path) if method == "update" else q.bulk_update([{"id": 1}], [run_path])) == 1
    assert q.find_one({"id": 1}) == {"id": 1, **{n: {"k": [2, 1]} for n in names}}
