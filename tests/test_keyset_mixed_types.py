"""Keyset pages over a field whose values mix types: every row once, in the engine's own order.

``$gt``/``$lt`` are type-bracketed on both engines, but a sort orders across types
(BSON's order on MongoDB, jsonb's on PostgreSQL), so the next-page condition must
also take the values whose type sorts after (before, descending) the last value's.
The engines order types differently, so each walk is compared with the same
engine's single sorted query.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbp.errors import FilterError
from dbp.pagination import KeysetPage
from tests.hyp import examples

TABLE = 'CREATE TABLE mix ("_id" text PRIMARY KEY, a jsonb, n integer)'


class Engines:
    def __init__(self, sql: Any, mongo: Any) -> None:
        self.sql, self.mongo = sql, mongo
        sql.execute(TABLE)

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.sql.execute("DELETE FROM mix")
        self.mongo.collection("mix").delete_many({})
        self.sql.query("mix").bulk_insert([dict(r) for r in rows])
        # MongoDB: a None value stays a stored null, and an absent one stays missing
        self.mongo.collection("mix").insert_many([{k: v for k, v in r.items() if v is not _MISSING}
                                                  for r in rows])

    def queries(self) -> list[Any]:
        """The table, a named SQL query over it (its own keyset condition), and the collection."""
        return [self.sql.query("mix"), self.sql.sql('-- key: _id\nSELECT "_id", a, n FROM mix'),
                self.mongo.query("mix")]


_MISSING = object()


@pytest.fixture
def engines(sql_db: Any, mongo_db: Any) -> Engines:
    return Engines(sql_db, mongo_db)


def walk(q: Any, sort: Any, per_page: int) -> list[str]:
    page = q.paginate({}, per_page=per_page, sort=sort, keyset=True)
    assert isinstance(page, KeysetPage)
    seen = [r["_id"] for r in page.items]
    while page.next_token is not None:
        page = q.paginate({}, per_page=per_page, sort=sort, after=page.next_token)
        seen += [r["_id"] for r in page.items]
    return seen


_value = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([-1.5, 0.5, 2.5]),
                   st.sampled_from(["", "a", "b", "x"]))
_placement = st.sampled_from([(), ("nulls_first",), ("nulls_last",)])


def _rows(values: list[Any], ns: list[int]) -> list[dict[str, Any]]:
    return [{"_id": f"r{i}", "a": v, "n": n} for i, (v, n) in enumerate(zip(values, ns))]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_value, min_size=1, max_size=10), ns=st.lists(st.integers(0, 1), min_size=10, max_size=10),
       direction=st.sampled_from([1, -1]), placement=_placement, second=st.booleans(),
       per_page=st.integers(1, 3))
@example(values=[1, "x", None, 2.5, True], ns=[0] * 10, direction=1, placement=(), second=False, per_page=1)
@example(values=[1, "x", None, 2.5, True], ns=[0] * 10, direction=1, placement=("nulls_last",), second=False,
         per_page=1)
@example(values=[1, "x", None, 2.5, True], ns=[0] * 10, direction=-1, placement=("nulls_first",), second=True,
         per_page=2)
def test_a_keyset_walk_over_mixed_types_serves_every_row_once(
        engines: Engines, values: list[Any], ns: list[int], direction: int, placement: tuple[str, ...],
        second: bool, per_page: int) -> None:
    engines.load(_rows(values, ns))
    sort: list[Any] = [("a", direction, *placement)]
    if second:
        sort = [("n", -direction), *sort]
    for q in engines.queries():
        expected = [r["_id"] for r in q.find_all({}, sort=sort, paginate=False)]
        assert sorted(expected) == sorted(f"r{i}" for i in range(len(values)))
        assert walk(q, sort, per_page) == expected, q


def test_the_engines_order_types_differently(engines: Engines) -> None:
    """Recorded, not unified: MongoDB puts numbers before strings, PostgreSQL's jsonb strings before numbers."""
    engines.load(_rows([1, "x", None, 2.5, True], [0] * 5))
    sql, named, mongo = ([r["_id"] for r in q.find_all({}, sort=[("a", 1)], paginate=False)]
                         for q in engines.queries())
    assert sql == named == ["r2", "r1", "r0", "r3", "r4"]
    assert mongo == ["r2", "r0", "r3", "r1", "r4"]


