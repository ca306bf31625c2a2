"""The query contract on both engines, against real servers, with the same rows loaded in each."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp import BulkWriteError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.pagination import KeysetPage, Pagination, PaginationNoCount
from dbp.query import BaseQuery
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .conftest import ROOT

NAMES = ["alpha", "Beta", "gamma", "delta", "épsilon", "zeta", "Eta", "theta", "", "a b"]
T0 = dt.datetime(2024, 1, 1, 12, 0, 0)


def dataset() -> list[dict[str, Any]]:
    """40 stars; NULLs in every nullable column, ties in every sortable one."""
    rows = []
    for i in range(1, 41):
        rows.append({
            "id": i,
            "name": None if i % 9 == 0 else NAMES[i % len(NAMES)],
            "mag": None if i % 7 == 0 else round((i * 37 % 23) / 2.0, 1),
            "n": i % 5,
            "flag": None if i % 6 == 0 else i % 2 == 0,
            "seen": None if i % 8 == 0 else T0 + dt.timedelta(hours=i % 11),
        })
    return rows


STAR_SQL = """
CREATE TABLE star (
    id bigint PRIMARY KEY,
    name varchar,
    mag double precision,
    n integer NOT NULL,
    flag boolean,
    seen timestamp,
    code varchar UNIQUE
);
CREATE TABLE sentinel (id int PRIMARY KEY);
INSERT INTO sentinel VALUES (1);
"""


class Engines:
    """The same table in both engines: SQL's ``id`` is MongoDB's ``_id``."""

    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.sql, self.mongo = sql, mongo
        self.q = {"sql": sql.query("star"), "mongo": mongo.query("star")}

    @staticmethod
    def key(engine: str) -> str:
        return "id" if engine == "sql" else "_id"

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.q["sql"].bulk_insert(rows)
        docs = []
        for row in rows:
            doc = {("_id" if k == "id" else k): v for k, v in row.items()}
            if doc["_id"] % 2 == 1:  # odd rows: NULLs as missing fields, as MongoDB users write them
                doc = {k: v for k, v in doc.items() if v is not None}
            docs.append(doc)
        self.q["mongo"].bulk_insert(docs)


@pytest.fixture
def engines(sql_db: SQLConnection, mongo_db: MongoConnection) -> Engines:
    sql_db.execute(STAR_SQL)
    mongo_db.collection("star").create_index([("code", 1)], name="code", unique=True, sparse=True)
    return Engines(sql_db, mongo_db)


@pytest.fixture
def loaded(engines: Engines) -> Engines:
    engines.load(dataset())
    return engines


FIELDS = ["name", "mag", "n", "flag", "seen"]


def both(engines: Engines, filter_by: Any, sort: Any = None) -> tuple[list[Any], list[Any]]:
    sort = sort or [("mag", 1), ("name", -1)]
    out = []
    for engine in ("sql", "mongo"):
        rows = engines.q[engine].find_all(filter_by, sort=sort, projection=["name", "mag", "n", "flag", "seen"],
                                          paginate=False)
        out.append(list(rows))  # type: ignore[arg-type]
    return out[0], out[1]


# -- same filter, same rows ------------------------------------------------------------------

FILTERS: list[Any] = [
    {},
    {"n": 3},
    {"name": "Beta"},
    {"mag": None},
    {"mag": {"$eq": 4.5}},
    {"mag": {"$ne": 4.5}},
    {"mag": {"$ne": None}},
    {"mag": {"$gt": 5}},
    {"mag": {"$gte": 5, "$lt": 9}},
    {"mag": {"$lte": 2.5}},
    {"name": {"$gt": "Eta"}},
    {"name": {"$lt": "gamma"}},
    {"n": {"$in": [1, 4]}},
    {"mag": {"$in": [4.5, None]}},
    {"n": {"$nin": [0, 1]}},
    {"flag": {"$nin": [True]}},
    {"mag": {"$in": []}},
    {"flag": {"$exists": True}},
    {"seen": {"$exists": False}},
    {"seen": {"$gte": T0 + dt.timedelta(hours=5)}},
    {"flag": True},
    {"$and": [{"n": {"$gt": 1}}, {"flag": False}]},
    {"$or": [{"n": 0}, {"mag": None}, {"name": "zeta"}]},
    {"mag": {"$not": {"$gt": 5}}},
    {"$not": {"n": {"$in": [1, 2]}}},
    {"$or": [{"$and": [{"n": 2}, {"flag": {"$ne": True}}]}, {"name": {"$in": ["alpha", "", "a b"]}}]},
    {"n": {"$gt": 0}, "name": {"$exists": True}, "mag": {"$lt": 10}},
]


@pytest.mark.parametrize("filter_by", FILTERS, ids=[str(f) for f in FILTERS])
def test_same_filter_same_rows_same_order(loaded: Engines, filter_by: Any) -> None:
    sql_rows, mongo_rows = both(loaded, filter_by)
    assert sql_rows == mongo_rows
    assert loaded.q["sql"].count(filter_by) == loaded.q["mongo"].count(filter_by) == len(sql_rows)


def test_every_operator_is_exercised() -> None:
    text = repr(FILTERS)
    for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$and", "$or", "$not"):
        assert f"'{op}'" in text, op


_value = {
    "n": st.integers(-1, 5),
    "mag": st.one_of(st.none(), st.sampled_from([0.0, 2.5, 4.5, 7.0, 10.5, 11.0])),
    "name": st.one_of(st.none(), st.sampled_from([*NAMES, "Zulu", "é"])),
    "flag": st.one_of(st.none(), st.booleans()),
}
_ops = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not"]


@st.composite
def _condition(draw: Any, depth: int = 0) -> dict[str, Any]:
    field = draw(st.sampled_from(sorted(_value)))
    op = draw(st.sampled_from(_ops))
    if op in ("$in", "$nin"):
        return {field: {op: draw(st.lists(_value[field], max_size=3))}}
    if op == "$exists":
        return {field: {op: draw(st.booleans())}}
    if op == "$not":
        inner = draw(st.sampled_from(["$gt", "$lt", "$eq", "$ne"]))
        value = draw(_value[field].filter(lambda v: v is not None) if inner in ("$gt", "$lt") else _value[field])
        return {field: {"$not": {inner: value}}}
    value = draw(_value[field].filter(lambda v: v is not None) if op in ("$gt", "$gte", "$lt", "$lte")
                 else _value[field])
    return {field: {op: value}}


_filters = st.recursive(
    _condition(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"$and": xs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"$or": xs}),
        inner.map(lambda x: {"$not": x}),
    ),
    max_leaves=5,
)
_sorts = st.lists(st.tuples(st.sampled_from(["mag", "name", "n", "flag", "seen"]), st.sampled_from([1, -1])),
                  max_size=2, unique_by=lambda t: t[0])


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filter_by=_filters, sort=_sorts)
def test_random_filters_agree(loaded: Engines, filter_by: Any, sort: Any) -> None:
    sql_rows, mongo_rows = both(loaded, filter_by, sort or [("n", 1)])
    assert sql_rows == mongo_rows


# -- the methods ------------------------------------------------------------------------------


@pytest.fixture(params=["sql", "mongo"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_find_one_check_exists_count(loaded: Engines, engine: str) -> None:
    q, key = loaded.q[engine], loaded.key(engine)
    assert q.find_one({"n": 99}) is None
    assert q.check_exists({"n": 4}) is True
    assert q.check_exists({"n": 99}) is False
    rows = [r for r in dataset() if r["n"] == 2 and r["mag"] is not None]
    top = max(rows, key=lambda r: (r["mag"], -r["id"]))
    assert q.find_one({"n": 2}, sort=[("mag", -1)], projection=[key, "mag"]) == {key: top["id"], "mag": top["mag"]}
    assert q.count() == 40
    assert q.count({"n": {"$gt": 0}}, limit=5) == 5


def test_update_upsert_delete(loaded: Engines, engine: str) -> None:
    q, key = loaded.q[engine], loaded.key(engine)
    assert q.update({"n": 1}, {"flag": True, "mag": 1.0}) == 8
    assert q.count({"n": 1, "flag": True, "mag": 1.0}) == 8
    row = q.upsert({key: 100}, {"n": 3, "name": "new"})
    assert (row[key], row["n"], row["name"]) == (100, 3, "new")
    row = q.upsert({key: 100}, {"name": "renamed"})
    assert (row["n"], row["name"]) == (3, "renamed")
    assert q.delete({"n": 3}) == 9
    assert q.count() == 32


def test_get_or_create(engines: Engines, engine: str) -> None:
    q, key = engines.q[engine], engines.key(engine)
    row, created = q.get_or_create({key: 1}, n=2, name="first", mag=3.0)
    assert created is True
    assert (row[key], row["n"], row["name"]) == (1, 2, "first")
    again, created = q.get_or_create({key: 1}, n=5, name="other")
    assert created is False
    assert (again["n"], again["name"]) == (2, "first")
    by_code, created = q.get_or_create({"code": "X1"}, **{key: 2, "n": 0})
    assert created and by_code["code"] == "X1"
    with pytest.raises(FilterError, match=r"needs .*unique.*covering the filter's fields \(name\)"):
        q.get_or_create({"name": "first"}, n=1)
    with pytest.raises(FilterError, match="plain equalities"):
        q.get_or_create({"code": {"$gt": "A"}})


def _race(args: tuple[str, str, str, Any]) -> tuple[Any, bool]:
    engine, url, database, barrier_wait = args
    import dbp

    section = {"URL": url} if engine == "sql" else {"URL": url, "DATABASE": database}
    with dbp.connect({engine.upper(): section}, engine=engine) as db:
        q = db.query("star")
        key = "id" if engine == "sql" else "_id"
        barrier_wait()
        row, created = q.get_or_create({"code": "RACE"}, **{key: multiprocessing.current_process().pid, "n": 1})
        return row[key], created


_barrier: Any = None


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _wait() -> None:
    _barrier.wait(timeout=60)


def test_get_or_create_is_race_free(engines: Engines, engine: str) -> None:
    """8 processes call get_or_create for the same key at once: one row, all 8 get it."""
    from .conftest import sql_section

    if engine == "sql":
        url, database = sql_section(engines.sql.settings)["URL"], ""
    else:
        url, database = engines.mongo.settings.host, engines.mongo.settings.database
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    with ctx.Pool(8, initializer=_init, initargs=(barrier,)) as pool:
        results = pool.map(_race, [(engine, url, database, _wait)] * 8)
    assert sum(created for _, created in results) == 1
    assert len({key for key, _ in results}) == 1
    assert engines.q[engine].count({"code": "RACE"}) == 1


# -- bulk writes --------------------------------------------------------------------------------


def _rows(engine: str, ids: range, **extra: Any) -> list[dict[str, Any]]:
    key = "id" if engine == "sql" else "_id"
    return [{key: i, "n": i % 3, "name": f"s{i}", **extra} for i in ids]


def test_bulk_insert_conflict_modes(engines: Engines, engine: str) -> None:
    q = engines.q[engine]
    original = _rows(engine, range(1, 6))
    assert q.bulk_insert(original) == 5
    assert original == _rows(engine, range(1, 6))  # the caller's dicts are not touched
    assert q.bulk_insert(_rows(engine, range(4, 9)), on_conflict="ignore") == 3
    assert q.count() == 8
    assert q.find_one({engines.key(engine): 4})["name"] == "s4"  # type: ignore[index]
    assert q.bulk_insert(_rows(engine, range(7, 11), name="updated"), on_conflict="update") == 2
    assert q.count({"name": "updated"}) == 4
    with pytest.raises(BulkWriteError) as info:
        q.bulk_insert(_rows(engine, range(10, 12)), on_conflict="error")
    assert info.value.rows == [0]
    with pytest.raises(FilterError):
        q.bulk_insert(original, on_conflict="merge")  # type: ignore[arg-type]


def test_mongo_bulk_insert_leaves_the_callers_documents_alone(engines: Engines) -> None:
    """pymongo adds _id to what it inserts; dbp inserts copies."""
    docs = [{"n": 1, "name": "a"}, {"n": 2, "name": "b"}]
    assert engines.q["mongo"].bulk_insert(docs) == 2
    assert docs == [{"n": 1, "name": "a"}, {"n": 2, "name": "b"}]
    assert engines.q["mongo"].count({"name": {"$in": ["a", "b"]}}) == 2


def test_sql_bad_row_writes_nothing_and_is_named(engines: Engines) -> None:
    q = engines.q["sql"]
    rows = _rows("sql", range(1, 6))
    rows[3]["n"] = None  # NOT NULL
    for mode in ("error", "ignore", "update"):
        with pytest.raises(BulkWriteError, match=r"row 3: .*null value in column \"n\"") as info:
            q.bulk_insert(rows, on_conflict=mode)  # type: ignore[arg-type]
        assert info.value.rows == [3]
        assert q.count() == 0
    rows[3]["n"] = 1
    rows[1]["mag"] = "bright"
    with pytest.raises(FilterError, match=r"row 1: star.mag is double precision; str 'bright' does not fit"):
        q.bulk_insert(rows)
    rows[1]["colour"] = "red"
    with pytest.raises(FilterError, match=r"row 1 has unknown column\(s\) 'colour'"):
        q.bulk_insert(rows)
    assert q.count() == 0


def test_mongo_bulk_insert_raises_real_errors(engines: Engines) -> None:
    """Duplicates are ignored; any other write error is raised, naming the failing documents."""
    engines.mongo.database.create_collection("checked", validator={"$jsonSchema": {
        "bsonType": "object", "required": ["n"], "properties": {"n": {"bsonType": "int"}}}})
    q = engines.mongo.query("checked")
    docs = [{"_id": 1, "n": 1}, {"_id": 2, "n": "two"}, {"_id": 3, "n": 3}, {"_id": 1, "n": 1}]
    with pytest.raises(BulkWriteError, match=r"row 1: Document failed validation \(code 121\)") as info:
        q.bulk_insert(docs, on_conflict="ignore")
    assert info.value.rows == [1]  # the duplicate (row 3) is not an error in "ignore" mode
    assert q.bulk_insert([{"_id": 1, "n": 1}, {"_id": 4, "n": 4}], on_conflict="ignore") == 1


def test_bulk_update(loaded: Engines, engine: str) -> None:
    q, key = loaded.q[engine], loaded.key(engine)
    with pytest.raises(ValueError, match="2 instances but 1 attribute sets"):
        q.bulk_update([{key: 1}, {key: 2}], [{"n": 9}])
    instances = [{key: i} for i in range(1, 21)]
    attrs = [{"n": 100 + i} if i % 2 else {"n": 100 + i, "name": "even"} for i in range(1, 21)]
    assert q.bulk_update(instances, attrs) == 20
    assert q.count({"n": {"$gte": 100}}) == 20
    assert q.count({"name": "even"}) == 10
    assert q.bulk_update([{"n": 101}], [{"flag": True}], filter_fields=["n"]) == 1


# -- pagination -----------------------------------------------------------------------------


def test_paginate_semantics(loaded: Engines, engine: str) -> None:
    q = loaded.q[engine]
    page = q.paginate({"n": {"$lt": 4}}, page=1, per_page=10)
    assert isinstance(page, Pagination) and not isinstance(page, PaginationNoCount)
    assert (page.total, page.pages, page.has_prev, page.has_next, page.next_num, page.prev_num) == (
        32, 4, False, True, 2, None)
    assert len(page.items) == 10
    last = page.next().next().next()
    assert (last.page, len(last.items), last.has_next, last.next_num, last.prev_num) == (4, 2, False, None, 3)
    assert last.prev().items == page.next().next().items
    zero = q.paginate({}, page=0, per_page=5)
    assert zero.page == 1 and zero.items == q.paginate({}, page=1, per_page=5).items
    negative = q.paginate({}, per_page=-3)
    assert negative.per_page == 10 and len(negative.items) == 10
    past = q.paginate({}, page=50, per_page=10)
    assert (past.items, past.total, past.has_next, past.has_prev) == ([], 40, False, True)
    capped = q.paginate({}, per_page=10, max_results=15)
    assert (capped.total, capped.pages) == (15, 2)
    empty = q.paginate({}, per_page=0)
    assert (empty.items, empty.pages, empty.has_next) == ([], 0, False)


def test_paginate_without_count(loaded: Engines, engine: str) -> None:
    q = loaded.q[engine]
    page = q.paginate({}, page=4, per_page=10, count=False)
    assert isinstance(page, PaginationNoCount)
    assert (page.total, page.pages, len(page.items), page.has_next) == (None, 0, 10, False)
    third = q.paginate({}, page=3, per_page=10, count=False)
    assert third.has_next is True and third.next_num == 4
    assert third.next().items == page.items
    past = q.paginate({}, page=9, per_page=10, count=False)
    assert (past.items, past.has_next) == ([], False)


def test_pages_agree_across_engines(loaded: Engines) -> None:
    pages = [loaded.q[e].paginate({"flag": {"$ne": True}}, page=2, per_page=7, sort=[("name", 1)],
                                  projection=["name", "mag"]) for e in ("sql", "mongo")]
    assert pages[0].items == pages[1].items
    assert pages[0].total == pages[1].total


@pytest.mark.parametrize("sort", [None, [("mag", 1)], [("mag", -1)], [("name", -1), ("flag", 1)], [("seen", -1)]])
def test_keyset_pagination_walks_every_row_once(loaded: Engines, engine: str, sort: Any) -> None:
    q, key = loaded.q[engine], loaded.key(engine)
    expected = [r[key] for r in q.find_all({"n": {"$ne": 2}}, sort=sort, projection=[key], paginate=False)]
    page = q.paginate({"n": {"$ne": 2}}, per_page=6, sort=sort, projection=[key], keyset=True)
    assert isinstance(page, KeysetPage)
    seen = [r[key] for r in page.items]
    while page.has_next:
        assert page.next_token is not None
        page = q.paginate({"n": {"$ne": 2}}, per_page=6, sort=sort, projection=[key], after=page.next_token)
        assert isinstance(page, KeysetPage)
        seen += [r[key] for r in page.items]
    assert seen == expected
    assert len(seen) == 32


def test_keyset_tokens_are_checked(loaded: Engines, engine: str) -> None:
    q = loaded.q[engine]
    page = q.paginate({"n": 1}, per_page=2, keyset=True)
    assert isinstance(page, KeysetPage) and page.next_token
    with pytest.raises(FilterError, match="belongs to another query"):
        q.paginate({"n": 2}, per_page=2, after=page.next_token)
    with pytest.raises(FilterError, match="malformed"):
        q.paginate({"n": 1}, per_page=2, after="not-a-token")


# -- streaming ----------------------------------------------------------------------------------


def test_stream_reads_every_row_in_batches(engines: Engines, engine: str) -> None:
    """A full iteration, past several batches (psycopg#1226 stopped after the first)."""
    q = engines.q[engine]
    q.bulk_insert(_rows(engine, range(1, 2501)))
    stream = q.find_all({}, projection=["n"], paginate=False, batch_size=100)
    assert sum(1 for _ in stream) == 2500  # type: ignore[union-attr]


MEMORY_PROBE = """
import resource, sys, dbp
engine, url, database, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
section = {"URL": url} if engine == "sql" else {"URL": url, "DATABASE": database}
with dbp.connect({engine.upper(): section}, engine=engine) as db:
    q = db.query("big")
    seen, base = 0, None
    for row in q.find_all({}, paginate=False, batch_size=2000):
        seen += 1
        if seen == 50_000:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seen, base, peak)
"""


@pytest.mark.slow
def test_stream_memory_stays_flat_over_a_million_rows(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                      engine: str) -> None:
    from .conftest import sql_section

    total = 1_000_000
    if engine == "sql":
        sql_db.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS payload, g * 0.5 AS mag "
                       "FROM generate_series(1, %s) AS g", (total,))
        sql_db.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
        url, database = sql_section(sql_db.settings)["URL"], ""
    else:
        coll = mongo_db.collection("big")
        batch = [{"_id": i, "payload": f"{i:032x}", "mag": i * 0.5} for i in range(1, total + 1)]
        for start in range(0, total, 100_000):
            coll.insert_many(batch[start:start + 100_000], ordered=False)
        del batch
        url, database = mongo_db.settings.host, mongo_db.settings.database
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, engine, url, database, str(total)],
                           capture_output=True, text=True, timeout=900, env={"PYTHONPATH": str(ROOT)})
    assert probe.returncode == 0, probe.stderr
    seen, base, peak = map(int, probe.stdout.split())
    assert seen == total
    # after the first 50,000 rows, reading 950,000 more grows the peak by under 20 MB (a list would take ~400 MB)
    assert peak - base < 20_000, (base, peak)


