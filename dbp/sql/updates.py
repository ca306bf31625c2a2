"""The update language (dbp.updates) compiled to ``SET`` clauses with ``psycopg.sql``.

Each column's changes fold into one expression, applied in order to the
column's current value (``array_cat(array_remove(c, %s), %s)`` for a pull
then a push). NULL behaves as a missing field: ``$inc`` on NULL sets the
operand, ``$mul`` sets 0, ``$min``/``$max`` set the operand (``LEAST`` and
``GREATEST`` skip NULLs), ``$push``/``$addToSet`` start an array, ``$pull``
leaves NULL alone.

Operands are columns of a ``VALUES`` (or ``unnest``) source joined to the
UPDATE, one row for ``update`` and one per instance for ``bulk_update``, so an
expression may name an operand or the current value twice without repeating a
placeholder.
Dotted paths reach into jsonb columns, every operator, as MongoDB's reach
into documents: a path part is always a field name (``->`` with a text key, an
object built with ``||``), never an array position, so ``"doc.arr.-1"`` can
neither read nor write an element; writing below an array or a scalar fails,
``$unset`` and ``$pull`` there do nothing. In jsonb, ``$min``/``$max`` follow
MongoDB's order of types (null, numbers, strings, objects, arrays, booleans;
strings by code point). A jsonb expression names the value it changes once
(:func:`_bind`), so changes folded into one column grow the SQL linearly. Array
and numeric operators check the column's type first, so ``$inc`` on a text
column is a FilterError before anything runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

from psycopg import sql
from psycopg.types.json import Jsonb

from dbp.errors import FilterError
from dbp.sql.types import ColumnRule, dumps, json_double
from dbp.updates import Change, unique

if TYPE_CHECKING:
    from dbp.sql.build import SQLBuilder

__all__ = ["compile_changes", "operand_getter", "operand_value", "refusal", "shape"]

#: operand(change, value, sql_type) -> the SQL that stands for the value.
Operand = Callable[[Change, Any, str], sql.Composable]

_NUMERIC = ("int", "number")
_ORDERED = ("int", "number", "text", "bool", "datetime", "datetimetz", "date", "uuid", "other")
#: $min/$max operands that jsonb holds as the type MongoDB orders them by (a datetime would be a string).
_JSON_ORDERED = (bool, int, float, str)


def _refuse(q: SQLBuilder, change: Change, why: str) -> FilterError:
    column = q.columns[change.field]
    return FilterError(f"${_spelling(change.op)} on {q.name}.{change.path}: {why} ({change.field} is {column.type})")


def _spelling(op: str) -> str:
    return {"add_to_set": "addToSet"}.get(op, op)


def _element_rule(q: SQLBuilder, change: Change) -> ColumnRule:
    column = q.columns[change.field]
    return ColumnRule(q.name, change.field, column.type[:-2])


def operand_value(q: SQLBuilder, change: Change) -> tuple[Any, str]:
    """The parameter for ``change`` and its SQL type; FilterError if the column cannot take it."""
    rule = q.rules[change.field]
    kind = rule.category
    op = change.op
    if change.subpath:
        if kind != "json":
            raise _refuse(q, change, "dotted paths reach only into jsonb columns")
        if op in ("inc", "mul"):
            if isinstance(change.value, float) and not math.isfinite(change.value):
                raise _refuse(q, change, f"jsonb cannot hold {change.value!r}")
            return change.value, "double precision" if isinstance(change.value, float) else "numeric"
        return _json_operand(q, change)
    if op == "set":
        return rule.adapt(change.value, where=f"{q.name}: "), rule.cast
    if op in ("inc", "mul"):
        if kind not in _NUMERIC:
            raise _refuse(q, change, "it needs a numeric column")
        return rule.adapt(change.value, where=f"${_spelling(op)}: "), rule.cast
    if op in ("min", "max"):
        if kind == "json":
            return _json_operand(q, change)
        if kind not in _ORDERED:
            raise _refuse(q, change, "it needs a column of ordered values")
        return rule.adapt(change.value, where=f"${_spelling(op)}: "), rule.cast
    if op in ("push", "add_to_set"):
        if kind == "array":
            items = list(change.value)
            if any(isinstance(item, (list, tuple)) for item in items):  # PostgreSQL would reshape the array
                raise _refuse(q, change, "an array column cannot hold a nested list")
            return rule.adapt(unique(items) if op == "add_to_set" else items, where=f"${_spelling(op)}: "), rule.cast
        if kind == "json":
            return _json_operand(q, change)
        raise _refuse(q, change, "it needs an array or jsonb column")
    if op == "pull":
        if kind == "array":
            if isinstance(change.value, dict):
                raise _refuse(q, change, "a document condition needs a jsonb array of objects")
            element = _element_rule(q, change)
            return element.adapt(change.value, where="$pull: "), element.cast
        if kind == "json":
            return _json_operand(q, change)
        raise _refuse(q, change, "it needs an array or jsonb column")
    return None, ""  # unset


def _json_operand(q: SQLBuilder, change: Change) -> tuple[Any, str]:
    """The jsonb parameter of a change to a jsonb value (a column or a path in one)."""
    op, value = change.op, change.value
    if op in ("push", "add_to_set"):
        items = list(value)
        return Jsonb(unique(items) if op == "add_to_set" else items, dumps=dumps), "jsonb"
    if op in ("min", "max") and not isinstance(value, _JSON_ORDERED):
        raise _refuse(q, change, "in jsonb, $min and $max take a number, a string or a bool "
                                 f"(not {type(value).__name__})")
    return Jsonb(value, dumps=dumps), "jsonb"


def operand_getter(q: SQLBuilder, change: Change) -> Callable[[Change], Any]:
    """A fast ``operand_value(q, c)[0]`` for changes ``c`` of the same operator and path as ``change``."""
    if not change.subpath and change.op in ("set", "inc", "mul", "min", "max") and (
            change.op == "set" or q.rules[change.field].category != "json"):
        operand_value(q, change)  # the column takes this operator
        adapt = q.rules[change.field].adapt
        return lambda c: adapt(c.value)
    return lambda c: operand_value(q, c)[0]


def shape(changes: Sequence[Change]) -> tuple[Any, ...]:
    """What the SET text depends on besides the operands' values (for grouping bulk_update rows)."""
    return tuple((c.op, c.path, _value_shape(c)) for c in changes)


