"""``$cone``, ``$distance`` and crossmatch on PostgreSQL: statements built here, run by :mod:`dbp.sql.query`.

Two paths give the same rows. With the q3c extension and a q3c index on the
table's position (migration 0001 makes one where q3c is installed), q3c finds
candidates; otherwise a dec band and ra range(s) (:func:`dbp.sky.box`) do, on a
btree over dec. Both then keep the rows whose exact distance
(:data:`dbp.sky.separation`'s formula, in SQL) is at most the radius, so q3c's
own boundary never decides.

On the q3c path every cone and crossmatch uses ``q3c_join(ra0, dec0, ra, dec,
r)``, the cone search q3c's README gives besides ``q3c_radial_query``: 4 ipix
ranges. ``q3c_radial_query`` is not used: in q3c 2.0 its cover of a cone wider
than a minute centred near one of q3c's cube corners (ra 45 + 90k, dec
+-35.26) leaves out rows (tests/test_adversary_q3c.py), and its 100 ranges cost
about 2 ms of planning per statement, ten times a 2" cone's whole cost.

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
from dbp.filters import Node, SortKey
from dbp.sky import (
    DISTANCE,
    DISTANCE_FIELD,
    SLACK,
    Cone,
    Match,
    Position,
    arcsec_to_degrees,
    box,
    nearest_first,
)

if TYPE_CHECKING:
    from dbp.sql.build import SQLBuilder
    from dbp.sql.query import SQLQuery

__all__ = ["DECLARATION", "compile_cone", "crossmatch", "crossmatch_statement", "explain", "path",
           "position", "select_statement"]

DECLARATION = "positions.toml"
PATHS = ("q3c", "portable")
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


def position(q: SQLBuilder) -> Position:
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


#: True where the statements built here can call q3c (installed, and its schema on the search_path).
_Q3C_CALLABLE = sql.SQL("to_regprocedure('q3c_join(double precision, double precision, double precision, "
                        "double precision, double precision)') IS NOT NULL")


def path(q: SQLBuilder) -> str:
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
    if _source(q)[2] == "q":
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


def _has_q3c(q: SQLBuilder) -> bool:
    key = ("dbp.cone.q3c",)
    if q.db.statement_cache.get(key):
        return True
    row = q.db.execute_raw(sql.SQL("SELECT {} AS q3c").format(_Q3C_CALLABLE)).fetchone()
    found = bool(row and row["q3c"])
    if found:  # a missing extension is looked up again: it may be created in the meantime
        q.db.statement_cache[key] = True
    return found


def _distance(ra: sql.Composable, dec: sql.Composable, lam: sql.Composable, cos_d: sql.Composable,
              sin_d: sql.Composable) -> sql.Composable:
    """The distance in arcseconds from a centre given as (ra in radians, cos dec, sin dec): atan2 form."""
    return sql.SQL(
        "(degrees(atan2(sqrt(power(cos(radians({D})) * sin(radians({R}) - {L}), 2)"
        " + power({C} * sin(radians({D})) - {S} * cos(radians({D})) * cos(radians({R}) - {L}), 2)),"
        " {S} * sin(radians({D})) + {C} * cos(radians({D})) * cos(radians({R}) - {L}))) * 3600.0)"
    ).format(D=dec, R=ra, L=lam, C=cos_d, S=sin_d)


_P = sql.SQL("%s")


def _cone_distance(q: SQLBuilder, cone: Cone, params: list[Any], prefix: str = "") -> sql.Composable:
    """The distance to ``cone``'s centre, its 7 parameters appended in text order."""
    where = position(q)
    lam, cos_d, sin_d = cone.trig
    params += [lam, cos_d, sin_d, lam, sin_d, cos_d, lam]  # L, C, S, L, S, C, L as they appear below
    return _distance(_col(q, where.ra, prefix), _col(q, where.dec, prefix), _P, _P, _P)


def _col(q: SQLBuilder, name: str, prefix: str) -> sql.Composable:
    return sql.Composed([sql.SQL(prefix), q._q(name)]) if prefix else q._q(name)


def _collated(q: SQLBuilder, name: str, ref: sql.Composable) -> sql.Composable:
    """``ref`` ordered code point by code point if it is text, as ``q._ref(name, ordering=True)``."""
    if q._collate and name in q._text:
        return sql.Composed([ref, sql.SQL(' COLLATE "C"')])
    return ref


