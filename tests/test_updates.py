"""The update language on both engines (issue 13): the same operators, the same rows read back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.query import BaseQuery
from dbp.sql.connection import SQLConnection
from dbp.updates import parse_update
from tests.hyp import examples

ITEM_SQL = """
CREATE TABLE item (
    id bigint PRIMARY KEY,
    n bigint,
    x double precision,
    s text,
    t timestamp,
    tags text[],
    nums bigint[],
    doc jsonb,
    probs jsonb
);
CREATE TABLE sentinel (id int PRIMARY KEY);
"""
FIELDS = ["n", "x", "s", "t", "tags", "nums", "doc", "probs"]
ENGINES = ("sql", "mongo")


class Pair:
    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.q: dict[str, BaseQuery] = {"sql": sql.query("item"), "mongo": mongo.query("item")}

    @staticmethod
    def to(engine: str, value: Any) -> Any:
        if engine == "sql":
            return value
        if isinstance(value, dict):
            return {("_id" if k == "id" else k): Pair.to(engine, v) for k, v in value.items()}
        if isinstance(value, list):
            return [Pair.to(engine, v) for v in value]
        return value

    def call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for engine in ENGINES:
            try:
                out[engine] = getattr(self.q[engine], method)(*self.to(engine, list(args)), **kwargs)
            except FilterError:
                out[engine] = FilterError
        return out

    def rows(self, engine: str) -> list[dict[str, Any]]:
        key = "id" if engine == "sql" else "_id"
        out = []
        for row in self.q[engine].find_all(sort=[(key, 1)], paginate=False):
            row = {("id" if k == "_id" else k): v for k, v in row.items()}
            out.append({"id": row["id"], **{f: row.get(f) for f in FIELDS}})
        return out

    def same(self) -> list[dict[str, Any]]:
        sql_rows, mongo_rows = self.rows("sql"), self.rows("mongo")
        assert sql_rows == mongo_rows
        return sql_rows


@pytest.fixture
def pair(sql_db: SQLConnection, mongo_db: MongoConnection) -> Pair:
    sql_db.execute(ITEM_SQL)
    return Pair(sql_db, mongo_db)


def seed(pair: Pair, rows: list[dict[str, Any]]) -> None:
    for engine in ENGINES:
        pair.q[engine].bulk_insert(pair.to(engine, rows))


def test_every_operator_on_both_engines(pair: Pair) -> None:
    seed(pair, [{"id": 1, "n": 5, "x": 1.5, "s": "b", "tags": ["a"], "nums": [1, 2, 2],
                 "doc": {"a": 1, "b": {"c": 2}}, "probs": [{"c": "lc", "p": 0.5}, {"c": "st", "p": 0.1}]},
                {"id": 2}])
    for update in [
        {"$inc": {"n": 2, "x": 0.25}}, {"$mul": {"n": 3}}, {"$min": {"n": 4, "s": "a"}}, {"$max": {"x": 10.0}},
        {"$push": {"tags": "b"}}, {"$push": {"tags": {"$each": ["c", "a"]}}},
        {"$addToSet": {"tags": {"$each": ["a", "d", "d", "e"]}}}, {"$pull": {"nums": 2}},
        {"$set": {"doc.b.c": 3, "doc.new.deep": "x"}}, {"$inc": {"doc.a": 1}}, {"$unset": {"doc.b": ""}},
        {"$push": {"doc.list": {"$each": [1, 2]}}}, {"$pull": {"probs": {"c": "st"}}},
        {"$addToSet": {"probs": {"c": "lc", "p": 0.5}}}, {"$unset": {"s": ""}},
        {"$set": {"t": dt.datetime(2024, 1, 1)}},
    ]:
        assert pair.call("update", {"id": {"$in": [1, 2]}}, update) == {"sql": 2, "mongo": 2}, update
        pair.same()
    row, missing = pair.same()
    assert row["n"] == 4 and row["x"] == 10.0 and row["s"] is None
    assert row["tags"] == ["a", "b", "c", "a", "d", "e"] and row["nums"] == [1]
    assert row["doc"] == {"a": 2, "new": {"deep": "x"}, "list": [1, 2]}
    assert row["probs"] == [{"c": "lc", "p": 0.5}]
    # missing fields: $inc sets, $mul sets 0, $min/$max set, $push/$addToSet start, $pull leaves alone
    assert missing == {"id": 2, "n": 4, "x": 10.0, "s": None, "t": dt.datetime(2024, 1, 1),
                       "tags": ["b", "c", "a", "d", "e"],
                       "nums": None, "doc": {"a": 1, "new": {"deep": "x"}, "list": [1, 2]},
                       "probs": [{"c": "lc", "p": 0.5}]}


def test_replace_one_classifiers_entries_in_one_bulk_update(pair: Pair) -> None:
    """db-plugins' update_probs: pull a classifier's entries and push the new ones, many objects, one call."""
    old = [{"classifier_name": "lc", "class_name": "SN", "probability": 0.4},
           {"classifier_name": "stamp", "class_name": "AGN", "probability": 0.9}]
    seed(pair, [{"id": k, "probs": old} for k in range(1, 4)])
    new = {k: [{"classifier_name": "lc", "class_name": "SN", "probability": 0.1 * k},
               {"classifier_name": "lc", "class_name": "VS", "probability": 1 - 0.1 * k}] for k in range(1, 4)}
    result = pair.call("bulk_update", [{"id": k} for k in new],
                       [{"$pull": {"probs": {"classifier_name": "lc"}}, "$push": {"probs": {"$each": v}}}
                        for v in new.values()])
    assert result == {"sql": 3, "mongo": 3}
    for row in pair.same():
        assert row["probs"] == [old[1], *new[row["id"]]]


def test_add_to_set_an_oid(pair: Pair) -> None:
    """The sorting hat's $addToSet of an oid into an object's oid list."""
    seed(pair, [{"id": 1, "tags": ["ZTF1"]}, {"id": 2}])
    for _ in range(2):
        assert pair.call("bulk_update", [{"id": 1}, {"id": 2}],
                         [{"$addToSet": {"tags": "ZTF2"}}, {"$addToSet": {"tags": "ZTF2"}}]) == {"sql": 2, "mongo": 2}
    assert [r["tags"] for r in pair.same()] == [["ZTF1", "ZTF2"], ["ZTF2"]]


def test_repeated_keys_apply_their_operators_in_order(pair: Pair) -> None:
    seed(pair, [{"id": 1, "n": 1}])
    result = pair.call("bulk_update", [{"id": 1}, {"id": 1}, {"id": 1}],
                       [{"$inc": {"n": 1}}, {"$mul": {"n": 10}}, {"$inc": {"n": 1}}])
    assert result == {"sql": 1, "mongo": 1}
    assert pair.same()[0]["n"] == 21


def test_upsert_and_get_or_create_with_operators(pair: Pair) -> None:
    first = pair.call("upsert", {"id": 7}, {"$inc": {"n": 2}, "$push": {"tags": "a"}, "$set": {"doc.a": 1}})
    second = pair.call("upsert", {"id": 7}, {"$inc": {"n": 2}, "$addToSet": {"tags": {"$each": ["a", "b"]}}})
    rows = pair.same()
    assert rows[0]["n"] == 4 and rows[0]["tags"] == ["a", "b"] and rows[0]["doc"] == {"a": 1}
    for result in (first, second):
        assert isinstance(result["sql"], dict) and isinstance(result["mongo"], dict)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("update", "message"), [
    ({"$inc": {"s": 1}}, "numeric"), ({"$inc": {"n": "1"}}, "number"), ({"$push": {"n": 1}}, "array"),
    ({"$inc": {"n": True}}, "number"), ({"$rename": {"n": "m"}}, "unknown update operator"),
    ({"$set": {"n": 1}, "s": "x"}, "mixes"), ({"$inc": {"n": 1}, "$set": {"n": 2}}, "conflict"),
    ({"$set": {"doc": 1, "doc.a": 2}}, "conflict"), ({"$push": {"tags": {"$each": ["a"], "$slice": 2}}}, "\\$each"),
    ({"$set": {"a..b": 1}}, "dotted path"), ({"$pull": {"tags": {"$gt": 1}}}, "plain field values"),
    ({"$inc": {"n": float("nan")}}, "NaN"), ({"$set": {}}, "non-empty"),
])
def test_bad_updates_are_refused_before_anything_is_written(pair: Pair, engine: str, update: Any, message: str
                                                            ) -> None:
    q = pair.q[engine]
    key = "id" if engine == "sql" else "_id"
    q.bulk_insert([{key: 1, "n": 1, "s": "x"}])
    if engine == "mongo" and message in ("numeric", "array"):
        pytest.skip("MongoDB has no column types: the server decides")
    for call in (lambda: q.update({key: 1}, update), lambda: q.bulk_update([{key: 1}], [update]),
                 lambda: q.upsert({key: 1}, update)):
        with pytest.raises(FilterError, match=message):
            call()
    row = q.find_one({key: 1})
    assert row is not None and row["n"] == 1 and row["s"] == "x"


def test_sql_paths_reach_only_into_jsonb(pair: Pair) -> None:
    q = pair.q["sql"]
    with pytest.raises(FilterError, match="jsonb"):
        q.update({}, {"$set": {"s.x": 1}})


_key_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=".\x00"), min_size=1,
                    max_size=20).filter(lambda k: not k.startswith("$") and not k.isdigit())


@given(key=_key_text, value=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                     max_size=20))
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_paths_and_values_run_nothing_else(pair: Pair, key: str, value: str) -> None:
    """Quotes, %, ;, comments and unicode in jsonb paths and values are data, never SQL."""
    q = pair.q["sql"]
    q.delete({})
    q.bulk_insert([{"id": 1, "doc": {}}])
    q.update({"id": 1}, {"$set": {f"doc.{key}.x": value}, "$inc": {"n": 1}})
    row = q.find_one({"id": 1})
    assert row is not None and row["doc"] == {key: {"x": value}} and row["n"] == 1
    q.update({"id": 1}, {"$unset": {f"doc.{key}.x": ""}})
    assert q.find_one({"id": 1})["doc"] == {key: {}}  # type: ignore[index]
    assert q.execute("SELECT count(*) AS n FROM sentinel").fetchone()["n"] == 0  # type: ignore[index]


# -- updates agree across engines ---------------------------------------------------------------------

_ids = st.integers(1, 4)
_small = st.integers(-1000, 1000)
_floats = st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))
_words = st.sampled_from(["a", "b", "c", "Z", "é"])
_doc_keys = st.sampled_from(["a", "b"])  # numbers; "c" holds an object (no type clashes: MongoDB has no
# transaction, so an update failing on one document of several would leave the others changed)
_entry = st.builds(lambda c, p: {"c": c, "p": p}, _words, _small)  # one key order: see the README
_changes = st.one_of(
    st.builds(lambda v: {"$set": {"n": v}}, st.none() | _small),
    st.builds(lambda v: {"$inc": {"n": v}}, _small),
    st.builds(lambda v: {"$mul": {"n": v}}, st.integers(-3, 3)),
    st.builds(lambda v: {"$min": {"n": v}}, _small),
    st.builds(lambda v: {"$max": {"x": v}}, _floats),
    st.builds(lambda v: {"$inc": {"x": v}}, _floats),
    st.builds(lambda v: {"$min": {"s": v}}, _words),
    st.builds(lambda v: {"$unset": {v: ""}}, st.sampled_from(["n", "x", "s", "tags", "nums", "doc", "probs"])),
    st.builds(lambda v: {"$push": {"tags": {"$each": v}}}, st.lists(_words, max_size=3)),
    st.builds(lambda v: {"$addToSet": {"tags": {"$each": v}}}, st.lists(_words, max_size=3)),
    st.builds(lambda v: {"$pull": {"tags": v}}, _words),
    st.builds(lambda v: {"$push": {"nums": v}}, _small),
    st.builds(lambda v: {"$addToSet": {"nums": v}}, st.integers(0, 3)),
    st.builds(lambda v: {"$pull": {"nums": v}}, st.integers(0, 3)),
    st.builds(lambda k, v: {"$set": {f"doc.{k}": v}}, _doc_keys, st.none() | _small),
    st.builds(lambda j, v: {"$set": {f"doc.c.{j}": v}}, _doc_keys, _small | _words),
    st.builds(lambda k, v: {"$inc": {f"doc.{k}": v}}, _doc_keys, _small),
    st.builds(lambda k: {"$unset": {f"doc.{k}": ""}}, _doc_keys),
    st.builds(lambda v: {"$push": {"probs": {"$each": v}}}, st.lists(_entry, max_size=2)),
    st.builds(lambda v: {"$addToSet": {"probs": v}}, _entry),
    st.builds(lambda v: {"$pull": {"probs": {"c": v}}}, _words),
    st.builds(lambda a, b: {"$pull": {"probs": {"c": a}}, "$push": {"probs": {"$each": b}}}, _words,
              st.lists(_entry, max_size=2)),
)
_steps = st.lists(st.tuples(st.sampled_from(["update", "bulk_update", "upsert"]), st.lists(_ids, min_size=1,
                                                                                           max_size=3), _changes),
                  min_size=1, max_size=6)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(steps=_steps)
def test_random_updates_agree(pair: Pair, steps: list[tuple[str, list[int], dict[str, Any]]]) -> None:
    for engine in ENGINES:
        pair.q[engine].delete({})
    seed(pair, [{"id": 1, "n": 3, "x": 0.5, "s": "m", "tags": ["a"], "nums": [1, 1], "doc": {"a": 1},
                 "probs": [{"c": "a", "p": 1}]}, {"id": 2}])
    for method, ids, update in steps:
        replaces = "$pull" in update and "$push" in update
        if method == "update":
            result = pair.call("update", {"id": {"$in": ids}}, update)
        elif method == "upsert":
            result = pair.call("upsert", {"id": ids[0]}, update)
            result = {k: v if not isinstance(v, dict) else "row" for k, v in result.items()}
        else:
            result = pair.call("bulk_update", [{"id": i} for i in ids], [update] * len(ids))
        assert result["sql"] == result["mongo"], (method, ids, update, result)
        if replaces and method != "bulk_update":
            assert result["sql"] is FilterError
        pair.same()


def test_the_parser_is_shared() -> None:
    changes = parse_update({"$push": {"p": {"$each": [1]}}, "$pull": {"p": 2}})
    assert [c.op for c in changes] == ["pull", "push"]  # the pull applies first
