"""bulk_update's fast path (issue 13's benchmark): a batch of one shape is checked and sent by column.

The fast path must store exactly what the per-row path stores. The oracle is
``update`` called once per row on a twin table/collection, a path that shares
none of the bulk code. Each hostile case checks that the batch either applies
whole or raises a DbpError with nothing written.
"""

from __future__ import annotations

import datetime as dt
import decimal
import multiprocessing
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbp
from dbp import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.query import BaseQuery, _key_columns
from dbp.sql.connection import SQLConnection
from dbp.updates import columnar
from tests.hyp import examples

from .conftest import sql_section

TABLES = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    i bigint,
    f double precision,
    s text,
    b boolean,
    t timestamp,
    a bigint[],
    j jsonb
);
"""
FIELDS = ["i", "f", "s", "b", "t", "a", "j"]
ENGINES = ("sql", "mongo")
ROWS = 12


class Twins:
    """``bulk`` gets bulk_update, ``ref`` gets one ``update`` per row; both start from the same rows."""

    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.sql, self.mongo = sql, mongo
        self.q: dict[tuple[str, str], BaseQuery] = {}
        for engine, db in (("sql", sql), ("mongo", mongo)):
            for name in ("bulk", "ref"):
                self.q[engine, name] = db.query(name)  # type: ignore[attr-defined]

    @staticmethod
    def key(engine: str) -> str:
        return "id" if engine == "sql" else "_id"

    def reset(self, rows: list[dict[str, Any]]) -> None:
        self.sql.execute("TRUNCATE bulk, ref")
        for name in ("bulk", "ref"):
            self.mongo.collection(name).delete_many({})
            for engine in ENGINES:
                key = self.key(engine)
                self.q[engine, name].bulk_insert([{key: r["id"], **{k: v for k, v in r.items() if k != "id"}}
                                                  for r in rows])

    def rows(self, engine: str, name: str) -> list[dict[str, Any]]:
        key = self.key(engine)
        out = []
        for row in self.q[engine, name].find_all(sort=[(key, 1)], paginate=False):
            row = {("id" if k == "_id" else k): v for k, v in row.items()}
            out.append({"id": None, **dict.fromkeys(FIELDS), **row})
        return out


@pytest.fixture
def twins(sql_db: SQLConnection, mongo_db: MongoConnection) -> Twins:
    sql_db.execute(TABLES.format(name="bulk") + TABLES.format(name="ref")
                   + "CREATE TABLE sentinel (id int PRIMARY KEY); INSERT INTO sentinel VALUES (1);")
    return Twins(sql_db, mongo_db)


def start_rows() -> list[dict[str, Any]]:
    return [{"id": k, "i": k * 3 if k % 4 else None, "f": k / 7 if k % 3 else None, "s": f"s{k}",
             "b": k % 2 == 0, "t": dt.datetime(2024, 1, 1 + k), "a": [k], "j": {"k": k}} for k in range(ROWS)]


# Strategies: one operator per field, each with operands of that field's kind.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
ints = st.integers(-(2**40), 2**40)
floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
millisecond_datetimes = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))  # MongoDB keeps milliseconds
OPS: dict[str, list[tuple[str, Any]]] = {
    "i": [("$set", st.one_of(st.none(), ints)), ("$inc", ints), ("$mul", st.integers(-4, 4)),
          ("$min", ints), ("$max", ints)],
    "f": [("$set", st.one_of(st.none(), floats)), ("$inc", st.one_of(floats, ints)), ("$mul", floats),
          ("$min", floats), ("$max", floats)],
    "s": [("$set", st.one_of(st.none(), texts)), ("$min", texts.filter(bool)), ("$max", texts.filter(bool))],
    "b": [("$set", st.one_of(st.none(), st.booleans()))],
    "t": [("$set", st.one_of(st.none(), millisecond_datetimes))],
    "a": [("$set", st.one_of(st.none(), st.lists(ints, max_size=3)))],
    "j": [("$set", st.one_of(st.none(), st.dictionaries(st.sampled_from("xyz"), ints, max_size=2)))],
}


@st.composite
def batches(draw: Any) -> tuple[list[int], list[dict[str, Any]]]:
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True))
    chosen = {f: draw(st.sampled_from(OPS[f])) for f in fields}
    plain = all(op == "$set" for op, _ in chosen.values()) and draw(st.booleans())
    keys = draw(st.lists(st.integers(0, ROWS + 2), min_size=1, max_size=ROWS + 3, unique=True))
    attrs = []
    for _ in keys:
        if plain:
            attrs.append({f: draw(strategy) for f, (_, strategy) in chosen.items()})
        else:
            update: dict[str, dict[str, Any]] = {}
            for f, (op, strategy) in chosen.items():
                update.setdefault(op, {})[f] = draw(strategy)
            attrs.append(update)
    return keys, attrs


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])
@given(batch=batches())
def test_the_fast_path_stores_what_one_update_per_row_stores(twins: Twins, batch: Any) -> None:
    keys, attrs = batch
    assert columnar(attrs, "attrs") is not None and _key_columns([{"id": k} for k in keys], ["id"]) is not None
    twins.reset(start_rows())
    for engine in ENGINES:
        key = twins.key(engine)
        matched = twins.q[engine, "bulk"].bulk_update([{key: k} for k in keys], attrs)
        for k, change in zip(keys, attrs):
            twins.q[engine, "ref"].update({key: k}, change)
        assert matched == len([k for k in keys if k < ROWS])
        assert twins.rows(engine, "bulk") == twins.rows(engine, "ref")
    assert twins.rows("sql", "bulk") == twins.rows("mongo", "bulk")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_bad_value_late_in_a_large_batch_writes_nothing(twins: Twins, engine: str) -> None:
    """30,000 rows span two statements on SQL; the bad value is in the second."""
    n = 30_000
    key = twins.key(engine)
    twins.q[engine, "bulk"].bulk_insert([{key: k, "i": 0} for k in range(n)])
    attrs: list[dict[str, Any]] = [{"$inc": {"i": 1}} for _ in range(n)]
    attrs[-1] = {"$inc": {"i": float("nan")}}  # NaN: refused on both engines, naming the row
    with pytest.raises(FilterError, match=rf"attrs\[{n - 1}\].*NaN"):
        twins.q[engine, "bulk"].bulk_update([{key: k} for k in range(n)], attrs)
    assert twins.q[engine, "bulk"].count({"i": 0}) == n
    if engine == "sql":
        sets: list[dict[str, Any]] = [{"$set": {"i": 5}} for _ in range(n)]
        sets[-1] = {"$set": {"i": "1"}}  # a string into a bigint: a FilterError from the second batch
        with pytest.raises(FilterError, match=r"bulk\.i is bigint; str '1' does not fit"):
            twins.q[engine, "bulk"].bulk_update([{key: k} for k in range(n)], sets)
        assert twins.q[engine, "bulk"].count({"i": 0}) == n
        attrs[-1] = {"$inc": {"i": 2**63}}  # fits Python, not bigint: the server refuses, nothing kept
        with pytest.raises(dbp.DbpError):
            twins.q[engine, "bulk"].bulk_update([{key: k} for k in range(n)], attrs)
        assert twins.q[engine, "bulk"].count({"i": 0}) == n
    attrs[-1] = {"$inc": {"i": 1}}
    assert twins.q[engine, "bulk"].bulk_update([{key: k} for k in range(n)], attrs) == n
    assert twins.q[engine, "bulk"].count({"i": 1}) == n


@pytest.mark.parametrize("engine", ENGINES)
def test_batches_the_fast_path_declines_take_the_per_row_path(twins: Twins, engine: str) -> None:
    key = twins.key(engine)
    q = twins.q[engine, "bulk"]
    q.bulk_insert([{key: k, "i": 10, "s": "x"} for k in range(4)])
    # a repeated key: operators apply in order
    assert q.bulk_update([{key: 1}, {key: 1}, {key: 2}], [{"$inc": {"i": 1}}] * 3) == 2
    # a last row of another shape
    assert q.bulk_update([{key: 0}, {key: 3}], [{"$inc": {"i": 1}}, {"$inc": {"i": 1}, "$set": {"s": "y"}}]) == 2
    # True is not 1 as a key: no document has key True; a bigint column refuses it
    if engine == "mongo":
        assert q.bulk_update([{key: 2}, {key: True}], [{"$set": {"s": "z"}}, {"$set": {"s": "w"}}]) == 1
    else:
        with pytest.raises(FilterError, match="bool True does not fit"):
            q.bulk_update([{key: 2}, {key: True}], [{"$set": {"s": "z"}}, {"$set": {"s": "w"}}])
        q.bulk_update([{key: 2}], [{"$set": {"s": "z"}}])
    got = {r[key]: (r["i"], r["s"]) for r in q.find_all(paginate=False)}
    assert got == {0: (11, "x"), 1: (12, "x"), 2: (11, "z"), 3: (11, "y")}
    # a shape check that only the per-row path can name: an unknown operator in a later row
    with pytest.raises(FilterError, match=r"attrs\[1\]: unknown update operator"):
        q.bulk_update([{key: 0}, {key: 1}], [{"$inc": {"i": 1}}, {"$incr": {"i": 1}}])
    assert q.find_one({key: 0})["i"] == 11  # type: ignore[index]


HOSTILE = ["'); DROP TABLE sentinel; --", "{a,b}", '"', "\\", "\\x00", "NULL", "", "ümlaut ✓", "a\nb", "$set",
           "%s %(x)s {}", "\u2028"]


@pytest.mark.parametrize("engine", ENGINES)
def test_hostile_text_is_stored_as_given(twins: Twins, engine: str) -> None:
    key = twins.key(engine)
    q = twins.q[engine, "bulk"]
    q.bulk_insert([{key: k} for k in range(len(HOSTILE))])
    assert q.bulk_update([{key: k} for k in range(len(HOSTILE))],
                         [{"s": text, "j": {"v": text}} for text in HOSTILE]) == len(HOSTILE)
    got = {r[key]: (r["s"], r["j"]) for r in q.find_all(paginate=False)}
    assert got == {k: (text, {"v": text}) for k, text in enumerate(HOSTILE)}
    assert twins.sql.execute("SELECT count(*) AS n FROM sentinel").fetchone() == {"n": 1}
    with pytest.raises(FilterError):  # a NUL in a field name, on the fast path's first row
        q.bulk_update([{key: 0}], [{"s\x00": "x"}])


@pytest.mark.parametrize("engine", ENGINES)
def test_text_keys_and_compound_keys(twins: Twins, engine: str) -> None:
    q = twins.q[engine, "bulk"]
    key = twins.key(engine)
    q.bulk_insert([{key: k, "s": f"k{k}", "i": k % 3} for k in range(30)])
    # filter_fields other than the key: every matching row is updated
    assert q.bulk_update([{"s": f"k{k}", "i": k % 3} for k in range(0, 30, 2)],
                         [{"$set": {"f": float(k)}} for k in range(0, 30, 2)], filter_fields=["s", "i"]) == 15
    rows = {r[key]: r.get("f") for r in q.find_all(paginate=False)}
    assert rows == {k: (float(k) if k % 2 == 0 else None) for k in range(30)}


WRITERS = 8
PER_WRITER = 2000


def _incrementer(args: tuple[str, dict[str, Any], int]) -> int:
    engine, section, writer = args
    key = "id" if engine == "sql" else "_id"
    keys = list(range(PER_WRITER))
    random.Random(writer).shuffle(keys)  # every writer locks the same rows in its own order
    with dbp.connect({engine.upper(): section}, engine=engine) as db:
        return db.query("bulk").bulk_update([{key: k} for k in keys], [{"$inc": {"i": 1}} for _ in keys])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_concurrent_increments_lose_nothing(twins: Twins, engine: str) -> None:
    key = twins.key(engine)
    twins.q[engine, "bulk"].bulk_insert([{key: k, "i": 0} for k in range(PER_WRITER)])
    section = (sql_section(twins.sql.settings) if engine == "sql"
               else {"URL": twins.mongo.settings.host, "DATABASE": twins.mongo.settings.database})
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        matched = pool.map(_incrementer, [(engine, section, w) for w in range(WRITERS)])
    assert matched == [PER_WRITER] * WRITERS
    assert twins.q[engine, "bulk"].count({"i": WRITERS}) == PER_WRITER


# -- type modifiers: a parameter is never cut to the column's length ---------------------------------

MODIFIED = """
CREATE TABLE vc (id int PRIMARY KEY, s varchar(3) UNIQUE, c char(2), n numeric(4,1), tags varchar(3)[],
                 ts timestamp(0));