# -- errors and injection ----------------------------------------------------------------------


def test_clear_errors(loaded: Engines, engine: str) -> None:
    q = loaded.q[engine]
    with pytest.raises(FilterError, match=r"unknown operator '\$mod' on field 'name'"):
        q.find_one({"name": {"$mod": [2, 0]}})
    with pytest.raises(FilterError, match=r"unknown operator '\$where'"):
        q.find_one({"$where": "1"})
    with pytest.raises(FilterError, match="sort entries"):
        q.find_one({}, sort=[("mag", 2)])
    with pytest.raises(FilterError, match="takes a list"):
        q.find_one({"n": {"$in": 3}})
    if engine == "sql":
        with pytest.raises(FilterError, match=r"star has no column 'colour'; its columns are id, name, mag, n"):
            q.find_one({"colour": "red"})
        with pytest.raises(FilterError, match=r"star.n is integer; str 'three' does not fit"):
            q.find_one({"n": "three"})
        with pytest.raises(FilterError, match=r"no table 'planet' .*its tables are sentinel, star"):
            loaded.sql.query("planet")


def test_import_dbp_loads_no_driver() -> None:
    code = "import sys, dbp; print(sorted(m for m in ('psycopg', 'pymongo', 'yoyo') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"


_nasty = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["'", '"', ";", "--", "/*", "*/", "\x00", "'; DROP TABLE sentinel; --",
                     'star"; DROP TABLE sentinel; --', "$gt", "$where", "1=1", "é", "\u202e", "\\", "%s", "%(x)s",
                     "{}", "sentinel"]),
)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=_nasty, value=_nasty, op=_nasty, sort_key=_nasty, table=_nasty)
def test_adversarial_input_runs_nothing_else(engines: Engines, column: str, value: str, op: str, sort_key: str,
                                             table: str) -> None:
    sql_q = engines.q["sql"]
    attempts = [
        lambda: sql_q.find_one({"name": value}),
        lambda: sql_q.find_one({column: value}),
        lambda: sql_q.find_one({"name": {op: value}}),
        lambda: sql_q.find_one({"name": {"$in": [value, column]}}),
        lambda: sql_q.find_one({}, sort=[(sort_key, 1)]),
        lambda: sql_q.find_one({}, projection=[column]),
        lambda: engines.sql.query(table).count(),
        lambda: sql_q.count({"$or": [{column: value}, {"name": {op: [value]}}]}),
        lambda: sql_q.update({"name": value}, {"name": value}),
        lambda: sql_q.paginate({"name": {"$gt": value}}, after=value),
    ]
    for attempt in attempts:
        try:
            attempt()
        except FilterError:
            pass  # dbp's own refusal; anything else fails the test
    rows = engines.sql.execute("SELECT id FROM sentinel").fetchall()
    assert rows == [{"id": 1}]
    mongo_q = engines.q["mongo"]
    for attempt in (lambda: mongo_q.find_one({column: value}), lambda: mongo_q.find_one({"name": {op: value}}),
                    lambda: engines.mongo.query(table).count({"name": value})):
        try:
            attempt()
        except FilterError:
            pass


def test_query_repr_and_escape_hatches(engines: Engines) -> None:
    sql_q, mongo_q = engines.q["sql"], engines.q["mongo"]
    assert sql_q.execute("SELECT count(*) AS n FROM sentinel WHERE id = %s", (1,)).fetchone() == {"n": 1}
    assert mongo_q.collection.name == "star"
    assert "star" in repr(sql_q) and "star" in repr(mongo_q)
    assert isinstance(sql_q, BaseQuery) and isinstance(mongo_q, BaseQuery)
