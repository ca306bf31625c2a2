"""``bulk_insert`` on PostgreSQL: COPY, and one ordered merge when keys exist.

- The fast path is a plain COPY of the caller's rows. With ``ignore`` or
  ``update`` it may wait for a concurrent writer's row lock for at most
  ``FAST_LOCK_WAIT``; a duplicate key, or that wait, sends the batch to the
  merge path instead. A table whose last merged batch met stored keys goes
  straight to the merge (a COPY that fails on the first stored key costs a
  whole batch's encoding); one whose last batch was all new tries COPY again.
- The merge path collapses duplicates within the batch (the first row wins
  with ``ignore``; with ``update`` each field's last value wins), grouping keys
  as the server does (a GROUP BY, bulk_update's, unless they are ints or text
  of a deterministic collation; aware datetimes by their instant), COPYs
  the rows into a temporary table and writes them with one
  ``INSERT ... SELECT ... ORDER BY key ON CONFLICT DO NOTHING``: every writer takes its row
  locks in key order, so concurrent merges cannot deadlock one another.
- ``update`` overwrites only the fields each row carries (narrowed further by
  ``update_fields``): it locks the existing rows in key order, sets each row's
  fields (``UPDATE ... FROM``), inserts the others, and updates those another
  writer inserted meanwhile. (No ``RETURNING xmax`` to tell inserts from updates:
  a partitioned table refuses it.)
- COPY is binary where every column's type allows it (``_BINARY``), checked first
  where psycopg's binary dumpers would not refuse what text COPY refuses; a batch
  it cannot write as text COPY would goes as text (``_NeedsText``).
- The key is the primary key, or ``key=``: a unique key of the table, or, on a
  table with none, any columns; then no ``ON CONFLICT`` can see another writer's
  new rows, and the merge locks the table against writers (``_merge``).
- Deadlocks and serialization failures (from other kinds of writers) are retried
  a few times; what still fails raises :class:`dbp.ConcurrencyError`.
"""

from __future__ import annotations

import itertools
import operator
import random
import re
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from dbp._values import Converter, convert_row, plan
from dbp.errors import BulkWriteError, ConcurrencyError, DbpError, FilterError
from dbp.query import ConflictMode, collapse, key_identity, refuse_null_keys

if TYPE_CHECKING:
    from dbp.sql.query import SQLQuery
    from dbp.sql.types import ColumnRule

__all__ = ["bulk_insert", "retrying"]

T = TypeVar("T")

#: How long the fast path waits for another writer's row before merging instead.
FAST_LOCK_WAIT = "200ms"
#: Attempts at a batch that meets a deadlock or serialization failure.
ATTEMPTS = 5
UNIQUE_VIOLATION = "23505"
#: A row that carries only some fields: fine for an existing row, which the merge path updates.
NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"
CHECK_VIOLATION = "23514"
#: Batches of a table written as text at once after one needed text (a Decimal, numpy values), before
#: binary COPY is tried again.
TEXT_BATCHES = 16
LOCK_NOT_AVAILABLE = "55P03"
#: Failures that another attempt can cure.
TRANSIENT = frozenset({"40P01", "40001"})
_COPY_LINE = re.compile(r"COPY [^,]+, line (\d+)")
_FK_DETAIL = re.compile(r"Key \((.*)\)=\((.*)\) is not present", re.DOTALL)
_counter = itertools.count()