def _value_shape(change: Change) -> Any:
    if change.op == "pull" and isinstance(change.value, dict):
        return tuple((k, v is None) for k, v in change.value.items())  # each key's test is in the SQL text
    if change.subpath or change.op == "pull":
        return type(change.value).__name__
    return None


def compile_changes(q: SQLBuilder, changes: Sequence[Change], operand: Operand,
                    ref: Callable[[str], sql.Composable]) -> sql.Composable:
    """``col = expr, ...`` for ``changes``; ``ref(column)`` is how the statement names the current value."""
    by_column: dict[str, list[Change]] = {}
    for change in changes:
        q._column(change.field)
        by_column.setdefault(change.field, []).append(change)
    sets = []
    for column, items in by_column.items():
        expr: sql.Composable = ref(column)
        for n, change in enumerate(items):
            expr = _apply(q, change, expr, operand, bare=n == 0)
        sets.append(sql.SQL("{} = {}").format(q._q(column), expr))
    return sql.SQL(", ").join(sets)


def _apply(q: SQLBuilder, change: Change, current: sql.Composable, operand: Operand, *, bare: bool
           ) -> sql.Composable:
    """``current`` after ``change``; ``bare``: ``current`` is the column itself, not an earlier change's result."""
    value, type_name = operand_value(q, change)
    op = change.op
    kind = q.rules[change.field].category
    if change.subpath:
        if op == "unset" or (op == "set" and isinstance(value, Jsonb) and value.obj is None):
            return _bind(current, lambda cur: _unset(change, cur), bare)
        arg = operand(change, value, type_name)
        return _bind(current, lambda cur: _apply_path(change, cur, arg, value), bare)
    if op == "unset":
        return sql.SQL("NULL")
    arg = operand(change, value, type_name)
    column_type = sql.SQL(q.rules[change.field].cast)
    if op == "set":
        return arg
    if op == "inc":
        return sql.SQL("(COALESCE({}, 0) + {})").format(current, arg)
    if op == "mul":
        return sql.SQL("(COALESCE({}, 0) * {})").format(current, arg)
    if op in ("min", "max"):
        if kind == "json":
            return _bind(current, lambda cur: _json_order(op, cur, arg), bare)
        collate = sql.SQL(' COLLATE "C"') if kind == "text" and q._collate else sql.SQL("")
        ordered = sql.SQL("{}({}{}, {}{})").format(sql.SQL("LEAST" if op == "min" else "GREATEST"),
                                                  current, collate, arg, collate)
        if kind == "number":  # MongoDB orders NaN below every number, PostgreSQL above (the operand is no NaN)
            return sql.SQL("(CASE WHEN {} = 'NaN' THEN {} ELSE {} END)").format(
                current, current if op == "min" else arg, ordered)
        return ordered
    if kind == "array":
        if op == "push":
            return sql.SQL("array_cat({}, {})").format(current, arg)
        if op == "add_to_set":  # the column is read in h, where no name of the query can shadow it
            return sql.SQL(
                "array_cat(COALESCE({cur}, '{{}}'::{t}), ARRAY(SELECT u.e FROM (SELECT COALESCE({cur}, '{{}}'::{t}) "
                "OFFSET 0) AS h(have), unnest({arg}) WITH ORDINALITY AS u(e, o) WHERE NOT EXISTS (SELECT 1 FROM "
                "unnest(h.have) AS x(y) WHERE x.y IS NOT DISTINCT FROM u.e) ORDER BY u.o))"
            ).format(cur=current, arg=arg, t=column_type)
        return sql.SQL("array_remove({}, {})").format(current, arg)
    return _bind(current, lambda cur: _json_array(change, cur, arg), bare)  # a jsonb array


