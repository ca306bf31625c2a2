"""bulk_insert writes through binary COPY and stores what text COPY stored (issue 25, item 1).

The oracle is raw psycopg text COPY of the same tuples into a twin table: every value
dbp stores, every refusal and the row it names must be what text COPY gives, except one
documented difference: a double exactly halfway between two ``real`` values rounds to even
(as IEEE, Python's ``struct`` and dbp's own filters round it), where text COPY rounded its
printed decimal. Values binary COPY cannot write as text COPY would (out of a column's
range, a Decimal, an int in a ``real`` column, numpy's) make the batch go as text.
"""

from __future__ import annotations

import decimal
import enum
import math
import re
import struct
from typing import Any, Optional

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbp import BulkWriteError, FilterError
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

COLUMNS = ("s", "i", "b", "r", "d", "f", "t", "v")
TABLE = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    s smallint, i integer, b bigint, r real, d double precision, f boolean, t text, v varchar(5)
)"""
MODES = ("error", "ignore", "update")


@pytest.fixture
def db(sql_db: SQLConnection) -> SQLConnection:
    for name in ("bin", "bin_text", *(f"bin_{m}" for m in MODES)):
        sql_db.execute(TABLE.format(name=name))
    return sql_db


def as_real(value: float) -> float:
    return float(struct.unpack("!f", struct.pack("!f", value))[0])


def text_copy(db: SQLConnection, table: str, rows: list[dict[str, Any]]) -> Optional[tuple[str, int]]:
    """Raw psycopg text COPY of the rows' tuples; None, or the error's SQLSTATE and line."""
    names = list(rows[0])
    current = 0
    try:
        with psycopg.connect(**dict(db.settings.params)) as conn, conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table),
                                                          sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
            for row in rows:
                current += 1
                copy.write_row(tuple(row[n] for n in names))
    except psycopg.Error as exc:
        if not exc.sqlstate:  # refused by psycopg itself (a NUL in text), at the row it was writing
            return "", current
        line = (exc.diag.context or "").split(", line ")[-1].split(",")[0].split(":")[0]
        return exc.sqlstate, int(line) if line.isdigit() else -1
    return None


def stored(db: SQLConnection, table: str) -> list[dict[str, Any]]:
    """The rows, ``r`` as the exact double of its real (read as text, a real is its shortest decimal)."""
    return db.execute(sql.SQL("SELECT id, s, i, b, r::float8 AS r, d, f, t, v FROM {} ORDER BY id").format(
        sql.Identifier(table))).fetchall()


def same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b)))


EDGE_INTS = [0, 1, -1, 32767, 32768, -32768, -32769, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, 2**63,
             -2**63, -2**63 - 1, 10**400]
EDGE_FLOATS = [0.0, -0.0, 1.5, 1e-45, 1e-46, 5e-324, 1.1754943508222875e-38, 3.4028235e38, 3.4028236e38, 1e39,
               1e308, math.inf, -math.inf, math.nan, 1 + 2**-24, 2**60 + 0.0]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-2**40, 2**40))
floats = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=True, allow_infinity=True))
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=7)
value_of = {
    "s": st.one_of(st.none(), ints), "i": st.one_of(st.none(), ints), "b": st.one_of(st.none(), ints),
    "r": st.one_of(st.none(), floats), "d": st.one_of(st.none(), floats, ints),
    "f": st.one_of(st.none(), st.booleans()), "t": st.one_of(st.none(), texts), "v": st.one_of(st.none(), texts),
}


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=len(COLUMNS), unique=True))
    count = draw(st.integers(1, 12))
    return [{"id": n, **{c: draw(value_of[c]) for c in names}} for n in range(count)]


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
@given(rows=batches())
def test_binary_copy_stores_and_refuses_what_text_copy_does(db: SQLConnection, rows: list[dict[str, Any]]) -> None:
    for table in ("bin", "bin_text"):
        db.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    raw = text_copy(db, "bin_text", rows)
    refused: Optional[Exception] = None
    try:
        db.query("bin").bulk_insert(rows, on_conflict="error")
    except (BulkWriteError, FilterError) as exc:
        refused = exc
    if isinstance(refused, BulkWriteError):
        assert raw is not None, f"dbp refused ({refused}), text COPY stored the rows"
        assert (refused.sqlstate or "", refused.rows) == (raw[0], [raw[1] - 1]), (refused, raw)
    if refused is not None:  # a FilterError: dbp's own type rules, naming the row
        assert "row " in str(refused) and stored(db, "bin") == []
        return
    assert raw is None, f"text COPY refused {raw}, dbp stored the rows"
    for ours, theirs, row in zip(stored(db, "bin"), stored(db, "bin_text"), rows):
        for column in COLUMNS:
            expected = theirs[column]
            if column == "r" and isinstance(row.get("r"), float):
                expected = as_real(row["r"])  # halfway doubles round to even (text COPY rounded the decimal)
            assert same(ours[column], expected), (column, row, ours[column], expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("column", "value", "message"), [
    ("s", 40000, "out of range for type smallint"),
    ("s", -32769, "out of range for type smallint"),
    ("i", 2**31, "out of range for type integer"),
    ("b", 2**63, "out of range for type bigint"),
    ("r", 1e39, "out of range for type real"),
    ("r", 1e-50, "out of range for type real"),
    ("r", -1e-46, "out of range for type real"),
    ("d", 10**400, "row 17: \"1000"),  # the server's message, cut: it quotes the 401 digits
    ("v", "abcdef", "too long for type character varying(5)"),
    ("t", "a\x00b", "0x00"),
])
def test_a_value_the_column_cannot_hold_is_refused_naming_its_row(db: SQLConnection, mode: str, column: str,
                                                                   value: Any, message: str) -> None:
    """Never wrapped (40000 as -25536), made infinite or made 0, as psycopg's binary dumpers would."""
    q = db.query(f"bin_{mode}")
    q.bulk_insert([{"id": 0, column: None}])
    rows = [{"id": n, column: None} for n in range(1, 40)]
    rows[17] = {"id": 18, column: value}
    with pytest.raises(BulkWriteError, match=re.escape(message)) as caught:
        q.bulk_insert(rows, on_conflict=mode)  # type: ignore[arg-type]
    assert caught.value.rows == [17] and "row 17" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.sqlstate in ("22003", "22001", None), caught.value.sqlstate  # None: psycopg's (a NUL)
    assert [r["id"] for r in stored(db, f"bin_{mode}")] == [0]


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


