"""Tables without a primary key, and bulk_insert's ``key=``, the same on both engines.

SQL's ``feature`` is ALeRCE's multi-survey one (no primary key, 32 hash partitions on oid); MongoDB's is a
free-form collection with no unique index but the one on ``_id``. ``keyed`` has a key on (oid, sid) on both: a primary
key, a unique index. The same calls go to both engines; refusals come first.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbp
from dbp.errors import DbpError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.lock import Lease
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .conftest import sql_section
from .partitioned_schema import FEATURE_KEY, schema

ENGINES = ("sql", "mongo")
FIELDS = [*FEATURE_KEY, "value"]
KEYED_SQL = "CREATE TABLE keyed (oid bigint, sid smallint, v double precision, PRIMARY KEY (oid, sid))"


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in row.values())


class Both:
    """``feature`` and ``keyed`` on each engine."""

    def __init__(self, sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
        self.db: dict[str, Any] = {"sql": sql_db, "mongo": mongo_db}
        self.errors: dict[str, str] = {}

    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method`` on both engines: the same result, or the same kind of error, and then nothing written."""
        before = {e: self.rows(e, name) for e in ENGINES}
        found = {}
        for engine in ENGINES:
            try:
                found[engine] = ("ok", getattr(self.db[engine].query(name), method)(*args, **kwargs))
            except DbpError as exc:
                message = str(exc)
                assert "\n" not in message and len(message) < 400, message  # one line
                self.errors[engine] = message
                found[engine] = ("error", type(exc).__name__)
                assert self.rows(engine, name) == before[engine], f"{engine}: {message}"  # nothing written
        assert found["sql"] == found["mongo"], (method, args, kwargs, self.errors)
        return found["sql"]

    def rows(self, engine: str, name: str = "feature") -> list[dict[str, Any]]:
        fields = FIELDS if name == "feature" else ["oid", "sid", "v"]
        return sorted(self.db[engine].query(name).find_all(projection=fields, paginate=False), key=_order)

    def same(self, name: str = "feature") -> list[dict[str, Any]]:
        rows = self.rows("sql", name)
        assert rows == self.rows("mongo", name)
        return rows


@pytest.fixture
def both(sql_db: SQLConnection, mongo_db: MongoConnection) -> Iterator[Both]:
    sql_db.execute(schema(partitioned=True, names=("feature",)) + ";" + KEYED_SQL)
    mongo_db.collection("keyed").create_index([("oid", 1), ("sid", 1)], unique=True)
    return Both(sql_db, mongo_db)


def feature(oid: int, feature_id: int = 1, band: int = 1, value: Optional[float] = 1.0, **more: Any) -> dict[str, Any]:
    return {"oid": oid, "sid": 1, "feature_id": feature_id, "band": band, "version": 1, "value": value, **more}


# -- refusals: one line, nothing written ------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "why"), [
    ("oid", "key is a list of field names, not str (key=['oid'] names one field)"),
    ([], "key is an empty list"),
    (["oid", "oid"], "key names 'oid' twice"),
    ([1], "key is a list of field names, not of int"),
    ([None], "key is a list of field names, not of NoneType"),
    ({"oid": 1}, "key is a list of field names, not dict"),
    (["oid.x"], "oid.x"),
    (["$oid"], "is not a field name"),
])
def test_a_key_that_cannot_name_fields_is_refused_on_both_engines(both: Both, key: Any, why: str) -> None:
    both.call("feature", "bulk_insert", [feature(1)], on_conflict="error")
    for mode in ("ignore", "update"):
        assert both.call("feature", "bulk_insert", [feature(1, value=5.0), feature(2)], on_conflict=mode,
                         key=key) == ("error", "FilterError")
        for engine in ENGINES:
            assert why in both.errors[engine], both.errors
    assert both.same() == [feature(1)]


def test_key_goes_with_ignore_or_update(both: Both) -> None:
    assert both.call("feature", "bulk_insert", [feature(1)], on_conflict="error", key=FEATURE_KEY) == \
        ("error", "FilterError")
    assert "key= goes with on_conflict='ignore' or 'update'" in both.errors["sql"]
    assert both.same() == []


