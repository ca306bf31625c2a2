"""Every query method on a partitioned parent answers as on an unpartitioned table (PostgreSQL).

Two databases on one server hold the tables of :mod:`tests.partitioned_schema` (ALeRCE's multi-survey
``object``, ``magstat`` and keyless ``feature``): hash-partitioned on ``oid`` in one, plain in the other.
Every call goes to both, and its result (or error), and the rows stored afterwards, must be the same.
A lookup by ``oid`` must read one partition, with the plan PostgreSQL makes for dbp's own statement; and
8 processes writing overlapping keys at once must leave what some serial order of them leaves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import multiprocessing
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import dbp
from dbp.errors import DbpError
from dbp.filters import parse
from dbp.pagination import KeysetPage, Pagination
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from dbp.updates import parse_update
from tests.hyp import examples

from .conftest import sql_section, unique_name
from .partitioned_schema import (
    FEATURE_KEY,
    KEYS,
    TABLES,
    oid_pool,
    partition_of,
    partitions_used,
    plan_relations,
    schema,
)

POOL_SIZE = 128  # oid_pool(): 2 per remainder of 32, small and beyond 2**40


@dataclasses.dataclass(frozen=True)
class Oid:
    """An oid drawn by Hypothesis: an index into the pool, resolved once the pool is known."""

    index: int


def resolve(value: Any, pool: list[int]) -> Any:
    if isinstance(value, Oid):
        return pool[value.index]
    if isinstance(value, dict):
        return {k: resolve(v, pool) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, pool) for v in value)
    return value


def _message(text: str) -> str:
    """An error message without the names PostgreSQL gives a partition's copy of a constraint or relation."""
    text = re.sub(r'constraint "[^"]*"', 'constraint "..."', text)
    return re.sub(r'relation "(\w+?)_part_\d+"', r'relation "\1"', text)


#: Where a duplicate key error names its row and key.
_DUPLICATE = re.compile(r"row \d+: |\(Key \(.*\)=\(.*\) already exists\.\)")


def _plain(value: Any) -> Any:
    """A result as comparable data: pages as their fields, streams as lists, frames as records."""
    if isinstance(value, Pagination):
        return ("page", value.page, value.per_page, value.total, value.has_next, _plain(value.items))
    if isinstance(value, KeysetPage):
        return ("keyset", value.next_token, _plain(value.items))
    if isinstance(value, Iterator):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "dtypes"):  # a DataFrame
        return ([str(t) for t in value.dtypes], [{k: None if isinstance(v, float) and math.isnan(v) else v
                                                   for k, v in row.items()} for row in value.to_dict("records")])
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", _plain(call()))
    except DbpError as exc:
        return ("error", type(exc).__name__, _message(str(exc)), getattr(exc, "rows", None))


def _row_order(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in row.values())


class Pair:
    """The same database twice: ``parted`` (hash-partitioned parents) and ``flat`` (plain tables)."""

    def __init__(self, parted: SQLConnection, flat: SQLConnection) -> None:
        self.parted, self.flat = parted, flat
        self.pool = oid_pool(parted)
        assert len(self.pool) == POOL_SIZE

    def both(self, table: str, method: str, *args: Any, unordered: bool = False, **kwargs: Any) -> Any:
        """``method`` on both tables (with drawn oids resolved); the same result, or the same error."""
        args, kwargs = resolve(args, self.pool), resolve(kwargs, self.pool)
        before = self.state(self.flat, table) if method == "bulk_insert" else []
        found = [outcome(lambda db=db: getattr(db.query(table), method)(*args, **kwargs))
                 for db in (self.parted, self.flat)]
        if unordered and found[0][0] == "ok":  # a stream without a total order: the same rows, in any order
            found = [(kind, sorted(rows, key=_row_order)) for kind, rows in found]
        if all(f[0] == "error" and "duplicate key value" in f[2] for f in found):
            # COPY into a partitioned table writes each partition's rows in batches, so of several rows that
            # conflict, the error may name a later one: each named row must conflict, the rest be the same
            stored = [tuple(r[k] for k in KEYS[table]) for r in before]
            batch = [tuple(r.get(k) for k in KEYS[table]) for r in args[0]]
            for *_, rows in found:
                assert rows and all(batch[i] in stored or batch.count(batch[i]) > 1 for i in rows), found
            found = [(kind, name, _DUPLICATE.sub("", message), None) for kind, name, message, _ in found]
        assert found[0] == found[1], (table, method, args, kwargs)
        return found[0]

    def state(self, db: SQLConnection, table: str) -> list[dict[str, Any]]:
        rows = list(db.query(table).find_all(paginate=False))
        return sorted(rows, key=_row_order)

    def same_state(self, table: str) -> list[dict[str, Any]]:
        parted = self.state(self.parted, table)
        assert parted == self.state(self.flat, table), table
        return parted

    def reset(self, tables: tuple[str, ...] = tuple(TABLES)) -> None:
        """Empty ``tables``, then one row per pool oid in each (every partition holds rows)."""
        for db in (self.parted, self.flat):
            db.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
        pool = [Oid(i) for i in range(POOL_SIZE)]
        seeds = {
            "object": [{"oid": o, "sid": 1, "meanra": 10.0 + o.index / 1000, "meandec": 20.0, "n_det": o.index % 7}
                       for o in pool],
            "magstat": [{"oid": o, "sid": 1, "band": 1, "magmean": 18.5, "n_det": o.index % 5} for o in pool],
            "feature": [{"oid": o, "sid": 1, "feature_id": 1, "band": 1, "version": 1, "value": o.index / 4}
                        for o in pool],
        }
        for table in tables:
            assert self.both(table, "bulk_insert", seeds[table], on_conflict="error") == ("ok", POOL_SIZE)


