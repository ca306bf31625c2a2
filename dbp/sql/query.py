"""Queries on a PostgreSQL table: the filter language compiled with ``psycopg.sql``.

Identifiers are checked against the table's catalog (cached per connection)
and always quoted with :class:`psycopg.sql.Identifier`; values are always
parameters. Bulk inserts go through COPY; conflicts are resolved by COPY into a
temporary table and ``INSERT ... SELECT ... ON CONFLICT``.
"""

from __future__ import annotations

import decimal
import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import psycopg
from psycopg import sql

from dbp._values import converter
from dbp.errors import ConcurrencyError, DbpError, FilterError, OperationError
from dbp.filters import After, And, Cmp, ElemMatch, Node, Not, Or, equalities, parse
from dbp.query import BaseQuery, ConflictMode, Filter, Round, Row
from dbp.sky import Cone, Match, cone_for
from dbp.sql import cone as cones
from dbp.sql import operators
from dbp.sql.bulk import LOCK_NOT_AVAILABLE, TRANSIENT, bulk_insert, retrying
from dbp.sql.catalog import Column, Table
from dbp.sql.errors import query_error
from dbp.sql.types import ColumnRule, integral
from dbp.sql.updates import compile_changes, operand_getter, operand_value, shape
from dbp.updates import Change, Columns, initial

if TYPE_CHECKING:
    from dbp.sql.connection import SQLConnection

__all__ = ["SQLQuery"]

_UPSERT_ROUNDS = 5
_counter = itertools.count()

