"""Statements for a PostgreSQL table, built and not run: the filter language compiled with ``psycopg.sql``.

:class:`SQLBuilder` turns filters, sorts, projections and updates into
statement texts and their parameters; :class:`dbp.sql.query.SQLQuery` runs
them. Identifiers are checked against the table's catalog and always quoted
with :class:`psycopg.sql.Identifier`; values are always parameters. Building
does no I/O: what it needs from the server or the files (the catalog, the
statement cache, where cones are searched) the runner hands it.
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Optional

from psycopg import sql

from dbp._values import converter
from dbp.errors import FilterError
from dbp.filters import After, And, Cmp, ElemMatch, Node, Not, Or, SortKey, TypeBeyond
from dbp.sky import Cone
from dbp.sql import cone as cones
from dbp.sql import operators
from dbp.sql.catalog import Column, Table
from dbp.sql.types import ColumnRule, integral
from dbp.sql.updates import compile_changes
from dbp.updates import Change

__all__ = ["SQLBuilder"]

_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
#: jsonb's sort order of types (``jsonb_typeof``), JSON null left out: PostgreSQL's documented
#: "Object > Array > Boolean > Number > String > Null".
_JSONB_ORDER = ("string", "number", "boolean", "array", "object")


class SQLBuilder:
    """The statement-building half of a table's queries (set up by :class:`dbp.sql.query.SQLQuery`).

    Statements are composed once per shape (the filter's structure, sort and
    projection, values aside) and their texts kept in ``statement_cache``.
    """

    name: str
    #: Where statement texts are kept (the connection's cache, shared by its queries).
    statement_cache: MutableMapping[Any, Any]
    #: What cached statement texts are filed under (a named query's differs from a table's).
    cache_id: Any
    table: Table
    columns: dict[str, Column]
    #: What each column accepts (dbp.sql.types), for filters and writes alike.
    rules: dict[str, ColumnRule]
    _table: sql.SQL
    _names: dict[str, sql.SQL]
    _collate: bool
    _text: set[str]
    #: Where $cone is searched (position columns, path): set by the runner before it builds a statement
    #: whose filter has a cone.
    _cone_site: Optional[cones.Site] = None

    def _column(self, name: str) -> Column:
        column = self.columns.get(name)
        if column is None:
            raise FilterError(f"{self.name} has no column {name!r}; its columns are {', '.join(self.columns)}")
        return column

    def _q(self, name: str) -> sql.SQL:
        """The quoted column, for a statement with parameters."""
        self._column(name)
        return self._names[name]

    def _check(self, column: Column, value: Any) -> Any:
        """``value`` as a filter parameter for ``column``; FilterError if it cannot compare there."""
        return self.rules[column.name].adapt(value, write=False)

    def _value(self, name: str, value: Any) -> Any:
        """``value`` as a parameter to store in column ``name``; FilterError if it does not fit."""
        return self.rules[self._column(name).name].adapt(value)

    def _ref(self, name: str, *, ordering: bool = False) -> sql.Composable:
        ident = self._q(name)
        if ordering and self._collate and name in self._text:
            return sql.Composed([ident, sql.SQL(' COLLATE "C"')])
        return ident

    def where(self, node: Node) -> tuple[sql.Composable, list[Any]]:
        """The WHERE condition for ``node`` and its parameters."""
        params: list[Any] = []
        condition = self._compile(node, params, [], build=True)
        assert condition is not None
        return condition, params

    def _compile(self, node: Node, params: list[Any], shape: list[Any], *, build: bool,
                 scope: Optional[operators.Scope] = None) -> Optional[sql.Composable]:
        """One walk for both uses: ``params`` and ``shape`` always, the statement only if ``build``.

        ``shape`` records everything the statement text depends on, so that a
        cached text is reused only where the same walk would build it again.
        """
        if isinstance(node, Cmp):
            if operators.handles(self, node, scope):
                return operators.compare(self, node, params, shape, build, scope)
            return self._compare(node, params, shape, build)
        if isinstance(node, ElemMatch):
            return operators.elem_match(self, node, params, shape, build, scope)
        if isinstance(node, Cone):
            return cones.compile_cone(self, node, params, shape, build)
        if isinstance(node, (And, Or)):
            shape.append((type(node).__name__, len(node.items)))
            parts = [self._compile(i, params, shape, build=build, scope=scope) for i in node.items]
            if not build:
                return None
            if not parts:
                return sql.SQL("TRUE" if isinstance(node, And) else "FALSE")
            joiner = sql.SQL(" AND " if isinstance(node, And) else " OR ")
            return sql.Composed([sql.SQL("("), joiner.join(p for p in parts if p is not None), sql.SQL(")")])
        if isinstance(node, Not):
            shape.append("not")
            inner = self._compile(node.item, params, shape, build=build, scope=scope)
            return sql.Composed([sql.SQL("(("), inner, sql.SQL(") IS NOT TRUE)")]) if build and inner else None
        if isinstance(node, TypeBeyond):
            return self._type_beyond(node, params, shape, build)
        return self._after(node, params, shape, build)

    def _type_beyond(self, node: TypeBeyond, params: list[Any], shape: list[Any], build: bool
                     ) -> Optional[sql.Composable]:
        """``jsonb_typeof(col) = ANY(types)`` on jsonb: the types sorting after (before) the value's; else FALSE."""
        column = self._column(node.field)
        json = self.rules[column.name].category == "json"
        shape.append(("types", node.field, json))
        if json:
            value = node.value
            kind = _json_type(value)
            if kind is None:
                raise FilterError(f"{self.name}.{column.name} is jsonb; {type(value).__name__} is not a JSON value")
            rank = _JSONB_ORDER.index(kind)
            params.append(list(_JSONB_ORDER[rank + 1:] if node.direction == 1 else _JSONB_ORDER[:rank]))
        if not build:
            return None
        if not json:  # a typed column holds one type
            return sql.SQL("FALSE")
        return sql.Composed([sql.SQL("jsonb_typeof("), self._q(node.field), sql.SQL(") = ANY(%s::text[])")])

    def _compare(self, node: Cmp, params: list[Any], shape: list[Any], build: bool) -> Optional[sql.Composable]:
        column = self._column(node.field)
        op, value = node.op, node.value
        if op == "exists" or (value is None and op in ("eq", "ne")):
            is_null = (op == "exists" and not value) or (op == "eq" and value is None)
            shape.append((node.field, "null" if is_null else "notnull"))
            return sql.Composed([self._q(node.field), sql.SQL(" IS NULL" if is_null else " IS NOT NULL")]) \
                if build else None
        if op in ("in", "nin"):
            present = [self._check(column, v) for v in value if v is not None]
            with_null = len(present) != len(value)
            array_type = self.rules[column.name].cast
            kind = self.rules[column.name].category
            if kind == "int":  # compared as numbers: 2.0 is 2, and 1.5 equals no integer
                present, array_type = integral(present), "bigint"
            elif kind == "number" and (not column.type.startswith("numeric")
                                       or any(isinstance(v, float) for v in present)):
                present, array_type = [float(v) for v in present], "double precision"
            elif kind == "number":  # numeric(p, s): compared exactly
                present, array_type = [decimal.Decimal(v) for v in present], "numeric"
            if present:
                params.append(present)
            shape.append((node.field, op, bool(present), with_null, array_type))
            if not build:
                return None
            parts: list[sql.Composable] = []
            if present:
                parts.append(sql.Composed([self._q(node.field), sql.SQL(" = ANY(%s::"), sql.SQL(array_type),
                                           sql.SQL("[])")]))
            if with_null:
                parts.append(sql.Composed([self._q(node.field), sql.SQL(" IS NULL")]))
            inside: sql.Composable = sql.Composed([sql.SQL("("), sql.SQL(" OR ").join(parts), sql.SQL(")")]) \
                if parts else sql.SQL("FALSE")
            return inside if op == "in" else sql.Composed([sql.SQL("(("), inside, sql.SQL(") IS NOT TRUE)")])
        params.append(self._check(column, value))
        shape.append((node.field, op))
        if not build:
            return None
        rule = self.rules[column.name]
        # an array parameter goes as its elements' type (smallint[] for [1, 2]): cast to the column's
        cast = sql.SQL("::" + rule.cast) if rule.category == "array" and node.field == column.name else sql.SQL("")
        if op == "ne":
            return sql.Composed([self._q(node.field), sql.SQL(" IS DISTINCT FROM %s"), cast])
        return sql.Composed([self._ref(node.field, ordering=op != "eq"), sql.SQL(f" {_COMPARE[op]} %s"), cast])

    def _after(self, node: After, params: list[Any], shape: list[Any], build: bool) -> Optional[sql.Composable]:
        directions = {k.direction for k in node.keys}
        # a row comparison is unknown where a NULL is met: right only where no NULL sorts after the position
        row_compare = (
            len(directions) == 1
            and all(v is not None for v in node.values)
            and all(not k.nulls_last or self._column(k.field).not_null for k in node.keys)
        )
        if not row_compare:
            return self._compile(node.expand(), params, shape, build=build)
        for k, value in zip(node.keys, node.values):
            params.append(self._check(self._column(k.field), value))
        shape.append(("after", node.keys))
        if not build:
            return None
        refs = sql.SQL(", ").join(self._ref(k.field, ordering=True) for k in node.keys)
        marks = sql.SQL(", ").join(sql.SQL("%s") for _ in node.keys)
        op = sql.SQL(">" if directions == {1} else "<")
        return sql.SQL("(({}) {} ({}))").format(refs, op, marks)

    def _order(self, sort: list[SortKey]) -> sql.Composable:
        if not sort:
            return sql.SQL("")
        return sql.Composed([sql.SQL(" ORDER BY "), sql.SQL(", ").join(self._order_item(k) for k in sort)])

    def _order_item(self, key: SortKey) -> sql.Composable:
        """``column ASC|DESC``, with ``NULLS FIRST|LAST`` where the column may hold NULLs."""
        way = sql.SQL(" ASC" if key.direction == 1 else " DESC")
        if self._column(key.field).not_null:  # plain ASC/DESC lets a btree index serve the order
            return sql.Composed([self._ref(key.field, ordering=True), way])
        nulls = sql.SQL(" NULLS LAST" if key.nulls_last else " NULLS FIRST")
        return sql.Composed([self._ref(key.field, ordering=True), way, nulls])

    def _columns_sql(self, projection: Optional[list[str]]) -> sql.Composable:
        if projection is None:
            return sql.SQL("*")
        return sql.SQL(", ").join(self._q(f) for f in projection)

    def _statement(
        self, kind: str, node: Node, sort: Sequence[SortKey] = (), projection: Optional[list[str]] = None,
        limit: bool = False, offset: bool = False,
    ) -> tuple[str, list[Any]]:
        """The statement text (cached per shape on the connection) and its parameters."""
        params: list[Any] = []
        shape: list[Any] = []
        self._compile(node, params, shape, build=False)
        for k in sort:
            self._column(k.field)
        key = (self.cache_id, kind, tuple(shape), tuple(sort), tuple(projection) if projection else None, limit, offset)
        cache = self.statement_cache
        text = cache.get(key)
        if text is None:
            condition = self._compile(node, [], [], build=True)
            assert condition is not None
            if kind == "select":
                query: sql.Composable = sql.SQL("SELECT {} FROM {} WHERE {}{}{}{}").format(
                    self._columns_sql(projection), self._table, condition, self._order(list(sort)),
                    sql.SQL(" LIMIT %s") if limit else sql.SQL(""), sql.SQL(" OFFSET %s") if offset else sql.SQL(""))
            elif kind == "count":
                query = sql.SQL(
                    "SELECT count(*) AS n FROM (SELECT 1 FROM {} WHERE {} LIMIT %s) AS matched" if limit
                    else "SELECT count(*) AS n FROM {} WHERE {}").format(self._table, condition)
            else:
                query = sql.SQL("DELETE FROM {} WHERE {}").format(self._table, condition)
            text = query.as_string(None)
            cache[key] = text
        return text, params

    def _from_item(self) -> tuple[sql.Composable, str, str, list[Any]]:
        """The FROM item of the rows (the table as ``t``), the prefix of its columns' references, its alias
        and its parameters."""
        return sql.SQL("{} AS t").format(self._table), "t.", "t", []

    def _key(self) -> list[str]:
        pk = self.table.primary_key
        return list(pk.columns) if pk else []

    def _tie_break(self) -> list[str]:
        """The columns that order ties: the key (a keyless named query orders by every sortable column)."""
        return self._key()

    def _values(self, row: Mapping[str, Any]) -> tuple[list[sql.SQL], list[Any]]:
        return [self._q(n) for n in row], [self._value(n, v) for n, v in row.items()]

    def _update_sql(self, node: Node, changes: Sequence[Change], *, returning: bool = False
                    ) -> tuple[sql.Composable, list[Any]]:
        """``UPDATE ... SET ... FROM (VALUES (operands)) ... WHERE``, and its parameters."""
        types: list[str] = []
        values: list[Any] = []

        def operand(change: Change, value: Any, type_name: str) -> sql.Composable:
            values.append(value)
            types.append(type_name)
            return sql.SQL("_dbp_v.{}").format(sql.Identifier(f"_dbp_s{len(types) - 1}"))

        sets = compile_changes(self, changes, operand, self._q)
        condition, params = self.where(node)
        source: sql.Composable = sql.SQL("")
        if types:
            source = sql.SQL(" FROM (VALUES ({})) AS _dbp_v({})").format(
                sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in types),
                sql.SQL(", ").join(sql.Identifier(f"_dbp_s{n}") for n in range(len(types))))
        query = sql.SQL("UPDATE {} SET {}{} WHERE {}{}").format(
            self._table, sets, source, condition,
            sql.SQL(" RETURNING {}.*").format(self._table) if returning else sql.SQL(""))
        return query, values + params

    def _lock_order(self, keys: list[Column]) -> list[sql.Composable]:
        """The order rows are locked in: the primary key's, whatever the filter fields, so that no two
        bulk_updates (or merges) wait for each other in a cycle; the filter fields' without one."""
        names = self._key() or [c.name for c in keys]
        return [sql.SQL("t.{}").format(self._q(n)) for n in names] + [sql.SQL("t.ctid")]


