"""A sort entry's NULL placement, ``(field, 1 | -1, "nulls_first" | "nulls_last")``, on both engines.

By default NULLs (and, on MongoDB, missing fields) sort first ascending and last descending;
a third element moves them for that field only. Hostile entries first; then both engines
against a Python oracle over data with NULLs and missing fields, mixed placements, offset
pages, find_one and keyset walks in small pages; then cones and named queries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbp.errors import FilterError
from dbp.filters import parse_sort
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.pagination import KeysetPage
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from tests.hyp import examples

from .test_cone import schema_folders

TABLE = """CREATE TABLE spot (id integer PRIMARY KEY, a integer, b text, c double precision,
                              d integer NOT NULL)"""
FIELDS = ["a", "b", "c", "d"]
#: A named pipeline over the collection, its rows shaped as the SQL query's.
VIEW = {"collection": "spot", "columns": ["id", "a", "b", "c", "d"], "key": ["id"],
        "pipeline": [{"$project": {"_id": 0, "id": "$_id", "a": 1, "b": 1, "c": 1, "d": 1}}]}
ENGINES = ("sql", "mongo")


class Engines:
    """Table ``spot`` and collection ``spot`` holding the same rows (SQL's ``id`` is MongoDB's ``_id``)."""

    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.sql, self.mongo = sql, mongo
        self.q = {"sql": sql.query("spot"), "mongo": mongo.query("spot")}

    @staticmethod
    def key(engine: str) -> str:
        return "id" if engine == "sql" else "_id"

    def load(self, rows: list[dict[str, Any]], missing: Callable[[int, str], bool] = lambda i, f: i % 2 == 1
             ) -> None:
        """``rows`` in both; on MongoDB a None is a missing field where ``missing(id, field)``, else a null."""
        self.sql.execute("TRUNCATE spot")
        self.mongo.collection("spot").delete_many({})
        if not rows:
            return
        self.q["sql"].bulk_insert(rows)
        docs = [{("_id" if k == "id" else k): v for k, v in row.items()
                 if not (v is None and missing(row["id"], k))} for row in rows]
        self.mongo.collection("spot").insert_many(docs)  # pymongo's own: nulls stay nulls


@pytest.fixture
def engines(sql_settings: SQLSettings, mongo_settings: MongoSettings, tmp_path: Path) -> Iterator[Engines]:
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "spotview.json").write_text(json.dumps(VIEW))
    with SQLConnection(settings=dataclasses.replace(sql_settings, queries_dir=queries)) as sql, \
            MongoConnection(settings=dataclasses.replace(mongo_settings, queries_dir=queries)) as mongo:
        sql.execute(TABLE)
        yield Engines(sql, mongo)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rows_of(n: int) -> list[dict[str, Any]]:
    """NULLs in every nullable column, ties in each."""
    return [{"id": i, "a": None if i % 3 == 0 else i % 4, "b": None if i % 4 == 1 else "xyAz"[i % 4],
             "c": None if i % 5 == 2 else (i % 3) - 0.5, "d": i % 2} for i in range(1, n + 1)]


# -- the oracle --------------------------------------------------------------------------------------------


def oracle(rows: list[dict[str, Any]], sort: list[Any], key: str = "id") -> list[Any]:
    """The keys of ``rows`` in ``sort`` order, ties by key: stable sorts, last entry first."""
    out = sorted(rows, key=lambda r: r[key])
    for entry in reversed(sort):
        field, direction = (entry, 1) if isinstance(entry, str) else (entry[0], entry[1])
        last = entry[2] == "nulls_last" if not isinstance(entry, str) and len(entry) == 3 else direction == -1
        present = sorted((r for r in out if r[field] is not None), key=lambda r: r[field], reverse=direction == -1)
        absent = [r for r in out if r[field] is None]
        out = present + absent if last else absent + present
    return [r[key] for r in out]


def walk(q: Any, filter_by: Any, sort: Any, per_page: int, key: str) -> list[Any]:
    page = q.paginate(filter_by, per_page=per_page, sort=sort, projection=[key], keyset=True)
    assert isinstance(page, KeysetPage)
    seen = [r[key] for r in page.items]
    while page.next_token is not None:
        page = q.paginate(filter_by, per_page=per_page, sort=sort, projection=[key], after=page.next_token)
        seen += [r[key] for r in page.items]
        assert len(seen) <= 200, "the walk does not end"
    return seen


def test_the_oracle_follows_the_documented_default() -> None:
    rows = [{"id": 1, "a": 2}, {"id": 2, "a": None}, {"id": 3, "a": 1}, {"id": 4, "a": None}]
    assert oracle(rows, [("a", 1)]) == [2, 4, 3, 1]
    assert oracle(rows, [("a", -1)]) == [1, 3, 2, 4]
    assert oracle(rows, [("a", 1, "nulls_last")]) == [3, 1, 2, 4]
    assert oracle(rows, [("a", -1, "nulls_first")]) == [2, 4, 1, 3]


# -- hostile entries ----------------------------------------------------------------------------------------


BAD_ENTRIES: list[Any] = [
    ("a", 1, "NULLS_LAST"), ("a", 1, "nulls last"), ("a", 1, "last"), ("a", 1, "first"), ("a", 1, "nulls_lowest"),
    ("a", 1, None), ("a", 1, True), ("a", 1, 1), ("a", 1, -1), ("a", 1, b"nulls_last"), ("a", 1, ["nulls_last"]),
    ("a", 1, {"nulls": "last"}), ("a", 1, "nulls_last "), ("a", 1, "\x00nulls_last"),
    ("a", 1, "nulls_last", "x"), ("a", 1, "nulls_last", "nulls_last"), ("a", "nulls_last"), ("a", "nulls_last", 1),
    ("nulls_last", 1, 1), ("a",), (), ("a", 2, "nulls_last"), ("a", True, "nulls_last"), ("a", 0, "nulls_first"),
    (None, 1, "nulls_last"), ("", 1, "nulls_last"), ("$where", 1, "nulls_last"), ("a", 1.0 + 0.5, "nulls_last"),
]


def test_a_bad_sort_entry_is_one_line_filter_error(engines: Engines, engine: str) -> None:
    engines.load(rows_of(6))
    q = engines.q[engine]
    for entry in BAD_ENTRIES:
        calls: list[Callable[[list[Any]], Any]] = [
            lambda sort: q.find_one({}, sort=sort),
            lambda sort: q.find_all({}, sort=[("d", 1), *sort], paginate=False),  # refused at the call, not read
            lambda sort: q.paginate({}, sort=sort, per_page=2),
            lambda sort: q.paginate({}, sort=sort, per_page=2, keyset=True),
            lambda sort: q.frame({}, sort=sort),
        ]
        for call in calls:
            with pytest.raises(FilterError) as caught:
                call([entry])
            message = str(caught.value)
            assert "\n" not in message and len(message) < 300, (entry, message)
            assert message.startswith(("sort", "field names", "unknown operator")), (entry, message)
    assert len(list(q.find_all({}, paginate=False))) == 6  # nothing changed


def test_a_bad_entry_is_named_in_the_message() -> None:
    with pytest.raises(FilterError, match=r"^sort entries are \(field, 1 \| -1\) pairs or \(field, 1 \| -1, "
                                          r"'nulls_first' \| 'nulls_last'\), not \('a', 1, 'last'\)$"):
        parse_sort([("a", 1, "last")])
    with pytest.raises(FilterError, match=r"not <tuple of 30 items>$"):
        parse_sort([("a", 1, *["nulls_last"] * 28)])


@pytest.mark.parametrize("placement", ["nulls_first", "nulls_last"])
def test_a_placement_on_the_key_is_refused(engines: Engines, engine: str, placement: str) -> None:
    """The primary key and ``_id`` are never NULL: a placement there means nothing, so it is a mistake."""
    q, key = engines.q[engine], engines.key(engine)
    with pytest.raises(FilterError, match=rf"^sort: {key!r} is the key, never NULL: it takes no NULL placement$"):
        q.find_one({}, sort=[("a", 1), (key, -1, placement)])
    with pytest.raises(FilterError, match="is the key"):
        q.paginate({}, sort=[(key, 1, placement)], keyset=True)
    q.find_one({}, sort=[(key, -1)])  # without a placement it sorts as ever


def test_a_field_named_twice_is_refused_whatever_its_placements(engine: str, engines: Engines) -> None:
    with pytest.raises(FilterError, match="names 'a' twice"):
        engines.q[engine].find_one({}, sort=[("a", 1, "nulls_last"), ("a", -1, "nulls_first")])


def test_parse_sort_keeps_pairs_as_they_were() -> None:
    assert parse_sort([("a", 1), "b", ["c", -1]]) == [("a", 1, False), ("b", 1, False), ("c", -1, True)]
    assert parse_sort([("a", 1, "nulls_last"), ("b", -1, "nulls_first"), ("c", 1, "nulls_first")]) == [
        ("a", 1, True), ("b", -1, False), ("c", 1, False)]
    key = parse_sort([("a", -1, "nulls_first")])[0]
    assert (key.field, key.direction, key.nulls_last, key.nulls_lowest) == ("a", -1, False, False)


# -- the engines against the oracle ----------------------------------------------------------------------------

_row = st.fixed_dictionaries({
    "a": st.none() | st.integers(-2, 2),
    "b": st.none() | st.sampled_from(["", "A", "a", "b", "é", "Z"]),
    "c": st.none() | st.sampled_from([-math.inf, -1.5, 0.0, 2.25, math.inf]),
    "d": st.integers(0, 2),
})
_entry = st.tuples(st.sampled_from(FIELDS), st.sampled_from([1, -1]),
                   st.sampled_from([None, "nulls_first", "nulls_last"]))
_sort = st.lists(_entry, min_size=1, max_size=3, unique_by=lambda e: e[0]).map(
    lambda entries: [(f, d) if p is None else (f, d, p) for f, d, p in entries])
#: Filters, and the rows each keeps.
FILTERS: list[tuple[Any, Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"d": {"$ne": 1}}, lambda r: r["d"] != 1),
    ({"a": {"$ne": None}}, lambda r: r["a"] is not None),
    ({"b": None}, lambda r: r["b"] is None),
    ({"$or": [{"c": {"$gt": 0}}, {"a": None}]}, lambda r: (r["c"] is not None and r["c"] > 0) or r["a"] is None),
]


def check(engines: Engines, rows: list[dict[str, Any]], sort: Any, which: int, per_page: int) -> None:
    filter_by, keep = FILTERS[which]
    kept = [r for r in rows if keep(r)]
    want = oracle(kept, sort)
    by_id = {r["id"]: r for r in rows}
    for engine in ENGINES:
        q, key = engines.q[engine], engines.key(engine)
        got = list(q.find_all(filter_by, sort=sort, projection=[key, *FIELDS], paginate=False))
        assert [r[key] for r in got] == want, (engine, sort)
        assert [{f: r[f] for f in FIELDS} for r in got] == [{f: by_id[i][f] for f in FIELDS} for i in want]
        first = q.find_one(filter_by, sort=sort, projection=FIELDS)  # ties are any row of the first
        if want:
            named = [e if isinstance(e, str) else e[0] for e in sort]
            assert first is not None and {f: first[f] for f in named} == {f: by_id[want[0]][f] for f in named}
        else:
            assert first is None
        page = q.paginate(filter_by, page=2, per_page=per_page, sort=sort, projection=[key])
        assert [r[key] for r in page.items] == want[per_page:2 * per_page], engine
        assert page.total == len(want)
        assert walk(q, filter_by, sort, per_page, key) == want, (engine, sort, per_page)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=2, max_size=12), sort=_sort, which=st.integers(0, len(FILTERS) - 1),
       per_page=st.integers(1, 3), missing=st.sets(st.tuples(st.integers(1, 12), st.sampled_from(FIELDS))))
@example(rows=[{"a": None, "b": None, "c": None, "d": 0}] * 4, sort=[("a", 1, "nulls_last")], which=0, per_page=1,
         missing={(1, "a"), (3, "a")})
@example(rows=[{"a": 1, "b": "a", "c": 0.0, "d": 0}, {"a": None, "b": "a", "c": None, "d": 0},
               {"a": 1, "b": None, "c": 0.0, "d": 1}, {"a": None, "b": None, "c": -1.5, "d": 1}] * 2,
         sort=[("a", -1, "nulls_first"), ("b", 1, "nulls_last"), ("c", -1)], which=0, per_page=1,
         missing={(2, "a"), (5, "b"), (7, "c")})
def test_both_engines_sort_as_the_oracle(engines: Engines, rows: list[dict[str, Any]], sort: Any, which: int,
                                         per_page: int, missing: set[tuple[int, str]]) -> None:
    rows = [{"id": i, **r} for i, r in enumerate(rows, 1)]
    engines.load(rows, lambda i, f: (i, f) in missing)
    check(engines, rows, sort, which, per_page)


@pytest.mark.parametrize("sort", [
    [("a", 1, "nulls_last")], [("a", -1, "nulls_first")], [("a", 1, "nulls_first")], [("a", -1, "nulls_last")],
    [("b", 1, "nulls_last"), ("a", -1, "nulls_first")], [("c", -1, "nulls_first"), ("b", 1)],
    [("d", 1, "nulls_last"), ("c", 1, "nulls_last"), ("a", 1, "nulls_last")],
    [("d", -1, "nulls_first"), ("b", -1, "nulls_first")],
])
def test_mixed_placements_walk_every_row_once(engines: Engines, sort: Any) -> None:
    rows = rows_of(23)
    engines.load(rows)
    for per_page in (1, 2, 5):
        check(engines, rows, sort, 0, per_page)


def test_a_bare_name_and_an_explicit_default_are_the_pair(engines: Engines, engine: str) -> None:
    engines.load(rows_of(10))
    q = engines.q[engine]
    found = [list(q.find_all({}, sort=s, paginate=False)) for s in (  # type: ignore[arg-type]
        ["a"], [("a", 1)], [("a", 1, "nulls_first")], [["a", 1, "nulls_first"]])]
    assert all(f == found[0] for f in found[1:])
    found = [list(q.find_all({}, sort=s, paginate=False)) for s in (  # type: ignore[arg-type]
        [("a", -1)], [("a", -1, "nulls_last")])]
    assert found[0] == found[1]


def test_frames_follow_the_placement(engines: Engines) -> None:
    rows = rows_of(9)
    engines.load(rows)
    sort = [("c", 1, "nulls_last"), ("a", -1, "nulls_first")]
    want = oracle(rows, sort)
    frames = [engines.q[e].frame({}, sort=sort, projection=[engines.key(e), "c", "a"]) for e in ENGINES]
    assert list(frames[0]["id"]) == list(frames[1]["_id"]) == want
    assert frames[0]["c"].isna().tolist() == frames[1]["c"].isna().tolist() == [by is None for by in (
        {r["id"]: r["c"] for r in rows}[i] for i in want)]


# -- tokens --------------------------------------------------------------------------------------------------


def test_a_token_belongs_to_its_placement(engines: Engines, engine: str) -> None:
    engines.load(rows_of(12))
    q = engines.q[engine]

    def token(sort: Any) -> str:
        page = q.paginate({}, per_page=3, sort=sort, keyset=True)
        assert isinstance(page, KeysetPage) and page.next_token
        return page.next_token

    for made, used in [([("a", 1)], [("a", 1, "nulls_last")]), ([("a", 1, "nulls_last")], [("a", 1)]),
                       ([("a", -1, "nulls_first")], [("a", -1)]), ([("a", -1)], [("a", -1, "nulls_first")]),
                       ([("a", 1, "nulls_last")], [("a", 1, "nulls_first")]),
                       ([("a", 1), ("b", 1, "nulls_last")], [("a", 1), ("b", 1)])]:
        with pytest.raises(FilterError, match="belongs to another query"):
            q.paginate({}, per_page=3, sort=used, after=token(made))
    # the same placement, written either way, is the same query
    page = q.paginate({}, per_page=3, sort=[("a", 1, "nulls_first")], after=token([("a", 1)]))
    assert isinstance(page, KeysetPage)
    q.paginate({}, per_page=3, sort=[("a", -1)], after=token([("a", -1, "nulls_last")]))


# -- MongoDB's helper keys stay inside ------------------------------------------------------------------------


def test_mongodb_returns_documents_as_stored(engines: Engines) -> None:
    """The NULL flags dbp sorts by never reach a row, even where documents have fields of their names."""
    coll = engines.mongo.collection("spot")
    docs = [{"_id": 1, "a": None, "doc": "mine", "n0": 7, "distance": [1]},
            {"_id": 2, "a": 3, "doc": {"a": 1}, "n1": None},
            {"_id": 3, "b": "z", "n0": 5, "n1": {"n0": 1, "doc": None}},
            {"_id": 4, "a": 1, "nested": {"a": None, "doc": 2}}]
    coll.insert_many(docs)
    q = engines.q["mongo"]
    got = list(q.find_all({}, sort=[("a", 1, "nulls_last"), ("n0", -1, "nulls_first")], paginate=False))
    assert got == [docs[3], docs[1], docs[0], docs[2]]
    assert q.find_one({"_id": 2}, sort=[("a", 1, "nulls_last")]) == docs[1]
    assert q.paginate({}, sort=[("doc", 1, "nulls_last")], per_page=10).items == [
        docs[0], docs[1], docs[2], docs[3]]  # "mine" (a string) before {"a": 1} (a document); then missing
    projected = q.find_all({}, sort=[("a", -1, "nulls_first")], projection=["a"], paginate=False)
    assert list(projected) == [{"a": None}, {"a": None}, {"a": 3}, {"a": 1}]  # type: ignore[arg-type]


def test_mongodb_sorts_an_embedded_field_by_its_placement(engines: Engines) -> None:
    coll = engines.mongo.collection("spot")
    coll.insert_many([{"_id": 1, "e": {"m": 2}}, {"_id": 2, "e": {"m": None}}, {"_id": 3},
                      {"_id": 4, "e": {"m": 1}}, {"_id": 5, "e": {}}])
    q = engines.q["mongo"]
    assert [r["_id"] for r in q.find_all({}, sort=[("e.m", 1, "nulls_last")], paginate=False)] == [4, 1, 2, 3, 5]
    assert [r["_id"] for r in q.paginate({}, sort=[("e.m", -1, "nulls_first")], page=2, per_page=2).items] == [5, 1]
    for sort in ([("e.m", 1)], [("e.m", 1, "nulls_last")], ["_id", "e.m"]):  # a token could not hold the path's value
        with pytest.raises(FilterError, match=re.escape("sorts by top-level fields, not the path 'e.m'")):
            q.paginate({}, sort=sort, per_page=2, keyset=True)
    with pytest.raises(FilterError, match=re.escape("'e.m'")):  # SQL has no dotted sort at all
        engines.q["sql"].paginate({}, sort=[("e.m", 1)], per_page=2, keyset=True)


# -- named queries ------------------------------------------------------------------------------------------


def test_named_queries_follow_the_placement(engines: Engines) -> None:
    rows = rows_of(17)
    engines.load(rows)
    sources = [engines.sql.sql("-- key: id\nSELECT id, a, b, c, d FROM spot"), engines.mongo.query("spotview")]
    for sort in ([("a", 1, "nulls_last"), ("b", -1, "nulls_first")], [("c", -1, "nulls_first")],
                 [("b", 1), ("c", 1, "nulls_last")]):
        want = oracle(rows, sort)
        for q in sources:
            assert [r["id"] for r in q.find_all({}, sort=sort, paginate=False)] == want, (q, sort)
            assert [r["id"] for r in q.paginate({}, page=3, per_page=4, sort=sort).items] == want[8:12]
            for per_page in (1, 4):
                assert walk(q, {}, sort, per_page, "id") == want, (q, sort, per_page)
        with pytest.raises(FilterError, match="is the key"):
            sources[1].find_one({}, sort=[("id", 1, "nulls_last")])


# -- cones --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Sky:
    """Table ``src`` and collection ``src``, 20 positions within a minute of (10, 20); NULLs and missing values."""

    q: dict[str, Any]
    rows: list[dict[str, Any]]


@pytest.fixture
def sky(sql_settings: SQLSettings, mongo_settings: MongoSettings, tmp_path: Path) -> Iterator[Sky]:
    sql_dir, mongo_dir = schema_folders(tmp_path)
    with SQLConnection(settings=dataclasses.replace(sql_settings, schema_dir=sql_dir)) as sql, \
            MongoConnection(settings=dataclasses.replace(mongo_settings, schema_dir=mongo_dir)) as mongo:
        sql.execute("CREATE TABLE src (id integer PRIMARY KEY, ra double precision, dec double precision, "
                    "mag double precision, name text)")
        mongo.collection("src").create_index([("loc", "2dsphere")], name="loc")
        rows = [{"id": i, "ra": 10.0 + (i % 5) * 1e-4, "dec": 20.0 + (i // 5) * 1e-4,
                 "mag": None if i % 3 == 0 else float(i % 4), "name": None if i % 4 == 0 else f"s{i % 3}"}
                for i in range(1, 21)]
        sql.query("src").bulk_insert(rows)
        mongo.collection("src").insert_many([  # odd rows keep a null, even rows miss the field
            {"_id": r["id"], "loc": {"type": "Point", "coordinates": [r["ra"] - 180.0, r["dec"]]},
             **{f: r[f] for f in ("mag", "name") if r[f] is not None or r["id"] % 2}} for r in rows])
        yield Sky({"sql": sql.query("src"), "mongo": mongo.query("src")}, rows)


def test_cone_searches_follow_the_placement(sky: Sky) -> None:
    cone = {"$cone": {"ra": 10.0, "dec": 20.0, "radius": 3600.0}}
    by_id = {r["id"]: r for r in sky.rows}
    for sort in ([("mag", 1, "nulls_last")], [("name", -1, "nulls_first"), ("mag", 1, "nulls_last")]):
        want = oracle(sky.rows, sort)
        found = []
        for engine in ENGINES:
            q, key = sky.q[engine], Engines.key(engine)
            assert [r[key] for r in q.find_all(cone, sort=sort, projection=[key], paginate=False)] == want
            assert [r[key] for r in q.paginate(cone, page=2, per_page=6, sort=sort, projection=[key]).items] \
                == want[6:12]
            assert walk(q, cone, sort, 4, key) == want
            # ties broken by the distance: the placement still holds, and no helper field shows
            near = list(q.find_all(cone, sort=[*sort, ("$distance", 1)], projection=[key, "mag", "$distance"],
                                   paginate=False))
            assert {tuple(r) for r in near} == {(key, "mag", "distance")}
            assert [r["mag"] for r in near] == [by_id[i]["mag"] for i in want]
            whole = list(q.find_all(cone, sort=[*sort, ("$distance", -1)], paginate=False))
            assert {r[key] for r in whole} == set(by_id)
            assert all("doc" not in r and "n0" not in r for r in whole)
            found.append([(r[key], round(r["distance"], 6)) for r in near])
        assert found[0] == found[1]
    firsts = []
    for engine in ENGINES:
        q, key = sky.q[engine], Engines.key(engine)
        firsts.append([r[key] for r in q.find_all(cone, sort=[("$distance", 1), ("mag", 1, "nulls_last")],
                                                  projection=[key], paginate=False)])
        with pytest.raises(FilterError, match=r"^sort: \$distance takes no NULL placement"):
            q.find_all(cone, sort=[("$distance", 1, "nulls_last")], paginate=False)
    assert firsts[0] == firsts[1] and len(firsts[0]) == 20


# -- what an adversary found ---------------------------------------------------------------------------------


def test_find_one_breaks_ties_by_the_key_as_find_all_does(engines: Engines) -> None:
    engines.load([{"id": i, "a": 1, "b": None, "c": None, "d": 0} for i in range(1, 5)])
    for engine in ENGINES:
        q = engines.q[engine]
        q.update({engines.key(engine): 1}, {"d": 7})  # PostgreSQL moves the updated row to the end of its heap
        for sort in ([("a", 1)], [("a", 1, "nulls_last")], [("a", -1, "nulls_first"), ("b", 1)]):
            first = next(iter(q.find_all(sort=sort, paginate=False)))
            found = q.find_one(sort=sort)
            assert found is not None and found[engines.key(engine)] == first[engines.key(engine)] == 1, (engine, sort)


@pytest.mark.parametrize("direction", [np.array([1]), np.array([1, 1]), np.array([]), "1", [1], None, 2, 0.5])
def test_a_direction_that_is_not_one_or_minus_one_is_a_filter_error(engines: Engines, direction: Any) -> None:
    for engine in ENGINES:
        with pytest.raises(FilterError, match="sort entries are"):
            engines.q[engine].find_one(sort=[("a", direction)])
        with pytest.raises(FilterError):
            engines.q[engine].find_one(sort=[(np.array(["a"]), 1)])
    for direction_ok in (np.int64(-1), np.int8(1), 1.0, -1.0):  # numbers equal to 1 or -1 are fine
        assert engines.q["sql"].find_one(sort=[("a", direction_ok)]) is None
        assert engines.q["mongo"].find_one(sort=[("a", direction_ok)]) is None
