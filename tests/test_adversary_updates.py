"""Adversarial repros for update / bulk_update (issue adv13): each test states the promised behaviour.

Every test here failed when it was written (an independent adversary wrote them without
seeing the code's tests); each docstring names the cause found, now fixed.
The oracle is ``update`` called once per row (a path sharing none of the bulk
code) or the README's words.
"""

from __future__ import annotations

import datetime as dt
import decimal
import multiprocessing
import random
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from dbp import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

from .conftest import sql_section

D = decimal.Decimal


def _rows(q: Any, key: str = "id") -> list[dict[str, Any]]:
    return list(q.find_all(sort=[(key, 1)], paginate=False))


# -- numbers: ints and Decimals among floats --------------------------------------------------------------------


@pytest.mark.parametrize("exact", [12345678901234567891, D("1.2345678901234567890123")], ids=["int", "decimal"])
def test_bulk_update_keeps_an_exact_number_that_shares_a_column_with_a_float(sql_db: SQLConnection,
                                                                            exact: Any) -> None:
    """Cause: sql/query.py _one_kind turns every int/Decimal of a column into float when one float is there.

    ``update`` stores the exact value in a numeric column; bulk_update (fast path
    and per-row path alike) stores it rounded to 15 digits.
    """
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, n numeric)")
    q = sql_db.query("t")
    q.bulk_insert([{"id": 1}, {"id": 2}])
    assert q.bulk_update([{"id": 1}, {"id": 2}], [{"n": exact}, {"n": 0.5}]) == 2
    bulk = q.find_one({"id": 1})
    q.update({"id": 1}, {"n": exact})
    assert bulk == q.find_one({"id": 1}) == {"id": 1, "n": D(exact)}


def test_bulk_update_inc_keeps_an_exact_operand_beside_a_float_operand(sql_db: SQLConnection) -> None:
    """Cause: _one_kind again, on $inc operands: 10**20 + 1 among floats is added as 1e20."""
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, n numeric)")
    q = sql_db.query("t")
    q.bulk_insert([{"id": 1, "n": 0}, {"id": 2, "n": 0}])
    q.bulk_update([{"id": 1}, {"id": 2}], [{"$inc": {"n": 10**20 + 1}}, {"$inc": {"n": 0.5}}])
    assert q.find_one({"id": 1}) == {"id": 1, "n": D(10**20 + 1)}


def test_bulk_update_with_numeric_keys_of_mixed_types_updates_the_rows_named(sql_db: SQLConnection) -> None:
    """Cause: _one_kind on the key columns (per-row path: _lock_rows and _update_batches) turns the Decimal key
    into the float 0.1, so the row 0.1 is updated instead of the row 0.10000000000000000001.
    """
    sql_db.execute("CREATE TABLE k (id numeric PRIMARY KEY, s text)")
    q = sql_db.query("k")
    q.bulk_insert([{"id": D("0.1"), "s": "a"}, {"id": D("0.10000000000000000001"), "s": "b"},
                   {"id": D("0.5"), "s": "c"}])
    assert q.bulk_update([{"id": D("0.10000000000000000001")}, {"id": 0.5}], [{"s": "X"}, {"s": "Y"}]) == 2
    assert _rows(q) == [{"id": D("0.1"), "s": "a"}, {"id": D("0.10000000000000000001"), "s": "X"},
                        {"id": D("0.5"), "s": "Y"}]


# -- domains over modified types: cut silently ------------------------------------------------------------------

DOMAINS = """
CREATE DOMAIN shorttext AS varchar(3);
CREATE DOMAIN code2 AS char(2);
CREATE TABLE d (id int PRIMARY KEY, st shorttext UNIQUE, c2 code2, n int);
INSERT INTO d (id, st, n) VALUES (1, 'abc', 0), (2, 'xyz', 0);
"""