@pytest.mark.parametrize("mode", ["ignore", "update"])
def test_a_null_or_missing_key_value_is_refused_naming_the_row(both: Both, mode: str) -> None:
    rows = [feature(1), feature(2), feature(3, band=None), feature(4)]  # type: ignore[arg-type]
    assert both.call("feature", "bulk_insert", rows, on_conflict=mode, key=FEATURE_KEY) == ("error", "FilterError")
    for engine in ENGINES:
        assert both.errors[engine].startswith("bulk_insert: row 2 has no value for key field 'band'"), both.errors
    missing = [feature(1), {k: v for k, v in feature(2).items() if k != "version"}]
    assert both.call("feature", "bulk_insert", missing, on_conflict=mode, key=FEATURE_KEY) == ("error", "FilterError")
    assert "row 1 has no value for key field 'version'" in both.errors["mongo"] == both.errors["sql"]
    assert both.same() == []


def test_a_list_as_a_key_value_is_refused(both: Both) -> None:
    assert both.call("feature", "bulk_insert", [feature(1), feature([2, 3])],  # type: ignore[arg-type]
                     on_conflict="update", key=FEATURE_KEY) == ("error", "FilterError")
    assert "row 1" in both.errors["sql"] and "row 1" in both.errors["mongo"], both.errors
    assert both.same() == []


def test_a_key_that_is_not_a_unique_key_of_a_keyed_table_is_refused(both: Both) -> None:
    """keyed has a primary key (SQL) / a unique index (MongoDB) on (oid, sid): key= must name it."""
    both.call("keyed", "bulk_insert", [{"oid": 1, "sid": 1, "v": 1.0}], on_conflict="error")
    for key in (["oid"], ["oid", "sid", "v"], ["v"]):
        assert both.call("keyed", "bulk_insert", [{"oid": 1, "sid": 1, "v": 2.0}], on_conflict="update",
                         key=key) == ("error", "FilterError")
        for engine in ENGINES:
            assert f"key=[{', '.join(key)}] is not a unique key of keyed" in both.errors[engine], both.errors
            assert "oid, sid" in both.errors[engine]
    # the key itself, in any order, is the conflict target
    assert both.call("keyed", "bulk_insert", [{"oid": 1, "sid": 1, "v": 2.0}, {"oid": 2, "sid": 1, "v": 3.0}],
                     on_conflict="update", key=["sid", "oid"]) == ("ok", 1)
    assert both.same("keyed") == [{"oid": 1, "sid": 1, "v": 2.0}, {"oid": 2, "sid": 1, "v": 3.0}]


def test_an_unknown_key_column_is_refused(both: Both, mongo_db: MongoConnection) -> None:
    """SQL knows its columns; a MongoDB collection knows its fields only if collections.toml declares them."""
    with pytest.raises(FilterError, match="key names 'nope', which is not a column of feature; its columns"):
        both.db["sql"].query("feature").bulk_insert([feature(1)], key=["nope"])
    with pytest.raises(FilterError, match="object has no field 'nope'"):
        mongo_db.query("object").bulk_insert([{"_id": "a"}], key=["nope"])
    assert both.rows("sql") == [] and mongo_db.query("object").count() == 0


def test_get_or_create_and_upsert_need_a_unique_key(both: Both) -> None:
    """Neither engine can keep two racing calls from both inserting without one: both refuse."""
    both.call("feature", "bulk_insert", [feature(1)], on_conflict="error")
    where = {k: v for k, v in feature(1).items() if k in FEATURE_KEY}
    assert both.call("feature", "get_or_create", where, value=2.0) == ("error", "FilterError")
    assert "unique" in both.errors["sql"] and "unique" in both.errors["mongo"]
    assert both.call("feature", "upsert", where, {"value": 2.0}) == ("error", "FilterError")
    assert both.same() == [feature(1)]


# -- what keyless tables do -------------------------------------------------------------------------------------