#: The integer columns' ranges, checked before sending so that an error can name the row.
_INT_BOUNDS = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}


def _json_type(value: Any) -> Optional[str]:
    """What ``jsonb_typeof`` says of ``value`` stored as jsonb (None: not a JSON value)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, decimal.Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array" if isinstance(value, (list, tuple)) else None


def _adapted(rule: ColumnRule, values: list[Any], where: str = "") -> list[Any]:
    """``values`` as parameters for ``rule``'s column, checked once per Python type where none needs converting.

    A value that does not fit raises a FilterError naming its position (``where[i]``).
    """
    kinds = set(map(type, values))
    bound = _INT_BOUNDS.get(rule.cast)
    if not rule.per_value and all(converter(kind) is None and rule.accepts(kind) for kind in kinds):
        if bound is None or int not in kinds:
            return values
        ints = [v for v in values if v is not None] if type(None) in kinds else values
        if -bound <= min(ints) and max(ints) < bound:
            return values
    out = []
    for i, value in enumerate(values):
        try:
            adapted = rule.adapt(value)
        except FilterError as exc:
            raise FilterError(f"{where}[{i}]: {exc}") from None
        if bound is not None and type(adapted) is int and not -bound <= adapted < bound:
            raise FilterError(f"{where}[{i}]: {rule.label} is {rule.type}; {adapted} is out of its range")
        out.append(adapted)
    return out


def _one_kind(values: list[Any], type_name: str) -> Optional[list[Any]]:
    """``values`` as one array psycopg can send for a ``type_name`` parameter; None if they cannot be one.

    Floats for a numeric parameter become Decimals of their shortest repr (what
    COPY stores; PostgreSQL's own float8 to numeric cast keeps 15 digits), ints
    among them too; ints among floats become floats; UUIDs among strings, strings.
    """
    kinds = {type(v) for v in values if v is not None}
    if not kinds or (len(kinds) == 1 and (float not in kinds or type_name != "numeric")):
        return values
    if kinds <= {int, float, decimal.Decimal}:
        if type_name == "numeric" or decimal.Decimal in kinds:
            return [v if v is None or type(v) is decimal.Decimal else
                    decimal.Decimal(repr(v)) if type(v) is float else decimal.Decimal(v) for v in values]
        return [v if v is None else float(v) for v in values]
    if kinds <= {uuid.UUID, str}:
        return [v if v is None else str(v) for v in values]
    return None


def _sources(types: list[str], columns: list[list[Any]], rows: int) -> list[tuple[sql.Composable, list[Any]]]:
    """Row sources for ``columns`` (a list of values per column) and their parameters.

    One ``SELECT * FROM unnest(%b::type[], ...)`` of binary arrays; or, where an
    array column (unnest would flatten it) or a column of mixed value types
    rules arrays out, ``VALUES`` rows of single parameters, in batches that stay
    within the protocol's 65,535 parameters.
    """
    sent = [_one_kind(values, t) for values, t in zip(columns, types)]
    if all(values is not None for values in sent) and not any(t.endswith("[]") for t in types):
        arrays = sql.SQL(", ").join(sql.SQL("%b::{}[]").format(sql.SQL(t)) for t in types)
        return [(sql.SQL("SELECT * FROM unnest({})").format(arrays), list(sent))]
    values = [one if one is not None else every for one, every in zip(sent, columns)]
    row = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in types))
    step = max(1, 30000 // len(types))
    out: list[tuple[sql.Composable, list[Any]]] = []
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        params = [value for values_ in zip(*(v[start:stop] for v in values)) for value in values_]
        out.append((sql.SQL("VALUES {}").format(sql.SQL(", ").join(row for _ in range(stop - start))), params))
    return out

