"""Named and inline SQL statements as read-only, pageable sources, and named writes.

A source compiles a request as ``SELECT ... FROM (<statement>) AS q WHERE ...
ORDER BY ... LIMIT ...``: the filter language, sort and projection apply to the
statement's output columns, which are learnt by running it once with ``LIMIT
0`` and cached per connection. The statement's own parameters come first, the
filter's after them, all as server-side parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat, Transformer

from dbp._redact import shown
from dbp.errors import ConfigError, FilterError
from dbp.filters import After, Node, SortKey
from dbp.named import NamedSQL, Queries, parse_sql, queries_for
from dbp.query import ReadOnly, Row, check_name
from dbp.sql.catalog import Column, Table
from dbp.sql.errors import query_error
from dbp.sql.query import SQLQuery, _unsendable
from dbp.sql.types import ColumnRule

if TYPE_CHECKING:
    from dbp.sql.connection import SQLConnection

__all__ = ["SQLSource", "inline", "resolve", "run"]

#: The output columns, their quoted names, and the columns whose type has no ordering.
Described = tuple[dict[str, Column], dict[str, sql.SQL], frozenset[str]]

#: Each output type's name, and whether ORDER BY can sort it: the type (a domain's base type, an array's
#: element type) has a default btree operator class, its own, a polymorphic one (enum, range, composite)
#: or one of a type it is binary-coercible to (varchar: text's). Decided by the catalog, not a list of names.
#: An array is a varlena type with an element and array subscripting (point's typelem is set too).
_TYPES = """
WITH RECURSIVE u(t, n) AS (SELECT * FROM unnest(%s::oid[]) WITH ORDINALITY),
b(n, t) AS (
  SELECT n, t FROM u
  UNION ALL
  SELECT b.n, CASE ty.typtype WHEN 'd' THEN ty.typbasetype ELSE ty.typelem END
  FROM b JOIN pg_type AS ty ON ty.oid = b.t WHERE ty.typtype = 'd'
    OR (ty.typelem <> 0 AND ty.typsubscript = 'array_subscript_handler'::regproc
        AND ty.typlen = -1))
SELECT format_type(u.t, NULL) AS type, COALESCE((
  SELECT bool_and(EXISTS (
    SELECT 1 FROM pg_opclass AS oc JOIN pg_am AS am ON am.oid = oc.opcmethod
    WHERE am.amname = 'btree' AND oc.opcdefault AND (oc.opcintype = b.t
      OR oc.opcintype = CASE ty.typtype WHEN 'e' THEN 'anyenum'::regtype WHEN 'r' THEN 'anyrange'::regtype
                                        WHEN 'm' THEN 'anymultirange'::regtype WHEN 'c' THEN 'record'::regtype END
      OR EXISTS (SELECT 1 FROM pg_cast AS c
                 WHERE c.castsource = b.t AND c.casttarget = oc.opcintype AND c.castmethod = 'b'))))
  FROM b JOIN pg_type AS ty ON ty.oid = b.t
  WHERE b.n = u.n AND NOT (ty.typtype = 'd'
    OR (ty.typelem <> 0 AND ty.typsubscript = 'array_subscript_handler'::regproc
        AND ty.typlen = -1))), FALSE) AS sortable
