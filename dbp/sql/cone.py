"""``$cone``, ``$distance`` and crossmatch on PostgreSQL: statements built here, run by :mod:`dbp.sql.cone_run`.

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

Building runs nothing: where a table's cones are searched (its position
columns and the path, a :class:`Site`) is found by the runner
(:func:`dbp.sql.cone_run.resolve`, which reads ``positions.toml`` and asks
the server about q3c) and handed to the builder before it compiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from psycopg import sql

from dbp.filters import Node, SortKey
from dbp.sky import DISTANCE, DISTANCE_FIELD, SLACK, Cone, Position, arcsec_to_degrees, box

if TYPE_CHECKING:
    from dbp.sql.build import SQLBuilder

__all__ = ["PATHS", "Site", "compile_cone", "crossmatch_statement", "select_statement", "site"]

PATHS = ("q3c", "portable")


class Site(NamedTuple):
    """Where a table's cones are searched, as the runner found it before compiling."""

    #: The position columns (checked to be the table's).
    position: Position
    #: One of :data:`PATHS`.
    path: str


def site(q: SQLBuilder) -> Site:
    """The site the runner resolved for ``q`` before compiling (it does so for every filter with a cone)."""
    found = q._cone_site
    if found is None:
        raise AssertionError(f"{q.name}: a $cone compiled before its position and path were resolved")
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
    where = site(q).position
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
    where, how = site(q)
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
    table, _, _, bound = q._from_item()
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


def unused(q: SQLBuilder, base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ...: the first that names none of ``q``'s columns."""
    name, n = base, 0
    while name in q.columns:
        n += 1
        name = f"{base}_{n}"
    return name


def crossmatch_statement(q: SQLBuilder, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                         node: Node) -> tuple[sql.Composable, list[Any]]:
    """One statement: the positions ``unnest``-ed, each joined LATERAL with its cone (nearest first).

    Its rows are read by position (the position's index, the distance, then
    the table's columns), so no column of the table can be taken for dbp's.
    """
    where, how = site(q)
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
    table, prefix, alias, bound = q._from_item()
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
    # every match: each position's in distance order, ties lowest key first (as on MongoDB); a % in a name is
    # doubled, as the statement has %s parameters
    outer = [_collated(q, k, sql.SQL("m." + sql.Identifier(k).as_string(None).replace("%", "%%"))) for k in ties]
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