def _bind(current: sql.Composable, build: Callable[[sql.Composable], sql.Composable], bare: bool) -> sql.Composable:
    """``build(value)``, where ``value`` names ``current`` once, in a subquery, unless ``current`` is ``bare``.

    However many changes fold into one column, the SQL grows linearly (each
    expression refers to its value several times). ``OFFSET 0`` keeps the planner
    from pasting ``current`` back into every reference. A bare column is named as
    it is (a subquery per row costs time); expressions read it only where no name
    of their own (``u.e``, ``x.y``) can shadow it.
    """
    if bare:
        return build(current)
    return sql.SQL("(SELECT {} FROM (SELECT {} OFFSET 0) AS _dbp_b(c))").format(build(sql.SQL("_dbp_b.c")), current)


def _json_array(change: Change, cur: sql.Composable, arg: sql.Composable) -> sql.Composable:
    """``cur`` (a jsonb array, or NULL for a missing one) after a push, add_to_set or pull of ``arg``.

    Anything else there fails, as on MongoDB. A pull from a missing array leaves it missing.
    """
    op = change.op
    if op == "push":
        grown = sql.SQL("(COALESCE({}, '[]'::jsonb) || {})").format(cur, arg)
    elif op == "add_to_set":  # cur is read in h, where no name of the query can shadow it
        grown = sql.SQL(
            "(COALESCE({cur}, '[]'::jsonb) || COALESCE((SELECT jsonb_agg(u.e ORDER BY u.o) FROM (SELECT "
            "ARRAY(SELECT jsonb_array_elements(COALESCE({cur}, '[]'::jsonb))) OFFSET 0) AS h(have), "
            "jsonb_array_elements({arg}) WITH ORDINALITY AS u(e, o) WHERE u.e <> ALL (h.have)), '[]'::jsonb))"
        ).format(cur=cur, arg=arg)
    else:
        match = _condition(change.value, arg) if isinstance(change.value, dict) else sql.SQL("u.e = {}").format(arg)
        grown = sql.SQL(  # IS NOT TRUE: an element the condition cannot decide on (a field it lacks) stays
            "(SELECT COALESCE(jsonb_agg(u.e ORDER BY u.o), '[]'::jsonb) FROM jsonb_array_elements({}) "
            "WITH ORDINALITY AS u(e, o) WHERE ({}) IS NOT TRUE)").format(cur, match)
    missing = sql.SQL("NULL") if op == "pull" else grown
    return sql.SQL("(CASE WHEN {0} IS NULL THEN {1} WHEN jsonb_typeof({0}) = 'array' THEN {2} ELSE {3} END)").format(
        cur, missing, grown, _fail(f"${_spelling(op)} needs an array at {change.path}", cur))