@pytest.mark.parametrize(("field", "value"), [("st", "abcdef"), ("c2", "xyz")])
def test_bulk_update_refuses_a_value_too_long_for_a_domain_column(sql_db: SQLConnection, field: str,
                                                                 value: str) -> None:
    """Cause: cast_type keeps a domain's name; text[] cast to shorttext[] casts each element explicitly to
    varchar(3), which cuts it. ``update`` (a scalar parameter) refuses the same value.
    """
    sql_db.execute(DOMAINS)
    q = sql_db.query("d")
    with pytest.raises(FilterError, match="value too long"):
        q.update({"id": 1}, {field: value})
    with pytest.raises(FilterError, match="value too long"):  # fast path
        q.bulk_update([{"id": 1}], [{field: value}])
    with pytest.raises(FilterError, match="value too long"):  # per-row path (a repeated key)
        q.bulk_update([{"id": 1}, {"id": 1}], [{"$set": {field: value}}, {"$inc": {"n": 1}}])
    assert _rows(q) == [{"id": 1, "st": "abc", "c2": None, "n": 0}, {"id": 2, "st": "xyz", "c2": None, "n": 0}]


def test_bulk_update_key_on_a_domain_column_compares_the_whole_value(sql_db: SQLConnection) -> None:
    """Cause: the key array is cast to shorttext[] (varchar(3) elements): 'abcdef' becomes 'abc' and matches it.

    ``update({"st": "abcdef"}, ...)`` matches nothing; bulk_update updates the row 'abc'.
    """
    sql_db.execute(DOMAINS)
    q = sql_db.query("d")
    assert q.update({"st": "abcdef"}, {"n": 5}) == 0
    assert q.bulk_update([{"st": "abcdef"}], [{"n": 5}], filter_fields=["st"]) == 0
    assert q.find_one({"id": 1}) == {"id": 1, "st": "abc", "c2": None, "n": 0}


def test_in_on_a_domain_column_compares_the_whole_value(sql_db: SQLConnection) -> None:
    """Cause: $in casts to shorttext[], whose varchar(3) input refuses 'abcdef'; $eq answers (no match).

    README: ``{"s": {"$in": ["abcdef"]}}`` does not match a stored "abc" (no error).
    """
    sql_db.execute(DOMAINS)
    q = sql_db.query("d")
    assert list(q.find_all({"st": "abcdef"}, paginate=False)) == []
    assert list(q.find_all({"st": {"$in": ["abcdef"]}}, paginate=False)) == []
    assert len(list(q.find_all({"st": {"$nin": ["abcdef"]}}, paginate=False))) == 2


# -- the fast path refuses what update accepts -------------------------------------------------------------------


def test_bulk_update_takes_uuid_objects_and_strings_together(sql_db: SQLConnection) -> None:
    """Cause: _adapted passes the column through unconverted; psycopg cannot dump a list of UUID and str
    ("cannot dump lists of mixed types"), though a uuid column accepts both (types._WRITES) and update takes them.
    """
    sql_db.execute("CREATE TABLE u (id int PRIMARY KEY, u uuid)")
    q = sql_db.query("u")
    q.bulk_insert([{"id": 1}, {"id": 2}])
    a, b = uuid.uuid4(), uuid.uuid4()
    assert q.update({"id": 1}, {"u": a}) == 1 and q.update({"id": 2}, {"u": str(b)}) == 1
    assert q.bulk_update([{"id": 1}, {"id": 2}], [{"u": b}, {"u": str(a)}]) == 2
    assert _rows(q) == [{"id": 1, "u": b}, {"id": 2, "u": a}]


def test_bulk_update_takes_uuid_keys_as_objects_and_strings_together(sql_db: SQLConnection) -> None:
    """Cause: as above, for the key array of the per-row path (_lock_rows sends the keys as one array)."""
    sql_db.execute("CREATE TABLE u (id uuid PRIMARY KEY, n int)")
    q = sql_db.query("u")
    a, b = uuid.uuid4(), uuid.uuid4()
    q.bulk_insert([{"id": a, "n": 0}, {"id": b, "n": 0}])
    assert q.update({"id": str(b)}, {"n": 0}) == 1
    assert q.bulk_update([{"id": a}, {"id": str(b)}], [{"n": 1}, {"n": 2}]) == 2
    assert sorted(r["n"] for r in _rows(q)) == [1, 2]