@pytest.fixture
def pair(sql_settings: SQLSettings) -> Iterator[Pair]:
    flat_settings = sql_settings.with_database(unique_name())
    SQLConnection(settings=flat_settings).create_db()
    try:
        with SQLConnection(settings=sql_settings) as parted, SQLConnection(settings=flat_settings) as flat:
            parted.execute(schema(partitioned=True))
            flat.execute(schema(partitioned=False))
            yield Pair(parted, flat)
    finally:
        SQLConnection(settings=flat_settings).drop_db()


# -- what the oracle draws -----------------------------------------------------------------------------------

OIDS = st.builds(Oid, st.integers(0, POOL_SIZE - 1))
#: Key values: now and then a NULL, which every write must refuse the same way.
SIDS = st.sampled_from([1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, None])
NULLABLE_INT = st.one_of(st.none(), st.integers(-5, 1000))
DATES = st.one_of(st.none(), st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)))
#: Numbers from integers, which cost Hypothesis fewer bytes than floats (long examples are not discarded).
DOUBLES = st.integers(-10**6, 10**6).map(lambda v: v / 64)
REALS = st.one_of(st.none(), st.integers(-3000, 3000).map(lambda v: v / 100))
#: Positions near the cone the reads search (10, 20), and others anywhere.
RAS = st.one_of(st.sampled_from([10.0, 10.0004, 10.003, 200.25]), st.integers(0, 359999).map(lambda v: v / 1000))
DECS = st.one_of(st.sampled_from([20.0, 20.0002, 20.005, -30.5]), st.integers(-8999, 8999).map(lambda v: v / 100))

OBJECT_FIELDS = {"tid": st.integers(0, 3), "sigmaRa": st.one_of(st.none(), DOUBLES), "n_det": NULLABLE_INT,
                 "updated_date": DATES}
_FULL_OBJECT = st.fixed_dictionaries({"oid": OIDS, "sid": SIDS, "meanra": RAS, "meandec": DECS},
                                     optional=OBJECT_FIELDS)
# one row in six carries only some fields: an update of an existing row, a NOT NULL error for a new one
_PARTIAL_OBJECT = st.fixed_dictionaries({"oid": OIDS, "sid": SIDS}, optional={"meanra": RAS, **OBJECT_FIELDS})
OBJECT_ROW = st.integers(0, 5).flatmap(lambda n: _PARTIAL_OBJECT if n == 0 else _FULL_OBJECT)
MAGSTAT_FIELDS = {"stellar": st.one_of(st.none(), st.booleans()), "ndubious": NULLABLE_INT, "magmean": REALS,
                  "magFirst": REALS, "n_det": NULLABLE_INT}
MAGSTAT_ROW = st.fixed_dictionaries({"oid": OIDS, "sid": SIDS, "band": st.sampled_from([1, 2, 3])},
                                    optional=MAGSTAT_FIELDS)