def _condition(condition: dict[str, Any], arg: sql.Composable) -> sql.Composable:
    """An array element ``u.e`` matching ``$pull``'s document condition, as a MongoDB query would.

    A field equals the value, or is an array holding it; a None matches a null or
    missing field, or an array holding a null. Elements other than objects never match.
    """
    tests = []
    for key, value in condition.items():
        name = _key(key)
        if value is None:
            tests.append(sql.SQL("(u.e -> {0} IS NULL OR u.e -> {0} = 'null'::jsonb OR (jsonb_typeof(u.e -> {0}) "
                                 "= 'array' AND u.e -> {0} @> '[null]'::jsonb))").format(name))
        else:
            tests.append(sql.SQL(
                "(u.e -> {0} = {1} -> {0} OR (jsonb_typeof(u.e -> {0}) = 'array' "
                "AND u.e -> {0} @> jsonb_build_array({1} -> {0})))").format(name, arg))
    return sql.SQL("(jsonb_typeof(u.e) = 'object' AND {})").format(sql.SQL(" AND ").join(tests))


#: MongoDB's order of the types jsonb holds (null < numbers < strings < objects < arrays < booleans).
_RANK = sql.SQL("(CASE jsonb_typeof({}) WHEN 'null' THEN 0 WHEN 'number' THEN 1 WHEN 'string' THEN 2 "
                "WHEN 'object' THEN 3 WHEN 'array' THEN 4 ELSE 5 END)")


def _json_order(op: str, cur: sql.Composable, arg: sql.Composable) -> sql.Composable:
    """``cur`` after ``$min``/``$max`` of the scalar ``arg``, both jsonb, in MongoDB's order; a NULL takes ``arg``."""
    low, high = (arg, cur) if op == "min" else (cur, arg)
    below = sql.SQL(
        "({rl} < {rh} OR ({rl} = {rh} AND CASE WHEN jsonb_typeof({l}) = 'string' "
        "THEN ({l} #>> '{{}}') COLLATE \"C\" < ({h} #>> '{{}}') COLLATE \"C\" ELSE {l} < {h} END))"
    ).format(rl=_RANK.format(low), rh=_RANK.format(high), l=low, h=high)
    return sql.SQL("(CASE WHEN {0} IS NULL OR {1} THEN {2} ELSE {0} END)").format(cur, below, arg)


def _fail(message: str, value: sql.Composable, detail: Optional[sql.Composable] = None) -> sql.Composable:
    """An expression that raises, naming ``message`` (then ``detail``, a text expression), when a row reaches it.

    ``CASE`` sends only bad rows; it depends on the row's ``value``, so that the
    planner cannot fold it ahead of time.
    """
    text: sql.Composable = _literal(f"dbp: {message}")
    if detail is not None:
        text = sql.SQL("({} || {})").format(text, detail)
    return sql.SQL("(CAST((CASE WHEN {} IS NULL THEN NULL ELSE {} END) AS integer)::text::jsonb)").format(value, text)


#: How the server words a failure of :func:`_fail`.
_FAILED = re.compile(r'invalid input syntax for type integer: "dbp: (.*)"', re.DOTALL)


def refusal(message: str) -> str:
    """A server error's message; for a refusal of :func:`_fail`, the refusal alone."""
    found = _FAILED.fullmatch(message)
    return found.group(1) if found else message