def bulk_insert(q: SQLQuery, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode,
                update_fields: Optional[Sequence[str]], key: Optional[list[str]] = None) -> int:
    """Insert ``rows`` into ``q``'s table; the number of rows inserted.

    ``key``: bulk_insert's ``key=``, already checked against the table (SQLQuery._check_conflict_key).
    """
    key, locked = _conflict(q, on_conflict, key, rows)
    fields = None if update_fields is None else {q._column(f).name for f in update_fields}
    hint = ("dbp.bulk.met_stored_keys", q.name)

    def attempt(binary: bool) -> int:
        with q.db.transaction() as conn:
            if on_conflict == "error":
                _copy_rows(q, conn, q._ident, rows, binary=binary)
                return len(rows)
            if not locked and not q.db.statement_cache.get(hint) and _fast_path(q, conn, rows, binary):
                return len(rows)
            inserted, merged = _merge(q, conn, rows, on_conflict, key, fields, locked=locked, binary=binary)
            q.db.statement_cache[hint] = inserted < merged  # stored keys met: the next batch merges at once
            return inserted

    failure: Optional[BulkWriteError] = None
    as_text = ("dbp.bulk.as_text", q.name)
    try:
        left = q.db.statement_cache.get(as_text) or 0
        if left:  # the table's last batches needed text: this one goes as text at once
            q.db.statement_cache[as_text] = left - 1
        try:
            return retrying(q.name, "bulk_insert into", lambda: attempt(not left))
        except _NeedsText:  # rolled back: again as text, where the server judges each value as before
            q.db.statement_cache[as_text] = TEXT_BATCHES
            return retrying(q.name, "bulk_insert into", lambda: attempt(False))
    except psycopg.Error as exc:
        failure = _bulk_error(q, exc, _foreign_key_row(q, exc, rows))
    except BulkWriteError as exc:
        if exc.sqlstate not in (NOT_NULL_VIOLATION, CHECK_VIOLATION) or exc.rows:
            raise
        failure = exc
    if not failure.rows:  # from the merge's INSERT ... SELECT, which names no line: find the row
        failing = None
        if failure.sqlstate == NOT_NULL_VIOLATION:
            failing = _new_row_without(q, failure.column, rows, key)
        elif failure.sqlstate == CHECK_VIOLATION:
            failing = _checked_row(q, rows)
        if failing is not None:
            sqlstate = failure.sqlstate
            failure = BulkWriteError(failure.message.replace(f"bulk_insert into {q.name}: ",
                                                             f"bulk_insert into {q.name}: row {failing}: ", 1),
                                     [failing])
            failure.sqlstate = sqlstate
    raise failure


def _conflict(q: SQLQuery, on_conflict: str, key: Optional[list[str]], rows: Sequence[Mapping[str, Any]]
              ) -> tuple[list[str], bool]:
    """The columns rows conflict on, and whether no unique index covers them (the merge then locks the table).

    Without ``key=``: the primary key; without one, the table's one unique key (with several, ``ignore``
    skips a conflict on any of them, and ``update`` needs ``key=``); with none, ``ignore`` and ``update``
    are refused: nothing says which rows are the same. A key other than the primary key must have a
    value in every row (NULLs never conflict).
    """
    if on_conflict == "error":
        return [], False
    if key is not None:  # checked: a unique key of the table, or any columns of a table with none
        return key, not q.table.unique_keys()
    primary = q._key()
    if primary:
        return primary, False
    unique = list(dict.fromkeys(q.table.unique_keys()))
    partly = q.table.partly_unique()
    if not unique and partly:
        if on_conflict == "ignore":
            return [], False  # ON CONFLICT DO NOTHING: skipped where a partial or expression unique index says so
        raise FilterError(
            f"bulk_insert(on_conflict='update') on {q.name}: its only unique index {partly[0].name} "
            f"({partly[0].definition}) covers part of the table or an expression, so nothing says which stored "
            "row a new one updates; use on_conflict='ignore' or 'error', or update by filter")
    if not unique:
        raise FilterError(
            f"bulk_insert(on_conflict={on_conflict!r}) on {q.name}: the table has no primary key or unique "
            "constraint, so nothing says which rows are the same; pass key=[...] (the columns that identify a "
            "row) or on_conflict='error' (append every row)")
    if len(unique) > 1:
        if on_conflict == "ignore":
            return [], False  # ON CONFLICT DO NOTHING: a row that conflicts on any unique key is skipped
        raise FilterError(
            f"bulk_insert(on_conflict='update') on {q.name}: the table has no primary key and several unique "
            f"keys ({'; '.join(', '.join(u) for u in unique)}); pass key=[...] naming the one rows conflict on")
    refuse_null_keys(rows, unique[0])
    return list(unique[0]), False