FROM u ORDER BY u.n"""


def _wrapped(statement: NamedSQL) -> sql.Composed:
    """The statement as a subquery; its text is the project's (a file, or the caller's db.sql), never a value."""
    return sql.SQL("SELECT * FROM (\n{}\n) AS q").format(sql.SQL(statement.text))


def describe(db: SQLConnection, statement: NamedSQL, values: Sequence[Any]) -> Described:
    """The statement's output columns (name, type) and their quoted names; cached per connection.

    The description runs with a parameter, so through the extended protocol,
    which takes one statement only: a text that closes the subquery to add a
    statement of its own (``SELECT 1) AS q; DELETE ...``) fails here, before
    anything runs, and every later statement shares this one's prefix. The
    cache key holds the types the parameters are sent as, on which output types depend.
    """
    key = ("describe", statement.text, tuple(sorted(statement.not_null)), sent_types(values))
    cached: Optional[Described] = db.statement_cache.get(key)
    if cached is not None:
        return cached
    cur = _execute(db, statement, _wrapped(statement) + sql.SQL(" LIMIT %s"), [*values, 0])
    description = cur.description or []
    names = [c.name for c in description]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{statement.where}: output column(s) {', '.join(twice)} appear more than once; "
                          "name each with AS")
    for what, wanted in (("key", statement.key), ("not null", sorted(statement.not_null)),
                         ("position", statement.position or ())):
        stray = [k for k in wanted if k not in names]
        if stray:
            raise ConfigError(f"{statement.where}: the -- {what}: line names {', '.join(stray)}, which is not an "
                              f"output column ({', '.join(names)})")
    oids = [c.type_code for c in description]
    rows = _execute(db, statement, _TYPES, [oids]).fetchall() if oids else []
    columns = {n: Column(n, str(r["type"]), n in statement.not_null) for n, r in zip(names, rows)}
    unsortable = frozenset(n for n, r in zip(names, rows) if not r["sortable"])
    with db.connection() as conn:
        quoted = {n: sql.SQL("q." + sql.Identifier(n).as_string(conn).replace("%", "%%")) for n in names}
    described = (columns, quoted, unsortable)
    db.statement_cache[key] = described
    return described


def sent_types(values: Sequence[Any]) -> tuple[Any, ...]:
    """The type oids psycopg sends ``values`` as (0: the server infers it), which decide a statement's output
    types: an element's type for a list, timestamptz or timestamp for an aware or naive datetime, int2 to
    numeric by an int's size. Values psycopg cannot send key by their class (running them fails anyway)."""
    transformer = Transformer()
    try:
        transformer.dump_sequence(values, [PyFormat.AUTO] * len(values))
    except (psycopg.Error, TypeError, ValueError, OverflowError):
        return ("unsendable", *(type(v).__qualname__ for v in values))
    return tuple(transformer.types or ())


def _execute(db: SQLConnection, statement: NamedSQL, text: Any, values: Sequence[Any]) -> psycopg.Cursor[Any]:
    try:
        return db.execute_raw(text, list(values))
    except (TypeError, ValueError) as exc:  # a value psycopg cannot send
        raise FilterError(f"{statement.name}: {_unsendable(exc)}") from None
    except psycopg.Error as exc:
        raise query_error(exc, f"query {statement.name}", query=statement.name) from None


