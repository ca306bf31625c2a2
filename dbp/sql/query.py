"""Queries on a PostgreSQL table: the filter language compiled with ``psycopg.sql``.

Identifiers are checked against the table's catalog (cached per connection)
and always quoted with :class:`psycopg.sql.Identifier`; values are always
parameters. Bulk inserts go through COPY; conflicts are resolved by COPY into a
temporary table and ``INSERT ... SELECT ... ON CONFLICT``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dbp.errors import BulkWriteError, FilterError, OperationError
from dbp.filters import After, And, Cmp, Node, Not, Or, equalities, parse
from dbp.query import BaseQuery, ConflictMode, Filter, Row
from dbp.sql.catalog import Column, Table

if TYPE_CHECKING:
    from dbp.sql.connection import SQLConnection

__all__ = ["SQLQuery"]

_COPY_LINE = re.compile(r"COPY [^,]+, line (\d+)")
_UNIQUE_VIOLATION = "23505"
_UPDATE_BATCH = 5000
_counter = itertools.count()

_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _category(type_name: str) -> str:
    if type_name.endswith("[]"):
        return "array"
    base = type_name.split("(")[0].strip()
    if base in ("smallint", "integer", "bigint"):
        return "int"
    if base in ("real", "double precision", "numeric"):
        return "number"
    if base in ("character varying", "text", "character", "name", "citext"):
        return "text"
    if base == "boolean":
        return "bool"
    if base.startswith("timestamp"):
        return "datetime"
    if base == "date":
        return "date"
    if base in ("json", "jsonb"):
        return "json"
    return {"uuid": "uuid", "bytea": "bytes"}.get(base, "other")


_ACCEPTS: dict[str, tuple[type, ...]] = {
    "int": (int, float, decimal.Decimal),
    "number": (int, float, decimal.Decimal),
    "text": (str,),
    "bool": (bool,),
    "datetime": (_dt.datetime,),
    "date": (_dt.date,),
    "uuid": (uuid.UUID, str),
    "bytes": (bytes,),
    "array": (list, tuple),
}


class SQLQuery(BaseQuery):
    """Queries on one table; ``execute`` and the connection's ``transaction`` are the escape hatches.

    Statements are composed with :mod:`psycopg.sql` once per shape (the filter's
    structure, sort and projection, values aside) and kept per connection, so a
    repeated ``find_one`` costs little more than the driver's round trip.
    """

    def __init__(self, db: SQLConnection, name: str) -> None:
        self.db = db
        self.name = name
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
        self._categories = {c: _category(column.type) for c, column in self.columns.items()}
        self._text = {c for c, category in self._categories.items() if category == "text"}
        self._unique_keys = self.table.unique_keys()

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
        """``value`` as a parameter for ``column``; FilterError if its type cannot compare there."""
        if value is None:
            return None
        category = self._categories[column.name]
        accepted = _ACCEPTS.get(category)
        if accepted is not None and type(value) in accepted and (category == "bool") == (type(value) is bool):
            return value  # the common case: an exact, expected type
        if category == "json":
            return Jsonb(value)
        if accepted is None:
            return value
        wrong = not isinstance(value, accepted) or (isinstance(value, bool) and category != "bool")
        if category == "date" and isinstance(value, _dt.datetime):
            wrong = True
        if wrong:
            raise FilterError(
                f"{self.name}.{column.name} is {column.type}; {type(value).__name__} {value!r:.40} does not fit"
            )
        if category == "array":
            return list(value)
        return value

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

    def _compile(self, node: Node, params: list[Any], shape: list[Any], *, build: bool
                 ) -> Optional[sql.Composable]:
        """One walk for both uses: ``params`` and ``shape`` always, the statement only if ``build``.

        ``shape`` records everything the statement text depends on, so that a
        cached text is reused only where the same walk would build it again.
        """
        if isinstance(node, Cmp):
            return self._compare(node, params, shape, build)
        if isinstance(node, (And, Or)):
            shape.append((type(node).__name__, len(node.items)))
            parts = [self._compile(i, params, shape, build=build) for i in node.items]
            if not build:
                return None
            if not parts:
                return sql.SQL("TRUE" if isinstance(node, And) else "FALSE")
            joiner = sql.SQL(" AND " if isinstance(node, And) else " OR ")
            return sql.Composed([sql.SQL("("), joiner.join(p for p in parts if p is not None), sql.SQL(")")])
        if isinstance(node, Not):
            shape.append("not")
            inner = self._compile(node.item, params, shape, build=build)
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
            if present and _category(column.type) in ("int", "number") and any(isinstance(v, float)
                                                                                for v in present):
                present = [float(v) for v in present]
            with_null = len(present) != len(value)
            if present:
                params.append(present)
            shape.append((node.field, op, bool(present), with_null))
            if not build:
                return None
            parts: list[sql.Composable] = []
            if present:
                parts.append(sql.Composed([self._q(node.field), sql.SQL(" = ANY(%s::"), sql.SQL(column.type),
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
        key = (self.name, kind, tuple(shape), tuple(sort), tuple(projection) if projection else None, limit, offset)
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

    # -- primitives ----------------------------------------------------------------------------

    def _key(self) -> list[str]:
        pk = self.table.primary_key
        return list(pk.columns) if pk else []

    def _select(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        text, params = self._statement("select", node, sort, projection, limit is not None, bool(offset))
        params += [limit] if limit is not None else []
        params += [offset] if offset else []
        rows: list[Row] = self._run(text, params).fetchall()
        return rows

    def _stream(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        text, params = self._statement("select", node, sort, projection)
        with self.db.transaction() as conn, conn.cursor(
                name=f"dbp_stream_{next(_counter)}", row_factory=dict_row) as cur:
            cur.itersize = batch
            try:
                cur.execute(cast(Any, text), params)
            except (psycopg.DataError, psycopg.ProgrammingError) as exc:
                raise FilterError(f"{self.name}: {_cause(exc)}") from None
            yield from cur

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
        return [self._q(n) for n in row], [self._check(self.columns[n], v) for n, v in row.items()]

    def get_or_create(self, filter_by: Mapping[str, Any], **kwargs: Any) -> tuple[Row, bool]:
        """``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING *``, then a SELECT if the row existed."""
        node = parse(filter_by)
        eq = equalities(node)
        key = self._covering_key(list(eq), "get_or_create")
        row = {**kwargs, **eq}
        values = [self._check(self._column(n), v) for n, v in row.items()]
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
        if created is not None:
            return created, True
        found = self._select(node, [], None, limit=1)
        if not found:
            raise OperationError(
                f"get_or_create on {self.name}: a row with the same {', '.join(key)} exists but does not match "
                "the rest of the filter"
            )
        return found[0], False

    def _update_sql(self, node: Node, attrs: Mapping[str, Any], *, returning: bool = False
                    ) -> tuple[sql.Composable, list[Any]]:
        condition, params = self.where(node)
        sets = [sql.SQL("{} = %s").format(self._q(k)) for k in attrs]
        values = [self._check(self.columns[k], v) for k, v in attrs.items()]
        query = sql.SQL("UPDATE {} SET {} WHERE {}{}").format(
            self._table, sql.SQL(", ").join(sets), condition, sql.SQL(" RETURNING *" if returning else ""))
        return query, values + params

    def _update(self, node: Node, attrs: Mapping[str, Any]) -> int:
        return self._write(*self._update_sql(node, attrs), "update").rowcount

    def _write(self, query: Any, params: Sequence[Any], what: str) -> psycopg.Cursor[Any]:
        try:
            return self.db.execute_raw(query, params)
        except psycopg.IntegrityError as exc:
            raise OperationError(f"{what} on {self.name}: {_cause(exc)}") from None
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{what} on {self.name}: {_cause(exc)}") from None

    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        """UPDATE first (an existing row needs no other NOT NULL values), then INSERT ... ON CONFLICT."""
        eq = equalities(filter_by)
        key = self._covering_key(list(eq), "upsert")
        changes = {k: v for k, v in attrs.items() if k not in eq}
        if changes:
            updated: Optional[Row] = self._write(
                *self._update_sql(parse(eq), changes, returning=True), "upsert").fetchone()
            if updated is not None:
                return updated
        row = {**eq, **attrs}
        idents, values = self._values(row)
        updates = [k for k in row if k not in key] or [key[0]]
        insert = sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} RETURNING *"
        ).format(
            self._table, sql.SQL(", ").join(idents), sql.SQL(", ").join(sql.SQL("%s") for _ in values),
            sql.SQL(", ").join(self._q(k) for k in key),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(self._q(k)) for k in updates),
        )
        result: Optional[Row] = self._write(insert, values, "upsert").fetchone()
        assert result is not None  # DO UPDATE always returns the row
        return result

    def delete(self, filter_by: Filter) -> int:
        text, params = self._statement("delete", parse(filter_by))
        return self._write(text, params, "delete").rowcount

    def _bulk_update(
        self, instances: Sequence[Mapping[str, Any]], attrs: Sequence[Mapping[str, Any]], keys: list[str]
    ) -> int:
        key_columns = [self._column(k) for k in keys]
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, changes in enumerate(attrs):
            groups.setdefault(tuple(changes), []).append(i)
        changed = 0
        with self.db.transaction():
            for names, indexes in groups.items():
                set_columns = [self._column(n) for n in names]
                for start in range(0, len(indexes), _UPDATE_BATCH):
                    batch = indexes[start:start + _UPDATE_BATCH]
                    changed += self._update_batch(key_columns, set_columns, instances, attrs, batch)
        return changed

    def _update_batch(
        self, keys: list[Column], sets: list[Column], instances: Sequence[Mapping[str, Any]],
        attrs: Sequence[Mapping[str, Any]], batch: list[int],
    ) -> int:
        arrays: list[list[Any]] = []
        for column in keys:
            arrays.append([self._check(column, instances[i][column.name]) for i in batch])
        for column in sets:
            arrays.append([self._check(column, attrs[i][column.name]) for i in batch])
        aliases = [sql.Identifier(f"k{n}") for n in range(len(keys))] + [
            sql.Identifier(f"s{n}") for n in range(len(sets))]
        unnest = sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(c.type)) for c in [*keys, *sets]
        )
        query = sql.SQL("UPDATE {} AS t SET {} FROM unnest({}) AS v({}) WHERE {}").format(
            self._table,
            sql.SQL(", ").join(sql.SQL("{} = v.{}").format(self._q(c.name), aliases[len(keys) + n])
                               for n, c in enumerate(sets)),
            unnest, sql.SQL(", ").join(aliases),
            sql.SQL(" AND ").join(sql.SQL("t.{} = v.{}").format(self._q(c.name), aliases[n])
                                  for n, c in enumerate(keys)),
        )
        return self._write(query, arrays, "bulk_update").rowcount

    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode) -> int:
        # Rows are grouped by their keys, in the order the dicts hold them, so that each row is written
        # as tuple(row.values()) as a raw COPY would; each distinct key order is checked once.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, row in enumerate(rows):
            names = tuple(row)
            group = groups.get(names)
            if group is None:
                unknown = [k for k in names if k not in self.columns]
                if unknown:
                    raise FilterError(f"bulk_insert: row {i} has unknown column(s) {', '.join(map(repr, unknown))}; "
                                      f"{self.name}'s columns are {', '.join(self.columns)}")
                group = groups[names] = []
            group.append(i)
        key = self._key()
        if on_conflict == "update" and not key:
            raise FilterError(f"bulk_insert(on_conflict='update') on {self.name} needs a primary key")
        try:
            with self.db.transaction() as conn:
                if on_conflict == "error":
                    self._copy_all(conn, groups, rows)
                    return len(rows)
                try:  # the fast path: no row exists yet, so a plain COPY does it
                    with conn.transaction():
                        self._copy_all(conn, groups, rows)
                    return len(rows)
                except BulkWriteError as exc:
                    if exc.sqlstate != _UNIQUE_VIOLATION:
                        raise
                return self._merge(conn, groups, rows, on_conflict, key)
        except psycopg.Error as exc:  # from the INSERT ... SELECT: no row number, the detail names the key
            raise _bulk_error(self.name, exc, []) from None

    def _copy_all(self, conn: psycopg.Connection[Any], groups: dict[tuple[str, ...], list[int]],
                  rows: Sequence[Mapping[str, Any]], target: Optional[sql.Composable] = None) -> None:
        for names, indexes in groups.items():
            self._copy(conn, target or self._ident, names, rows, indexes)

    def _copy(self, conn: psycopg.Connection[Any], target: sql.Composable, names: tuple[str, ...],
              rows: Sequence[Mapping[str, Any]], indexes: list[int]) -> None:
        """COPY ``rows[i] for i in indexes``; an error names the caller's row index."""
        json_columns = [n for n in names if _category(self.columns[n].type) == "json"]
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, names)))
        current = -1
        try:
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                write = copy.write_row
                if json_columns:
                    for current in indexes:
                        row = rows[current]
                        write(tuple(Jsonb(v) if k in json_columns and v is not None else v for k, v in row.items()))
                else:
                    for current in indexes:
                        write(tuple(rows[current].values()))
                current = -1  # from here on the server reports the line
        except psycopg.Error as exc:
            match = _COPY_LINE.search(exc.diag.context or "")
            if match and 0 < int(match.group(1)) <= len(indexes):
                current = indexes[int(match.group(1)) - 1]
            raise _bulk_error(self.name, exc, [current] if current >= 0 else []) from None

    def _merge(self, conn: psycopg.Connection[Any], groups: dict[tuple[str, ...], list[int]],
               rows: Sequence[Mapping[str, Any]], on_conflict: str, key: list[str]) -> int:
        temp = sql.Identifier(f"_dbp_bulk_{next(_counter)}")
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            temp, self._ident))
        self._copy_all(conn, groups, rows, temp)
        if on_conflict == "ignore":
            cur = conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} ON CONFLICT DO NOTHING").format(
                self._ident, temp))
            return cur.rowcount
        keys = sql.SQL(", ").join(map(sql.Identifier, key))
        updates = [c for c in self.columns if c not in key] or key[:1]
        query = sql.SQL(
            "WITH written AS (INSERT INTO {target} SELECT DISTINCT ON ({keys}) * FROM {temp} "
            "ORDER BY {keys}, ctid DESC ON CONFLICT ({keys}) DO UPDATE SET {sets} RETURNING (xmax = 0) AS fresh) "
            "SELECT count(*) FILTER (WHERE fresh) AS n FROM written"
        ).format(
            target=self._ident, temp=temp, keys=keys,
            sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates),
        )
        found = conn.execute(query).fetchone()
        return int(found["n"]) if found else 0


def _bulk_error(table: str, exc: psycopg.Error, failing: list[int]) -> BulkWriteError:
    where = f"row {failing[0]}: " if failing else ""
    detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
    error = BulkWriteError(f"bulk_insert into {table}: {where}{_cause(exc)}{detail}; nothing was written", failing)
    error.sqlstate = exc.sqlstate
    return error


def _cause(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc).splitlines()[0]