def _get(cur: sql.Composable, parts: Sequence[str]) -> sql.Composable:
    """The jsonb value at ``parts`` below ``cur``, by field names only: NULL below an array or a scalar."""
    for part in parts:
        cur = sql.SQL("({} -> {})").format(cur, _key(part))
    return cur


def _unset(change: Change, cur: sql.Composable) -> sql.Composable:
    """``cur`` without the field at the change's path; unchanged where the path is no chain of objects."""
    parts = change.subpath
    parent = _get(cur, parts[:-1])
    removed = sql.SQL("({} - {})").format(parent, _key(parts[-1]))
    return sql.SQL("(CASE WHEN jsonb_typeof({}) = 'object' THEN {} ELSE {} END)").format(
        parent, _nest(change, cur, parts[:-1], removed), cur)


def _apply_path(change: Change, cur: sql.Composable, arg: sql.Composable, value: Any) -> sql.Composable:
    parts = change.subpath
    op = change.op
    at = _get(cur, parts)
    if op == "pull":  # nothing there: nothing to pull from, and no object is created
        return sql.SQL("(CASE WHEN {} IS NULL THEN {} ELSE {} END)").format(
            at, cur, _nest(change, cur, parts, _json_array(change, at, arg)))
    if op == "set":
        new: sql.Composable = arg
    elif op in ("inc", "mul"):
        sign = sql.SQL("+" if op == "inc" else "*")
        text = sql.SQL("({} #>> '{{}}')").format(at)
        as_double = json_double(sql.SQL("COALESCE({}::double precision, 0) {} {}::double precision").format(
            text, sign, arg))
        if isinstance(value, float):  # a double operand: double arithmetic, as MongoDB's
            arithmetic: sql.Composable = as_double
        else:  # integers stay exact; a double stored there makes it double arithmetic
            arithmetic = sql.SQL(
                "(CASE WHEN {0} IS NULL OR {0} ~ '^-?[0-9]+$' "
                "THEN to_jsonb(COALESCE({0}::numeric, 0) {1} {2}::numeric) ELSE {3} END)"
            ).format(text, sign, arg, as_double)
        new = sql.SQL("(CASE WHEN {0} IS NULL OR jsonb_typeof({0}) = 'number' THEN {1} ELSE {2} END)").format(
            at, arithmetic, _fail(f"${op} needs a number at {change.path}", at))
    elif op in ("push", "add_to_set"):
        new = _json_array(change, at, arg)
    else:  # min, max
        new = _json_order(op, at, arg)
    return _nest(change, cur, parts, new)


def _literal(text: str) -> sql.SQL:
    """A quoted string literal for a statement that also takes %s parameters (a % in it is doubled)."""
    return sql.SQL(sql.quote(text).replace("%", "%%"))


def _key(part: str) -> sql.Composable:
    """A field name as text: ``jsonb -> text`` reads a field, never an array position (``-> integer`` would)."""
    return sql.SQL("{}::text").format(_literal(part))


def _nest(change: Change, base: sql.Composable, parts: Sequence[str], new: sql.Composable,
          depth: int = 0) -> sql.Composable:
    """``base`` with ``new`` at ``parts``, creating the objects on the way (as MongoDB's $set does).

    Each object is extended with ``||``, which takes no path: a field is never an
    array position. An array, a scalar or a null on the way fails, as on MongoDB.
    """
    if not parts:
        return new
    head = _key(parts[0])
    child = _nest(change, sql.SQL("({} -> {})").format(base, head), parts[1:], new, depth + 1)
    where = ".".join([change.field, *change.subpath[:depth]])
    refuse = _fail(f"${_spelling(change.op)} on {change.path}: {where} is a jsonb ", base,
                   sql.SQL("jsonb_typeof({}) || ', not an object'").format(base))
    return sql.SQL("(CASE WHEN {0} IS NULL OR jsonb_typeof({0}) = 'object' THEN COALESCE({0}, '{{}}'::jsonb) || "
                   "jsonb_build_object({1}, {2}) ELSE {3} END)").format(base, head, child, refuse)
