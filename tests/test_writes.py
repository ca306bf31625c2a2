"""Every write stores exactly what the caller asked, the same on both engines (issue 8).

A table ``thing`` and a collection ``thing`` hold the same fields (SQL ``id`` is
MongoDB's ``_id``); each test writes to both and compares what reads back.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbp
from dbp import BulkWriteError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.query import BaseQuery
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .conftest import sql_section

THING_SQL = """
CREATE TABLE thing (
    id bigint PRIMARY KEY,
    i bigint,
    f double precision,
    s text,
    b boolean,
    t timestamp,
    a bigint[],
    j jsonb,
    n integer NOT NULL DEFAULT 0
);
CREATE TABLE parent (oid text PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, oid text REFERENCES parent (oid), v text);
CREATE TABLE sentinel (id int PRIMARY KEY);
INSERT INTO sentinel VALUES (1);
"""
FIELDS = ["i", "f", "s", "b", "t", "a", "j", "n"]
ENGINES = ("sql", "mongo")
PLUS5 = dt.timezone(dt.timedelta(hours=5))


class Both:
    """The same writes on both engines; ``id`` is translated to ``_id`` for MongoDB."""

    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.sql, self.mongo = sql, mongo
        self.q: dict[str, BaseQuery] = {"sql": sql.query("thing"), "mongo": mongo.query("thing")}

    @staticmethod
    def to(engine: str, value: Any) -> Any:
        """``value`` (a filter, row or list of them) with ``id`` as the engine's key (a top-level field only)."""
        if engine == "sql":
            return value
        if isinstance(value, dict):  # a jsonb value's own "id" stays "id"
            return {("_id" if k == "id" else k): v for k, v in value.items()}
        if isinstance(value, list):
            return [Both.to(engine, v) for v in value]
        return value

    @staticmethod
    def norm(row: Any) -> Any:
        """A row as dbp promises it on both engines: ``id`` as the key, a missing field as None."""
        if row is None:
            return None
        out = {("id" if k == "_id" else k): v for k, v in row.items()}
        base = {"id": None, **dict.fromkeys(FIELDS)}
        base["n"] = out.get("n")
        return {**base, **out}

    def rows(self, engine: str) -> list[dict[str, Any]]:
        return [self.norm(r) for r in self.q[engine].find_all(sort=[("id" if engine == "sql" else "_id", 1)],
                                                              paginate=False)]

    def call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``method`` on both engines; each engine's result, or the error class it raised."""
        out: dict[str, Any] = {}
        for engine in ENGINES:
            try:
                out[engine] = getattr(self.q[engine], method)(*self.to(engine, list(args)),
                                                              **self.to(engine, kwargs))
            except dbp.DbpError as exc:
                out[engine] = type(exc)
        return out

    def same_state(self) -> list[dict[str, Any]]:
        sql_rows, mongo_rows = self.rows("sql"), self.rows("mongo")
        assert sql_rows == mongo_rows
        return sql_rows


@pytest.fixture
def both(sql_db: SQLConnection, mongo_db: MongoConnection) -> Both:
    sql_db.execute(THING_SQL)
    return Both(sql_db, mongo_db)