FEATURE_FIELDS = {"value": st.one_of(st.none(), DOUBLES), "updated_date": DATES}
FEATURE_ROW = st.fixed_dictionaries(
    {"oid": OIDS, "sid": SIDS, "feature_id": st.sampled_from([1, 2, 3]), "band": st.sampled_from([1, 2]),
     "version": st.just(1)}, optional=FEATURE_FIELDS)
ROWS = {"object": OBJECT_ROW, "magstat": MAGSTAT_ROW, "feature": FEATURE_ROW}
FIELDS = {"object": OBJECT_FIELDS, "magstat": MAGSTAT_FIELDS, "feature": FEATURE_FIELDS}
#: key= choices: the primary key in another order, a column that is not a unique key, a keyless table's key.
CONFLICT_KEYS: dict[str, list[Optional[list[str]]]] = {
    "object": [None, None, ["sid", "oid"], ["oid"]],
    "magstat": [None, None, ["band", "oid", "sid"]],
    "feature": [FEATURE_KEY, FEATURE_KEY, None, ["oid", "feature_id"]],
}
SORTED = {"object": "n_det", "magstat": "magmean", "feature": "value"}


def _filters(table: str) -> st.SearchStrategy[dict[str, Any]]:
    field = SORTED[table]
    return st.one_of(
        st.builds(lambda o: {"oid": o}, OIDS),
        st.builds(lambda os: {"oid": {"$in": os}}, st.lists(OIDS, min_size=1, max_size=4)),
        st.just({"sid": 2}),
        st.builds(lambda v: {field: {"$gte": v}}, st.integers(-5, 20)),
    )


def _changes(table: str) -> st.SearchStrategy[dict[str, Any]]:
    if table == "feature":
        return st.one_of(st.builds(lambda v: {"value": v}, st.one_of(st.none(), DOUBLES)),
                         st.just({"$inc": {"value": 1.5}}))
    return st.one_of(st.builds(lambda v: {"n_det": v}, NULLABLE_INT), st.just({"$inc": {"n_det": 1}}),
                     st.fixed_dictionaries({}, optional={k: v for k, v in FIELDS[table].items() if k != "tid"}))


def _key_filter(table: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: ROWS_KEY_VALUES[k] for k in KEYS[table]})


ROWS_KEY_VALUES = {"oid": OIDS, "sid": SIDS, "band": st.sampled_from([1, 2]), "feature_id": st.sampled_from([1, 2]),
                   "version": st.just(1)}


def _step(table: str) -> st.SearchStrategy[tuple[Any, ...]]:
    rows = st.lists(ROWS[table], min_size=1, max_size=8)
    columns = [c for c in FIELDS[table] if c != "tid"]
    return st.one_of(
        st.tuples(st.just("bulk_insert"), st.just(table), rows,
                  st.lists(st.sampled_from(["update", "ignore", "error"]), min_size=1, max_size=3, unique=True),
                  st.one_of(st.none(), st.lists(st.sampled_from(columns), min_size=1, max_size=2, unique=True)),
                  st.sampled_from(CONFLICT_KEYS[table])),
        st.tuples(st.just("bulk_update"), st.just(table),
                  st.lists(st.tuples(_key_filter(table), _changes(table)), min_size=1, max_size=6)),
        st.tuples(st.just("update"), st.just(table), _filters(table), _changes(table)),
        st.tuples(st.just("delete"), st.just(table), _filters(table)),
        st.tuples(st.just("get_or_create"), st.just(table), _key_filter(table),
                  st.fixed_dictionaries({"meanra": RAS, "meandec": DECS} if table == "object" else {})),
        st.tuples(st.just("upsert"), st.just(table), _key_filter(table),
                  st.fixed_dictionaries({"meanra": RAS, "meandec": DECS} if table == "object" else {},
                                        optional=FIELDS[table])),
    )


STEPS = st.sampled_from(list(TABLES)).flatmap(_step)