def _drop_not_null(q: SQLQuery, conn: psycopg.Connection[Any], temp: sql.Identifier) -> None:
    """Drop, on a temporary copy of ``q``'s table, the NOT NULL of every column that has one."""
    required = [c for c, column in q.columns.items() if column.not_null]
    if required:
        conn.execute(sql.SQL("ALTER TABLE {} {}").format(temp, sql.SQL(", ").join(
            sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(sql.Identifier(c)) for c in required)))


def _checked_row(q: SQLQuery, rows: Sequence[Mapping[str, Any]]) -> Optional[int]:
    """The first row the table's CHECK constraints refuse on its own (a CHECK error of the merge's statement).

    The rows are COPYed, as text, into a temporary copy of the table with its
    CHECK constraints and no NOT NULL, then rolled back. A row that carries only
    some fields is checked with NULL for the others, so a constraint that the
    merge failed on a stored row's other values names no row.
    """
    try:
        with q.db.transaction() as conn, conn.transaction(force_rollback=True):
            temp = sql.Identifier(f"_dbp_check_{next(_counter)}")
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING CONSTRAINTS) ON COMMIT DROP").format(
                temp, q._ident))
            _drop_not_null(q, conn, temp)
            _copy_rows(q, conn, temp, rows)
    except BulkWriteError as exc:
        if exc.sqlstate == CHECK_VIOLATION and exc.rows:
            return exc.rows[0]
    except (psycopg.Error, DbpError):  # only to name the row: if this fails too (or the server is gone), none
        pass
    return None


def _new_row_without(q: SQLQuery, column: Optional[str], rows: Sequence[Mapping[str, Any]], key: list[str]
                     ) -> Optional[int]:
    """The first row that lacks ``column`` and whose key is not in the table (a NOT NULL error's row)."""
    if not column or not key:
        return None
    candidates = [i for i, row in enumerate(rows) if row.get(column) is None and all(k in row for k in key)]
    if not candidates:
        return None
    try:  # only to name the row in the error: if this fails too, the error names none
        arrays = [[q.rules[k].adapt(rows[i][k]) for i in candidates] for k in key]
        found = q.db.execute_raw(sql.SQL("SELECT {} FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
            sql.SQL(", ").join(map(sql.Identifier, key)), q._ident, sql.SQL(", ").join(map(sql.Identifier, key)),
            sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(q.rules[k].cast)) for k in key)),
            arrays).fetchall()
    except (psycopg.Error, FilterError, TypeError, ValueError):
        return None
    existing = {tuple(r[k] for k in key) for r in found}
    for i, values in zip(candidates, zip(*arrays)):
        if tuple(values) not in existing:
            return i
    return None


def retrying(name: str, what: str, attempt: Callable[[], T]) -> T:
    """``attempt()``, again after a deadlock or serialization failure; ConcurrencyError when they persist.

    ``attempt`` must run in a transaction of its own (a savepoint, if the
    caller's transaction is open), so that a failed attempt leaves nothing.
    """
    failure: BaseException
    for number in range(ATTEMPTS):
        try:
            return attempt()
        except BulkWriteError as exc:
            if exc.sqlstate not in TRANSIENT:
                raise
            failure = exc
        except psycopg.Error as exc:
            if exc.sqlstate not in TRANSIENT:
                raise
            failure = exc
        if number + 1 < ATTEMPTS:
            time.sleep(random.uniform(0.01, 0.05) * 2**number)
    raise ConcurrencyError(
        f"{what} {name}: {_reason(failure)} in each of {ATTEMPTS} attempts; nothing was written, "
        "and the call can be retried"
    ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        return exc.diag.message_primary or type(exc).__name__
    return str(exc)


def _fast_path(q: SQLQuery, conn: psycopg.Connection[Any], rows: Sequence[Mapping[str, Any]], binary: bool
               ) -> bool:
    """A plain COPY, waiting briefly for other writers' locks; False if the batch needs the merge."""
    try:
        with conn.transaction():
            found = conn.execute(
                "SELECT old, set_config('lock_timeout', CASE WHEN old = '0' THEN %s ELSE old END, true) "
                "FROM (SELECT current_setting('lock_timeout') AS old) AS s", (FAST_LOCK_WAIT,)).fetchone()
            old = found["old"] if found else "0"
            _copy_rows(q, conn, q._ident, rows, binary=binary)
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (old,))
        return True
    except BulkWriteError as exc:
        if exc.sqlstate in (UNIQUE_VIOLATION, NOT_NULL_VIOLATION, LOCK_NOT_AVAILABLE) or exc.sqlstate in TRANSIENT:
            return False
        raise