def fill_default(engine: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MongoDB has no column default: give ``n`` its SQL default where the rows lack it."""
    return [{"n": 0, **r} for r in rows]


# -- 1. update sets only the fields each row carries ------------------------------------------------


def test_update_mode_keeps_the_fields_a_row_does_not_carry(both: Both) -> None:
    full = {"id": 1, "i": 6, "f": 1.5, "s": "kept", "b": False, "n": 3}
    for engine in ENGINES:
        assert both.q[engine].bulk_insert(both.to(engine, [full])) == 1
    assert both.call("bulk_insert", [{"id": 1, "i": 7}, {"id": 2, "i": 1, "n": 0}], on_conflict="update") \
        == {"sql": 1, "mongo": 1}
    rows = both.same_state()
    assert rows[0] == {**both.norm(full), "i": 7}  # f, s, b and n kept; b stays False, not NULL
    assert rows[1]["i"] == 1 and rows[1]["s"] is None


def test_update_fields_narrows_the_update_and_inserts_everything(both: Both) -> None:
    for engine in ENGINES:
        both.q[engine].bulk_insert(both.to(engine, [{"id": 1, "i": 6, "s": "old", "n": 1}]))
    batch = [{"id": 1, "i": 99, "s": "new", "n": 5}, {"id": 2, "i": 2, "s": "fresh", "n": 2}]
    assert both.call("bulk_insert", batch, on_conflict="update", update_fields=["s"]) == {"sql": 1, "mongo": 1}
    rows = both.same_state()
    assert (rows[0]["i"], rows[0]["s"], rows[0]["n"]) == (6, "new", 1)
    assert (rows[1]["i"], rows[1]["s"], rows[1]["n"]) == (2, "fresh", 2)
    assert both.call("bulk_insert", batch, on_conflict="ignore", update_fields=["s"]) == {
        "sql": FilterError, "mongo": FilterError}
    assert both.call("bulk_insert", batch, on_conflict="update", update_fields=["nope"])["sql"] is FilterError


def test_rows_of_different_shapes_merge_field_by_field(both: Both) -> None:
    """[A{i,s}, A{i}, A{i, f}] leaves i from the last row, s from the first, f from the last."""
    for engine in ENGINES:
        both.q[engine].bulk_insert(both.to(engine, [{"id": 1, "i": 0, "s": "x", "f": 0.0, "b": True, "n": 1}]))
    batch = [{"id": 1, "i": 1, "s": "first"}, {"i": 2, "id": 1}, {"id": 1, "f": 2.5, "i": 3},
             {"id": 3, "s": "only"}, {"s": "other", "id": 4, "n": 4}]
    assert both.call("bulk_insert", fill_default("x", batch), on_conflict="update") == {"sql": 2, "mongo": 2}
    rows = both.same_state()
    assert [(r["id"], r["i"], r["s"], r["f"], r["b"], r["n"]) for r in rows] == [
        (1, 3, "first", 2.5, True, 0), (3, None, "only", None, None, 0), (4, None, "other", None, None, 4)]


def test_the_sorting_hat_case_keeps_every_other_column(sql_db: SQLConnection) -> None:
    """ALeRCE's "insert empty objects" step: insert-or-update objects touching only their *hist columns."""
    from dbp.admin import initdb
    from dbp.config import resolve_config

    initdb(resolve_config({"SQL": sql_section(sql_db.settings)}, environ={}), ["sql"])
    sql_db.catalog(refresh=True)
    objects = sql_db.query("object")
    objects.bulk_insert([{"oid": "ZTF1", "ndet": 6, "corrected": False, "firstmjd": 59000.5, "ndethist": 1}])
    hist = [{"oid": "ZTF1", "ndethist": 9, "ncovhist": 10, "mjdstarthist": 58000.0, "mjdendhist": 59100.0},
            {"oid": "ZTF2", "ndethist": 1, "ncovhist": 2, "mjdstarthist": 58001.0, "mjdendhist": 58002.0}]
    assert objects.bulk_insert(hist, on_conflict="update") == 1
    row = objects.find_one({"oid": "ZTF1"})
    assert row is not None
    assert (row["ndet"], row["corrected"], row["firstmjd"]) == (6, False, 59000.5)
    assert (row["ndethist"], row["ncovhist"], row["mjdendhist"]) == (9, 10, 59100.0)
    # the same with update_fields, on rows that carry more than the four columns
    more = [{**h, "ndet": 0, "firstmjd": 1.0, "ndethist": 11} for h in hist]
    assert objects.bulk_insert(more, on_conflict="update",
                               update_fields=["ndethist", "ncovhist", "mjdstarthist", "mjdendhist"]) == 0
    row = objects.find_one({"oid": "ZTF1"})
    assert row is not None and (row["ndet"], row["firstmjd"], row["ndethist"]) == (6, 59000.5, 11)


# -- 2. time zones ----------------------------------------------------------------------------------


def test_one_time_zone_rule_on_every_path_and_engine(both: Both) -> None:
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=PLUS5)
    utc = dt.datetime(2024, 1, 1, 7)
    both.call("bulk_insert", [{"id": 1, "t": aware, "n": 0}])
    both.call("get_or_create", {"id": 2}, t=aware, n=0)
    both.call("upsert", {"id": 3}, {"t": aware, "n": 0})
    both.call("bulk_insert", [{"id": 4, "n": 0}, {"id": 5, "n": 0}])
    both.call("update", {"id": 4}, {"t": aware})
    both.call("bulk_update", [{"id": 5}], [{"t": aware}])
    both.call("bulk_insert", [{"id": 6, "t": aware, "n": 0}, {"id": 1, "t": aware, "n": 0}], on_conflict="update")
    rows = both.same_state()
    assert [r["t"] for r in rows] == [utc] * 6
    for engine in ENGINES:
        q = both.q[engine]
        assert q.count({"t": aware}) == 6
        assert q.count({"t": utc}) == 6  # naive is UTC
        assert q.count({"t": {"$gte": aware.astimezone(dt.timezone(dt.timedelta(hours=-3)))}}) == 6