def write(pair: Pair, step: tuple[Any, ...]) -> None:
    kind, table, *args = step
    if kind == "bulk_insert":  # the batch in one, two or all three modes, in turn
        rows, modes, update_fields, key = args
        for mode in modes:
            pair.both(table, "bulk_insert", rows, on_conflict=mode,
                      update_fields=update_fields if mode == "update" else None, key=key if mode != "error" else None)
            pair.same_state(table)
    elif kind == "bulk_update":
        pairs = args[0]
        pair.both(table, "bulk_update", [k for k, _ in pairs], [c for _, c in pairs],
                  filter_fields=FEATURE_KEY if table == "feature" else None)
    elif kind in ("update", "delete"):
        pair.both(table, kind, *args)
    elif kind == "get_or_create":
        pair.both(table, "get_or_create", args[0], **args[1])
    else:
        pair.both(table, "upsert", *args)


def read(pair: Pair, table: str, oids: list[Oid]) -> None:
    """Every read method on both tables, after each write."""
    field = SORTED[table]
    keyless = table == "feature"
    pair.both(table, "count")
    pair.both(table, "count", {"sid": 1}, limit=50)
    pair.both(table, "check_exists", {"oid": oids[0]})
    pair.both(table, "find_one", {"oid": oids[0]}, sort=[(field, -1)])
    pair.both(table, "find_one", {"oid": {"$in": oids}}, sort=[("sid", 1), (field, 1, "nulls_last")])
    pair.both(table, "find_all", {"oid": {"$in": oids}}, paginate=False, unordered=keyless)
    pair.both(table, "find_all", {field: {"$ne": None}}, sort=[(field, 1)], paginate=False, batch_size=7,
              unordered=keyless)  # ties: the key's order (a keyless stream leaves them unordered)
    pair.both(table, "paginate", {"sid": {"$gte": 1}}, page=2, per_page=9, sort=[(field, -1)])
    pair.both(table, "paginate", None, page=4, per_page=11, count=False)
    pair.both(table, "find_all", {"oid": oids[0]}, page=1, per_page=3)
    pages = pair.both(table, "paginate", {"oid": {"$nin": oids}}, per_page=17, sort=[(field, 1)], keyset=True)
    token = pages[1][1] if pages[0] == "ok" else None
    while token is not None:  # every keyset page (tokens agree: they hold the same row values)
        page = pair.both(table, "paginate", {"oid": {"$nin": oids}}, per_page=17, sort=[(field, 1)], after=token)
        token = page[1][1]
    if keyless:
        assert pages[0] == "error" and "page numbers" in pages[2], pages
    pair.both(table, "frame", {"oid": {"$in": oids}}, sort=[*FEATURE_KEY, field] if keyless else None)
    if table == "object":
        cone = {"ra": 10.0, "dec": 20.0, "radius": 40.0}
        pair.both(table, "find_all", {"$cone": cone}, sort=[("$distance", 1)],
                  projection=["oid", "sid", "$distance"], paginate=False)
        pair.both(table, "count", {"$cone": cone, "sid": 2})
        pair.both(table, "crossmatch", [("a", 10.0, 20.0), ("b", 200.25, -30.5), ("c", 1.0, 1.0)], radius=30.0,
                  nearest=False)


@settings(max_examples=examples(50), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=st.lists(STEPS, min_size=2, max_size=5), oids=st.lists(OIDS, min_size=1, max_size=3))
def test_every_method_on_a_partitioned_parent_answers_as_on_a_plain_table(
        pair: Pair, steps: list[tuple[Any, ...]], oids: list[Oid]) -> None:
    pair.reset()
    for table, (parts, _, _) in TABLES.items():
        assert partitions_used(pair.parted, table) == parts  # rows in every partition
    for step in steps:
        write(pair, step)
        table = step[1]
        pair.same_state(table)
        read(pair, table, [*oids, *(r["oid"] for r in step[2][:2])] if step[0] == "bulk_insert" else oids)


#: Fields that make a drawn row a new key (no draw or seed has them), and ones that make it a seeded key.
NEW_KEY = {"object": {"sid": 9, "meanra": 1.0, "meandec": 2.0}, "magstat": {"band": 9}, "feature": {"feature_id": 9}}
SEEDED_KEY = {"object": {"sid": 1}, "magstat": {"sid": 1, "band": 1},
              "feature": {"sid": 1, "feature_id": 1, "band": 1, "version": 1}}


def _again(row: dict[str, Any], key: list[str], other: dict[str, Any]) -> dict[str, Any]:
    """``row``'s key with ``other``'s fields besides the key: the same row again, later in the batch."""
    return {**{k: v for k, v in other.items() if k not in key}, **{k: row[k] for k in key if k in row}}