def _copy_rows(q: SQLQuery, conn: psycopg.Connection[Any], target: sql.Composable,
               rows: Sequence[Mapping[str, Any]], indexes: Optional[Sequence[int]] = None,
               tags: Optional[dict[frozenset[str], int]] = None, origin: Optional[list[int]] = None,
               binary: bool = False) -> None:
    """COPY ``rows`` (those at ``indexes``), one COPY per set of field names; errors name the caller's row.

    One pass: the first row's names give an ``itemgetter``, and a row of the
    same length that it reads has the same names (in any order); the others
    are COPYed afterwards, the same way. Each row's value types are checked
    against the columns once per distinct combination of types, so the check
    costs little more than building the tuple. ``tags`` adds each row's
    ``_dbp_group`` (by its set of names); ``origin`` maps ``rows`` to the caller's.
    ``binary``: in COPY's binary format where every column's type allows it (``_binary_types``).
    """
    pending: Sequence[int] = range(len(rows)) if indexes is None else indexes
    while pending:
        first = pending[0]
        row = rows[first]
        if not isinstance(row, Mapping):
            raise FilterError(f"bulk_insert: row {_caller(first, origin)} is a {type(row).__name__}, not a dict")
        names = tuple(row)
        unknown = [k for k in names if k not in q.columns]
        if unknown or not names:
            shown = ", ".join(repr(k)[:60] for k in unknown[:5])
            raise FilterError(f"bulk_insert: row {_caller(first, origin)} " + (
                f"has unknown column(s) {shown}; {q.name}'s columns are {', '.join(q.columns)}" if unknown
                else "is empty"))
        tag = None if tags is None else tags[frozenset(names)]
        pending = _copy(q, conn, target, names, rows, pending, tag, origin, binary)


