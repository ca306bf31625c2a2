"""``$cone`` and crossmatch on MongoDB, the running half: the aggregations and finds :mod:`dbp.mongo.cone` builds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

from dbp.filters import Node, SortKey
from dbp.mongo import order
from dbp.mongo.cone import _require, crossmatch_query, lon_lat, nearest_matches, pipeline, shape
from dbp.sky import Cone, Match

if TYPE_CHECKING:
    from dbp.mongo.query import MongoQuery

__all__ = ["count", "crossmatch", "explain", "rows"]


def _pipeline(q: MongoQuery, node: Node, centre: Optional[Cone], sort: list[SortKey], limit: Optional[int],
              offset: int) -> list[dict[str, Any]]:
    return pipeline(node, q._filter, q.position, q.name, centre, sort, limit, offset)


def rows(q: MongoQuery, node: Node, centre: Optional[Cone], sort: list[SortKey],
         projection: Optional[list[str]], limit: Optional[int], offset: int, batch: int = 0
         ) -> Iterator[dict[str, Any]]:
    stages = _pipeline(q, node, centre, sort, limit, offset)
    wrapped = order.wraps(sort, centre is not None)
    limit_ms = q.db.time_limit
    cursor = q.collection.aggregate(stages, batchSize=batch, **limit_ms) if batch else q.collection.aggregate(
        stages, **limit_ms)
    try:
        for doc in cursor:
            yield shape(doc, wrapped, projection)
    finally:
        cursor.close()


def count(q: MongoQuery, node: Node, limit: Optional[int]) -> int:
    stages = [*_pipeline(q, node, None, [], limit, 0), {"$count": "n"}]
    found = list(q.collection.aggregate(stages, **q.db.time_limit))
    return int(found[0]["n"]) if found else 0


def crossmatch(q: MongoQuery, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
               match: dict[str, Any]) -> list[Match]:
    """One query per batch: the filter and an ``$or`` of the cones' candidates; exact distances here."""
    where = _require(q.position, q.name)
    query = crossmatch_query(where, positions, radius, match)
    # ties go to the lowest _id, as in SQL
    docs = q.collection.find(query, max_time_ms=q.db.settings.max_time_ms).sort("_id", 1)
    return nearest_matches(docs, lambda doc: lon_lat(doc, where), positions, radius, nearest)


def explain(q: MongoQuery, node: Node) -> dict[str, Any]:
    """The server's explain of the aggregation a read with ``node`` runs (for tests and benchmarks)."""
    found: dict[str, Any] = q.collection.database.command(
        "aggregate", q.collection.name, pipeline=_pipeline(q, node, None, [], None, 0), explain=True)
    return found