def test_bulk_update_takes_what_update_takes_in_other_columns(sql_db: SQLConnection) -> None:
    """Cause: as for uuid: mixed Python types in an 'other' column (interval, a domain over integer) cannot be
    sent as one array; each update alone stores them.
    """
    sql_db.execute("CREATE DOMAIN posint AS integer CHECK (VALUE > 0);"
                   "CREATE TABLE o (id int PRIMARY KEY, iv interval, p posint)")
    q = sql_db.query("o")
    q.bulk_insert([{"id": 1}, {"id": 2}])
    attrs: list[dict[str, Any]] = [{"iv": "1 day", "p": 7}, {"iv": dt.timedelta(seconds=1), "p": 2}]
    for i, change in enumerate(attrs, 1):
        q.update({"id": i}, change)
    expected = _rows(q)
    sql_db.execute("UPDATE o SET iv = NULL, p = NULL")
    assert q.bulk_update([{"id": 1}, {"id": 2}], attrs) == 2
    assert _rows(q) == expected


# -- keys equal to the server but not to Python ---------------------------------------------------------------


def test_repeated_key_as_aware_and_naive_datetimes_applies_both_increments(sql_db: SQLConnection) -> None:
    """Cause: bulk_update's per-row path tells keys apart by Python equality (key_identity), not by the
    README's datetime rule (aware -> UTC, naive = UTC, as bulk_insert's collapse normalizes): both rows go into
    one UPDATE ... FROM, which updates the row once.
    """
    sql_db.execute("CREATE TABLE t (id timestamptz PRIMARY KEY, n int)")
    q = sql_db.query("t")
    naive = dt.datetime(2024, 1, 1, 7)
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    q.bulk_insert([{"id": naive, "n": 0}])
    assert q.bulk_update([{"id": aware}, {"id": naive}], [{"$inc": {"n": 1}}, {"$inc": {"n": 1}}]) == 1
    row = q.find_one()
    assert row is not None and row["n"] == 2


def test_repeated_uuid_key_in_two_spellings_applies_both_increments(sql_db: SQLConnection) -> None:
    """Cause: as above: two spellings of one uuid are two keys to Python (the fast path's _key_columns sees no
    repeat), one row to the server; UPDATE ... FROM applies one of the two source rows. Two ``update`` calls
    give 2.
    """
    sql_db.execute("CREATE TABLE k (id uuid PRIMARY KEY, n int)")
    q = sql_db.query("k")
    u = uuid.uuid4()
    q.bulk_insert([{"id": u, "n": 0}])
    assert q.bulk_update([{"id": str(u)}, {"id": str(u).upper()}], [{"$inc": {"n": 1}}, {"$inc": {"n": 1}}]) == 1
    row = q.find_one()
    assert row is not None and row["n"] == 2


# -- MongoDB: operators through filter_fields -----------------------------------------------------------------------


def test_mongo_filter_fields_cannot_be_operators(mongo_db: MongoConnection) -> None:
    """Cause: mongo/query.py _bulk_update sends ``{key: value}`` as the filter without compile_filter or a
    name check; ``filter_fields=["$comment"]`` makes it ``{"$comment": "x"}``, which matches every document
    (UpdateMany). SQL refuses the name; ``update({"$comment": ...})`` refuses it too.
    """
    q = mongo_db.query("c")
    q.bulk_insert([{"_id": i, "n": 0} for i in range(5)])
    with pytest.raises(FilterError):
        q.update({"$comment": "x"}, {"$inc": {"n": 1}})
    with pytest.raises(FilterError):
        q.bulk_update([{"$comment": "x"}], [{"$inc": {"n": 1}}], filter_fields=["$comment"])
    assert q.count({"n": 0}) == 5


# -- concurrency: the retry that never runs -----------------------------------------------------------------------