def test_error_appends_and_update_and_delete_work_by_filter(both: Both) -> None:
    rows = [feature(1), feature(1), feature(2, value=None)]
    assert both.call("feature", "bulk_insert", rows, on_conflict="error") == ("ok", 3)
    assert both.same() == sorted(rows, key=_order)
    assert both.call("feature", "update", {"oid": 1}, {"value": 4.0}) == ("ok", 2)
    assert both.call("feature", "update", {"value": None}, {"$inc": {"value": 1.5}}) == ("ok", 1)
    assert both.call("feature", "bulk_update", [{"oid": 1, "band": 1}], [{"value": 9.0}],
                     filter_fields=["oid", "band"]) == ("ok", 2)
    assert both.same() == [feature(1, value=9.0), feature(1, value=9.0), feature(2, value=1.5)]
    assert both.call("feature", "delete", {"oid": 1}) == ("ok", 2)
    assert both.same() == [feature(2, value=1.5)]


def test_key_updates_every_stored_duplicate_and_inserts_the_missing(both: Both) -> None:
    both.call("feature", "bulk_insert", [feature(1), feature(1), feature(2)], on_conflict="error")
    batch = [feature(1, value=7.0), feature(3, value=3.0), feature(3, value=None, band=2), feature(3, value=8.0)]
    assert both.call("feature", "bulk_insert", batch, key=FEATURE_KEY) == ("ok", 2)  # ignore: the first wins
    assert both.same() == sorted([feature(1), feature(1), feature(2), feature(3, value=3.0),
                                  feature(3, band=2, value=None)], key=_order)
    assert both.call("feature", "bulk_insert", batch, on_conflict="update", key=FEATURE_KEY) == ("ok", 0)
    assert both.same() == sorted([feature(1, value=7.0), feature(1, value=7.0), feature(2), feature(3, value=8.0),
                                  feature(3, band=2, value=None)], key=_order)
    # update_fields narrows what an existing row takes; a new row is inserted whole
    assert both.call("feature", "bulk_insert", [feature(2, value=0.5), feature(4, value=4.0)], on_conflict="update",
                     update_fields=["sid"], key=FEATURE_KEY) == ("ok", 1)
    assert feature(2) in both.same() and feature(4, value=4.0) in both.same()


def test_without_key_sql_refuses_and_mongo_keys_by_id(both: Both) -> None:
    """The one difference: without key=, a keyless SQL table has nothing to conflict on; every MongoDB
    document has an _id (generated here, so every row is new)."""
    for mode in ("ignore", "update"):
        with pytest.raises(FilterError, match=r"on feature: the table has no primary key or unique constraint, .*"
                                              r"pass key=\[\.\.\.\] .* or on_conflict='error'"):
            both.db["sql"].query("feature").bulk_insert([feature(1)], on_conflict=mode)
    assert both.db["mongo"].query("feature").bulk_insert([feature(1), feature(1)]) == 2
    assert both.rows("sql") == []


def test_keyset_pages_of_a_keyless_table_are_refused_and_offset_pages_are_stable(both: Both) -> None:
    sql = both.db["sql"].query("feature")
    with pytest.raises(FilterError, match=r"keyset pagination of feature needs a key that identifies rows.*"
                                          r"use page numbers \(page=, per_page=\)"):
        sql.paginate(keyset=True)
    rows = [feature(i % 9, feature_id=i % 3, value=float(i % 4)) for i in range(60)]
    sql.bulk_insert(rows, on_conflict="error")
    pages = [sql.paginate(page=n, per_page=7, sort=[("value", 1)]).items for n in range(1, 10)]
    read = [row for page in pages for row in page]
    assert sorted(read, key=_order) == sorted(sql.find_all(paginate=False), key=_order)  # each row once
    assert read == [row for n in range(1, 10) for row in sql.paginate(page=n, per_page=7, sort=[("value", 1)]).items]


