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
Dotted paths reach into jsonb columns (``$set``, ``$unset``, ``$inc``,
``$mul``, ``$push``); array and numeric operators check the column's type
first, so ``$inc`` on a text column is a FilterError before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from dbp.errors import FilterError
from dbp.sql.types import ColumnRule, dumps, json_double
from dbp.updates import Change, unique

if TYPE_CHECKING:
    from dbp.sql.build import SQLBuilder

__all__ = ["compile_changes", "operand_getter", "operand_value", "shape"]

#: operand(change, value, sql_type) -> the SQL that stands for the value.
Operand = Callable[[Change, Any, str], sql.Composable]

_NUMERIC = ("int", "number")
_ORDERED = ("int", "number", "text", "bool", "datetime", "datetimetz", "date", "uuid", "other")
_PATH_OPS = ("set", "unset", "inc", "mul", "push")


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
        if op not in _PATH_OPS:
            raise _refuse(q, change, "on a jsonb path dbp supports $set, $unset, $inc, $mul and $push")
        if op in ("inc", "mul"):
            if isinstance(change.value, float) and not math.isfinite(change.value):
                raise _refuse(q, change, f"jsonb cannot hold {change.value!r}")
            return change.value, "double precision" if isinstance(change.value, float) else "numeric"
        if op == "push":
            return Jsonb(list(change.value), dumps=dumps), "jsonb"
        return Jsonb(change.value, dumps=dumps), "jsonb"
    if op == "set":
        return rule.adapt(change.value, where=f"{q.name}: "), rule.cast
    if op in ("inc", "mul"):
        if kind not in _NUMERIC:
            raise _refuse(q, change, "it needs a numeric column")
        return rule.adapt(change.value, where=f"${_spelling(op)}: "), rule.cast
    if op in ("min", "max"):
        if kind not in _ORDERED:
            raise _refuse(q, change, "it needs a column of ordered values")
        return rule.adapt(change.value, where=f"${_spelling(op)}: "), rule.cast
    if op in ("push", "add_to_set"):
        items = list(change.value)
        if op == "add_to_set":
            items = unique(items)
        if kind == "array":
            return rule.adapt(items, where=f"${_spelling(op)}: "), rule.cast
        if kind == "json":
            return Jsonb(items, dumps=dumps), "jsonb"
        raise _refuse(q, change, "it needs an array or jsonb column")
    if op == "pull":
        if kind == "array":
            if isinstance(change.value, dict):
                raise _refuse(q, change, "a document condition needs a jsonb array of objects")
            element = _element_rule(q, change)
            return element.adapt(change.value, where="$pull: "), element.cast
        if kind == "json":
            return Jsonb(change.value, dumps=dumps), "jsonb"
        raise _refuse(q, change, "it needs an array or jsonb column")
    return None, ""  # unset


def operand_getter(q: SQLBuilder, change: Change) -> Callable[[Change], Any]:
    """A fast ``operand_value(q, c)[0]`` for changes ``c`` of the same operator and path as ``change``."""
    if not change.subpath and change.op in ("set", "inc", "mul", "min", "max"):
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
        for change in items:
            expr = _apply(q, change, expr, operand)
        sets.append(sql.SQL("{} = {}").format(q._q(column), expr))
    return sql.SQL(", ").join(sets)


def _apply(q: SQLBuilder, change: Change, current: sql.Composable, operand: Operand) -> sql.Composable:
    value, type_name = operand_value(q, change)
    op = change.op
    kind = q.rules[change.field].category
    if change.subpath:
        unset = op == "unset" or (op == "set" and isinstance(value, Jsonb) and value.obj is None)
        return _apply_path(change, current, sql.SQL("NULL") if unset else operand(change, value, type_name), value)
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
        collate = sql.SQL(' COLLATE "C"') if kind == "text" and q._collate else sql.SQL("")
        return sql.SQL("{}({}{}, {}{})").format(sql.SQL("LEAST" if op == "min" else "GREATEST"),
                                               current, collate, arg, collate)
    if kind == "array":
        if op == "push":
            return sql.SQL("array_cat({}, {})").format(current, arg)
        if op == "add_to_set":
            return sql.SQL(
                "array_cat(COALESCE({cur}, '{{}}'::{t}), ARRAY(SELECT u.e FROM unnest({arg}) WITH ORDINALITY "
                "AS u(e, o) WHERE NOT EXISTS (SELECT 1 FROM unnest(COALESCE({cur}, '{{}}'::{t})) AS x(y) "
                "WHERE x.y IS NOT DISTINCT FROM u.e) ORDER BY u.o))").format(cur=current, arg=arg, t=column_type)
        return sql.SQL("array_remove({}, {})").format(current, arg)
    # a jsonb array
    if op == "push":
        return sql.SQL("(CASE WHEN {0} IS NULL OR jsonb_typeof({0}) = 'array' THEN COALESCE({0}, '[]'::jsonb) || {1} "
                       "ELSE {2} END)").format(current, arg, _fail(f"$push needs an array at {change.path}", current))
    if op == "add_to_set":
        return sql.SQL(
            "(COALESCE({cur}, '[]'::jsonb) || COALESCE((SELECT jsonb_agg(u.e ORDER BY u.o) FROM "
            "jsonb_array_elements({arg}) WITH ORDINALITY AS u(e, o) WHERE NOT EXISTS (SELECT 1 FROM "
            "jsonb_array_elements(COALESCE({cur}, '[]'::jsonb)) AS x(y) WHERE x.y = u.e)), '[]'::jsonb))"
        ).format(cur=current, arg=arg)
    match = _condition(change.value, arg) if isinstance(change.value, dict) else sql.SQL("u.e = {}").format(arg)
    return sql.SQL(
        "(CASE WHEN {cur} IS NULL THEN NULL ELSE (SELECT COALESCE(jsonb_agg(u.e ORDER BY u.o), '[]'::jsonb) "
        "FROM jsonb_array_elements({cur}) WITH ORDINALITY AS u(e, o) WHERE NOT {match}) END)"
    ).format(cur=current, match=match)


