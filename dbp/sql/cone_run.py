"""``$cone`` and crossmatch on PostgreSQL, the running half: where a table's cones are searched, and crossmatch.

:mod:`dbp.sql.cone` builds the statements and runs nothing; this module
finds what it needs first (:func:`resolve`: the position columns and the
path, a :class:`dbp.sql.cone.Site`) and runs crossmatch's statement.

Where a table keeps positions is read from ``positions.toml`` in the SQL
folder (the bundled one declares ``object`` and ``detection``)::

    [object]
    ra = "meanra"
    dec = "meandec"
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from psycopg import sql
from psycopg.rows import tuple_row

from dbp._bundled import schema_set
from dbp.errors import ConfigError, FilterError
from dbp.filters import Node
from dbp.sky import Match, Position, nearest_first
from dbp.sql.cone import PATHS, Site, crossmatch_statement

if TYPE_CHECKING:
    from dbp.sql.query import SQLQuery

__all__ = ["DECLARATION", "crossmatch", "declarations", "explain", "path", "position", "resolve", "statement"]

DECLARATION = "positions.toml"
_CACHE: dict[tuple[Path, int], dict[str, Position]] = {}
_LOCK = threading.Lock()


def declarations(root: Path) -> dict[str, Position]:
    """``positions.toml`` of the SQL schema folder ``root``: each table's position columns (none: no file)."""
    file = root / DECLARATION
    try:
        stamp = file.stat().st_mtime_ns
    except OSError:
        return {}
    with _LOCK:
        found = _CACHE.get((root, stamp))
    if found is not None:
        return found
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {file}: {exc}") from None
    out: dict[str, Position] = {}
    for table, spec in doc.items():
        unknown = sorted(set(spec) - {"ra", "dec"}) if isinstance(spec, dict) else []
        if unknown:
            raise ConfigError(f"{file}: [{table}]: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                              "valid keys are ra, dec")
        if (not isinstance(spec, dict) or set(spec) != {"ra", "dec"}
                or not all(isinstance(v, str) and v for v in spec.values())):
            raise ConfigError(f'{file}: [{table}] takes ra = "column" and dec = "column", nothing else')
        out[table] = Position(ra=spec["ra"], dec=spec["dec"])
    with _LOCK:
        _CACHE[(root, stamp)] = out
    return out


def position(q: SQLQuery) -> Position:
    """The table's declared position columns (a named query's ``-- position:`` line); FilterError if none."""
    from dbp.named import editable
    from dbp.sql.source import SQLSource

    if isinstance(q, SQLSource):
        declared = q.statement.position
        if declared is None:
            where = "the statement" if q.statement.where == "inline SQL" else editable(q.statement.where)
            raise FilterError(f"{q.name} declares no position for $cone / crossmatch; add a line "
                              f"'-- position: <ra column>, <dec column>' to the comments that open {where}")
        found = Position(ra=declared[0], dec=declared[1])
    else:
        root = q.db.settings.schema_dir or schema_set("sql")
        table = declarations(root).get(q.name)
        if table is None:
            raise FilterError(
                f"{q.name} declares no position for $cone / crossmatch; " + (
                    f"add [{q.name}] with ra and dec columns to {root / DECLARATION}" if q.db.settings.schema_dir
                    else f"add [{q.name}] with ra and dec columns to {DECLARATION} in your SQL schema folder and "
                    "set SCHEMA_DIR to it (dbp init-project copies dbp's bundled one)"))
        found = table
    q._column(found.ra)
    q._column(found.dec)
    return found


#: True where the statements built in dbp.sql.cone can call q3c (installed, and its schema on the search_path).
_Q3C_CALLABLE = sql.SQL("to_regprocedure('q3c_join(double precision, double precision, double precision, "
                        "double precision, double precision)') IS NOT NULL")


def path(q: SQLQuery) -> str:
    """``"q3c"`` if q3c's functions are on the search_path and a q3c index (not a partial one) covers the
    table's position, else ``"portable"``.

    Read once per connection (``q.cone_path`` forces one). A named query's
    cones take the portable path unless its ``cone_path`` is ``"q3c"``.
    """
    if q.cone_path is not None:
        if q.cone_path not in PATHS:
            raise FilterError(f"cone_path is one of {', '.join(PATHS)} or None, not {q.cone_path!r}")
        if q.cone_path == "q3c" and not _has_q3c(q):
            raise FilterError(f"{q.name}: cone_path is 'q3c' but this database has no q3c extension on its "
                              "search_path (CREATE EXTENSION q3c, or leave cone_path as None)")
        return q.cone_path
    from dbp.sql.source import SQLSource

    if isinstance(q, SQLSource):
        return "portable"  # a named query's rows have no index of their own; q3c must be asked for
    key = ("dbp.cone.path", q.name)
    found: Optional[str] = q.db.statement_cache.get(key)
    if found is None:
        where = position(q)
        row = q.db.execute_raw(sql.SQL(
            "SELECT {} AND EXISTS ("
            " SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname = %s"
            " AND i.indisvalid AND i.indpred IS NULL AND pg_get_indexdef(i.indexrelid) LIKE"
            " '%%q3c_ang2ipix(' || quote_ident(%s) || ', ' || quote_ident(%s) || ')%%') AS q3c").format(_Q3C_CALLABLE),
            (q.name, q.db.catalog().schema, where.ra, where.dec)).fetchone()
        found = "q3c" if row and row["q3c"] else "portable"
        q.db.statement_cache[key] = found
    return found


def _has_q3c(q: SQLQuery) -> bool:
    key = ("dbp.cone.q3c",)
    if q.db.statement_cache.get(key):
        return True
    row = q.db.execute_raw(sql.SQL("SELECT {} AS q3c").format(_Q3C_CALLABLE)).fetchone()
    found = bool(row and row["q3c"])
    if found:  # a missing extension is looked up again: it may be created in the meantime
        q.db.statement_cache[key] = True
    return found


def resolve(q: SQLQuery) -> Site:
    """Where ``q``'s cones are searched, read now (the builder's :class:`~dbp.sql.cone.Site`)."""
    return Site(position(q), path(q))


def statement(q: SQLQuery, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
              node: Node) -> tuple[sql.Composable, list[Any]]:
    """Crossmatch's statement (:func:`dbp.sql.cone.crossmatch_statement`), ``q``'s site resolved first."""
    q._cone_site = resolve(q)
    return crossmatch_statement(q, positions, radius, nearest, node)


def crossmatch(q: SQLQuery, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
               node: Node) -> list[Match]:
    """One statement (see :func:`dbp.sql.cone.crossmatch_statement`), its rows read by position."""
    query, params = statement(q, positions, radius, nearest, node)
    cur = q._run(query, params)
    cur.row_factory = cast(Any, tuple_row)
    names = [c.name for c in cur.description or []][2:]
    found: dict[int, list[tuple[float, int, dict[str, Any]]]] = {}
    for n, (i, distance, *values) in enumerate(cast(list[tuple[Any, ...]], cur.fetchall())):
        found.setdefault(i, []).append((float(distance), n, dict(zip(names, values))))
    return nearest_first(found, [p[0] for p in positions], nearest)


def explain(q: SQLQuery, query: Any, params: list[Any]) -> str:
    """The plan of a statement built by :mod:`dbp.sql.cone` or :meth:`SQLQuery._statement` (for tests and
    benchmarks)."""
    text = query if isinstance(query, str) else query.as_string(None)
    rows = q._run("EXPLAIN " + text, params).fetchall()
    return "\n".join(str(next(iter(r.values()))) for r in rows)