_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class SQLQuery(BaseQuery):
    """Queries on one table; ``execute`` and the connection's ``transaction`` are the escape hatches.

    Statements are composed with :mod:`psycopg.sql` once per shape (the filter's
    structure, sort and projection, values aside) and kept per connection, so a
    repeated ``find_one`` costs little more than the driver's round trip.
    """

    def __init__(self, db: SQLConnection, name: str) -> None:
        self.db = db
        self.name = name
        #: What cached statement texts are filed under (a named query's differs from a table's).
        self.cache_id: Any = name
        self.table: Table = db.table(name)
        self.columns: dict[str, Column] = {c.name: c for c in self.table.columns}
        schema = db.catalog().schema
        #: For statements without parameters (COPY, CREATE ... LIKE).
        self._ident = sql.Identifier(schema, name)
        with db.connection() as conn:
            # Rendered once; a % in a name is doubled, since these go into statements with %s parameters.
            def render(*names: str) -> sql.SQL:
                return sql.SQL(sql.Identifier(*names).as_string(conn).replace("%", "%%"))

            self._table = render(schema, name)
            self._names = {c: render(c) for c in self.columns}
        self._collate = not db.code_point_collation()
        #: What each column accepts (dbp.sql.types), for filters and writes alike.
        self.rules = {c: ColumnRule(name, c, column.type, base=column.base) for c, column in self.columns.items()}
        self._text = {c for c, rule in self.rules.items() if rule.category == "text"}
        self._unique_keys = self.table.unique_keys()
        #: "q3c" or "portable" forces a $cone path; None picks q3c where the extension and its index exist.
        self.cone_path: Optional[str] = None

    def __repr__(self) -> str:
        return f"<SQLQuery {self.name} on {self.db.address}>"

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        """Raw SQL with parameters, on this query's connection."""
        return self.db.execute(query, params)

    # -- compiling -------------------------------------------------------------------------

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
        return self._after(node, params, shape, build)

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
        if op == "ne":
            return sql.Composed([self._q(node.field), sql.SQL(" IS DISTINCT FROM %s")])
        return sql.Composed([self._ref(node.field, ordering=op != "eq"), sql.SQL(f" {_COMPARE[op]} %s")])

    def _after(self, node: After, params: list[Any], shape: list[Any], build: bool) -> Optional[sql.Composable]:
        directions = {d for _, d in node.keys}
        row_compare = (
            len(directions) == 1
            and all(v is not None for v in node.values)
            and (directions == {1} or all(self._column(f).not_null for f, _ in node.keys))
        )
        if not row_compare:
            return self._compile(node.expand(), params, shape, build=build)
        for (field, _), value in zip(node.keys, node.values):
            params.append(self._check(self._column(field), value))
        shape.append(("after", node.keys))
        if not build:
            return None
        refs = sql.SQL(", ").join(self._ref(f, ordering=True) for f, _ in node.keys)
        marks = sql.SQL(", ").join(sql.SQL("%s") for _ in node.keys)
        op = sql.SQL(">" if directions == {1} else "<")
        return sql.SQL("(({}) {} ({}))").format(refs, op, marks)

    def _order(self, sort: list[tuple[str, int]]) -> sql.Composable:
        if not sort:
            return sql.SQL("")
        parts = []
        for name, direction in sort:
            ref = self._ref(name, ordering=True)
            if self._column(name).not_null:  # plain ASC/DESC lets a btree index serve the order
                parts.append(sql.Composed([ref, sql.SQL(" ASC" if direction == 1 else " DESC")]))
            else:
                parts.append(sql.Composed([ref, sql.SQL(" ASC NULLS FIRST" if direction == 1
                                                        else " DESC NULLS LAST")]))
        return sql.Composed([sql.SQL(" ORDER BY "), sql.SQL(", ").join(parts)])

    def _columns_sql(self, projection: Optional[list[str]]) -> sql.Composable:
        if projection is None:
            return sql.SQL("*")
        return sql.SQL(", ").join(self._q(f) for f in projection)

    def _statement(
        self, kind: str, node: Node, sort: Sequence[tuple[str, int]] = (), projection: Optional[list[str]] = None,
        limit: bool = False, offset: bool = False,
    ) -> tuple[str, list[Any]]:
        """The statement text (cached per shape on the connection) and its parameters."""
        params: list[Any] = []
        shape: list[Any] = []
        self._compile(node, params, shape, build=False)
        for name, _ in sort:
            self._column(name)
        key = (self.cache_id, kind, tuple(shape), tuple(sort), tuple(projection) if projection else None, limit, offset)
        cache = self.db.statement_cache
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
            with self.db.connection() as conn:
                text = query.as_string(conn)
            cache[key] = text
        return text, params

    def _run(self, query: Any, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        try:
            return self.db.execute_raw(query, params)
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{self.name}: {_cause(exc)}") from None
        except (TypeError, ValueError) as exc:  # a value psycopg cannot send (a lone surrogate, ...)
            raise FilterError(f"{self.name}: {_unsendable(exc)}") from None
        except psycopg.Error as exc:
            raise _driver_error(exc, f"query on {self.name}") from None

    # -- primitives ----------------------------------------------------------------------------

    def _key(self) -> list[str]:
        pk = self.table.primary_key
        return list(pk.columns) if pk else []

    def _select(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        centre = cone_for(node, sort, projection)
        text: Any
        if centre is not None:
            text, params = cones.select_statement(self, node, centre, sort, projection, limit is not None,
                                                  bool(offset))
        else:
            text, params = self._statement("select", node, sort, projection, limit is not None, bool(offset))
        params += [limit] if limit is not None else []
        params += [offset] if offset else []
        rows: list[Row] = self._run(text, params).fetchall()
        return rows

    def _stream(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        centre = cone_for(node, sort, projection)
        text: Any
        if centre is not None:
            text, params = cones.select_statement(self, node, centre, sort, projection, False, False)
        else:
            text, params = self._statement("select", node, sort, projection)
        try:  # on a session of its own: the caller's writes while reading are never part of its transaction
            with self.db.stream_cursor(text, params, batch) as cur:
                yield from cur
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{self.name}: {_cause(exc)}") from None
        except (TypeError, ValueError) as exc:  # a value psycopg cannot send (a lone surrogate, ...)
            raise FilterError(f"{self.name}: {_unsendable(exc)}") from None

    def _crossmatch(self, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                    node: Node) -> list[Match]:
        return cones.crossmatch(self, positions, radius, nearest, node)

    def _count(self, node: Node, limit: Optional[int]) -> int:
        text, params = self._statement("count", node, limit=limit is not None)
        if limit is not None:
            params.append(limit)
        row = self._run(text, params).fetchone()
        return int(row["n"]) if row else 0

    # -- writes -----------------------------------------------------------------------------------

    def _covering_key(self, names: Sequence[str], what: str) -> tuple[str, ...]:
        wanted = set(names)
        for key in self._unique_keys:
            if wanted.issuperset(key):
                return key
        keys = "; ".join(", ".join(k) for k in self.table.unique_keys()) or "none"
        raise FilterError(
            f"{what} on {self.name} needs a primary key, unique constraint or unique index covering the filter's "
            f"fields ({', '.join(names)}), so that concurrent calls cannot create duplicates; {self.name}'s unique "
            f"keys: {keys}"
        )

    def _values(self, row: Mapping[str, Any]) -> tuple[list[sql.SQL], list[Any]]:
        return [self._q(n) for n in row], [self._value(n, v) for n, v in row.items()]

    def get_or_create(self, filter_by: Mapping[str, Any], **kwargs: Any) -> tuple[Row, bool]:
        """``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING *``, then a SELECT if the row existed."""
        node = parse(filter_by)
        eq = equalities(node)
        key = self._covering_key(list(eq), "get_or_create")
        self._check_fields(kwargs, "get_or_create")
        row = {**kwargs, **eq}
        values = [self._value(n, v) for n, v in row.items()]
        cache_key = (self.name, "get_or_create", tuple(row), key)
        text = self.db.statement_cache.get(cache_key)
        if text is None:
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING RETURNING *").format(
                self._table, sql.SQL(", ").join(self._q(n) for n in row),
                sql.SQL(", ").join(sql.SQL("%s") for _ in values), sql.SQL(", ").join(self._q(k) for k in key),
            )
            with self.db.connection() as conn:
                text = self.db.statement_cache[cache_key] = insert.as_string(conn)
        try:
            created = self.db.execute_raw(text, values).fetchone()
        except psycopg.IntegrityError as exc:
            raise OperationError(f"get_or_create on {self.name}: {_cause(exc)}") from None
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{self.name}: {_cause(exc)}") from None
        except (TypeError, ValueError) as exc:  # a value psycopg cannot send (a lone surrogate, ...)
            raise FilterError(f"{self.name}: {_unsendable(exc)}") from None
        except psycopg.Error as exc:
            raise _driver_error(exc, f"get_or_create on {self.name}") from None
        if created is not None:
            return created, True
        found = self._select(node, [], None, limit=1)
        if not found:
            raise OperationError(
                f"get_or_create on {self.name}: a row with the same {', '.join(key)} exists but does not match "
                "the rest of the filter"
            )
        return found[0], False

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

    def _update(self, node: Node, changes: Sequence[Change]) -> int:
        return self._write(*self._update_sql(node, changes), "update").rowcount

    def _write(self, query: Any, params: Sequence[Any], what: str, *, retry: bool = False) -> psycopg.Cursor[Any]:
        """Run a write; ``retry``: a deadlock or serialization failure stays a psycopg error, for ``retrying``."""
        try:
            return self.db.execute_raw(query, params)
        except psycopg.IntegrityError as exc:
            raise OperationError(f"{what} on {self.name}: {_cause(exc)}") from None
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{what} on {self.name}: {_cause(exc)}") from None
        except (TypeError, ValueError) as exc:  # a value psycopg cannot send (a lone surrogate, ...)
            raise FilterError(f"{what} on {self.name}: {_unsendable(exc)}") from None
        except psycopg.Error as exc:
            if retry and exc.sqlstate in TRANSIENT:
                raise
            raise _driver_error(exc, f"{what} on {self.name}") from None

    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        """UPDATE first (an existing row needs no other NOT NULL values), then INSERT ... ON CONFLICT DO NOTHING.

        A row inserted between the two by another writer is updated on the next round.
        """
        eq = equalities(filter_by)
        key = self._covering_key(list(eq), "upsert")
        changes = self._upsert_changes(eq, attrs)
        for change in changes:  # each operator against its column's type, before anything runs
            operand_value(self, change)
        row = {**initial(changes), **eq}
        idents, values = self._values(row)
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING RETURNING *").format(
            self._table, sql.SQL(", ").join(idents), sql.SQL(", ").join(sql.SQL("%s") for _ in values),
            sql.SQL(", ").join(self._q(k) for k in key))
        for _ in range(_UPSERT_ROUNDS):
            if changes:
                found: Optional[Row] = self._write(
                    *self._update_sql(parse(eq), changes, returning=True), "upsert").fetchone()
            else:
                found = self.find_one(eq)
            if found is not None:
                return found
            inserted: Optional[Row] = self._write(insert, values, "upsert").fetchone()
            if inserted is not None:
                return inserted
        raise OperationError(f"upsert on {self.name}: the row kept appearing and vanishing; try again")

    def delete(self, filter_by: Filter) -> int:
        text, params = self._statement("delete", parse(filter_by))
        return self._write(text, params, "delete").rowcount

    def _bulk_update(self, keys: list[str], rounds: Sequence[Round]) -> int:
        key_columns = [self._column(k) for k in keys]

        def attempt() -> int:
            matched = 0
            with self.db.transaction():
                first = rounds[0][0]  # it holds every key
                self._lock_rows(key_columns, [_adapted(self.rules[c.name], [row[c.name] for row in first],
                                                       "bulk_update: instances") for c in key_columns])
                for number, (instances, changes) in enumerate(rounds):
                    groups: dict[tuple[Any, ...], list[int]] = {}
                    for i, row_changes in enumerate(changes):
                        groups.setdefault(shape(row_changes), []).append(i)
                    count = sum(self._update_group(key_columns, instances, changes, indexes)
                                for indexes in groups.values())
                    if number == 0:  # every key is in the first round: it counts the rows matched
                        matched = count
            return matched

        return retrying(self.name, "bulk_update", attempt)

    def _update_group(self, keys: list[Column], instances: Sequence[Mapping[str, Any]],
                      changes: Sequence[Sequence[Change]], indexes: list[int]) -> int:
        """One ``UPDATE ... FROM`` per batch of rows whose changes have the same shape."""
        first = list(changes[indexes[0]])

        def columns(used: list[int], batch: list[int]) -> list[list[Any]]:
            values = [[self._value(c.name, instances[i][c.name]) for i in batch] for c in keys]
            for n in used:
                get = operand_getter(self, first[n])
                values.append([get(changes[i][n]) for i in batch])
            return values

        return self._update_batches(keys, first, indexes, columns)

    def _exact_keys(self, keys: list[str]) -> bool:
        rules = [self.rules.get(k) for k in keys]
        return all(r is not None and (r.category == "int" or r.cast in ("text", "character varying")) for r in rules)

    def _key_form(self, keys: list[str], value: tuple[Any, ...]) -> tuple[Any, ...]:
        try:
            return tuple(self.rules[k].adapt(v) for k, v in zip(keys, value))
        except FilterError:  # the update names the value
            return value

    def _bulk_update_columns(self, keys: list[str], key_values: list[list[Any]], columns: Columns) -> int:
        key_columns = [self._column(k) for k in keys]
        first = list(columns.changes(0))
        for change in first:
            operand_value(self, change)  # the column takes this operator and the first operand
        rules = [self.rules[c.name] for c in key_columns] + [self.rules[c.field] for c in first]
        every = [*key_values, *columns.values]

        def values(used: list[int], batch: list[int]) -> list[list[Any]]:  # batch: every row
            return [_adapted(rules[n], every[n], "bulk_update: instances" if n < len(keys) else "bulk_update: attrs")
                    for n in [*range(len(keys)), *(len(keys) + n for n in used)]]

        def attempt() -> int:
            with self.db.transaction():
                return self._update_batches(key_columns, first, list(range(len(key_values[0]))), values, lock=True)

        return retrying(self.name, "bulk_update", attempt)

    def _lock_order(self, keys: list[Column]) -> list[sql.Composable]:
        """The order rows are locked in: the primary key's, whatever the filter fields, so that no two
        bulk_updates (or merges) wait for each other in a cycle; the filter fields' without one."""
        names = self._key() or [c.name for c in keys]
        return [sql.SQL("t.{}").format(self._q(n)) for n in names] + [sql.SQL("t.ctid")]

    def _lock_rows(self, keys: list[Column], values: list[list[Any]]) -> None:
        """Lock the rows a bulk_update will change, in key order, so that concurrent ones cannot deadlock."""
        aliases = [sql.Identifier(f"k{n}") for n in range(len(keys))]
        order = self._lock_order(keys)
        types = [self.rules[c.name].cast for c in keys]
        for source, params in _sources(types, values, len(values[0])):
            self._write(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} AS t JOIN ({}) AS v({}) ON {} "
                                "ORDER BY {} FOR UPDATE OF t) AS locked").format(
                self._table, source, sql.SQL(", ").join(aliases),
                sql.SQL(" AND ").join(sql.SQL("t.{} = v.{}").format(self._q(c.name), a) for c, a in zip(keys, aliases)),
                sql.SQL(", ").join(order)), params, "bulk_update", retry=True)

    def _update_batches(self, keys: list[Column], first: list[Change], indexes: list[int],
                        columns: Callable[[list[int], list[int]], list[list[Any]]], *, lock: bool = False) -> int:
        """Run ``first``'s SET over ``indexes``; ``columns(used, indexes)`` gives their parameters.

        ``lock`` takes the rows' locks in key order first: in the statement itself
        when it is one statement, otherwise in statements before them all.
        """
        used: list[int] = []
        types: list[str] = []
        position = {id(c): n for n, c in enumerate(first)}

        def operand(change: Change, value: Any, type_name: str) -> sql.Composable:
            used.append(position[id(change)])
            types.append(type_name)
            return sql.SQL("v.{}").format(sql.Identifier(f"s{len(types) - 1}"))

        sets = compile_changes(self, first, operand, lambda name: sql.Composed([sql.SQL("t."), self._q(name)]))
        all_types = [self.rules[c.name].cast for c in keys] + types
        aliases = sql.SQL(", ").join([sql.Identifier(f"k{n}") for n in range(len(keys))] + [
            sql.Identifier(f"s{n}") for n in range(len(types))])
        joined = sql.SQL(" AND ").join(sql.SQL("t.{} = v.{}").format(self._q(c.name), sql.Identifier(f"k{n}"))
                                       for n, c in enumerate(keys))
        every = columns(used, indexes)
        sources = _sources(all_types, every, len(indexes))
        if lock and len(sources) > 1:
            self._lock_rows(keys, every[:len(keys)])
        matched = 0
        for source, params in sources:
            if lock and len(sources) == 1:  # the locks, in key order, before the UPDATE reads a row
                order = self._lock_order(keys)
                query = sql.SQL(
                    "WITH v({aliases}) AS ({source}), locked AS (SELECT 1 FROM {table} AS t JOIN v ON {joined} "
                    "ORDER BY {order} FOR UPDATE OF t) "
                    "UPDATE {table} AS t SET {sets} FROM v WHERE {joined} AND (SELECT count(*) FROM locked) >= 0"
                ).format(aliases=aliases, source=source, table=self._table, joined=joined,
                         order=sql.SQL(", ").join(order), sets=sets)
            else:
                query = sql.SQL("UPDATE {} AS t SET {} FROM ({}) AS v({}) WHERE {}").format(
                    self._table, sets, source, aliases, joined)
            matched += self._write(query, params, "bulk_update", retry=True).rowcount
        return matched

    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode,
                     update_fields: Optional[Sequence[str]]) -> int:
        return bulk_insert(self, rows, on_conflict, update_fields)


#: The integer columns' ranges, checked before sending so that an error can name the row.
_INT_BOUNDS = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}


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


def _driver_error(exc: psycopg.Error, what: str) -> DbpError:
    """A lock or deadlock (another writer: worth a retry) as ConcurrencyError, anything else as QueryError."""
    if exc.sqlstate in TRANSIENT or exc.sqlstate == LOCK_NOT_AVAILABLE:
        return ConcurrencyError(f"{what}: {_cause(exc)}; nothing of this call was written, and it can be retried")
    return query_error(exc, what)


def _unsendable(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


def _cause(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc).splitlines()[0]