@settings(max_examples=examples(50), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches=st.fixed_dictionaries({t: st.tuples(st.lists(ROWS[t], min_size=1, max_size=8),
                                                   st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)),
                                                            max_size=3),
                                                   st.lists(st.sampled_from([c for c in FIELDS[t] if c != "tid"]),
                                                            max_size=2, unique=True),
                                                   st.sampled_from(CONFLICT_KEYS[t][:3])) for t in TABLES}))
def test_bulk_insert_in_every_mode_answers_as_on_a_plain_table(
        pair: Pair, batches: dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]], list[str],
                                              Optional[list[str]]]]) -> None:
    """Each table's batch (drawn rows, repeats of them within the batch, a new key, a seeded key, now and then
    a NULL key) in each mode on freshly seeded tables, then once more reversed: the same counts, errors, rows."""
    for table, (rows, repeats, update_fields, key) in batches.items():
        batch = [*rows, *(_again(rows[i % len(rows)], KEYS[table], rows[j % len(rows)]) for i, j in repeats),
                 {**rows[0], **NEW_KEY[table]}, {**rows[0], **SEEDED_KEY[table]}]
        for mode in ("error", "ignore", "update"):
            pair.reset((table,))
            options = {} if mode == "error" else {"key": key}
            if mode == "update" and update_fields:
                options["update_fields"] = update_fields
            pair.both(table, "bulk_insert", batch, on_conflict=mode, **options)
            pair.same_state(table)
            pair.both(table, "bulk_insert", batch[::-1], on_conflict=mode, **options)
            pair.same_state(table)


