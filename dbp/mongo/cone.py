"""``$cone``, ``$distance`` and crossmatch on MongoDB.

A cone is ``$geoWithin``/``$centerSphere`` on the collection's GeoJSON point
(2dsphere-indexed), with a radius a little larger than the cone's, and an
``$expr`` that keeps the documents whose exact distance (the atan2 form of
:func:`dbp.sky.separation`, computed by the server) is at most the radius.
The point's longitude is ra + ``ra_offset`` (ALeRCE: ra - 180), declared in
``collections.toml``. Reads with a cone run as an aggregation whose first
``$match`` is the cones' plain ``$geoWithin`` (index-backed everywhere; with
``$expr`` beside it SecantusDB scans the collection), then the whole filter;
``$distance`` is a field it adds (``$near`` is not used: some servers do not
sort by it).

The query documents and pipelines are built here and nothing is run: the
collection's reads and crossmatch are :mod:`dbp.mongo.cone_run`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Optional

from dbp.errors import FilterError
from dbp.filters import And, Node, SortKey
from dbp.mongo import order
from dbp.sky import (
    DISTANCE,
    DISTANCE_FIELD,
    SLACK,
    Cone,
    DecIndex,
    Match,
    Position,
    arcsec_to_radians,
    box,
    nearest_first,
    separation,
)

__all__ = ["box_candidates", "candidates", "compile_cone", "crossmatch_query", "distance_expression", "lon_lat",
           "nearest_matches", "pipeline", "shape", "top_cones"]


def _require(position: Optional[Position], name: str) -> Position:
    if position is None:
        raise FilterError(f"{name} declares no position for $cone / crossmatch; add position = "
                          '{ point = "field", ra_offset = 0 } to its entry in collections.toml in the folder '
                          "SCHEMA_DIR names (dbp init-project copies dbp's bundled one there)")
    return position


def candidates(position: Position, ra: float, dec: float, radius: float) -> dict[str, Any]:
    """``$geoWithin`` a cap slightly larger than the cone: every document within ``radius``, and a few more."""
    cap = arcsec_to_radians(radius) * (1 + SLACK) + 1e-12
    return {position.point: {"$geoWithin": {"$centerSphere": [[position.longitude(ra), dec], cap]}}}


def distance_expression(cone: Cone, position: Position) -> dict[str, Any]:
    """The distance in arcseconds from ``cone``'s centre to a document's point (or its ra/dec fields, for a named
    pipeline), as an aggregation expression."""
    if position.point:
        coordinates = f"${position.point}.coordinates"
        lon: Any = {"$arrayElemAt": [coordinates, 0]}
        lat: Any = {"$arrayElemAt": [coordinates, 1]}
        lam = math.radians(position.longitude(cone.ra))  # the centre's longitude
    else:  # a non-number (an array, which the box matches by its elements) reads as null, never an error
        lon, lat, lam = _number(f"${position.ra}"), _number(f"${position.dec}"), math.radians(cone.ra)
    _, cos_d, sin_d = cone.trig
    cos_p, sin_p, cos_l = "$$cos_p", "$$sin_p", "$$cos_l"
    num = {"$sqrt": {"$add": [
        _square({"$multiply": [cos_p, {"$sin": "$$dl"}]}),
        _square({"$subtract": [{"$multiply": [cos_d, sin_p]}, {"$multiply": [sin_d, cos_p, cos_l]}]}),
    ]}}
    den = {"$add": [{"$multiply": [sin_d, sin_p]}, {"$multiply": [cos_d, cos_p, cos_l]}]}
    return {"$let": {
        "vars": {"p": {"$degreesToRadians": lat},
                 "dl": {"$subtract": [{"$degreesToRadians": lon}, lam]}},
        "in": {"$let": {
            "vars": {"cos_p": {"$cos": "$$p"}, "sin_p": {"$sin": "$$p"}, "cos_l": {"$cos": "$$dl"}},
            "in": {"$multiply": [{"$radiansToDegrees": {"$atan2": [num, den]}}, 3600.0]},
        }},
    }}


def box_candidates(position: Position, cone: Cone) -> dict[str, Any]:
    """For ra/dec fields (a named pipeline's rows, which no index serves): the cone's dec band and ra range(s)."""
    bounds = box(cone)
    parts: list[dict[str, Any]] = [{position.dec: {"$gte": bounds.dec_min, "$lte": bounds.dec_max}}]
    if bounds.ra_ranges:
        ranges = [{position.ra: {"$gte": lo, "$lte": hi}} for lo, hi in bounds.ra_ranges]
        parts.append(ranges[0] if len(ranges) == 1 else {"$or": ranges})
    else:
        parts.append({position.ra: {"$type": "number"}})
    return {"$and": parts}


def _number(path: str) -> dict[str, Any]:
    return {"$cond": [{"$isNumber": path}, path, None]}


def _square(value: Any) -> dict[str, Any]:
    return {"$multiply": [value, value]}


def compile_cone(cone: Cone, position: Optional[Position], name: str) -> dict[str, Any]:
    """The query document for ``cone``: index-backed candidates, then the exact distance."""
    where = _require(position, name)
    first = candidates(where, cone.ra, cone.dec, cone.radius) if where.point else box_candidates(where, cone)
    within: dict[str, Any] = {"$lte": [distance_expression(cone, where), cone.radius]}
    if not where.point:  # a null distance (no numeric ra/dec) would compare below the radius
        within = {"$and": [{"$isNumber": f"${where.ra}"}, {"$isNumber": f"${where.dec}"}, within]}
    return {"$and": [first, {"$expr": within}]}


def top_cones(node: Node) -> list[Cone]:
    """The cones every match must lie in (the filter's top-level conjunction)."""
    if isinstance(node, Cone):
        return [node]
    if isinstance(node, And):
        return [c for item in node.items for c in top_cones(item)]
    return []


def pipeline(node: Node, match: Callable[[Node], dict[str, Any]], position: Optional[Position], name: str,
             centre: Optional[Cone], sort: list[SortKey], limit: Optional[int], offset: int) -> list[dict[str, Any]]:
    """An aggregation for a filter with cones: index-backed candidates first, then the whole filter.

    (A find whose filter holds ``$expr`` is not index-backed on every server;
    a leading ``$match`` of plain ``$geoWithin`` is.) ``match``: the query
    document of a filter (the runner's ``compile_filter``); ``position``: where
    collection ``name`` keeps positions; ``centre``: the cone ``$distance``
    measures from, added as a field to sort or project. Also reads without a
    cone whose sort places NULLs high (:mod:`dbp.mongo.order`).
    """
    found = top_cones(node)
    stages: list[dict[str, Any]] = []
    if found:
        where = _require(position, name)
        first = [candidates(where, c.ra, c.dec, c.radius) for c in found]
        stages.append({"$match": first[0] if len(first) == 1 else {"$and": first}})
    stages.append({"$match": match(node)})
    wrapped = order.wraps(sort, centre is not None)
    if wrapped:
        distance = None if centre is None else distance_expression(centre, _require(position, name))
        stages.append(order.wrap(sort, distance))
    if sort:
        stages.append({"$sort": order.sort_keys(sort, wrapped)})
    if offset:
        stages.append({"$skip": offset})
    if limit:
        stages.append({"$limit": limit})
    return stages


def shape(doc: dict[str, Any], wrapped: bool, projection: Optional[list[str]]) -> dict[str, Any]:
    doc, distance = order.unwrap(doc, wrapped)
    if projection is None:
        return doc
    return {(DISTANCE_FIELD if f == DISTANCE else f): (distance if f == DISTANCE else doc.get(f)) for f in projection}


def _point(doc: dict[str, Any], path: str) -> Optional[tuple[float, float]]:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    coordinates = value.get("coordinates") if isinstance(value, dict) else None
    if isinstance(coordinates, (list, tuple)) and len(coordinates) == 2:
        return float(coordinates[0]), float(coordinates[1])
    return None


def lon_lat(doc: dict[str, Any], where: Position) -> Optional[tuple[float, float]]:
    """The ra and dec of ``doc``'s point (None: it has none)."""
    point = _point(doc, where.point)
    return None if point is None else ((point[0] - where.ra_offset) % 360.0, point[1])


def crossmatch_query(where: Position, positions: list[tuple[Any, float, float]], radius: float,
                     match: dict[str, Any]) -> dict[str, Any]:
    """Crossmatch's query: the filter's document ``match`` and an ``$or`` of the cones' candidates."""
    cones = [candidates(where, ra, dec, radius) for _, ra, dec in positions]
    return {"$and": [match, {"$or": cones}]} if match else {"$or": cones}


def nearest_matches(docs: Iterable[dict[str, Any]], position: Callable[[dict[str, Any]], Optional[tuple[float, float]]],
                    positions: list[tuple[Any, float, float]], radius: float, nearest: bool) -> list[Match]:
    """The matches among ``docs`` (each at ``position(doc)``: ra, dec, or None), exact distances computed here."""
    index = DecIndex(positions, radius)
    found: dict[int, list[tuple[float, int, dict[str, Any]]]] = {}
    for n, doc in enumerate(docs):
        point = position(doc)
        if point is None:
            continue
        ra, dec = point
        for i in index.near(dec):
            _, pra, pdec = positions[i]
            distance = separation(pra, pdec, ra, dec)
            if distance <= radius:
                found.setdefault(i, []).append((distance, n, doc))
    return nearest_first(found, [p[0] for p in positions], nearest)