def test_a_table_with_unique_keys_but_no_primary_key(sql_db: SQLConnection) -> None:
    """Without key=, its one unique key is the key; with several, "update" needs key= to name one."""
    sql_db.execute("CREATE TABLE one (code text UNIQUE, n int); CREATE TABLE two (a int UNIQUE, b int UNIQUE, n int)")
    one = sql_db.query("one")
    assert one.bulk_insert([{"code": "x", "n": 1}, {"code": "x", "n": 2}, {"code": "y", "n": 3}],
                           on_conflict="update") == 2
    assert sorted(r["n"] for r in one.find_all(paginate=False)) == [2, 3]
    with pytest.raises(FilterError, match="row 0 has no value for key field 'code'"):
        one.bulk_insert([{"n": 4}])
    two = sql_db.query("two")
    assert two.bulk_insert([{"a": 1, "b": 1, "n": 1}, {"a": 1, "b": 2, "n": 2}, {"a": 2, "b": 1, "n": 3}]) == 1
    with pytest.raises(FilterError, match=r"several unique keys \(a; b\); pass key=\[\.\.\.\]"):
        two.bulk_insert([{"a": 1, "b": 1, "n": 5}], on_conflict="update")
    assert two.bulk_insert([{"a": 1, "b": 1, "n": 5}], on_conflict="update", key=["a"]) == 0
    assert [r["n"] for r in two.find_all(paginate=False)] == [5]


def test_key_names_a_unique_index_of_a_table_with_a_primary_key(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE coded (id serial PRIMARY KEY, code text NOT NULL UNIQUE, n int)")
    coded = sql_db.query("coded")
    assert coded.bulk_insert([{"code": "a", "n": 1}, {"code": "b", "n": 2}], on_conflict="error") == 2
    assert coded.bulk_insert([{"code": "a", "n": 10}, {"code": "c", "n": 3}], on_conflict="update",
                             key=["code"]) == 1
    found = [(r["id"], r["code"], r["n"]) for r in coded.find_all(paginate=False)]
    assert found[:2] == [(1, "a", 10), (2, "b", 2)] and [r[1:] for r in found[2:]] == [("c", 3)]


# -- the same calls, drawn --------------------------------------------------------------------------------------

_ROW = st.builds(feature, st.integers(1, 5), st.integers(1, 3), st.integers(1, 2),
                 st.one_of(st.none(), st.integers(-50, 50).map(lambda v: v / 4)))
_STEP = st.tuples(st.sampled_from(["ignore", "update", "error"]), st.lists(_ROW, min_size=1, max_size=8),
                  st.sampled_from([FEATURE_KEY, FEATURE_KEY[::-1], ["oid", "feature_id"], ["value"]]),
                  st.sampled_from([None, ["value"], ["band"]]))


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, min_size=1, max_size=6))
def test_key_writes_the_same_rows_on_both_engines(both: Both, steps: list[tuple[Any, ...]]) -> None:
    """Random batches (repeats within them, keys stored already, stored duplicates from "error", NULL values)
    through key=: the same counts and the same rows on both engines."""
    for engine in ENGINES:
        both.db[engine].query("feature").delete({})
    for mode, rows, key, update_fields in steps:
        options: dict[str, Any] = {} if mode == "error" else {"key": key}
        if mode == "update" and update_fields:
            options["update_fields"] = update_fields
        both.call("feature", "bulk_insert", rows, on_conflict=mode, **options)
        both.same()


# -- concurrent writers by key (MongoDB; PostgreSQL's are in test_partitioned_queries) ---------------------------


def test_mongo_writers_by_key_without_a_unique_index_take_turns(mongo_db: MongoConnection) -> None:
    """Such a bulk_insert holds the collection's lease (dbp.mongo.lock) while it writes: held by another,
    it waits; a collection whose unique index covers the key needs none (the server keeps keys unique).

    (SecantusDB runs one write at a time, so the race the lease prevents, two upserts of one new key both
    inserting, shows only against a mongod: DBP_TEST_MONGO_URL.)"""
    done: list[Any] = []
    mongo_db.collection("keyed").create_index([("oid", 1), ("sid", 1)], unique=True)
    with Lease(mongo_db.database, name="bulk_insert:feature", timeout=5), \
            Lease(mongo_db.database, name="bulk_insert:keyed", timeout=5):
        thread = threading.Thread(target=lambda: done.append(
            mongo_db.query("feature").bulk_insert([feature(1)], key=FEATURE_KEY)))
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive() and not done
        assert mongo_db.query("keyed").bulk_insert([{"oid": 1, "sid": 1}], key=["oid", "sid"]) == 1  # no lease
    thread.join(30)
    assert done == [1]
    assert mongo_db.database["_dbp_locks"].count_documents({}) == 0