def test_bulk_update_is_retried_after_a_deadlock_it_loses(sql_db: SQLConnection) -> None:
    """Cause: _write turns psycopg's deadlock (40P01) into ConcurrencyError before ``retrying`` sees it, so the
    five attempts of sql/bulk.py retrying never happen on bulk_update (both paths).

    Another session holds row 2 and then asks for row 1, which bulk_update holds while it waits for row 2;
    bulk_update's backend detects the deadlock (1 s) and loses. The other session then finishes, so one more
    attempt would succeed, as README promises for bulk_insert ("retried up to 5 times inside dbp").
    """
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, n int); INSERT INTO t VALUES (1, 0), (2, 0)")
    q = sql_db.query("t")
    locked = threading.Event()
    failures: list[BaseException] = []

    def other() -> None:
        try:
            with psycopg.connect(**{k: v for k, v in sql_db.settings.params.items()}) as conn:
                conn.execute("SET deadlock_timeout = '30s'")  # this session never detects it: bulk_update does
                conn.execute("SET statement_timeout = '20s'")
                conn.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
                locked.set()
                time.sleep(0.5)  # bulk_update now holds row 1 and waits for row 2
                conn.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
                conn.execute("UPDATE t SET n = n + 10")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            locked.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert locked.wait(10)
    try:
        matched = q.bulk_update([{"id": 1}, {"id": 2}], [{"$inc": {"n": 1}}, {"$inc": {"n": 1}}])
    finally:
        thread.join(30)
    assert not failures
    assert matched == 2
    assert _rows(q) == [{"id": 1, "n": 11}, {"id": 2, "n": 11}]


# -- floats and numeric columns ------------------------------------------------------------------------------------


def test_bulk_update_finds_a_numeric_key_given_as_a_float(sql_db: SQLConnection) -> None:
    """Cause: bulk_update's keys are cast with ``%b::numeric[]``; PostgreSQL's float8 -> numeric cast keeps 15
    significant digits, so the key 1/3 becomes 0.333333333333333 and matches nothing. ``find_one`` and
    ``update`` (numeric = float8, compared as floats) find the row stored from the same float.
    """
    sql_db.execute("CREATE TABLE k (id numeric PRIMARY KEY, s text)")
    q = sql_db.query("k")
    q.bulk_insert([{"id": 1 / 3, "s": "a"}])
    assert q.find_one({"id": 1 / 3}) is not None
    assert q.bulk_update([{"id": 1 / 3}], [{"s": "B"}]) == 1
    assert q.find_one({"id": 1 / 3}) == {"id": D(repr(1 / 3)), "s": "B"}


def test_a_float_stored_in_a_numeric_column_is_the_same_on_every_write_path(sql_db: SQLConnection) -> None:
    """Cause: update and bulk_update send the float as float8 and cast it (``%s::numeric``: 15 digits,
    0.333333333333333); bulk_insert's COPY writes repr() (0.3333333333333333). README: one rule on every path.
    """
    sql_db.execute("CREATE TABLE k (id int PRIMARY KEY, n numeric)")
    q = sql_db.query("k")
    q.bulk_insert([{"id": 1, "n": 1 / 3}, {"id": 2}, {"id": 3}])
    q.update({"id": 2}, {"n": 1 / 3})
    q.bulk_update([{"id": 3}], [{"n": 1 / 3}])
    assert [r["n"] for r in _rows(q)] == [D(repr(1 / 3))] * 3


# -- NaN in $min / $max: engines disagree --------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["$min", "$max"])
def test_min_max_with_nan_give_the_same_row_on_both_engines(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                            op: str) -> None:
    """Cause: parse_update refuses NaN for $inc/$mul but not for $min/$max; PostgreSQL orders NaN above every
    number, MongoDB below, so ``$max: NaN`` stores NaN on SQL and keeps 1.0 on MongoDB ($min: the reverse).
    README: the same calls give the same rows on both engines. (Refusing NaN, as $inc does, would also do.)
    """
    sql_db.execute("CREATE TABLE c (id int PRIMARY KEY, f float8)")
    got: list[Any] = []
    dbs: tuple[tuple[Any, str], ...] = ((sql_db, "id"), (mongo_db, "_id"))
    for db, key in dbs:
        q = db.query("c")
        q.bulk_insert([{key: 1, "f": 1.0}])
        try:
            q.update({key: 1}, {op: {"f": float("nan")}})
        except FilterError:
            got.append("refused")
            continue
        row = q.find_one({key: 1})
        assert row is not None
        got.append("nan" if row["f"] != row["f"] else row["f"])
    assert got[0] == got[1]