def _copy(q: SQLQuery, conn: psycopg.Connection[Any], target: sql.Composable, names: tuple[str, ...],
          rows: Sequence[Mapping[str, Any]], indexes: Sequence[int], tag: Optional[int],
          origin: Optional[list[int]], binary: bool) -> list[int]:
    """COPY the rows at ``indexes`` that have exactly ``names``; the indexes of the others."""
    rules = [q.rules[n] for n in names]
    convert = [i for i, rule in enumerate(rules) if rule.per_value]
    width = len(names)
    get = operator.itemgetter(*names) if width > 1 else lambda row, name=names[0]: (row[name],)
    columns = [*names, "_dbp_group"] if tag is not None else list(names)
    types = _binary_types(rules, tag is not None) if binary else None
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL("") if types is None else sql.SQL(" (FORMAT BINARY)"))
    seen: dict[tuple[type, ...], tuple[Optional[tuple[Optional[Converter], ...]], Optional[Guard]]] = {}
    others: list[int] = []
    current = -1
    last: tuple[type, ...] = ()  # the previous row's value types: most rows repeat them
    steps: Optional[tuple[Optional[Converter], ...]] = None
    guard: Optional[Guard] = None
    plain_row = tag is None and not convert
    kind_of, tuple_, map_, len_ = type, tuple, map, len  # locals: the loop runs once per row
    if types is not None and not _types_hold(conn, target, columns, types):
        types = None  # the table changed since dbp read it: text COPY, where the server reads each value
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    try:
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            if types is not None:
                copy.set_types(types)
            write = copy.write_row
            for current in indexes:
                row = rows[current]
                try:
                    values: Any = get(row)
                except (KeyError, TypeError):
                    others.append(current)
                    continue
                if len_(row) != width:
                    others.append(current)
                    continue
                kinds = tuple_(map_(kind_of, values))
                if kinds != last:
                    try:
                        steps, guard = seen[kinds]
                    except KeyError:
                        where = f"bulk_insert: row {_caller(current, origin)}: "
                        steps = _check_kinds(rules, kinds, values, where)
                        guard = None if types is None else _binary_guard(types, kinds, steps)
                        seen[kinds] = steps, guard
                    last = kinds
                if guard is not None:
                    guard(values)
                if plain_row and steps is None:
                    write(values)
                    continue
                if steps is not None:  # numpy or pandas values: made plain once
                    values = convert_row(values, steps)
                    for rule, value in zip(rules, values):
                        if not rule.accepts(type(value)):
                            raise rule.refuse(value, f"bulk_insert: row {_caller(current, origin)}: ")
                if convert:
                    values = list(values)
                    try:
                        for i in convert:
                            values[i] = rules[i].adapt(values[i])
                    except FilterError as exc:
                        raise FilterError(f"bulk_insert: row {_caller(current, origin)}: {exc.message}") from None
                if tag is not None:
                    values = (*values, tag)
                write(values)
            current = -1  # from here on the server reports the line
    except psycopg.Error as exc:
        if types is not None and exc.sqlstate in AS_TEXT:
            raise _NeedsText from None  # as text, psycopg names the cause (a NUL) or the format fits
        match = _COPY_LINE.search(exc.diag.context or "")
        if match:
            skipped = set(others)
            written = [i for i in indexes if i not in skipped]
            if 0 < int(match.group(1)) <= len(written):
                current = written[int(match.group(1)) - 1]
        failing = [_caller(current, origin)] if current >= 0 else [
            _caller(i, origin) for i in _foreign_key_row(q, exc, rows, indexes)][:1]
        raise _bulk_error(q, exc, failing) from None
    except (TypeError, ValueError, OverflowError, struct.error) as exc:  # a value psycopg cannot dump
        if isinstance(exc, FilterError):
            raise
        if types is not None:
            raise _NeedsText from None  # out of range for the binary form, or not dumpable: text names the row
        raise FilterError(f"bulk_insert: row {_caller(current, origin)}: {type(exc).__name__}: "
                          f"{str(exc)[:200]}") from None
    return others


class _NeedsText(Exception):
    """A batch the binary COPY cannot write as the text COPY would: rolled back, and written as text."""


#: Checks a row's values before binary COPY writes them; raises what ``_copy`` turns into :class:`_NeedsText`.
Guard = Callable[[Sequence[Any]], None]
#: A binary COPY the server could not read as the column's type, and a NUL in text (which psycopg's text
#: COPY refuses in a message of its own, naming the row).
AS_TEXT = frozenset({"22P03", "22021"})
#: Column types binary COPY writes as text COPY would: psycopg's type name, and the value types it takes so.
#: (No date, time, numeric, json or array: their Python values need the text path's conversions.) An int in
#: a ``real`` column goes as text: through a double it could round twice.
_BINARY: dict[str, tuple[str, frozenset[type]]] = {
    "bigint": ("int8", frozenset({int})),
    "integer": ("int4", frozenset({int})),
    "smallint": ("int2", frozenset({int})),
    "double precision": ("float8", frozenset({float, int})),
    "real": ("float4", frozenset({float})),
    "boolean": ("bool", frozenset({bool})),
    "text": ("text", frozenset({str})),
    "character varying": ("varchar", frozenset({str})),
}
_TAKES = {name: kinds for name, kinds in _BINARY.values()}
#: struct codes that refuse what these columns cannot hold: psycopg's binary int2/int4 dumpers wrap
#: (40000 becomes -25536) and its float4 dumper makes 1e39 infinite, where text COPY is refused.
_RANGE = {"int2": "h", "int4": "i"}
_NONE = type(None)


def _binary_types(rules: list[ColumnRule], tagged: bool) -> Optional[list[str]]:
    """The psycopg type names of the columns, if binary COPY can write every one; else None."""
    found = [_BINARY.get(rule.cast, ("", frozenset()))[0] for rule in rules]
    if not all(found):
        return None
    return [*found, "int4"] if tagged else found