def compile_cone(q: SQLBuilder, cone: Cone, params: list[Any], shape: list[Any], build: bool
                 ) -> Optional[sql.Composable]:
    """The WHERE condition for ``cone`` (see the module's docstring)."""
    where = position(q)
    how = path(q)
    ra, dec = q._q(where.ra), q._q(where.dec)
    parts: list[sql.Composable] = []
    if how == "q3c":
        params += [cone.ra, cone.dec, arcsec_to_degrees(cone.radius) * (1 + SLACK) + 1e-9]
        shape.append(("cone", "q3c"))
        parts.append(sql.SQL("q3c_join(%s, %s, {}, {}, %s)").format(ra, dec))
    else:
        bounds = box(cone)
        params += [bounds.dec_min, bounds.dec_max]
        parts.append(sql.SQL("{} BETWEEN %s AND %s").format(dec))
        for lo, hi in bounds.ra_ranges:
            params += [lo, hi]
        if bounds.ra_ranges:
            parts.append(sql.Composed([sql.SQL("("), sql.SQL(" OR ").join(
                sql.SQL("{} BETWEEN %s AND %s").format(ra) for _ in bounds.ra_ranges), sql.SQL(")")]))
        shape.append(("cone", "portable", len(bounds.ra_ranges)))
    distance = _cone_distance(q, cone, params)
    params.append(cone.radius)
    if not build:
        return None
    parts.append(sql.SQL("{} <= %s").format(distance))
    return sql.Composed([sql.SQL("("), sql.SQL(" AND ").join(parts), sql.SQL(")")])


def select_statement(q: SQLBuilder, node: Node, cone: Cone, sort: list[SortKey],
                     projection: Optional[list[str]], limit: bool, offset: bool) -> tuple[sql.Composable, list[Any]]:
    """A SELECT whose sort or projection names ``$distance`` (the distance to ``cone``'s centre)."""
    params: list[Any] = []
    if projection is None:
        columns: sql.Composable = sql.SQL("*")
    else:
        items: list[sql.Composable] = []
        for name in projection:
            if name == DISTANCE:
                items.append(sql.SQL("{} AS {}").format(_cone_distance(q, cone, params),
                                                        sql.Identifier(DISTANCE_FIELD)))
            else:
                items.append(q._q(name))
        columns = sql.SQL(", ").join(items)
    table, _, _, bound = _source(q)
    params += bound
    condition = q._compile(node, params, [], build=True)
    assert condition is not None
    order: list[sql.Composable] = []
    for key in sort:
        if key.field == DISTANCE:
            # a row without a position has no distance: NULLs first ascending, as everywhere in dbp
            order.append(sql.SQL("{} {}").format(_cone_distance(q, cone, params), sql.SQL(
                "ASC NULLS FIRST" if key.direction == 1 else "DESC NULLS LAST")))
        else:
            order.append(q._order_item(key))
    query = sql.SQL("SELECT {} FROM {} WHERE {}{}{}{}").format(
        columns, table, condition,
        sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order) if order else sql.SQL(""),
        sql.SQL(" LIMIT %s") if limit else sql.SQL(""), sql.SQL(" OFFSET %s") if offset else sql.SQL(""))
    return query, params


_FIELDS = ("i", "l", "c", "s", "ra", "dec", "dlo", "dhi", "a1", "b1", "a2", "b2")


def crossmatch(q: SQLQuery, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
               node: Node) -> list[Match]:
    """One statement: the positions ``unnest``-ed, each joined LATERAL with its cone (nearest first).

    Its rows are read by position (the position's index, the distance, then
    the table's columns), so no column of the table can be taken for dbp's.
    """
    query, params = crossmatch_statement(q, positions, radius, nearest, node)
    cur = q._run(query, params)
    cur.row_factory = cast(Any, tuple_row)
    names = [c.name for c in cur.description or []][2:]
    found: dict[int, list[tuple[float, int, dict[str, Any]]]] = {}
    for n, (i, distance, *values) in enumerate(cast(list[tuple[Any, ...]], cur.fetchall())):
        found.setdefault(i, []).append((float(distance), n, dict(zip(names, values))))
    return nearest_first(found, [p[0] for p in positions], nearest)