def test_values_binary_copy_cannot_write_as_text_does_go_as_text(db: SQLConnection) -> None:
    """A Decimal, an int in a real column, an int subclass and a str subclass: stored as text COPY stores them."""
    rows = [{"id": 1, "d": decimal.Decimal("0.1"), "r": 16777217, "b": Level.HIGH, "t": Name("x"), "s": 7},
            {"id": 2, "d": 2.5, "r": 0.5, "b": 4, "t": "y", "s": 8}]
    assert db.query("bin").bulk_insert(rows) == 2
    assert text_copy(db, "bin_text", rows) is None
    assert stored(db, "bin") == stored(db, "bin_text")
    assert stored(db, "bin")[0]["r"] == 16777216.0  # the decimal 16777217 rounded once, to even


def test_numpy_values_go_as_text_and_store_the_same(db: SQLConnection) -> None:
    np = pytest.importorskip("numpy")
    rows = [{"id": 1, "r": np.float32(1.25), "d": np.float64(2.5), "i": np.int32(-7), "f": np.bool_(True)}]
    assert db.query("bin").bulk_insert(rows) == 1
    assert stored(db, "bin")[0] | {"s": None} == {"id": 1, "s": None, "i": -7, "b": None, "r": 1.25, "d": 2.5,
                                                  "f": True, "t": None, "v": None}


@pytest.mark.parametrize("mode", MODES)
def test_a_halfway_real_rounds_to_even_and_its_filter_finds_it(db: SQLConnection, mode: str) -> None:
    """Binary COPY is what writes the batch, on the plain COPY and on the merge through a temporary table:
    text COPY would round the halfway double's decimal up, to 1 + 2**-23."""
    halfway = 1 + 2**-24  # between the reals 1.0 and 1 + 2**-23
    q = db.query(f"bin_{mode}")
    q.bulk_insert([{"id": 1, "r": halfway}, {"id": 2, "r": 0.5}], on_conflict=mode)  # type: ignore[arg-type]
    if mode != "error":  # a stored key: the merge path
        q.bulk_insert([{"id": 2, "r": -halfway}, {"id": 3, "r": halfway}], on_conflict=mode)  # type: ignore[arg-type]
    assert [r["r"] for r in stored(db, f"bin_{mode}")] == {
        "error": [1.0, 0.5], "ignore": [1.0, 0.5, 1.0], "update": [1.0, -1.0, 1.0]}[mode]
    assert q.find_one({"r": halfway}) is not None  # filters round to a real the same way


def test_every_mode_stores_the_same_rows_and_update_overwrites_them(db: SQLConnection) -> None:
    rows = [{"id": n, "s": n - 50, "i": n * 1000, "b": n * 2**40, "r": n / 3, "d": n / 7, "f": n % 2 == 0,
             "t": f"row {n}", "v": str(n)[:5]} for n in range(200)]
    for mode in MODES:
        assert db.query(f"bin_{mode}").bulk_insert(rows, on_conflict=mode) == 200  # type: ignore[arg-type]
    assert stored(db, "bin_error") == stored(db, "bin_ignore") == stored(db, "bin_update")
    changed = [{**row, "r": -row["r"], "t": None} for row in rows[::2]]
    assert db.query("bin_update").bulk_insert(changed, on_conflict="update") == 0
    before, after = stored(db, "bin_error"), stored(db, "bin_update")
    assert [r["r"] for r in after[::2]] == [-r["r"] for r in before[::2]]
    assert all(r["t"] is None for r in after[::2]) and after[1::2] == stored(db, "bin_error")[1::2]


def test_after_a_batch_needed_text_the_next_ones_go_as_text_then_binary_again(db: SQLConnection) -> None:
    """A table fed Decimals would pay for a failed binary attempt on every batch: after one, the next 16 batches
    go as text at once (a halfway real shows which: text rounds its decimal up), then binary is tried again."""
    from dbp.sql.bulk import TEXT_BATCHES

    q = db.query("bin")
    halfway = 1 + 2**-24
    q.bulk_insert([{"id": 0, "d": decimal.Decimal("0.5")}])  # needs text
    for n in range(1, TEXT_BATCHES + 2):
        q.bulk_insert([{"id": n, "r": halfway}])
    got = {r["id"]: r["r"] for r in stored(db, "bin")}
    assert [got[n] for n in range(1, TEXT_BATCHES + 1)] == [1 + 2**-23] * TEXT_BATCHES  # as text
    assert got[TEXT_BATCHES + 1] == 1.0  # binary again
    other = db.query("bin_error")  # another table keeps its own count
    other.bulk_insert([{"id": 1, "r": halfway}])
    assert stored(db, "bin_error")[0]["r"] == 1.0