def _types_hold(conn: psycopg.Connection[Any], target: sql.Composable, columns: list[str], types: list[str]
                ) -> bool:
    """Whether ``target``'s columns have the types binary COPY would send, as the server sees them now.

    Binary COPY sends each value in its column's binary form, which the server
    reads by the column's type as it is when the COPY runs: after another
    session's ``ALTER TABLE ... TYPE``, an int8 sent to a now ``double precision``
    column would be stored as 2.5e-323. The columns' types are read from the
    server's description of a query that returns no row; the query takes the
    table's ACCESS SHARE lock, which holds off any ALTER until the transaction ends.
    """
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} WHERE false").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), target))
        found = [column.type_code for column in cur.description or ()]
    expected = [conn.adapters.types[name].oid for name in types]
    return found == expected


def _getter(positions: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    if len(positions) != 1:
        return operator.itemgetter(*positions)
    at = positions[0]

    def one(values: Sequence[Any]) -> tuple[Any, ...]:
        return (values[at],)
    return one


def _binary_guard(types: list[str], kinds: tuple[type, ...], steps: Optional[tuple[Optional[Converter], ...]]
                  ) -> Optional[Guard]:
    """What rows of these value types need checked before binary COPY writes them (None: nothing);
    :class:`_NeedsText` if a value type goes only as text (numpy's, Decimal, an int in a ``real`` column)."""
    if steps is not None:
        raise _NeedsText
    ints: list[int] = []
    reals: list[int] = []
    for at, (name, kind) in enumerate(zip(types, kinds)):
        if kind is _NONE:
            continue
        if kind not in _TAKES[name]:
            raise _NeedsText
        if name in _RANGE:
            ints.append(at)
        elif name == "float4":
            reals.append(at)
    if not ints and not reals:
        return None
    get_ints, get_reals = _getter(ints or [0]), _getter(reals or [0])  # (an unused getter when empty)
    pack_ints = struct.Struct("!" + "".join(_RANGE[types[at]] for at in ints)).pack
    as_reals = struct.Struct(f"!{len(reals)}f")

    def guard(values: Sequence[Any]) -> None:
        if ints:
            pack_ints(*get_ints(values))  # struct.error: out of the column's range
        if reals:
            found = get_reals(values)
            stored = as_reals.unpack(as_reals.pack(*found))  # OverflowError: beyond a real's range
            if stored.count(0.0) != found.count(0.0):
                raise OverflowError("a value too small for a real")  # text COPY refuses it: not made 0
    return guard


def _check_kinds(rules: list[ColumnRule], kinds: tuple[type, ...], values: Sequence[Any], where: str
                 ) -> Optional[tuple[Optional[Converter], ...]]:
    """Check a row's value types against the columns; the conversions its numpy/pandas values need."""
    steps = plan(kinds)
    if steps is not None:
        return steps  # checked on the converted values, row by row
    for rule, kind, value in zip(rules, kinds, values):
        if not rule.accepts(kind):
            raise rule.refuse(value, where)
    return None


def _caller(index: int, origin: Optional[list[int]]) -> int:
    return index if origin is None or index < 0 else origin[index]


def _merge(q: SQLQuery, conn: psycopg.Connection[Any], rows: Sequence[Mapping[str, Any]], on_conflict: str,
           key: list[str], fields: Optional[set[str]], *, locked: bool = False, binary: bool = False
           ) -> tuple[int, int]:
    """Write the batch through a temporary table: existing rows updated (or left), new rows inserted.

    Returns the rows inserted and the rows of the batch once collapsed by key.

    Rows are locked and inserted in key order. The temporary table has the
    target's defaults but none of its NOT NULL constraints, so that a row which
    carries only some fields may update an existing row; a new row still meets
    the target's constraints when it is inserted. ``locked``: no unique index
    covers ``key``, so no ``ON CONFLICT`` can find the rows another writer adds
    meanwhile; the table is locked against other writers instead (below).
    """
    rules = [q.rules[k] for k in key]

    def normalize(value: tuple[Any, ...]) -> tuple[Any, ...]:  # equal for PostgreSQL: equal here
        try:
            return tuple(rule.adapt(v) for rule, v in zip(rules, value))
        except FilterError:
            return value

    if _distinct_exact_keys(q, rows, key):  # nothing to collapse: the common case, checked in one pass
        merged: Sequence[Mapping[str, Any]] = rows
        origin: Optional[list[int]] = None
    else:
        merged, origin = collapse(rows, key, last_wins=on_conflict == "update",
                                  normalize=_server_keys(q, rows, key, normalize))
    shapes = list(dict.fromkeys(map(frozenset, dict.fromkeys(map(tuple, merged)))))  # names in any order
    temp = sql.Identifier(f"_dbp_bulk_{next(_counter)}")
    union = [c for c in q.columns if any(c in names for names in shapes)]
    sets = {names: [c for c in union if c in names and c not in key and (fields is None or c in fields)]
            for names in shapes}
    tags = {names: n for n, names in enumerate(shapes)} if len({tuple(s) for s in sets.values()}) > 1 else None
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS{}) ON COMMIT DROP").format(
        temp, q._ident, sql.SQL(", _dbp_group integer") if tags else sql.SQL("")))
    partial = [c for c in union if any(c not in names for names in shapes)]  # some rows lack them
    if partial:  # LIKE copies no identity: a row lacking one takes the next value of the table's own sequence
        with conn.cursor(row_factory=tuple_row) as cur:
            identities = cur.execute(
                "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attidentity <> '' "
                "AND a.attname = ANY(%s)", (q._ident.as_string(conn), partial)).fetchall()
        for (name,) in identities:
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval(pg_get_serial_sequence({}, {}))"
                                 ).format(temp, sql.Identifier(name), sql.Literal(q._ident.as_string(conn)),
                                          sql.Literal(name)))
    _drop_not_null(q, conn, temp)
    _copy_rows(q, conn, temp, merged, tags=tags, origin=origin, binary=binary)
    names_sql = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in union)
    columns_sql = sql.SQL(", ").join(map(sql.Identifier, union))
    if not key:
        return conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} AS s ON CONFLICT DO NOTHING").format(
            q._ident, columns_sql, names_sql, temp)).rowcount, len(merged)
    match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key)
    order = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in key)
    if locked:
        # No unique index covers the key, so two writers could each find a key missing and both insert it.
        # SHARE ROW EXCLUSIVE conflicts with itself and with every writer's ROW EXCLUSIVE (dbp's or anyone's
        # INSERT, UPDATE, DELETE, COPY), never with readers: the check and the insert below see every row that
        # can exist. Advisory locks would guard only against writers that take the same ones, and one per key
        # would exhaust the lock table for a large batch. Taken after the COPY into the temporary table, so
        # the table is held only while the batch is checked and written; on a partitioned table it locks
        # every partition.
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(q._ident))

    def update_existing() -> int:
        """Lock the rows the batch names (in key order) and set the fields each row carries; how many exist."""
        found = 0
        if not locked:  # (a locked table has no other writer)
            found = conn.execute(sql.SQL(
                "SELECT 1 FROM {} AS t JOIN {} AS s ON {} ORDER BY {} FOR UPDATE OF t").format(
                    q._ident, temp, match, order)).rowcount
        for names, columns in sets.items():
            if columns:
                only = sql.SQL(" AND s._dbp_group = {}").format(sql.Literal(tags[names])) if tags else sql.SQL("")
                conn.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}{}").format(
                    q._ident, sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in columns),
                    temp, match, only))
        return found

    existing = update_existing() if on_conflict == "update" else 0
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} AS s WHERE NOT EXISTS (SELECT 1 FROM {} AS t WHERE {}) "
                     "ORDER BY {}").format(q._ident, columns_sql, names_sql, temp, q._ident, match, order)
    if locked:
        return conn.execute(insert).rowcount, len(merged)
    # ON CONFLICT: a key another writer inserted since this statement's snapshot (waiting for it to commit).
    # On a partitioned table the target is a unique index holding the partition key, as PostgreSQL requires
    # of every unique index there; DO NOTHING, then the update below, because RETURNING xmax (which told an
    # insert from an update) is refused there.
    target = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, key))) \
        if on_conflict == "update" else sql.SQL("")
    inserted = conn.execute(sql.SQL("{} ON CONFLICT{} DO NOTHING").format(insert, target)).rowcount
    if on_conflict == "update" and existing + inserted < len(merged):
        update_existing()  # keys other writers inserted meanwhile: committed now, and this snapshot sees them
    return inserted, len(merged)