def unused(q: SQLBuilder, base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ...: the first that names none of ``q``'s columns."""
    name, n = base, 0
    while name in q.columns:
        n += 1
        name = f"{base}_{n}"
    return name


def _source(q: SQLBuilder) -> tuple[sql.Composable, str, str, list[Any]]:
    """The FROM item of ``q``'s rows, the prefix of its columns' references, its alias and its parameters.

    A named query's statement is already ``(...) AS q``, its columns ``q."name"``.
    """
    from dbp.sql.source import SQLSource

    if isinstance(q, SQLSource):
        return q._table, "", "q", list(q._bound)
    return sql.SQL("{} AS t").format(q._table), "t.", "t", []


def crossmatch_statement(q: SQLBuilder, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                         node: Node) -> tuple[sql.Composable, list[Any]]:
    where = position(q)
    how = path(q)
    columns: list[list[Any]] = [[] for _ in _FIELDS]
    for i, (_, ra, dec) in enumerate(positions):
        cone = Cone(ra, dec, radius)
        bounds = box(cone)
        ranges = list(bounds.ra_ranges) or [(0.0, 360.0)]
        ranges += [(1.0, 0.0)] * (2 - len(ranges))  # an empty second range
        lam, cos_d, sin_d = cone.trig
        for column, value in zip(columns, (i, lam, cos_d, sin_d, ra, dec, bounds.dec_min, bounds.dec_max,
                                           ranges[0][0], ranges[0][1], ranges[1][0], ranges[1][1])):
            column.append(value)
    table, prefix, alias, bound = _source(q)
    ra_ref, dec_ref = _col(q, where.ra, prefix), _col(q, where.dec, prefix)
    p = {f: sql.SQL("p.{}").format(sql.Identifier(f)) for f in _FIELDS}
    distance = _distance(ra_ref, dec_ref, p["l"], p["c"], p["s"])
    if how == "q3c":
        candidates: sql.Composable = sql.SQL("q3c_join(p.ra, p.dec, {}, {}, %s)").format(ra_ref, dec_ref)
        extra: list[Any] = [arcsec_to_degrees(radius) * (1 + SLACK) + 1e-9]
    else:
        candidates = sql.SQL("{D} BETWEEN p.dlo AND p.dhi AND ({R} BETWEEN p.a1 AND p.b1 OR {R} BETWEEN p.a2 AND p.b2)"
                             ).format(D=dec_ref, R=ra_ref)
        extra = []
    condition, filter_params = q.where(node)
    name = sql.Identifier(unused(q, "_dbp_distance"))  # a name no column of the table has
    ties = q._tie_break()  # the key, or every sortable column of a keyless named query (as find_all and MongoDB)
    key = [_collated(q, k, _col(q, k, prefix)) for k in ties]
    inner_order = sql.SQL(", ").join([sql.SQL("1"), *key])
    # every match: each position's in distance order, ties lowest key first (as on MongoDB)
    with q.db.connection() as conn:  # a % in a name is doubled: the statement has %s parameters
        outer = [_collated(q, k, sql.SQL("m." + sql.Identifier(k).as_string(conn).replace("%", "%%")))
                 for k in ties]
    outer_order = sql.SQL(", ").join([sql.SQL("1"), sql.SQL("2"), *outer])
    query = sql.SQL(
        "SELECT p.i, m.* FROM unnest(%s::int[], {arrays}) AS p({names}) CROSS JOIN LATERAL ("
        "SELECT {distance} AS {name}, {alias}.* FROM {table} WHERE {candidates} AND {distance} <= %s"
        " AND {condition}{limit}) AS m{order}"
    ).format(order=sql.SQL("") if nearest else sql.SQL(" ORDER BY {}").format(outer_order),
        arrays=sql.SQL(", ").join(sql.SQL("%s::float8[]") for _ in _FIELDS[1:]),
        names=sql.SQL(", ").join(sql.Identifier(f) for f in _FIELDS), distance=distance, name=name,
        alias=sql.Identifier(alias), table=table, candidates=candidates, condition=condition,
        limit=sql.SQL(" ORDER BY {} LIMIT 1").format(inner_order) if nearest else sql.SQL(""))
    return query, [*columns, *bound, *extra, radius, *filter_params]


def explain(q: SQLQuery, query: Any, params: list[Any]) -> str:
    """The plan of a statement built here or by :meth:`SQLQuery._statement` (for tests and benchmarks)."""
    if isinstance(query, str):
        text = query
    else:
        with q.db.connection() as conn:
            text = query.as_string(conn)
    rows = q._run("EXPLAIN " + text, params).fetchall()
    return "\n".join(str(next(iter(r.values()))) for r in rows)
