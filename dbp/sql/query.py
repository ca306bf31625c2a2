"""Queries on a PostgreSQL table: statements from :mod:`dbp.sql.build`, run here.

Bulk inserts go through COPY; conflicts are resolved by COPY into a temporary
table and ``INSERT ... SELECT ... ON CONFLICT``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import psycopg
from psycopg import sql

from dbp.errors import ConcurrencyError, DbpError, FilterError, OperationError
from dbp.filters import Node, SortKey, equalities, parse
from dbp.query import BaseQuery, ConflictMode, Filter, Round, Row
from dbp.sky import Match, cone_for, cones
from dbp.sql import cone_run
from dbp.sql.build import SQLBuilder, _adapted, _sources
from dbp.sql.bulk import LOCK_NOT_AVAILABLE, TRANSIENT, bulk_insert, retrying
from dbp.sql.catalog import Column
from dbp.sql.cone import select_statement
from dbp.sql.errors import query_error
from dbp.sql.types import ColumnRule
from dbp.sql.updates import compile_changes, operand_getter, operand_value, refusal, shape
from dbp.updates import Change, Columns, initial

if TYPE_CHECKING:
    from dbp.sql.connection import SQLConnection

__all__ = ["SQLQuery"]

_UPSERT_ROUNDS = 5
_counter = itertools.count()


class SQLQuery(SQLBuilder, BaseQuery):
    """Queries on one table; ``execute`` and the connection's ``transaction`` are the escape hatches.

    Statements are composed once per shape and kept per connection
    (:class:`dbp.sql.build.SQLBuilder`), so a repeated ``find_one`` costs little
    more than the driver's round trip.
    """

    db: SQLConnection
    #: "q3c" or "portable" forces a $cone path; None picks q3c where the extension and its index exist.
    cone_path: Optional[str]

    def __init__(self, db: SQLConnection, name: str) -> None:
        self.db = db
        self.statement_cache = db.statement_cache
        self.name = name
        self.cache_id = name
        self.table = db.table(name)
        self.columns = {c.name: c for c in self.table.columns}
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
        self.rules = {c: ColumnRule(name, c, column.type, base=column.base) for c, column in self.columns.items()}
        self._text = {c for c, rule in self.rules.items() if rule.category == "text"}
        self._unique_keys = self.table.unique_keys()
        self.cone_path = None

    def __repr__(self) -> str:
        return f"<SQLQuery {self.name} on {self.db.address}>"

    def _frame_columns(self) -> Optional[list[str]]:
        return list(self.columns)  # a named query's: its output columns, in order

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        """Raw SQL with parameters, on this query's connection."""
        return self.db.execute(query, params)

    # -- running -------------------------------------------------------------------------------

    def _run(self, query: Any, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        try:
            return self.db.execute_raw(query, params)
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{self.name}: {_cause(exc)}") from None
        except (TypeError, ValueError) as exc:  # a value psycopg cannot send (a lone surrogate, ...)
            raise FilterError(f"{self.name}: {_unsendable(exc)}") from None
        except psycopg.Error as exc:
            raise _driver_error(exc, f"query on {self.name}") from None

    # -- building --------------------------------------------------------------------------------

    def _sited(self, node: Node) -> None:
        """Where this table's cones are searched, read now if ``node`` has one: the builder reads no file and
        asks the server nothing (dbp.sql.cone_run)."""
        if next(cones(node), None) is not None:
            self._cone_site = cone_run.resolve(self)

    def _statement(
        self, kind: str, node: Node, sort: Sequence[SortKey] = (), projection: Optional[list[str]] = None,
        limit: bool = False, offset: bool = False,
    ) -> tuple[str, list[Any]]:
        self._sited(node)
        return super()._statement(kind, node, sort, projection, limit, offset)

    def _update_sql(self, node: Node, changes: Sequence[Change], *, returning: bool = False
                    ) -> tuple[sql.Composable, list[Any]]:
        self._sited(node)
        return super()._update_sql(node, changes, returning=returning)

    # -- primitives ----------------------------------------------------------------------------

    def _select(
        self, node: Node, sort: list[SortKey], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        centre = cone_for(node, sort, projection)
        text: Any
        if centre is not None:
            self._sited(node)
            text, params = select_statement(self, node, centre, sort, projection, limit is not None, bool(offset))
        else:
            text, params = self._statement("select", node, sort, projection, limit is not None, bool(offset))
        params += [limit] if limit is not None else []
        params += [offset] if offset else []
        rows: list[Row] = self._run(text, params).fetchall()
        return rows

    def _select_all(self, node: Node, sort: list[SortKey], projection: Optional[list[str]]
                    ) -> tuple[Any, list[Any]]:
        """The statement that reads every matching row, and its parameters (with ``$distance`` if named)."""
        centre = cone_for(node, sort, projection)
        if centre is not None:
            self._sited(node)
            return select_statement(self, node, centre, sort, projection, False, False)
        return self._statement("select", node, sort, projection)

    def _stream(
        self, node: Node, sort: list[SortKey], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        text, params = self._select_all(node, sort, projection)
        try:  # on a session of its own: the caller's writes while reading are never part of its transaction
            with self.db.stream_cursor(text, params, batch) as cur:
                yield from cur
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            raise FilterError(f"{self.name}: {_cause(exc)}") from None
        except (TypeError, ValueError) as exc:  # a value psycopg cannot send (a lone surrogate, ...)
            raise FilterError(f"{self.name}: {_unsendable(exc)}") from None

    def _crossmatch(self, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                    node: Node) -> list[Match]:
        return cone_run.crossmatch(self, positions, radius, nearest, node)

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

    def _bulk_update(self, keys: list[str], rounds: Sequence[Round],
                     origins: Optional[Sequence[Sequence[int]]] = None) -> int:
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

    def _check_keys(self, keys: list[str]) -> None:
        for key in keys:
            self._column(key)

    def _exact_keys(self, keys: list[str]) -> bool:
        """Integer columns, and text columns of a deterministic collation (equal only if byte for byte)."""
        rules = [self.rules.get(k) for k in keys]
        if not all(r is not None and (r.category == "int" or r.cast in ("text", "character varying")) for r in rules):
            return False
        return all(self.rules[k].category == "int" or self._key_info()[k].deterministic for k in keys)

    def _key_form(self, keys: list[str], value: tuple[Any, ...], where: str = "") -> tuple[Any, ...]:
        return tuple(self.rules[k].adapt(v, where=where) for k, v in zip(keys, value))

    def _key_info(self) -> dict[str, _KeyInfo]:
        """How the server compares each column's values (read once per table and connection)."""
        key = ("dbp.bulk.keys", self.name)
        found: Optional[dict[str, _KeyInfo]] = self.db.statement_cache.get(key)
        if found is None:
            rows = self._run(_KEY_INFO, (self.db.catalog().schema, self.name)).fetchall()
            found = {row["name"]: _KeyInfo(
                row["deterministic"] is not False, bool(row["equivalence"]),
                sql.SQL("") if row["collation"] is None else
                sql.SQL(" COLLATE {}").format(sql.Identifier(row["schema"], row["collation"]))) for row in rows}
            self.db.statement_cache[key] = found
        return found

    def _same_keys(self, keys: list[str], values: list[tuple[Any, ...]]) -> list[int]:
        """The server groups the keys by the ``=`` and the collation that find their rows.

        One ``GROUP BY`` (one per batch and pair of parameter batches) before
        anything is written, unless the keys are ints or text of a deterministic
        collation. An ``=`` that is not an equivalence (the type's default btree
        or hash operator class does not hold it, as for ``circle``) cannot group
        keys: 2 or more are refused.
        """
        if len(values) < 2 or self._exact_keys(keys):
            return list(range(len(values)))
        info = self._key_info()
        for k in keys:
            if not info[k].equivalence:
                raise FilterError(
                    f"bulk_update on {self.name}: {k} is {self.columns[k].type}, whose = the server does not keep "
                    "to an equivalence (no default btree or hash operator class holds it), so keys equal to one row "
                    "cannot be told apart; give one key per call, or use other filter_fields")
        names = sql.SQL(", ").join([sql.Identifier("i"), *(sql.Identifier(f"k{n}") for n in range(len(keys)))])
        group = sql.SQL(", ").join(sql.SQL("({}{})").format(sql.Identifier(f"k{n}"), info[k].collate)
                                   for n, k in enumerate(keys))
        sources = _sources(["bigint", *(self.rules[k].cast for k in keys)],
                           [list(range(len(values))), *(_adapted(self.rules[k], [v[n] for v in values])
                                                        for n, k in enumerate(keys))], len(values))
        first_of = list(range(len(values)))  # an equivalence: each key joins the class of the first equal to it

        def root(at: int) -> int:
            while first_of[at] != at:
                at = first_of[at]
            return at

        for x, (first, first_params) in enumerate(sources):  # each batch, and each pair of batches
            for y, (second, second_params) in enumerate(sources[x:], x):
                rows = sql.SQL("({}) UNION ALL ({})").format(first, second) if y > x else first
                query = sql.SQL("SELECT array_agg(i) AS same FROM ({rows}) AS v({names}) GROUP BY {group} "
                                "HAVING count(*) > 1").format(rows=rows, names=names, group=group)
                for row in self._run(query, [*first_params, *(second_params if y > x else [])]).fetchall():
                    low = min(root(at) for at in row["same"])
                    for at in row["same"]:
                        first_of[root(at)] = low
        return [root(at) for at in range(len(values))]

    def _bulk_update_columns(self, keys: list[str], key_values: list[list[Any]], columns: Columns,
                             where: str = "instances") -> int:
        key_columns = [self._column(k) for k in keys]
        first = list(columns.changes(0))
        for change in first:
            self._column(change.field)  # an unknown column is named, as update names it
            operand_value(self, change)  # the column takes this operator and the first operand
        rules = [self.rules[c.name] for c in key_columns] + [self.rules[c.field] for c in first]
        every = [*key_values, *columns.values]

        def values(used: list[int], batch: list[int]) -> list[list[Any]]:  # batch: every row
            return [_adapted(rules[n], every[n], f"bulk_update: {where}" if n < len(keys) else "bulk_update: attrs")
                    for n in [*range(len(keys)), *(len(keys) + n for n in used)]]

        def attempt() -> int:
            with self.db.transaction():
                return self._update_batches(key_columns, first, list(range(len(key_values[0]))), values, lock=True)

        return retrying(self.name, "bulk_update", attempt)

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
                     update_fields: Optional[Sequence[str]], key: Optional[list[str]] = None) -> int:
        return bulk_insert(self, rows, on_conflict, update_fields, key)

    def _check_conflict_key(self, key: list[str]) -> None:
        """Columns of the table, and, if it has a primary key or unique constraint or index, exactly one of them.

        A table with no unique key at all takes any columns (the merge locks the table instead: dbp.sql.bulk).
        """
        for k in key:
            if k not in self.columns:
                raise FilterError(f"bulk_insert: key names {k!r}, which is not a column of {self.name}; "
                                  f"its columns are {', '.join(self.columns)}")
        unique = self.table.unique_keys()
        partly = [i for i in self.table.partly_unique() if not i.columns or set(i.columns) <= set(key)]
        if partly and not any(set(u) == set(key) for u in unique):  # ON CONFLICT cannot name them; a merge by
            raise FilterError(  # key would write rows the index leaves out (an archived row, say)
                f"bulk_insert: {self.name}'s unique index {partly[0].name} ({partly[0].definition}) covers part of "
                f"the table or an expression, so key=[{', '.join(key)}] cannot say which stored row a new one "
                "meets; use on_conflict='error', or update by filter")
        if unique and not any(set(u) == set(key) for u in unique):
            raise FilterError(
                f"bulk_insert: key=[{', '.join(key)}] is not a unique key of {self.name}, so rows cannot conflict on "
                f"it; its unique keys: {'; '.join(', '.join(u) for u in unique)} (name one of them, or leave key out)")

    def _tie_break(self) -> list[str]:
        """The primary key; without one, every column whose type sorts, so that offset pages stay stable."""
        return self._key() or [c for c, rule in self.rules.items() if _sortable(rule)]

    def _stream_tie_break(self) -> list[str]:
        """The primary key: a keyless table streams without sorting every row first (ties come in any order)."""
        return self._key()


class _KeyInfo(NamedTuple):
    """How the server compares a column's values as keys."""

    #: False for a nondeterministic collation (values unequal byte for byte may be equal).
    deterministic: bool
    #: True if the type's default btree or hash operator class holds its ``=`` (an equivalence, which GROUP BY
    #: groups by).
    equivalence: bool
    #: `` COLLATE "schema"."name"`` (empty for a type without a collation).
    collate: sql.Composable


#: Each column's collation, and whether its type's = (or that of a type it is binary-coercible to) is an equivalence:
#: the equality of the type's default btree or hash operator class.
_KEY_INFO = """
SELECT a.attname AS name, co.collisdeterministic AS deterministic, cn.nspname AS schema, co.collname AS collation,
       EXISTS (SELECT 1 FROM pg_opclass oc
               JOIN pg_am m ON m.oid = oc.opcmethod
               JOIN pg_amop p ON p.amopfamily = oc.opcfamily
               JOIN pg_operator o ON o.oid = p.amopopr
               WHERE oc.opcdefault AND m.amname IN ('btree', 'hash') AND o.oprname = '='
                 AND o.oprleft = oc.opcintype AND o.oprright = oc.opcintype
                 AND (oc.opcintype = b.t OR oc.opcintype IN (
                     SELECT casttarget FROM pg_cast WHERE castsource = b.t AND castmethod = 'b' AND castcontext = 'i')
               )) AS equivalence
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type ty ON ty.oid = a.atttypid
CROSS JOIN LATERAL (SELECT CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE a.atttypid END AS t) AS b
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


def _sortable(rule: ColumnRule) -> bool:
    """Whether a column's values sort (its type has an ordering), by its kind: unknown types are left out."""
    if rule.category == "array":
        return rule.element not in ("other", "json")
    return rule.category != "other" and rule.cast != "json"


def _driver_error(exc: psycopg.Error, what: str) -> DbpError:
    """A lock or deadlock (another writer: worth a retry) as ConcurrencyError, anything else as QueryError."""
    if exc.sqlstate in TRANSIENT or exc.sqlstate == LOCK_NOT_AVAILABLE:
        return ConcurrencyError(f"{what}: {_cause(exc)}; nothing of this call was written, and it can be retried")
    return query_error(exc, what)


def _unsendable(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


def _cause(exc: psycopg.Error) -> str:
    return refusal(exc.diag.message_primary or str(exc).splitlines()[0])