@pytest.mark.parametrize("placement", [(), ("nulls_last",)])
def test_a_walk_over_a_missing_field_and_mixed_types(engines: Engines, placement: tuple[str, ...]) -> None:
    """MongoDB: a missing field sorts with the NULLs, and later types follow it."""
    rows = _rows([1, "x", None, 2.5, True, _MISSING, "a", False], [0] * 8)
    engines.mongo.collection("mix").insert_many([{k: v for k, v in r.items() if v is not _MISSING} for r in rows])
    q = engines.mongo.query("mix")
    for direction in (1, -1):
        sort = [("a", direction, *placement)]
        expected = [r["_id"] for r in q.find_all({}, sort=sort, paginate=False)]
        assert len(expected) == 8
        for per_page in (1, 2, 3):
            assert walk(q, sort, per_page) == expected


_BSON = [None, 1, 2.5, "x", "a", b"\x01", b"\x02\x03", ObjectId("0" * 24), True, False,
# one binary subtype only: this server's $gt orders subtypes (a UUID is subtype 4) unlike its $sort
         dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), _MISSING]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, len(_BSON) - 1), min_size=1, max_size=10), direction=st.sampled_from([1, -1]),
       placement=_placement, per_page=st.integers(1, 3))
def test_mongodb_walks_every_bson_type_in_its_order(engines: Engines, picks: list[int], direction: int,
                                                    placement: tuple[str, ...], per_page: int) -> None:
    """MongoDB's whole type order: numbers, strings, documents, binary, ObjectId, bool, date."""
    engines.mongo.collection("mix").delete_many({})
    rows = _rows([_BSON[i] for i in picks], [0] * len(picks))
    engines.mongo.collection("mix").insert_many([{k: v for k, v in r.items() if v is not _MISSING} for r in rows])
    q = engines.mongo.query("mix")
    sort = [("a", direction, *placement)]
    expected = [r["_id"] for r in q.find_all({}, sort=sort, paginate=False)]
    assert len(expected) == len(picks)
    assert walk(q, sort, per_page) == expected


def _forged(token: str, value: Any) -> str:
    """``token`` with its first sort value replaced (the fingerprint is unsigned: anyone can do this)."""
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body["v"][0] = value
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize("field", ["n", "a"])
@pytest.mark.parametrize("value", ["s", True, [1, 2], {"$dt": "2020-01-01T00:00:00+00:00"}])
def test_a_forged_position_of_another_type_is_served_or_refused_in_one_line(engines: Engines, field: str,
                                                                            value: Any) -> None:
    """A token whose value is of a type the field does not hold: the rows of the types after it
    (MongoDB), or a FilterError where PostgreSQL cannot compare it; never a raw error."""
    engines.load(_rows([1, "x", None, 2.5, True], [0, 1, 0, 1, 0]))
    sort = [(field, 1, "nulls_last")]
    for q in engines.queries():
        token = q.paginate({}, per_page=1, sort=sort, keyset=True).next_token
        after = _forged(token, value)
        if q.db.engine == "sql" and (field == "n" or isinstance(value, (dict, list))):  # not comparable there
            with pytest.raises(FilterError) as refused:
                q.paginate({}, per_page=10, sort=sort, after=after)
            assert "\n" not in str(refused.value)
            continue
        served = [r["_id"] for r in q.paginate({}, per_page=10, sort=sort, after=after).items]
        if field == "n" and value == "s":
            assert served == []  # every n is a number, and numbers sort before strings