#: Key value types whose Python equality is the server's on an exact key column (``SQLQuery._exact_keys``).
_PLAIN_KEYS = frozenset({int, str})


def _distinct_exact_keys(q: SQLQuery, rows: Sequence[Mapping[str, Any]], key: list[str]) -> bool:
    """Whether every row carries ``key`` as ints and strs, on exact key columns, and no two rows share it:
    then ``collapse`` would keep every row as it is. (A str in an int column, or an int in a text one, is
    still refused by the COPY's checks.)"""
    if not key or not q._exact_keys(key):
        return False
    get = operator.itemgetter(*key)
    try:
        values = list(map(get, rows))
    except (KeyError, TypeError, IndexError):
        return False
    kinds = set(map(type, itertools.chain.from_iterable(values) if len(key) > 1 else values))
    return kinds <= _PLAIN_KEYS and len(set(values)) == len(values)


#: Key values as one form for values that find one row.
Normalize = Callable[[tuple[Any, ...]], tuple[Any, ...]]


def _server_keys(q: SQLQuery, rows: Sequence[Mapping[str, Any]], key: list[str], normalize: Normalize) -> Normalize:
    """``normalize``, and keys the server takes as one (char(n) padding, citext, a nondeterministic collation)
    made one: a GROUP BY on the server (bulk_update's), unless the keys are ints or deterministic text."""
    if len(rows) < 2 or not key or q._exact_keys(key):
        return normalize
    firsts: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        try:
            value = normalize(tuple(row[k] for k in key))
            if None not in value:  # NULL keys are never equal
                firsts.setdefault(key_identity(value), value)
        except (KeyError, TypeError):
            continue
    values = list(firsts.values())
    same = q._same_keys(key, values)
    if same == list(range(len(values))):
        return normalize
    first = {ident: values[at] for ident, at in zip(firsts, same)}  # each key: the first the server takes as it

    def grouped(value: tuple[Any, ...]) -> tuple[Any, ...]:
        value = normalize(value)
        return first.get(key_identity(value), value)

    return grouped