# -- 3. numbers compare as numbers -------------------------------------------------------------------


def test_in_and_nin_never_round(both: Both) -> None:
    both.call("bulk_insert", [{"id": k, "n": k} for k in range(1, 4)])
    for filter_by, expected in [
        ({"n": {"$in": [0.6]}}, 0), ({"n": {"$in": [1.5]}}, 0), ({"n": {"$in": [2.0]}}, 1),
        ({"n": {"$in": [1.5, 3]}}, 1), ({"n": {"$nin": [1.5]}}, 3), ({"n": {"$nin": [1.0, 2.5]}}, 2),
        ({"n": 1.5}, 0), ({"f": {"$in": [1]}}, 0),
    ]:
        assert both.call("count", filter_by) == {"sql": expected, "mongo": expected}, filter_by
    # beyond 64 bits: SQL compares (and matches nothing), BSON cannot carry it
    assert both.call("count", {"n": {"$in": [2**70, -(2**70)]}}) == {"sql": 0, "mongo": FilterError}
    assert both.call("delete", {"n": {"$in": [0.6, 2.4]}}) == {"sql": 0, "mongo": 0}
    assert len(both.same_state()) == 3


# -- 4 and 11. duplicates in a batch -----------------------------------------------------------------


def test_the_last_duplicate_wins_whatever_its_key_order(both: Both) -> None:
    batch = [{"id": 1, "i": 1, "n": 0}, {"i": 2, "n": 0, "id": 1}, {"id": 1, "n": 0, "i": 3}]
    assert both.call("bulk_insert", batch, on_conflict="update") == {"sql": 1, "mongo": 1}
    assert both.same_state()[0]["i"] == 3
    assert both.call("bulk_insert", [{"i": 4, "id": 1, "n": 0}, {"id": 1, "i": 5, "n": 0}],
                     on_conflict="update") == {"sql": 0, "mongo": 0}
    assert both.same_state()[0]["i"] == 5
    # ignore: the first row of a key wins, and an existing row is left alone
    assert both.call("bulk_insert", [{"id": 2, "i": 1, "n": 0}, {"i": 2, "id": 2, "n": 0},
                                     {"id": 1, "i": 9, "n": 0}]) == {"sql": 1, "mongo": 1}
    assert [r["i"] for r in both.same_state()] == [5, 1]


def test_bulk_update_with_duplicate_keys(both: Both) -> None:
    both.call("bulk_insert", [{"id": k, "i": 0, "n": 0} for k in (1, 2)])
    result = both.call("bulk_update", [{"id": 1}, {"id": 2}, {"id": 1}, {"id": 9}],
                       [{"i": 1, "s": "a"}, {"i": 2}, {"i": 3}, {"i": 4}])
    assert result == {"sql": 2, "mongo": 2}  # distinct rows matched
    assert [(r["i"], r["s"]) for r in both.same_state()] == [(3, "a"), (2, None)]


