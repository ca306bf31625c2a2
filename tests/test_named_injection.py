"""Hostile parameters, filters on output columns, sort keys and query names: only DbpErrors, and the sentinel lives."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dbp import DbpError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .named_data import COLUMNS, load_mongo, load_sql, make_objects

HOSTILE = [
    "'; DROP TABLE sentinel; --", "x') OR 1=1 --", "%s", "%(classifier)s", "%%", "%", "$where", "$_id",
    "sleep(1)", ")) AS q; DROP TABLE sentinel; --", '"', '"sentinel"', "q.oid", "\x00", "\ud800", "a" * 300,
    "sentinel", "object_list; DROP TABLE sentinel", "../object", "{$gt: ''}", "$$ROOT", "this.ndet > 0",
]
texts = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), texts,
    st.binary(max_size=5), st.datetimes(min_value=dt.datetime(1, 1, 2)), st.just(object()),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["$gt", "$where", "$ne", "$expr", "$regex", "x", "$in"]), scalars, max_size=2),
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five: hostile parts mixed into requests that otherwise reach the server."""
    return st.integers(0, 9).flatmap(lambda i: good if i < 8 else bad)


fields = mostly(st.sampled_from(COLUMNS), texts)
operators = mostly(st.sampled_from(["$eq", "$gt", "$gte", "$lt", "$ne", "$in", "$nin", "$regex", "$exists"]),
                   st.sampled_from(["$where", "$expr", "$not", "$elemMatch", "bogus", "$or", "$lookup"]))
plain = mostly(st.one_of(st.none(), st.booleans(), st.integers(-5, 20), st.floats(0, 60000), texts),
               st.one_of(scalars, st.lists(scalars, max_size=3)))
filters = mostly(
    st.dictionaries(fields, mostly(plain, st.dictionaries(operators, plain, min_size=1, max_size=2)), max_size=2),
    st.one_of(st.builds(lambda a, b: {"$or": [a, b]}, st.dictionaries(fields, plain, max_size=1),
                        st.dictionaries(fields, plain, max_size=1)), texts, st.lists(values, max_size=2)),
)
sorts = mostly(st.lists(st.tuples(fields, st.sampled_from([1, -1])), max_size=3),
               st.one_of(st.lists(st.tuples(fields, st.sampled_from([0, 2, "asc", None])), max_size=2), texts))
names = mostly(st.sampled_from(["object_list", "object_list", "light_curve", "limit_values", "object"]),
               st.one_of(texts, st.integers(), st.none()))


def _params(name: Any) -> st.SearchStrategy[Any]:
    if name == "object_list":
        good = st.fixed_dictionaries({"classifier": mostly(st.sampled_from(["lc_classifier", "x"]), values),
                                      "ranking": mostly(st.sampled_from([1, None]), values)})
    elif name == "light_curve":
        good = st.fixed_dictionaries({"oid": mostly(st.just("ZTF18000001a"), values)})
    else:
        good = st.none()
    return mostly(good, st.one_of(st.dictionaries(st.one_of(texts, st.integers()), values, max_size=3), values))


requests = st.builds(
    lambda name_params, rest: {**rest, "name": name_params[0], "params": name_params[1]},
    names.flatmap(lambda name: st.tuples(st.just(name), _params(name))),
    st.fixed_dictionaries({
        "filter": filters, "sort": sorts,
        "projection": mostly(st.none(), st.one_of(st.lists(fields, max_size=3), texts)),
        "page": mostly(st.integers(min_value=-3, max_value=5), texts),
        "per_page": st.sampled_from([0, 1, 3, 3, 3, -1, 10**20]),
        "mode": st.sampled_from(["paginate", "keyset", "count", "find_one", "stream", "exists", "after", "run"]),
        "after": texts,
    }),
)


def _attempt(db: Any, r: dict[str, Any]) -> None:
    try:
        if r["mode"] == "run":
            db.run(r["name"], r["params"])
            return
        source = db.query(r["name"], r["params"])
        if r["mode"] == "paginate":
            source.paginate(r["filter"], page=r["page"], per_page=r["per_page"], sort=r["sort"],
                            projection=r["projection"])
        elif r["mode"] == "keyset":
            source.paginate(r["filter"], per_page=r["per_page"], sort=r["sort"], keyset=True)
        elif r["mode"] == "after":
            source.paginate(r["filter"], per_page=3, sort=r["sort"], after=r["after"])
        elif r["mode"] == "count":
            source.count(r["filter"], limit=r["page"])
        elif r["mode"] == "find_one":
            source.find_one(r["filter"], sort=r["sort"], projection=r["projection"])
        elif r["mode"] == "exists":
            source.check_exists(r["filter"])
        else:
            list(source.find_all(r["filter"], sort=r["sort"], paginate=False, batch_size=2))
    except DbpError as exc:
        event(f"{type(db).__name__}: {type(exc).__name__}")  # anything but a DbpError fails the test
    else:
        event(f"{type(db).__name__}: ran")


@pytest.fixture
def engines(sql_db: SQLConnection, mongo_db: MongoConnection) -> tuple[SQLConnection, MongoConnection]:
    objects = make_objects(15, 9)
    load_sql(sql_db, objects)
    load_mongo(mongo_db, objects, 9)
    sql_db.execute("CREATE TABLE sentinel (id integer PRIMARY KEY)")
    sql_db.execute("INSERT INTO sentinel VALUES (1)")
    mongo_db.collection("sentinel").insert_one({"_id": 1})
    return sql_db, mongo_db


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests)
def test_hostile_requests_raise_only_dbp_errors_and_the_sentinel_survives(
        engines: tuple[SQLConnection, MongoConnection], request: dict[str, Any]) -> None:
    sql_db, mongo_db = engines
    for db in engines:
        _attempt(db, request)
    assert sql_db.execute("SELECT id FROM sentinel").fetchall() == [{"id": 1}]
    assert sql_db.query("object").count() == 15
    assert list(mongo_db.collection("sentinel").find()) == [{"_id": 1}]
    assert mongo_db.collection("object").count_documents({}) == 15
