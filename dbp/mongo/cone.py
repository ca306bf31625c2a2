"""``$cone``, ``$distance`` and crossmatch on MongoDB.

A cone is ``$geoWithin``/``$centerSphere`` on the collection's GeoJSON point
(2dsphere-indexed), with a radius a little larger than the cone's, and an
``$expr`` that keeps the documents whose exact distance (the atan2 form of
:func:`dbp.sky.separation`, computed by the server) is at most the radius.
The point's longitude is ra + ``ra_offset`` (ALeRCE: ra - 180), declared in
``collections.toml``. A sort or projection naming ``$distance`` runs as an
aggregation that adds the distance as a field (``$near`` is not used: some
servers do not sort by it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

from dbp.errors import FilterError
from dbp.sky import (
    DISTANCE,
    DISTANCE_FIELD,
    SLACK,
    Cone,
    DecIndex,
    Match,
    Position,
    arcsec_to_radians,
    nearest_first,
    separation,
)

if TYPE_CHECKING:
    from dbp.filters import Node
    from dbp.mongo.query import MongoQuery

__all__ = ["candidates", "compile_cone", "crossmatch", "distance_expression", "pipeline"]

_DISTANCE = "_dbp_distance"


def _require(position: Optional[Position], name: str) -> Position:
    if position is None:
        raise FilterError(f"{name} declares no position for $cone / crossmatch; add position = "
                          '{ point = "field", ra_offset = 0 } to its entry in collections.toml')
    return position


def candidates(position: Position, ra: float, dec: float, radius: float) -> dict[str, Any]:
    """``$geoWithin`` a cap slightly larger than the cone: every document within ``radius``, and a few more."""
    cap = arcsec_to_radians(radius) * (1 + SLACK) + 1e-12
    return {position.point: {"$geoWithin": {"$centerSphere": [[position.longitude(ra), dec], cap]}}}


def distance_expression(cone: Cone, position: Position) -> dict[str, Any]:
    """The distance in arcseconds from ``cone``'s centre to a document's point, as an aggregation expression."""
    coordinates = f"${position.point}.coordinates"
    _, cos_d, sin_d = cone.trig
    lam = math.radians(position.longitude(cone.ra))  # the centre's longitude
    cos_p, sin_p, cos_l = "$$cos_p", "$$sin_p", "$$cos_l"
    num = {"$sqrt": {"$add": [
        _square({"$multiply": [cos_p, {"$sin": "$$dl"}]}),
        _square({"$subtract": [{"$multiply": [cos_d, sin_p]}, {"$multiply": [sin_d, cos_p, cos_l]}]}),
    ]}}
    den = {"$add": [{"$multiply": [sin_d, sin_p]}, {"$multiply": [cos_d, cos_p, cos_l]}]}
    return {"$let": {
        "vars": {"p": {"$degreesToRadians": {"$arrayElemAt": [coordinates, 1]}},
                 "dl": {"$subtract": [{"$degreesToRadians": {"$arrayElemAt": [coordinates, 0]}}, lam]}},
        "in": {"$let": {
            "vars": {"cos_p": {"$cos": "$$p"}, "sin_p": {"$sin": "$$p"}, "cos_l": {"$cos": "$$dl"}},
            "in": {"$multiply": [{"$radiansToDegrees": {"$atan2": [num, den]}}, 3600.0]},
        }},
    }}


def _square(value: Any) -> dict[str, Any]:
    return {"$multiply": [value, value]}


def compile_cone(cone: Cone, position: Optional[Position], name: str) -> dict[str, Any]:
    """The query document for ``cone``: index-backed candidates, then the exact distance."""
    where = _require(position, name)
    return {"$and": [candidates(where, cone.ra, cone.dec, cone.radius),
                     {"$expr": {"$lte": [distance_expression(cone, where), cone.radius]}}]}


def pipeline(q: MongoQuery, match: dict[str, Any], cone: Cone, sort: list[tuple[str, int]],
             limit: Optional[int], offset: int) -> list[dict[str, Any]]:
    """An aggregation: the filter, the distance as a field, the sort (``$distance`` on that field)."""
    stages: list[dict[str, Any]] = [{"$match": match},
                                    {"$addFields": {_DISTANCE: distance_expression(cone, _require(q.position,
                                                                                                  q.name))}}]
    if sort:
        stages.append({"$sort": {(_DISTANCE if f == DISTANCE else f): d for f, d in sort}})
    if offset:
        stages.append({"$skip": offset})
    if limit:
        stages.append({"$limit": limit})
    return stages


def shape(doc: dict[str, Any], projection: Optional[list[str]]) -> dict[str, Any]:
    distance = doc.pop(_DISTANCE, None)
    if projection is None:
        return doc
    return {(DISTANCE_FIELD if f == DISTANCE else f): (distance if f == DISTANCE else doc.get(f)) for f in projection}


def rows(q: MongoQuery, match: dict[str, Any], cone: Cone, sort: list[tuple[str, int]],
         projection: Optional[list[str]], limit: Optional[int], offset: int, batch: int = 0
         ) -> Iterator[dict[str, Any]]:
    stages = pipeline(q, match, cone, sort, limit, offset)
    cursor = q.collection.aggregate(stages, batchSize=batch) if batch else q.collection.aggregate(stages)
    try:
        for doc in cursor:
            yield shape(doc, projection)
    finally:
        cursor.close()


def _point(doc: dict[str, Any], path: str) -> Optional[tuple[float, float]]:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    coordinates = value.get("coordinates") if isinstance(value, dict) else None
    if isinstance(coordinates, (list, tuple)) and len(coordinates) == 2:
        return float(coordinates[0]), float(coordinates[1])
    return None


def crossmatch(q: MongoQuery, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
               match: dict[str, Any]) -> list[Match]:
    """One query per batch: the filter and an ``$or`` of the cones' candidates; exact distances here."""
    where = _require(q.position, q.name)
    cones = [candidates(where, ra, dec, radius) for _, ra, dec in positions]
    query = {"$and": [match, {"$or": cones}]} if match else {"$or": cones}
    index = DecIndex(positions, radius)
    found: dict[int, list[tuple[float, int, dict[str, Any]]]] = {}
    for n, doc in enumerate(q.collection.find(query)):
        point = _point(doc, where.point)
        if point is None:
            continue
        lon, lat = point
        ra = (lon - where.ra_offset) % 360.0
        for i in index.near(lat):
            _, pra, pdec = positions[i]
            distance = separation(pra, pdec, ra, lat)
            if distance <= radius:
                found.setdefault(i, []).append((distance, n, doc))
    return nearest_first(found, [p[0] for p in positions], nearest)


def explain(q: MongoQuery, node: Node) -> dict[str, Any]:
    """The server's explain of a find with ``node`` (for tests and benchmarks)."""
    from dbp.mongo.query import compile_filter

    found: dict[str, Any] = q.collection.find(compile_filter(node, position=q.position, name=q.name)).explain()
    return found