def test_batches_alternating_new_and_stored_keys_count_and_store_the_same(both: Both) -> None:
    """SQL sends a table's batches straight to the merge once one met stored keys, and back to a plain COPY
    after an all-new one: each count, and what is stored, stays what MongoDB gives for the same calls."""
    plan = [(range(0, 20), "update"), (range(10, 40), "update"), (range(40, 60), "update"),
            (range(60, 70), "ignore"), (range(65, 80), "ignore"), (range(80, 90), "update"),
            (range(85, 95), "update")]
    seen: set[int] = set()
    for number, (keys, mode) in enumerate(plan):
        rows = [{"id": k, "i": number, "s": f"{number}:{k}", "n": k} for k in keys]
        rows.append(dict(rows[-1], i=-number))  # a duplicate key in the batch: its last value wins on update
        expected = len(set(keys) - seen)
        before = {r["id"]: r for r in both.same_state()}
        assert both.call("bulk_insert", rows, on_conflict=mode) == {"sql": expected, "mongo": expected}, number
        stored = {r["id"]: r for r in both.same_state()}
        for k in keys:
            if k in seen and mode == "ignore":
                assert stored[k] == before[k], (number, k)
            else:
                assert stored[k]["i"] == (-number if k == keys[-1] and mode == "update" else number), (number, k)
        seen |= set(keys)
    assert len(both.same_state()) == len(seen) == 95
    # a key of the wrong type is refused in the merge path too (MongoDB takes any _id), and nothing is written
    for mode in ("update", "ignore"):
        with pytest.raises(FilterError, match="row 1"):
            both.q["sql"].bulk_insert([{"id": 200, "i": 1}, {"id": "201", "i": 1}], on_conflict=mode)
    assert len(both.rows("sql")) == 95


# -- 8 and 9. operators and odd names never reach the database ----------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_bulk_update_keys_are_plain_values(both: Both, engine: str) -> None:
    q = both.q[engine]
    key = "id" if engine == "sql" else "_id"
    q.bulk_insert([{key: 1, "s": "user", "n": 0}])
    for instance, fields in [({key: {"$ne": None}}, None), ({"s": {"$regex": ".*"}}, ["s"]),
                             ({key: [1, 2]}, None), ({key: None}, None)]:
        with pytest.raises(FilterError, match="plain value"):
            q.bulk_update([instance], [{"s": "admin"}], filter_fields=fields)
    assert q.find_one()["s"] == "user"  # type: ignore[index]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["$addToSet", "$set", "a\x00b", "", "$"])
def test_dollar_and_nul_field_names_are_refused_everywhere(both: Both, engine: str, name: str) -> None:
    q = both.q[engine]
    key = "id" if engine == "sql" else "_id"
    q.bulk_insert([{key: 1, "n": 0}])
    before = q.find_all(paginate=False)
    calls = [
        lambda: q.update({key: 1}, {name: 1}),
        lambda: q.bulk_update([{key: 1}], [{name: 1}]),
        lambda: q.upsert({key: 1}, {name: 1}),
        lambda: q.get_or_create({key: 2}, **{name: 1}),
        lambda: q.bulk_insert([{key: 3, name: 1}]),
        lambda: q.bulk_insert([{key: 1, name: 1}], on_conflict="update"),
    ]
    for call in calls:
        with pytest.raises(FilterError):
            call()
    assert list(q.find_all(paginate=False)) == list(before)