WRITERS = 8
PER_WRITER = 300


def _rows(writer: int) -> list[dict[str, Any]]:
    start = writer * PER_WRITER // 2
    return [feature(k // 4, feature_id=k % 4, band=1 + k % 2, value=float(writer))
            for k in range(start, start + PER_WRITER)]


def _mongo_writer(args: tuple[str, str, int, str, float]) -> int:
    url, database, writer, mode, start = args
    rows = _rows(writer)
    random.Random(writer).shuffle(rows)
    with dbp.connect({"MONGO": {"URL": url, "DATABASE": database}}, engine="mongo") as db:
        time.sleep(max(0.0, start - time.time()))  # all at once, in batches that interleave
        return sum(db.query("feature").bulk_insert(rows[i:i + 50], on_conflict=mode,  # type: ignore[arg-type]
                                                   key=FEATURE_KEY) for i in range(0, len(rows), 50))


@pytest.mark.slow
def test_eight_processes_write_a_collection_without_unique_index_by_key(mongo_db: MongoConnection) -> None:
    """Without a unique index, writers by key= take turns (a lease): no key is stored twice."""
    mongo_db.collection("feature").create_index([("oid", 1)])  # as SQL's idx_feature_oid: each upsert finds its rows
    settings_ = mongo_db.settings
    keys = {tuple(r[k] for k in FEATURE_KEY) for w in range(WRITERS) for r in _rows(w)}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.map(time.sleep, [0.1] * WRITERS)  # every process started (spawn imports take a while)
        for mode in ("ignore", "update"):
            start = time.time() + 1.0
            inserted = pool.map(_mongo_writer, [(settings_.host, settings_.database, w, mode, start)
                                                for w in range(WRITERS)])
            assert sum(inserted) == (len(keys) if mode == "ignore" else 0)
            stored = [tuple(r[k] for k in FEATURE_KEY) for r in mongo_db.query("feature").find_all(paginate=False)]
            assert len(stored) == len(set(stored)) == len(keys)
    assert mongo_db.database["_dbp_locks"].count_documents({}) == 0  # every lease let go


@pytest.mark.slow
def test_eight_processes_write_keyed_by_key_without_deadlock(sql_db: SQLConnection) -> None:
    """key= naming the primary key of a plain table: the ON CONFLICT path, under 8 writers."""
    sql_db.execute(KEYED_SQL)
    url = sql_section(sql_db.settings)["URL"]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.map(time.sleep, [0.1] * WRITERS)
        start = time.time() + 1.0
        inserted = pool.map(_keyed_writer, [(url, w, start) for w in range(WRITERS)])
    expected = {(k, 1) for w in range(WRITERS) for k in range(w * PER_WRITER // 2, w * PER_WRITER // 2 + PER_WRITER)}
    assert sum(inserted) == len(expected)
    stored = [(r["oid"], r["sid"]) for r in sql_db.query("keyed").find_all(paginate=False)]
    assert sorted(stored) == sorted(expected)


def _keyed_writer(args: tuple[str, int, float]) -> int:
    url, writer, start = args
    rows = [{"oid": k, "sid": 1, "v": float(writer)}
            for k in range(writer * PER_WRITER // 2, writer * PER_WRITER // 2 + PER_WRITER)]
    random.Random(writer).shuffle(rows)
    with dbp.connect({"SQL": {"URL": url}}, engine="sql") as db:
        time.sleep(max(0.0, start - time.time()))
        return db.query("keyed").bulk_insert(rows, on_conflict="update", key=["sid", "oid"])