def test_bulk_insert_conflicts_land_in_their_partitions(pair: Pair) -> None:
    """The merge path on a partitioned parent: conflicts within the batch and with stored rows, in every
    partition, in all three modes, with the return values and rows of a plain table (the first example
    Hypothesis might not draw)."""
    pair.reset()
    pool = [Oid(i) for i in range(POOL_SIZE)]
    batch = [{"oid": o, "sid": 1 + i % 2, "meanra": 1.0 + i, "meandec": -1.0, "n_det": i} for i, o in enumerate(pool)]
    batch += [{"oid": pool[i], "sid": 2, "n_det": -i} for i in range(1, POOL_SIZE, 4)]  # again, partial
    assert pair.both("object", "bulk_insert", batch, on_conflict="ignore") == ("ok", POOL_SIZE // 2)
    assert pair.both("object", "bulk_insert", batch, on_conflict="update", update_fields=["n_det"]) == ("ok", 0)
    rows = pair.same_state("object")
    assert len(rows) == POOL_SIZE * 3 // 2
    assert sorted(r["n_det"] for r in rows if r["sid"] == 2) == sorted(
        -i if i % 4 == 1 else i for i in range(1, POOL_SIZE, 2))
    error = pair.both("object", "bulk_insert", batch[:3], on_conflict="error")
    assert error[1] == "BulkWriteError" and error[3] == [0], error
    new = [{"oid": o, "sid": 3, "band": 1} for o in pool] + [{"oid": o, "sid": 1, "band": 1, "ndubious": 3}
                                                             for o in pool[:5]]
    assert pair.both("magstat", "bulk_insert", new, on_conflict="update") == ("ok", POOL_SIZE)
    pair.same_state("magstat")
    for parts, table in ((8, "object"), (16, "magstat")):
        found = pair.parted.execute(sql.SQL("SELECT count(DISTINCT tableoid) AS n FROM {} WHERE sid > 1").format(
            sql.Identifier(table))).fetchone()
        assert found is not None and found["n"] == parts


# -- one partition per lookup ---------------------------------------------------------------------------------


def _parameter_type(value: int) -> str:
    """The type psycopg sends a Python int as (the smallest that holds it)."""
    return "smallint" if -2**15 <= value < 2**15 else "integer" if -2**31 <= value < 2**31 else "bigint"


@pytest.mark.parametrize("table", list(TABLES))
def test_a_lookup_by_oid_reads_one_partition(pair: Pair, table: str) -> None:
    """EXPLAIN of the statements dbp runs for find_one / find_all / count / update / delete by oid scans one
    partition: with the values dbp sends (a custom plan), and as the prepared statements psycopg makes of
    them after a few calls, with a generic plan (pruned as the executor starts). ``$in`` prunes to its oids'
    partitions."""
    pair.reset()
    db = pair.parted
    q = db.query(table)
    field = SORTED[table]
    for oid in (pair.pool[3], pair.pool[-3]):  # sent as a smallint, and as a bigint
        wanted = partition_of(db, table, oid)
        for _ in range(7):  # psycopg prepares a statement at its 5th run
            q.find_one({"oid": oid})
            q.find_all({"oid": oid}, per_page=5)
        node = parse({"oid": oid})
        statements = [(*q._statement("select", node, limit=True), [1]),
                      (*q._statement("select", node, q._full_sort(None), limit=True), [5]),
                      (*q._statement("count", node, limit=True), [50000]),
                      (*q._statement("delete", node), [])]
        for text, params, more in statements:
            if not text.startswith("DELETE"):
                assert text in db.statement_cache.values()  # what find_one / find_all ran
            assert '"oid" = %s' in text and "::" not in text, text  # the column itself, no cast on either side
            plan = db.execute("EXPLAIN (FORMAT JSON) " + text, [*params, *more]).fetchone()
            assert plan is not None
            assert set(plan_relations(plan["QUERY PLAN"])) == {wanted}, (text, plan)
        update, params = q._update_sql(node, parse_update({field: 5}, "update"))
        plan = db.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(update), params).fetchone()
        assert plan is not None and set(plan_relations(plan["QUERY PLAN"])) == {wanted}, plan
        prepared = db.execute(
            "SELECT name, statement FROM pg_prepared_statements WHERE statement LIKE %s "
            "AND parameter_types[1] = %s::regtype",
            [f'%FROM "public"."{table}" WHERE "oid" = $1%LIMIT $2%', _parameter_type(oid)]).fetchall()
        assert len(prepared) == 3, prepared  # find_one's select, find_all's select and count
        try:
            db.execute("SET plan_cache_mode = force_generic_plan")
            for row in prepared:
                plan = db.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({}, 5)").format(
                    sql.Identifier(row["name"]), sql.Literal(oid))).fetchone()
                assert plan is not None
                assert set(plan_relations(plan["QUERY PLAN"])) == {wanted}, (row, plan)
        finally:
            db.execute("RESET plan_cache_mode")
    two = [pair.pool[0], pair.pool[1]]  # = ANY($1): pruned when planned with its value, as PostgreSQL keeps
    wanted_two = {partition_of(db, table, o) for o in two}  # doing (a generic plan would scan every partition)
    for _ in range(7):
        q.find_all({"oid": {"$in": two}}, per_page=5)
    text, params = q._statement("select", parse({"oid": {"$in": two}}))
    plan = db.execute("EXPLAIN (FORMAT JSON) " + text, params).fetchone()
    assert plan is not None and set(plan_relations(plan["QUERY PLAN"])) == wanted_two, plan
    prepared = db.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE %s",
                          [f'%FROM "public"."{table}" WHERE ("oid" = ANY($1::bigint[]))%LIMIT $2%']).fetchall()
    assert len(prepared) == 2, prepared  # find_all's select and count
    for row in prepared:  # as the plan cache chooses, after the runs above
        plan = db.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({}, 5)").format(
            sql.Identifier(row["name"]), sql.Literal(two))).fetchone()
        assert plan is not None and set(plan_relations(plan["QUERY PLAN"])) == wanted_two, plan


# -- concurrent writers --------------------------------------------------------------------------------------


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``call`` started in a thread (a session of its own); the list gets its result or error."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as exc:  # noqa: BLE001 - reported by the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_key_another_writer_inserts_meanwhile_is_updated(sql_db: SQLConnection) -> None:
    """The merge meets a key that another transaction inserted and has not committed: its INSERT waits, skips
    the key when that commits (ON CONFLICT DO NOTHING), and then updates it, as if it ran second."""
    sql_db.execute(schema(partitioned=True, names=("object",)))
    q = sql_db.query("object")
    q.bulk_insert([{"oid": 1, "sid": 1, "meanra": 1.0, "meandec": 1.0}])
    with psycopg.connect(sql_section(sql_db.settings)["URL"]) as other:
        other.execute("INSERT INTO object (oid, sid, meanra, meandec, n_det) VALUES (2, 1, 2.0, 2.0, 20)")
        batch = [{"oid": 1, "sid": 1, "n_det": 11}, {"oid": 2, "sid": 1, "meanra": 5.0, "meandec": 5.0, "n_det": 22},
                 {"oid": 3, "sid": 1, "meanra": 3.0, "meandec": 3.0, "n_det": 33}]
        thread, out = _in_thread(lambda: q.bulk_insert(batch, on_conflict="update"))
        time.sleep(1.5)
        assert thread.is_alive()  # waiting for the other writer's row
        other.commit()
        thread.join(30)
    assert out == [1]  # only oid 3 is this call's
    assert [(r["oid"], r["meanra"], r["n_det"]) for r in q.find_all(paginate=False)] == [
        (1, 1.0, 11), (2, 5.0, 22), (3, 3.0, 33)]