def _foreign_key_row(q: SQLQuery, exc: psycopg.Error, rows: Sequence[Mapping[str, Any]],
                     indexes: Optional[Sequence[int]] = None) -> list[int]:
    """The first row whose foreign key the server refused (checked after the COPY, so it names no line)."""
    if exc.sqlstate != FOREIGN_KEY_VIOLATION:
        return []
    constraint = q.table.constraints.get(exc.diag.constraint_name or "")
    match = _FK_DETAIL.search(exc.diag.message_detail or "")
    if constraint is None or match is None or constraint.kind != "f":
        return []
    wanted = match.group(2)
    columns = constraint.columns
    for i in range(len(rows)) if indexes is None else indexes:
        if ", ".join(str(rows[i].get(c)) for c in columns) == wanted:
            return [i]
    return []


def _bulk_error(q: SQLQuery, exc: psycopg.Error, failing: list[int]) -> BulkWriteError:
    where = f"row {failing[0]}: " if failing else ""
    cause = _one_line(exc.diag.message_primary or str(exc).splitlines()[0])
    detail = f" ({_one_line(exc.diag.message_detail[:200])})" if exc.diag.message_detail else ""
    error = BulkWriteError(f"bulk_insert into {q.name}: {where}{cause[:300]}{detail}; nothing was written", failing)
    error.sqlstate = exc.sqlstate
    error.column = exc.diag.column_name
    return error


def _one_line(text: str) -> str:
    """The server's text with its line breaks shown as ``\\n`` (it quotes the row's values, newlines too)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")