class SQLSource(ReadOnly, SQLQuery):
    """A read-only query object over a named (or inline) statement; get one with ``db.query(name, params)``."""

    def __init__(self, db: SQLConnection, statement: NamedSQL, params: Optional[Mapping[str, Any]]) -> None:
        if statement.writes:
            raise FilterError(f"{statement.name} is a named write ({statement.verb.upper()}): run it with "
                              "db.run(name, params); db.query reads")
        self.db = db
        self.statement_cache = db.statement_cache
        self.name = statement.name
        self.statement = statement
        self._bound = statement.bind(params)
        self.cache_id = ("source", statement.text, tuple(sorted(statement.not_null)), sent_types(self._bound))
        self.columns, self._names, self._unsortable = describe(db, statement, self._bound)
        self.table = Table(statement.name, columns=list(self.columns.values()))
        self._table = sql.SQL("(\n" + statement.text + "\n) AS q")  # the project's text, as _wrapped
        self._collate = not db.code_point_collation()
        self.rules = {c: ColumnRule(self.name, c, column.type) for c, column in self.columns.items()}
        self._text = {c for c, rule in self.rules.items() if rule.category == "text"}
        self._unique_keys = []
        self.cone_path = None

    def __repr__(self) -> str:
        return f"<SQLSource {self.name} on {self.db.address}>"

    def _key(self) -> list[str]:
        return list(self.statement.key)

    def _from_item(self) -> tuple[sql.Composable, str, str, list[Any]]:
        """The statement, already ``(...) AS q``: its columns are ``q."name"``, its parameters come first."""
        return self._table, "", "q", list(self._bound)

    def _tie_break(self) -> list[str]:
        """Without a declared key, every output column whose type sorts (see _TYPES), so that ties sort one way
        on every page (PostgreSQL's top-N sort orders ties differently for each LIMIT). Keyset pages
        still need a declared key: rows equal in every column would be one position."""
        return list(self.statement.key) or [c for c in self.columns if c not in self._unsortable]

    def _stream_tie_break(self) -> list[str]:
        return self._tie_break()  # a named query's stream sorts as its pages do

    def _token_scope(self) -> Any:
        return [self.name, self.statement.text, repr(self._bound)]

    def _statement(self, kind: str, node: Node, sort: Sequence[SortKey] = (),
                   projection: Optional[list[str]] = None, limit: bool = False, offset: bool = False,
                   ) -> tuple[str, list[Any]]:
        text, params = super()._statement(kind, node, sort, projection, limit, offset)
        return text, [*self._bound, *params]

    def _after(self, node: After, params: list[Any], shape: list[Any], build: bool) -> Optional[sql.Composable]:
        """The keyset condition, led by a plain bound on the first sort key so that an index can start there.

        Output columns may be NULL, so the condition is usually the expanded
        OR of ANDs, which no index serves; where the first key's NULLs sort
        first, the rows after its non-null value all have a value at least as
        large (ascending) or at most as large (descending).
        """
        first, value = node.keys[0], node.values[0]
        field, direction = first.field, first.direction
        if value is None or (first.nulls_last and not self._column(field).not_null):
            return super()._after(node, params, shape, build)
        params.append(self._check(self._column(field), value))
        shape.append(("lead", field, direction))
        rest = super()._after(node, params, shape, build)
        if not build:
            return None
        lead = sql.Composed([self._ref(field, ordering=True), sql.SQL(" >= %s" if direction == 1 else " <= %s")])
        return sql.Composed([sql.SQL("("), lead, sql.SQL(" AND "), rest or sql.SQL("TRUE"), sql.SQL(")")])

    def _run(self, query: Any, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        return _execute(self.db, self.statement, query, params)

    def _stream(self, node: Node, sort: list[SortKey], projection: Optional[list[str]], batch: int
                ) -> Iterator[Row]:
        text, params = self._select_all(node, sort, projection)
        try:
            with self.db.stream_cursor(text, params, batch) as cur:
                yield from cur
        except (TypeError, ValueError) as exc:
            raise FilterError(f"{self.name}: {_unsendable(exc)}") from None
        except psycopg.Error as exc:
            raise query_error(exc, f"query {self.name}", query=self.name) from None


# -- the connection's entry points ----------------------------------------------------------------


def queries(db: SQLConnection) -> Queries:
    """The connection's named queries (files are read when first used)."""
    found = db.named_queries
    if found is None:
        found = db.named_queries = queries_for(db.settings.queries_dir, db.settings.schema_set)
    return found


def _named(db: SQLConnection, name: Any) -> Optional[NamedSQL]:
    found = queries(db).get(name, ".sql")
    assert found is None or isinstance(found, NamedSQL)
    return found


def resolve(db: SQLConnection, name: str, params: Optional[Mapping[str, Any]]) -> SQLQuery:
    """``db.query(name)``: a table's query, or a named query's source (see README, Named queries)."""
    check_name(name, "a table or query name")
    statement = _named(db, name)
    if statement is not None:
        decided = db.statement_cache.get(("resolved", name))
        if decided is None:
            is_table = name in db.catalog().tables or db._table_exists(name)
            if is_table and not queries(db).bundled(name, ".sql"):
                raise ConfigError(f"{name} is both a table and a named query ({statement.where}); "
                                  "rename the query file")
            decided = "table" if is_table else "query"
            db.statement_cache[("resolved", name)] = decided
        if decided == "query":
            return SQLSource(db, statement, params)
    if params is not None:
        raise FilterError(f"table {shown(name, 60)} takes no parameters (there is no named query {shown(name, 60)})")
    return db.table_query(name)


def inline(db: SQLConnection, text: Any, params: Optional[Mapping[str, Any]]) -> SQLSource:
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise FilterError("db.sql takes the statement as a non-empty string without NUL")
    try:  # the caller's text: its mistakes are the caller's, not the configuration's
        return SQLSource(db, parse_sql("inline SQL", text, "inline SQL"), params)
    except ConfigError as exc:
        failure = FilterError(str(exc))
    raise failure


def run(db: SQLConnection, name: Any, params: Optional[Mapping[str, Any]]) -> Union[int, list[Row]]:
    """``db.run(name, params)``: the returned rows if the statement returns any, else the row count."""
    check_name(name, "a named query")
    statement = _named(db, name)
    if statement is None:
        known = ", ".join(queries(db).names(".sql")) or "none"
        raise FilterError(f"no named query {shown(name, 60)}; named queries: {known}")
    return run_statement(db, statement, params)


def run_statement(db: SQLConnection, statement: NamedSQL, params: Optional[Mapping[str, Any]]
                  ) -> Union[int, list[Row]]:
    """Run ``statement`` (one statement, whatever its text holds): its rows, or its row count.

    A trailing comment holds one more parameter, unused, so that the statement
    always goes through the extended protocol, which runs one statement only
    (psycopg sends a statement without parameters through the simple one, which
    runs every statement in the text, COMMIT included).
    """
    text = statement.text + "\n/* %s */"
    cur = _execute(db, statement, text, [*statement.bind(params), 0])
    if cur.description is not None:
        rows: list[Row] = cur.fetchall()
        return rows
    return int(cur.rowcount)