def test_a_keyless_write_by_key_waits_for_other_writers_of_the_table(sql_db: SQLConnection) -> None:
    """bulk_insert(key=...) on a table no unique index keys locks it against writers (SHARE ROW EXCLUSIVE):
    it waits for a transaction that inserted a row of its key, then sees that row and leaves it single."""
    sql_db.execute(schema(partitioned=True, names=("feature",)))
    q = sql_db.query("feature")
    row = {"oid": 7, "sid": 1, "feature_id": 1, "band": 1, "version": 1}
    with psycopg.connect(sql_section(sql_db.settings)["URL"]) as other:
        other.execute("INSERT INTO feature (oid, sid, feature_id, band, version, value) VALUES (7, 1, 1, 1, 1, 0.5)")
        thread, out = _in_thread(lambda: q.bulk_insert([{**row, "value": 1.0}, {**row, "oid": 8, "value": 8.0}],
                                                       on_conflict="update", key=FEATURE_KEY))
        time.sleep(1.5)
        assert thread.is_alive()
        assert [r["value"] for r in q.find_all(paginate=False)] == []  # readers are not blocked
        other.commit()
        thread.join(30)
    assert out == [1]
    assert sorted((r["oid"], r["value"]) for r in q.find_all(paginate=False)) == [(7, 1.0), (8, 8.0)]


# -- concurrent processes ------------------------------------------------------------------------------------

WRITERS = 8
PER_WRITER = 400


