"""The filter operators beyond plain comparisons, compiled for PostgreSQL.

- ``$regex`` on text columns: ``col ~ %s`` with the pattern dbp.regex translated
  (case-insensitivity is spelled out as ``[aA]``, so ``~`` serves ``"i"`` too);
- ``$all``, ``$size``, ``$elemMatch`` on array columns: ``@>``, ``cardinality``,
  ``EXISTS (SELECT 1 FROM unnest(col) ...)``;
- anything on a jsonb column or a dotted path into one, with MongoDB's meaning:
  ``jsonb_path_query(col, '$."a"."b"')`` (lax mode) reaches the values a MongoDB
  path reaches, through arrays of documents; a comparison matches if one of them,
  or an element of one that is an array, satisfies it. Ordering operators are
  type-bracketed as in MongoDB (numbers with numbers, strings with strings by
  code point, booleans with booleans). "Null" on a path means "no non-null value
  is reached".

Paths and values are parameters; what the statement text depends on (the
operator, the kind of value, the nesting) goes into ``shape``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from psycopg import sql
from psycopg.types.json import Jsonb

from dbp.errors import FilterError
from dbp.filters import And, Cmp, ElemMatch, Node
from dbp.sql.types import ColumnRule, integral

if TYPE_CHECKING:
    from dbp.sql.build import SQLBuilder

__all__ = ["Scope", "compare", "elem_match", "handles"]

_ORDER = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_EQ_OPS = ("eq", "ne", "in", "nin", "exists")


@dataclass(frozen=True)
class Scope:
    """Inside ``$elemMatch`` on jsonb: fields are paths into ``base`` (an element); aliases numbered ``depth``."""

    base: sql.Composable
    depth: int


def _split(q: SQLBuilder, field: str) -> tuple[str, list[str]]:
    """The column and the path inside it; a dotted path only reaches into jsonb."""
    if field in q.columns or "." not in field:
        q._column(field)
        return field, []
    name, _, rest = field.partition(".")
    column = q._column(name)
    if q.rules[name].category != "json":
        raise FilterError(f"{q.name}.{name} is {column.type}; a dotted path ({field!r}) reaches only into jsonb")
    return name, rest.split(".")


def handles(q: SQLBuilder, node: Cmp, scope: Optional[Scope]) -> bool:
    """Whether ``node`` is compiled here rather than by the plain comparison."""
    if scope is not None or node.op in ("regex", "all", "size"):
        return True
    name, path = _split(q, node.field)
    if q.rules[name].category != "json":
        return isinstance(node.value, Mapping)
    return bool(path) or not (node.op in ("eq", "ne", "exists") and (node.value is None or node.op == "exists"))


def _jsonpath(path: list[str]) -> str:
    return "$" + "".join("." + json.dumps(part, ensure_ascii=False) for part in path)


def _json_value(value: Any, where: str) -> Any:
    """``value`` as JSON; FilterError for what JSON cannot hold."""
    if isinstance(value, Mapping):
        return {k: _json_value(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, where) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise FilterError(f"{where} is jsonb; {type(value).__name__} {value!r:.40} cannot be compared inside it")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "document"


def compare(q: SQLBuilder, node: Cmp, params: list[Any], shape: list[Any], build: bool,
            scope: Optional[Scope]) -> Optional[sql.Composable]:
    if scope is not None:
        path = node.field.split(".") if node.field else []
        return _json(q, scope.base, path, node, params, shape, build, scope.depth, f"{q.name} element")
    name, path = _split(q, node.field)
    rule = q.rules[name]
    if rule.category == "json":
        shape.append(name)
        return _json(q, q._q(name), path, node, params, shape, build, 0, rule.label)
    if isinstance(node.value, Mapping):
        raise FilterError(f"{rule.label} is {rule.type}; a document value needs a jsonb column")
    if node.op == "regex":
        if rule.category != "text":
            hint = "; use $elemMatch for array elements" if rule.category == "array" else ""
            raise FilterError(f"{rule.label} is {rule.type}; $regex needs a text or jsonb column{hint}")
        params.append(node.value.postgres)
        shape.append((name, "regex"))
        return sql.Composed([q._q(name), sql.SQL(" ~ %s")]) if build else None
    if rule.category != "array":
        raise FilterError(f"{rule.label} is {rule.type}; ${node.op} needs an array or jsonb column")
    if node.op == "size":
        params.append(node.value)
        shape.append((name, "size"))
        return sql.Composed([sql.SQL("cardinality("), q._q(name), sql.SQL(") = %s")]) if build else None
    element = _element_rule(q, name)
    values = [element.adapt(v, write=False, where=f"{name}.$all: ") for v in node.value]
    array_type = rule.cast
    if element.category == "int":  # 2.0 is 2; an array of integers holds no 2.5
        kept = integral(values)
        values = kept if len(kept) == len(values) else []
    elif element.category == "number":
        values = [float(v) for v in values]
    possible = bool(values)
    if possible:
        params.append(values)
    shape.append((name, "all", possible))
    if not build:
        return None
    if not possible:
        return sql.SQL("FALSE")
    return sql.Composed([q._q(name), sql.SQL(" @> %s::"), sql.SQL(array_type)])


def _element_rule(q: SQLBuilder, name: str) -> ColumnRule:
    rule = q.rules[name]
    return ColumnRule(q.name, name, rule.type[:-2])


def elem_match(q: SQLBuilder, node: ElemMatch, params: list[Any], shape: list[Any], build: bool,
               scope: Optional[Scope]) -> Optional[sql.Composable]:
    depth = scope.depth + 1 if scope is not None else 1
    if scope is None:
        name, path = _split(q, node.field)
        rule = q.rules[name]
        if rule.category == "array":
            if not node.scalar:
                raise FilterError(f"{rule.label} is {rule.type}; $elemMatch on its elements takes operators, "
                                  "e.g. {'$gt': 1}")
            return _array_elements(q, name, node.item, params, shape, build, depth)
        if rule.category != "json":
            raise FilterError(f"{rule.label} is {rule.type}; $elemMatch needs an array or jsonb column")
        base: sql.Composable = q._q(name)
        shape.append(name)
    else:
        base, path = scope.base, node.field.split(".")
    params.append(_jsonpath(path))
    shape.append(("elemMatch", node.scalar, depth))
    element = sql.Identifier(f"dbp_e{depth}", "x")
    inner = Scope(element, depth)
    if node.scalar:
        items = node.item.items if isinstance(node.item, And) else (node.item,)
        parts = [_predicate(i, params, shape, build, f"{q.name}.{node.field} element")
                 for i in items if isinstance(i, Cmp)]
        condition: Optional[sql.Composable] = sql.SQL(" AND ").join(
            p.format(x=element) for p in parts if p is not None) if build else None
    else:
        condition = q._compile(node.item, params, shape, build=build, scope=inner)
        if build and condition is not None:
            condition = sql.Composed([sql.SQL("jsonb_typeof("), element, sql.SQL(") = 'object' AND "), condition])
    if not build or condition is None:
        return None
    reached = sql.Identifier(f"dbp_r{depth}")
    return sql.Composed([
        sql.SQL("EXISTS (SELECT 1 FROM jsonb_path_query("), base, sql.SQL(", %s::jsonpath) AS "), reached,
        sql.SQL("(v), jsonb_array_elements(CASE WHEN jsonb_typeof("), reached, sql.SQL(".v) = 'array' THEN "),
        reached, sql.SQL(".v ELSE '[]'::jsonb END) AS "), sql.Identifier(f"dbp_e{depth}"), sql.SQL("(x) WHERE "),
        condition, sql.SQL(")"),
    ])


def _array_elements(q: SQLBuilder, name: str, item: Node, params: list[Any], shape: list[Any], build: bool,
                    depth: int) -> Optional[sql.Composable]:
    """``EXISTS (SELECT 1 FROM unnest(col) AS e(v) WHERE ...)``: the element operators on an array column."""
    rule = _element_rule(q, name)
    element = sql.Identifier(f"dbp_e{depth}", "v")
    ordered: sql.Composable = sql.Composed([element, sql.SQL(' COLLATE "C"')]) \
        if rule.category == "text" and q._collate else element
    parts: list[sql.Composable] = []
    for cmp in (item.items if isinstance(item, And) else (item,)):
        assert isinstance(cmp, Cmp)
        op = cmp.op
        shape.append(("element", name, op, depth))
        if op == "regex":
            if rule.category != "text":
                raise FilterError(f"{q.rules[name].label} is {q.rules[name].type}; $regex needs text elements")
            params.append(cmp.value.postgres)
            parts.append(sql.Composed([element, sql.SQL(" ~ %s")]))
        elif op in ("in", "nin"):
            values = [rule.adapt(v, write=False, where=f"{name}.$elemMatch: ") for v in cmp.value]
            array_type = rule.cast
            if rule.category == "int":
                values, array_type = integral(values), "bigint"
            elif rule.category == "number":
                values, array_type = [float(v) for v in values], "double precision"
            params.append(values)
            shape.append(array_type)
            test = sql.Composed([element, sql.SQL(" = ANY(%s::"), sql.SQL(array_type), sql.SQL("[])")])
            parts.append(test if op == "in" else sql.Composed([sql.SQL("(("), test, sql.SQL(") IS NOT TRUE)")]))
        else:
            params.append(rule.adapt(cmp.value, write=False, where=f"{name}.$elemMatch: "))
            if op == "ne":
                parts.append(sql.Composed([element, sql.SQL(" IS DISTINCT FROM %s")]))
            else:
                ref = element if op == "eq" else ordered
                parts.append(sql.Composed([ref, sql.SQL(f" {_ORDER.get(op, '=')} %s")]))
    if not build:
        return None
    return sql.Composed([sql.SQL("EXISTS (SELECT 1 FROM unnest("), q._q(name), sql.SQL(") AS "),
                         sql.Identifier(f"dbp_e{depth}"), sql.SQL("(v) WHERE "), sql.SQL(" AND ").join(parts),
                         sql.SQL(")")])


def _reached(base: sql.Composable, depth: int, predicate: sql.SQL, *, elements: bool) -> sql.Composable:
    """Some value reached by the path parameter (and, with ``elements``, an element of one) satisfies it."""
    reached = sql.Identifier(f"dbp_r{depth}")
    source: list[sql.Composable] = [sql.SQL("EXISTS (SELECT 1 FROM jsonb_path_query("), base,
                                    sql.SQL(", %s::jsonpath) AS "), reached, sql.SQL("(v)")]
    if elements:
        source += [sql.SQL(", LATERAL (SELECT "), reached, sql.SQL(".v UNION ALL SELECT jsonb_array_elements("
                   "CASE WHEN jsonb_typeof("), reached, sql.SQL(".v) = 'array' THEN "), reached,
                   sql.SQL(".v ELSE '[]'::jsonb END)) AS "), sql.Identifier(f"dbp_c{depth}"), sql.SQL("(v)")]
        reached = sql.Identifier(f"dbp_c{depth}")
    return sql.Composed([*source, sql.SQL(" WHERE "), predicate.format(x=sql.Composed([reached, sql.SQL(".v")])),
                         sql.SQL(")")])


def _predicate(node: Cmp, params: list[Any], shape: list[Any], build: bool, where: str) -> Optional[sql.SQL]:
    """``node``'s test on one jsonb value ``{x}`` (no path, no array expansion), with MongoDB's type brackets."""
    op, value = node.op, node.value
    if op == "regex":
        params.append(value.postgres)
        shape.append(("x", "regex"))
        text = "jsonb_typeof({x}) = 'string' AND ({x} #>> '{{}}') ~ %s"
    elif op in ("in", "nin"):
        present = [Jsonb(_json_value(v, where)) for v in value if v is not None]
        if None in value:
            raise FilterError(f"{where}: None is not supported on array elements")
        params.append(present)
        shape.append(("x", op))
        text = "{x} = ANY(%s::jsonb[])" if op == "in" else "NOT ({x} = ANY(%s::jsonb[]))"
    elif op in ("eq", "ne"):
        params.append(Jsonb(_json_value(value, where)))
        shape.append(("x", op))
        text = "{x} = %s::jsonb" if op == "eq" else "{x} <> %s::jsonb"
    else:
        kind = _kind(value)
        if kind == "document":
            raise FilterError(f"{where}: ${op} compares numbers, strings or booleans, not {type(value).__name__}")
        shape.append(("x", op, kind))
        if kind == "string":
            params.append(value)
            text = "jsonb_typeof({x}) = 'string' AND ({x} #>> '{{}}') COLLATE \"C\" " + _ORDER[op] + " %s"
        else:
            params.append(Jsonb(_json_value(value, where)))
            text = "jsonb_typeof({x}) = '" + kind + "' AND {x} " + _ORDER[op] + " %s::jsonb"
    return sql.SQL(text) if build else None


def _json(q: SQLBuilder, base: sql.Composable, path: list[str], node: Cmp, params: list[Any], shape: list[Any],
          build: bool, depth: int, where: str) -> Optional[sql.Composable]:
    """``node`` on the values the path reaches inside the jsonb ``base``."""
    op, value = node.op, node.value
    depth += 1
    if op in ("ne", "nin") or (op == "eq" and value is None) or (op == "exists" and not value):
        positive = {"ne": "eq", "nin": "in"}.get(op, "exists")
        inner = Cmp(node.field, positive, True if positive == "exists" else value)
        shape.append("not")
        found = _json(q, base, path, inner, params, shape, build, depth - 1, where)
        return sql.Composed([sql.SQL("NOT "), found]) if build and found is not None else None
    if op == "all":
        shape.append(("all", len(value)))
        parts = [_json(q, base, path, Cmp(node.field, "eq", v), params, shape, build, depth - 1, where)
                 for v in value]
        if not build:
            return None
        return sql.Composed([sql.SQL("("), sql.SQL(" AND ").join(p for p in parts if p is not None), sql.SQL(")")]) \
            if parts else sql.SQL("FALSE")
    if op == "in" and None in value:
        present = tuple(v for v in value if v is not None)
        shape.append(("in-null", bool(present)))
        parts = [_json(q, base, path, Cmp(node.field, "eq", None), params, shape, build, depth - 1, where)]
        if present:
            parts.append(_json(q, base, path, Cmp(node.field, "in", present), params, shape, build, depth - 1,
                               where))
        return sql.Composed([sql.SQL("("), sql.SQL(" OR ").join(p for p in parts if p is not None), sql.SQL(")")]) \
            if build else None
    params.append(_jsonpath(path))
    if op == "exists":
        shape.append(("exists", depth))
        return _reached(base, depth, sql.SQL("jsonb_typeof({x}) <> 'null'"), elements=False) if build else None
    if op == "size":
        params.append(value)
        shape.append(("size", depth))
        return _reached(base, depth, sql.SQL("jsonb_typeof({x}) = 'array' AND jsonb_array_length({x}) = %s"),
                        elements=False) if build else None
    shape.append(("reached", depth))
    predicate = _predicate(node, params, shape, build, where)
    return _reached(base, depth, predicate, elements=True) if build and predicate is not None else None