# -- 10. bulk_insert checks types as every other path does ---------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("s", 42), ("s", ["x"]), ("s", b"bytes"), ("i", 2.5), ("i", 2.0), ("i", True), ("i", "3"),
    ("b", 1), ("b", "t"), ("f", "1.5"), ("t", dt.date(2024, 1, 1)), ("t", "2024-01-01"), ("a", [1.5]),
    ("a", ["x"]), ("a", "x"), ("s", "\ud800"),
])
@pytest.mark.parametrize("mode", ["error", "ignore", "update"])
def test_sql_writes_refuse_what_would_be_coerced(both: Both, field: str, value: Any, mode: str) -> None:
    q = both.q["sql"]
    q.bulk_insert([{"id": 1, "n": 0}])
    rows = [{"id": 2, "n": 0}, {"id": 3, field: value, "n": 0}]
    with pytest.raises(FilterError, match=r"row 1: "):
        q.bulk_insert(rows, on_conflict=mode)  # type: ignore[arg-type]
    for call in (lambda: q.update({"id": 1}, {field: value}), lambda: q.upsert({"id": 1}, {field: value}),
                 lambda: q.get_or_create({"id": 5}, **{field: value}),
                 lambda: q.bulk_update([{"id": 1}], [{field: value}])):
        with pytest.raises(FilterError):
            call()
    assert [(r["id"], r[field]) for r in q.find_all(paginate=False)] == [(1, None if field != "n" else 0)]


def test_a_foreign_key_violation_names_the_row(both: Both) -> None:
    q = both.sql.query("child")
    both.sql.query("parent").bulk_insert([{"oid": "A"}, {"oid": "B"}])
    rows = [{"id": 1, "oid": "A"}, {"id": 2, "oid": "B"}, {"id": 3, "oid": "nowhere"}, {"id": 4, "oid": "A"}]
    for mode in ("error", "ignore", "update"):
        with pytest.raises(BulkWriteError, match=r"row 2: .*foreign key") as info:
            q.bulk_insert(rows, on_conflict=mode)  # type: ignore[arg-type]
        assert info.value.rows == [2]
    q.bulk_insert(rows[:1])
    with pytest.raises(BulkWriteError) as info:  # the merge path, too
        q.bulk_insert(rows, on_conflict="update")
    assert info.value.rows == [2]
    assert q.count() == 1


@pytest.mark.parametrize(("value", "message"), [
    (2**63, "8-byte ints"), (__import__("decimal").Decimal("1.5"), "Decimal"), ("\ud800", "surrogates"),
])
def test_mongo_refuses_what_bson_cannot_store(both: Both, value: Any, message: str) -> None:
    q = both.q["mongo"]
    with pytest.raises(FilterError, match=f"row 1: MongoDB cannot store this: .*{message}"):
        q.bulk_insert([{"_id": 1, "n": 0}, {"_id": 2, "i": value}])
    for call in (lambda: q.update({"_id": 1}, {"i": value}), lambda: q.find_one({"i": value}),
                 lambda: q.upsert({"_id": 1}, {"i": value}), lambda: q.get_or_create({"_id": 3}, i=value),
                 lambda: q.count({"i": {"$in": [value]}}), lambda: q.delete({"i": value})):
        with pytest.raises(FilterError, match=message):
            call()
    assert q.count() == 0  # pymongo encodes a batch before it sends it


# -- the differential test: random write sequences, the same results on both engines --------------------

_ids = st.integers(1, 6)
_times = st.builds(
    lambda base, offset: base.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset))) if offset is not None
    else base,
    st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
    st.none() | st.integers(-720, 720))
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
_json_key = st.text(st.characters(whitelist_categories=("Ll", "Nd")), min_size=1, max_size=4)
_values: dict[str, st.SearchStrategy[Any]] = {
    "i": st.none() | st.integers(-(2**63), 2**63 - 1),
    "f": st.none() | st.floats(allow_nan=False, allow_infinity=False),
    "s": st.none() | _text,
    "b": st.none() | st.booleans(),
    "t": st.none() | _times,
    "a": st.none() | st.lists(st.integers(-(2**31), 2**31), max_size=3),
    "j": st.none() | st.dictionaries(_json_key, st.none() | st.booleans() | st.integers(-1000, 1000) | _text,
                                     max_size=3),
    "n": st.integers(-5, 5),
}


@st.composite
def _row(draw: Any, with_id: bool = True) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS)))
    row = {name: draw(_values[name]) for name in names}
    if with_id:
        row["id"] = draw(_ids)
        row.setdefault("n", draw(_values["n"]))
    items = list(row.items())
    draw(st.randoms()).shuffle(items)  # any key order
    return dict(items)