def _object_rows(writer: int, version: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A writer's rows: its range of keys overlaps its neighbours' by half. ``version`` 0: each key's values
    depend on the key alone (every writer writes the same row); 1: on the writer too."""
    start = writer * PER_WRITER // 2
    objects, magstats = [], []
    for k in range(start, start + PER_WRITER):
        oid = 10**12 + k * 7919
        mark = writer if version else k % 97
        objects.append({"oid": oid, "sid": 1 + k % 2, "meanra": float(k % 360), "meandec": float(mark),
                        "n_det": mark, "sigmaRa": mark / 8})
        magstats += [{"oid": oid, "sid": 1, "band": band, "ndubious": mark, "n_det": mark} for band in (1, 2)]
    return objects, magstats


def _object_writer(args: tuple[str, int, int, float]) -> tuple[int, int]:
    url, writer, version, start = args
    objects, magstats = _object_rows(writer, version)
    import random

    random.Random(writer).shuffle(objects)
    random.Random(writer).shuffle(magstats)
    with dbp.connect({"SQL": {"URL": url}}, engine="sql") as db:
        time.sleep(max(0.0, start - time.time()))  # all at once
        done = [0, 0]
        for i in range(0, PER_WRITER, 100):  # batches, interleaved with the other writers'
            done[0] += db.query("object").bulk_insert(objects[i:i + 100], on_conflict="update")
            done[1] += db.query("magstat").bulk_insert(magstats[2 * i:2 * i + 200], on_conflict="update")
        return done[0], done[1]


def _feature_rows(writer: int) -> list[dict[str, Any]]:
    start = writer * PER_WRITER // 2
    return [{"oid": 10**12 + k // 4 * 7919, "sid": 1, "feature_id": k % 4, "band": 1 + k % 2, "version": 1,
             "value": float(writer)} for k in range(start, start + PER_WRITER)]


def _feature_writer(args: tuple[str, int, str, float]) -> int:
    url, writer, mode, start = args
    rows = _feature_rows(writer)
    import random

    random.Random(writer).shuffle(rows)
    with dbp.connect({"SQL": {"URL": url}}, engine="sql") as db:
        time.sleep(max(0.0, start - time.time()))
        # in batches, so that the writers' checks and inserts interleave many times
        return sum(db.query("feature").bulk_insert(rows[i:i + 20], on_conflict=mode,  # type: ignore[arg-type]
                                                   key=FEATURE_KEY) for i in range(0, len(rows), 20))


@pytest.mark.slow
def test_eight_processes_update_overlapping_objects_into_partitions(sql_db: SQLConnection) -> None:
    """8 processes bulk_insert(on_conflict="update") overlapping keys into partitioned object and magstat at
    once: no deadlock escapes (40P01 is retried), no row is lost or doubled, each key inserted once, and what
    is stored is what the writers wrote in some serial order (each row entirely one writer's)."""
    sql_db.execute(schema(partitioned=True, names=("object", "magstat")))
    url = sql_section(sql_db.settings)["URL"]
    every: dict[tuple[Any, ...], dict[str, Any]] = {}
    for writer in range(WRITERS):
        objects, _magstats = _object_rows(writer, 0)
        every.update({(r["oid"], r["sid"]): r for r in objects})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.map(time.sleep, [0.1] * WRITERS)  # every process started (spawn imports take a while)
        for version in (0, 1):  # inserts (the same values from every writer), then updates (each its own)
            start = time.time() + 1.0
            counts = pool.map(_object_writer, [(url, w, version, start) for w in range(WRITERS)])
            assert sum(c[0] for c in counts) == (len(every) if version == 0 else 0)
            assert sum(c[1] for c in counts) == (2 * len(every) if version == 0 else 0)
            stored = {(r["oid"], r["sid"]): r for r in sql_db.query("object").find_all(paginate=False)}
            assert stored.keys() == every.keys()
            magstat = list(sql_db.query("magstat").find_all(paginate=False))
            assert len(magstat) == 2 * len(every)
            if version == 0:  # the serial oracle: every writer wrote the same values
                assert stored == {k: {**r, "tid": 0, "updated_date": None} for k, r in every.items()}
                continue
            writers_of: dict[tuple[Any, ...], set[int]] = {}
            for writer in range(WRITERS):
                for r in _object_rows(writer, 1)[0]:
                    writers_of.setdefault((r["oid"], r["sid"]), set()).add(writer)
            for key, row in stored.items():  # one writer's row, one that wrote this key
                assert row["n_det"] in writers_of[key] and row["meandec"] == row["n_det"], row
                assert row["sigmaRa"] == row["n_det"] / 8, row
            for row in magstat:
                assert row["ndubious"] == row["n_det"], row
    assert partitions_used(sql_db, "object") == 8 and partitions_used(sql_db, "magstat") == 16


@pytest.mark.slow
def test_eight_processes_write_the_keyless_feature_table_by_key(sql_db: SQLConnection) -> None:
    """8 processes bulk_insert(key=[...]) overlapping features into the keyless, 32-way feature table at once,
    with "ignore" then "update": no key is stored twice, each is inserted once, and each row is one writer's."""
    sql_db.execute(schema(partitioned=True, names=("feature",)))
    url = sql_section(sql_db.settings)["URL"]
    writers_of: dict[tuple[Any, ...], set[int]] = {}
    for writer in range(WRITERS):
        for r in _feature_rows(writer):
            writers_of.setdefault(tuple(r[k] for k in FEATURE_KEY), set()).add(writer)
    keys = set(writers_of)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        pool.map(time.sleep, [0.1] * WRITERS)  # every process started (spawn imports take a while)
        for mode in ("ignore", "update"):
            start = time.time() + 1.0
            inserted = pool.map(_feature_writer, [(url, w, mode, start) for w in range(WRITERS)])
            assert sum(inserted) == (len(keys) if mode == "ignore" else 0)
            rows = list(sql_db.query("feature").find_all(paginate=False))
            stored = [tuple(r[k] for k in FEATURE_KEY) for r in rows]
            assert len(stored) == len(set(stored)) == len(keys) and set(stored) == keys
            for row in rows:
                assert int(row["value"]) in writers_of[tuple(row[k] for k in FEATURE_KEY)], row
    assert partitions_used(sql_db, "feature") == 32