def _condition(condition: dict[str, Any], arg: sql.Composable) -> sql.Composable:
    """An array element ``u.e`` matching ``$pull``'s document condition, as a MongoDB query would.

    A field equals the value, or is an array holding it; a None matches a null or
    missing field.
    """
    tests = []
    for key, value in condition.items():
        name = _literal(key)
        if value is None:
            tests.append(sql.SQL("(u.e -> {0} IS NULL OR u.e -> {0} = 'null'::jsonb)").format(name))
        else:
            tests.append(sql.SQL(
                "(u.e -> {0} = {1} -> {0} OR (jsonb_typeof(u.e -> {0}) = 'array' "
                "AND u.e -> {0} @> jsonb_build_array({1} -> {0})))").format(name, arg))
    return sql.SQL("(jsonb_typeof(u.e) = 'object' AND {})").format(sql.SQL(" AND ").join(tests))


def _fail(message: str, value: sql.Composable) -> sql.Composable:
    """An expression that raises, naming ``message``, when a row reaches it (``CASE`` sends only bad rows).

    It depends on the row's ``value``, so that the planner cannot fold it ahead of time.
    """
    return sql.SQL("(CAST((CASE WHEN {} IS NULL THEN NULL ELSE {} END) AS integer)::text::jsonb)").format(
        value, _literal(f"dbp: {message}"))


def _apply_path(change: Change, current: sql.Composable, arg: sql.Composable, value: Any) -> sql.Composable:
    parts = change.subpath
    path = sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(_literal(p) for p in parts))
    op = change.op
    if op == "unset" or (op == "set" and isinstance(value, Jsonb) and value.obj is None):
        return sql.SQL("({} #- {})").format(current, path)
    at = sql.SQL("({} #> {})").format(current, path)
    if op == "set":
        new: sql.Composable = arg
    elif op in ("inc", "mul"):
        sign = sql.SQL("+" if op == "inc" else "*")
        as_double = json_double(sql.SQL("COALESCE(({} #>> {})::double precision, 0) {} {}::double precision").format(
            current, path, sign, arg))
        if isinstance(value, float):  # a double operand: double arithmetic, as MongoDB's
            arithmetic: sql.Composable = as_double
        else:  # integers stay exact; a double stored there makes it double arithmetic
            arithmetic = sql.SQL(
                "(CASE WHEN ({0} #>> {1}) IS NULL OR ({0} #>> {1}) ~ '^-?[0-9]+$' "
                "THEN to_jsonb(COALESCE(({0} #>> {1})::numeric, 0) {2} {3}::numeric) ELSE {4} END)"
            ).format(current, path, sign, arg, as_double)
        new = sql.SQL("(CASE WHEN {0} IS NULL OR jsonb_typeof({0}) = 'number' THEN {1} ELSE {2} END)").format(
            at, arithmetic, _fail(f"${op} needs a number at {change.path}", at))
    else:  # push
        new = sql.SQL("(CASE WHEN {0} IS NULL OR jsonb_typeof({0}) = 'array' THEN COALESCE({0}, '[]'::jsonb) || {1} "
                      "ELSE {2} END)").format(at, arg, _fail(f"$push needs an array at {change.path}", at))
    return _nest(current, list(parts), new)


def _literal(text: str) -> sql.SQL:
    """A quoted string literal for a statement that also takes %s parameters (a % in it is doubled)."""
    return sql.SQL(sql.quote(text).replace("%", "%%"))


def _nest(base: sql.Composable, parts: list[str], new: sql.Composable) -> sql.Composable:
    """``base`` with ``new`` at ``parts``, creating the objects on the way (as MongoDB's $set does)."""
    head = _literal(parts[0])
    obj = sql.SQL("COALESCE({}, '{{}}'::jsonb)").format(base)
    if len(parts) == 1:
        return sql.SQL("jsonb_set({}, ARRAY[{}]::text[], {})").format(obj, head, new)
    child = sql.SQL("({} -> {})").format(base, head)
    return sql.SQL("jsonb_set({}, ARRAY[{}]::text[], {})").format(obj, head, _nest(child, parts[1:], new))
