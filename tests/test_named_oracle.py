"""The bundled object_list against a brute-force oracle, on both engines: filters x sorts x pages, keyset walks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dbp.mongo.connection import MongoConnection
from dbp.pagination import KeysetPage, Pagination
from dbp.sql.connection import SQLConnection

from .named_data import FILTERS, SORTS, load_mongo, load_sql, make_objects, oid_filter, oracle

SEED = 1212
PARAMS = [{"classifier": "lc_classifier", "ranking": 1}, {"classifier": "stamp_classifier", "ranking": None}]


@pytest.fixture
def loaded(sql_db: SQLConnection, mongo_db: MongoConnection) -> tuple[list[dict[str, Any]], list[Any]]:
    objects = make_objects(80, SEED)
    load_sql(sql_db, objects)
    load_mongo(mongo_db, objects, SEED)
    return objects, [sql_db, mongo_db]


@pytest.mark.slow
def test_object_list_equals_the_oracle_on_both_engines(loaded: tuple[list[dict[str, Any]], list[Any]]) -> None:
    objects, dbs = loaded
    rng = random.Random(SEED)
    tried = 0
    for params in PARAMS:
        for filter_by in [*FILTERS, oid_filter(objects, rng)]:
            for sort in SORTS:
                expected = oracle(objects, params["classifier"], params["ranking"], filter_by, sort)
                assert expected or filter_by  # every filter but the empty one may match nothing
                per_page = 7
                last = max(1, -(-len(expected) // per_page))
                for page in sorted({1, 2, last} if sort else {1, last, last + 1}):
                    want = expected[(page - 1) * per_page: page * per_page]
                    results = []
                    for db in dbs:
                        got = db.query("object_list", params).paginate(filter_by, page=page, per_page=per_page,
                                                                         sort=sort)
                        assert isinstance(got, Pagination)
                        assert got.total == len(expected), (db, params, filter_by, sort)
                        assert got.items == want, (db, params, filter_by, sort, page)
                        results.append((got.total, got.items))
                        tried += 1
                    assert results[0] == results[1]
    assert tried > 400


def test_a_keyset_walk_over_the_join_visits_every_row_once_in_order(
        loaded: tuple[list[dict[str, Any]], list[Any]]) -> None:
    objects, dbs = loaded
    params = {"classifier": "lc_classifier", "ranking": None}  # several rows per object
    for sort in ([("ndet", 1)], [("probability", -1)], [("firstmjd", -1), ("class_name", 1)], []):
        expected = oracle(objects, "lc_classifier", None, {}, sort)
        assert len({r["ndet"] for r in expected}) < len(expected) / 10  # many duplicates of the first sort key
        walks = []
        for db in dbs:
            page = db.query("object_list", params).paginate(per_page=9, sort=sort, keyset=True)
            assert isinstance(page, KeysetPage)
            seen = list(page.items)
            while page.has_next:
                page = page.next()
                seen += page.items
            assert seen == expected, (db, sort)
            walks.append(seen)
        assert walks[0] == walks[1]


def test_counts_streams_and_single_rows_agree_with_the_oracle(
        loaded: tuple[list[dict[str, Any]], list[Any]]) -> None:
    objects, dbs = loaded
    params = {"classifier": "lc_classifier", "ranking": None}
    expected = oracle(objects, "lc_classifier", None, {"probability": {"$gte": 0.5}}, [("probability", -1)])
    for db in dbs:
        source = db.query("object_list", params)
        assert source.count({"probability": {"$gte": 0.5}}) == len(expected)
        assert source.count({"probability": {"$gte": 0.5}}, limit=3) == min(3, len(expected))
        assert source.check_exists({"class_name": "SN"}) is any(r["class_name"] == "SN" for r in expected)
        assert source.check_exists({"oid": "nothing"}) is False
        assert source.find_one({"probability": {"$gte": 0.5}}, sort=[("probability", -1), ("oid", 1),
                                                                      ("classifier_version", 1),
                                                                      ("class_name", 1)]) == expected[0]
        streamed = list(source.find_all({"probability": {"$gte": 0.5}}, sort=[("probability", -1)],
                                        paginate=False, batch_size=4))
        assert streamed == expected
        page = source.paginate({"probability": {"$gte": 0.5}}, sort=[("probability", -1)], per_page=5,
                               count=False, projection=["oid", "probability"])
        assert page.items == [{"oid": r["oid"], "probability": r["probability"]} for r in expected[:5]]
        assert page.has_next is (len(expected) > 5)
        assert page.next().items == [{"oid": r["oid"], "probability": r["probability"]} for r in expected[5:10]]