INSERT INTO vc VALUES (1, 'abc', 'ab', 1.0, '{abc,xyz}', '2024-01-01 00:00:00');
"""


@pytest.mark.parametrize(("type_name", "cast"), [
    ("character varying(3)", "character varying"), ("character(2)", "bpchar"), ("character(2)[]", "bpchar[]"),
    ("numeric(4,1)", "numeric"), ("timestamp(3) without time zone", "timestamp without time zone"),
    ("interval day to second(2)", "interval day to second"), ("bit(3)", "bit varying"), ("bigint[]", "bigint[]"),
    ("character varying(3)[]", "character varying[]"), ("text", "text"), ("jsonb", "jsonb"),
])
def test_cast_types_drop_the_modifier(type_name: str, cast: str) -> None:
    from dbp.sql.types import cast_type

    assert cast_type(type_name) == cast


def test_no_path_cuts_a_value_to_a_varchar_length(sql_db: SQLConnection) -> None:
    """A cast to varchar(3) cuts 'abcdef' to 'abc' silently: stored, it would lose data; compared, match 'abc'."""
    sql_db.execute(MODIFIED)
    q = sql_db.query("vc")
    too_long = [
        lambda: q.update({"id": 1}, {"s": "abcdef"}),
        lambda: q.update({"id": 1}, {"$max": {"s": "zzzz"}}),
        lambda: q.update({"id": 1}, {"c": "xyz"}),
        lambda: q.update({"id": 1}, {"$push": {"tags": "long one"}}),
        lambda: q.update({"id": 1}, {"$addToSet": {"tags": "abcd"}}),
        lambda: q.bulk_update([{"id": 1}], [{"s": "abcdef"}]),                                  # the fast path
        lambda: q.bulk_update([{"id": 1}, {"id": 1}], [{"$set": {"s": "wxyz"}}, {"$set": {"c": "a"}}]),
        lambda: q.upsert({"id": 2}, {"s": "toolong"}),
        lambda: q.get_or_create({"id": 3}, s="toolong"),
    ]
    for attempt in too_long:
        with pytest.raises(FilterError, match="value too long"):
            attempt()
    # comparisons use the whole value: 'abcdef' equals no stored 'abc'
    assert list(q.find_all({"s": {"$in": ["abcdef"]}}, paginate=False)) == []
    assert list(q.find_all({"s": {"$nin": ["abcdef"]}}, paginate=False)) != []
    assert list(q.find_all({"tags": {"$all": ["abcdef"]}}, paginate=False)) == []
    assert list(q.find_all({"tags": {"$elemMatch": {"$in": ["xyzxyz"]}}}, paginate=False)) == []
    assert q.bulk_update([{"s": "abcdef"}], [{"n": 2.0}], filter_fields=["s"]) == 0
    assert q.update({"id": 1}, {"$pull": {"tags": "abcdef"}}) == 1  # pulls nothing: 'abc' is not 'abcdef'
    assert q.find_one({"id": 1}) == {"id": 1, "s": "abc", "c": "ab", "n": decimal.Decimal("1.0"),
                                     "tags": ["abc", "xyz"], "ts": dt.datetime(2024, 1, 1)}
    # values that fit are stored with the column's own rounding, as an INSERT would
    assert q.bulk_update([{"id": 1}], [{"n": 2.25, "ts": dt.datetime(2024, 1, 1, 0, 0, 0, 600_000)}]) == 1
    row = q.find_one({"id": 1})
    assert row is not None and row["n"] == decimal.Decimal("2.3") and row["ts"] == dt.datetime(2024, 1, 1, 0, 0, 1)