# -- error messages ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_a_value_bulk_update_refuses_is_named_by_its_row(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                         engine: str) -> None:
    """Cause: the fast path checks a column at a time (_adapted: rule.adapt without ``where``), and MongoDB's
    _unencodable gets no documents, so the error says which column but not which row. README: refused "with a
    FilterError naming the row"; updates.columnar's docstring promises the per-row parse "names the row".
    """
    sql_db.execute("CREATE TABLE c (id int PRIMARY KEY, s text, n bigint)")
    db: Any = sql_db if engine == "sql" else mongo_db
    key = "id" if engine == "sql" else "_id"
    q = db.query("c")
    q.bulk_insert([{key: i} for i in range(5)])
    attrs: list[dict[str, Any]] = [{"n": i} for i in range(5)]
    attrs[3] = {"n": 2**64}  # too big for bigint and for BSON
    with pytest.raises(FilterError, match=r"(attrs\[3\]|row 3)"):
        q.bulk_update([{key: i} for i in range(5)], attrs)
    if engine == "sql":
        attrs[3] = {"n": "3"}
        with pytest.raises(FilterError, match=r"(attrs\[3\]|row 3)"):
            q.bulk_update([{key: i} for i in range(5)], attrs)


# -- column kinds misread from format_type -------------------------------------------------------------------------


def test_timestamptz_with_a_precision_stores_the_instant(sql_db: SQLConnection) -> None:
    """Cause: types.category cuts ``timestamp(3) with time zone`` at "(" and reads "timestamp": the column is
    taken as a naive ``timestamp``, aware values are made naive UTC and the server reads them in the session's
    TimeZone. With TimeZone America/Santiago, 12:00 UTC is stored as 15:00 UTC, on every write path.
    """
    dbname = sql_db.settings.params["dbname"]
    sql_db.execute(f"ALTER DATABASE \"{dbname}\" SET timezone TO 'America/Santiago';"
                   "CREATE TABLE k (id int PRIMARY KEY, a timestamptz(3), b timestamptz)")
    moment = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
    with SQLConnection(settings=sql_db.settings) as db:  # a new session takes the database's TimeZone
        q = db.query("k")
        q.bulk_insert([{"id": 1, "a": moment, "b": moment}, {"id": 2}, {"id": 3}])
        q.update({"id": 2}, {"a": moment, "b": moment})
        q.bulk_update([{"id": 3}], [{"a": moment, "b": moment}])
        rows = _rows(q)
    assert [(r["a"], r["b"]) for r in rows] == [(moment, moment)] * 3


def test_an_unbounded_bpchar_column_refuses_an_int_as_text_columns_do(sql_db: SQLConnection) -> None:
    """Cause: format_type says ``bpchar`` for an unbounded character column; types.category does not list it
    as text, so it is "other" and takes anything: 42 is stored as '42'. README: no 42 into a text column.
    """
    sql_db.execute("CREATE TABLE k (id int PRIMARY KEY, c bpchar, t text)")
    q = sql_db.query("k")
    q.bulk_insert([{"id": 1}])
    with pytest.raises(FilterError):
        q.update({"id": 1}, {"t": 42})
    with pytest.raises(FilterError):
        q.update({"id": 1}, {"c": 42})
    with pytest.raises(FilterError):
        q.bulk_update([{"id": 1}], [{"c": 42}])
    assert _rows(q) == [{"id": 1, "c": None, "t": None}]