_attrs = _row(with_id=False).filter(bool)
_filters = st.one_of(
    st.builds(lambda k: {"id": k}, _ids),
    st.builds(lambda v: {"i": {"$gte": v}}, st.integers(-(2**62), 2**62)),
    st.builds(lambda v: {"b": v}, st.booleans()),
    st.builds(lambda v: {"t": {"$lt": v}}, _times),
    st.builds(lambda ks: {"id": {"$in": ks}}, st.lists(_ids, max_size=3)),
    st.builds(lambda v: {"n": {"$in": [v, v + 0.5]}}, st.integers(-5, 5)),
)
_operations = st.one_of(
    st.tuples(st.just("bulk_insert"), st.lists(_row(), min_size=1, max_size=6),
              st.sampled_from(["ignore", "update"]),
              st.none() | st.lists(st.sampled_from(FIELDS), unique=True, min_size=1)),
    st.tuples(st.just("update"), _filters, _attrs),
    st.tuples(st.just("upsert"), _ids, _attrs),
    st.tuples(st.just("get_or_create"), _ids, _attrs),
    st.tuples(st.just("bulk_update"), st.lists(st.tuples(_ids, _attrs), min_size=1, max_size=4)),
    st.tuples(st.just("delete"), _filters),
)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(operations=st.lists(_operations, min_size=1, max_size=8))
def test_random_write_sequences_agree(both: Both, operations: list[tuple[Any, ...]]) -> None:
    for engine in ENGINES:
        both.q[engine].delete({})
    for op in operations:
        name = op[0]
        if name == "bulk_insert":
            _, rows, mode, fields = op
            if mode != "update":
                fields = None
            result = both.call("bulk_insert", rows, on_conflict=mode, update_fields=fields)
        elif name == "update":
            result = both.call("update", op[1], op[2])
        elif name == "upsert":
            result = both.call("upsert", {"id": op[1]}, {"n": 0, **op[2]})
            result = {k: Both.norm(v) if isinstance(v, dict) else v for k, v in result.items()}
        elif name == "get_or_create":
            result = both.call("get_or_create", {"id": op[1]}, **{"n": 0, **op[2]})
            result = {k: (Both.norm(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in result.items()}
        elif name == "bulk_update":
            result = both.call("bulk_update", [{"id": k} for k, _ in op[1]], [a for _, a in op[1]])
        else:
            result = both.call("delete", op[1])
        assert result["sql"] == result["mongo"], (op, result)
        both.same_state()


# -- 5. concurrent writers -----------------------------------------------------------------------------

WRITERS = 16
PER_WRITER = 2000


def _writer(args: tuple[str, str, str, int, str]) -> int:
    engine, url, database, writer, mode = args
    section = {"URL": url} if engine == "sql" else {"URL": url, "DATABASE": database}
    key = "id" if engine == "sql" else "_id"
    start = writer * PER_WRITER // 2  # each range overlaps its neighbours' by half
    rows = [{key: k, "i": writer, "s": f"w{writer}", "n": writer} for k in range(start, start + PER_WRITER)]
    random.Random(writer).shuffle(rows)
    with dbp.connect({engine.upper(): section}, engine=engine) as db:
        return db.query("thing").bulk_insert(rows, on_conflict=mode)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_sixteen_concurrent_writers(both: Both, engine: str) -> None:
    if engine == "sql":
        url, database = sql_section(both.sql.settings)["URL"], ""
    else:
        url, database = both.mongo.settings.host, both.mongo.settings.database
    keys = WRITERS * PER_WRITER // 2 + PER_WRITER // 2
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        for mode in ("ignore", "update"):
            inserted = pool.map(_writer, [(engine, url, database, w, mode) for w in range(WRITERS)])
            assert sum(inserted) == (keys if mode == "ignore" else 0)
            rows = both.rows(engine)
            assert len(rows) == keys and len({r["id"] for r in rows}) == keys
            for row in rows:  # each row is one writer's row, never a mix
                assert row["s"] == f"w{row['i']}" and row["n"] == row["i"], row