def test_datetimes_inside_timestamp_arrays_follow_the_datetime_rule(sql_db: SQLConnection) -> None:
    """Cause: ColumnRule.adapt converts datetimes of timestamp/timestamptz columns but not the elements of
    their arrays, so the server applies the session's TimeZone: a naive value in a timestamptz[] is read as
    Santiago time, an aware one in a timestamp[] is converted to Santiago time. README: aware -> UTC, naive = UTC.
    """
    dbname = sql_db.settings.params["dbname"]
    sql_db.execute(f"ALTER DATABASE \"{dbname}\" SET timezone TO 'America/Santiago';"
                   "CREATE TABLE k (id int PRIMARY KEY, tz timestamptz[], naive timestamp[])")
    moment = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
    with SQLConnection(settings=sql_db.settings) as db:
        q = db.query("k")
        q.bulk_insert([{"id": 1}, {"id": 2}])
        q.update({"id": 1}, {"tz": [moment.replace(tzinfo=None)], "naive": [moment]})
        q.bulk_update([{"id": 2}], [{"tz": [moment.replace(tzinfo=None)], "naive": [moment]}])
        rows = _rows(q)
    assert [(r["tz"], r["naive"]) for r in rows] == [([moment], [moment.replace(tzinfo=None)])] * 2


# -- keys: compared as written values, not as filters --------------------------------------------------------------


@pytest.mark.parametrize("key", [2.0, D("2"), 2**64], ids=["float", "decimal", "int-beyond-bigint"])
def test_bulk_update_keys_are_values_of_the_key_columns_kind(sql_db: SQLConnection, key: Any) -> None:
    """Keys follow the write rule (README): a float, a Decimal or an int beyond bigint is a FilterError naming
    the instance, and nothing is written. (``update``'s filter compares numbers as numbers instead.)
    """
    sql_db.execute("CREATE TABLE k (id bigint PRIMARY KEY, n int); INSERT INTO k VALUES (1, 0), (2, 0)")
    q = sql_db.query("k")
    with pytest.raises(FilterError, match=r"instances\[1\]"):
        q.bulk_update([{"id": 1}, {"id": key}], [{"n": 6}, {"n": 6}])
    assert _rows(q) == [{"id": 1, "n": 0}, {"id": 2, "n": 0}]


ROWS = 3000


def _by_key_or_by_name(args: tuple[dict[str, Any], int]) -> int:
    section, writer = args
    import dbp

    keys = list(range(ROWS))
    random.Random(writer).shuffle(keys)
    with dbp.connect({"SQL": section}, engine="sql") as db:
        q = db.query("t")
        if writer % 2:  # by the unique name, whose order is the reverse of the key's
            return sum(q.bulk_update([{"s": f"s{ROWS - k:06d}"} for k in keys], [{"$inc": {"n": 1}} for _ in keys],
                                     filter_fields=["s"]) for _ in range(3))
        return sum(q.bulk_update([{"id": k} for k in keys], [{"$inc": {"n": 1}} for _ in keys]) for _ in range(3))


def test_concurrent_bulk_updates_by_different_fields_neither_deadlock_nor_fail(sql_db: SQLConnection) -> None:
    """Cause: locks are taken in the order of the filter_fields (t.s here, t.id there), so writers by
    different fields lock the same rows in opposite orders and deadlock; the deadlock is not retried (see
    test_bulk_update_is_retried_after_a_deadlock_it_loses) and surfaces as ConcurrencyError. README: concurrent
    bulk_updates on overlapping rows "never deadlock". 4 real processes, 3,000 rows, 3 calls each.
    """
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, s text UNIQUE, n int)")
    sql_db.query("t").bulk_insert([{"id": k, "s": f"s{ROWS - k:06d}", "n": 0} for k in range(ROWS)])
    section = sql_section(sql_db.settings)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        matched = pool.map(_by_key_or_by_name, [(section, w) for w in range(4)], chunksize=1)
    assert matched == [3 * ROWS] * 4
    assert sql_db.query("t").count({"n": 12}) == ROWS
