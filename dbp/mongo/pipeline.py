"""Named aggregation pipelines as read-only, pageable sources (the Mongo side of dbp.named).

dbp appends the request to the file's stages: ``$match`` (the filter, on the
output columns), ``$sort``, ``$skip``/``$limit``; counts end in ``$count``,
and a keyset page is a ``$match`` on the sort keys. Rows are shaped to the
file's ``columns``, a missing field reading as None, as a NULL does in SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Union, cast

from bson import ObjectId
from pymongo.errors import PyMongoError

from dbp._redact import shown
from dbp.errors import ConfigError, FilterError
from dbp.filters import Node, SortKey
from dbp.mongo import cone as cones
from dbp.mongo import order
from dbp.mongo.errors import translate
from dbp.mongo.fields import DeclaredFields, check
from dbp.mongo.query import UNENCODABLE, MongoQuery, _path, _unencodable, compile_filter
from dbp.named import NamedPipeline, Queries, editable, queries_for
from dbp.pagination import TokenTypes
from dbp.query import ReadOnly, ReadQuery, Row, check_name
from dbp.sky import DISTANCE, DISTANCE_FIELD, Cone, Match, Position, cone_for
from dbp.sky import cones as sky_cones

if TYPE_CHECKING:
    from dbp.mongo.connection import MongoConnection

__all__ = ["PipelineSource", "resolve"]


class PipelineSource(ReadOnly, ReadQuery):
    """A read-only query object over a named pipeline; get one with ``db.query(name, params)``."""

    token_types: ClassVar[TokenTypes] = MappingProxyType({"$oid": (ObjectId, str, ObjectId)})

    def __init__(self, db: MongoConnection, named: NamedPipeline, params: Optional[Mapping[str, Any]]) -> None:
        self.db = db
        self.name = named.name
        self.named = named
        self.stages = named.bind(params)
        self.columns = named.columns
        self.fields = DeclaredFields(named.name, frozenset(named.columns))
        self.collection = db.collection(named.collection)
        #: The ra/dec columns the file declares ("position"), for $cone, $distance and crossmatch.
        self.position = Position(ra=named.position[0], dec=named.position[1]) if named.position else None

    def __repr__(self) -> str:
        return f"<PipelineSource {self.name} on {self.db.address}>"

    def _key(self) -> list[str]:
        return list(self.named.key)

    def _frame_columns(self) -> Optional[list[str]]:
        return list(self.columns)

    def _tie_break(self) -> list[str]:
        """Without a declared key, every output column, so that ties sort one way on every page."""
        return list(self.named.key) or list(self.columns)

    def _token_scope(self) -> Any:
        return [self.name, repr(self.stages)]

    def _shape(self, doc: Row, projection: Optional[list[str]], wrapped: bool = False) -> Row:
        doc, distance = order.unwrap(doc, wrapped)  # with $distance or NULLs sorting high: dbp.mongo.order
        return {(DISTANCE_FIELD if f == DISTANCE else f): (distance if f == DISTANCE else doc.get(f))
                for f in (projection or self.columns)}

    def _where(self) -> Position:
        if self.position is None:
            raise FilterError(f'{self.name} declares no position for $cone / crossmatch; add "position": '
                              f'["<ra column>", "<dec column>"] to {editable(self.named.where)}')
        return self.position

    def _pipeline(self, node: Node, sort: list[SortKey], projection: Optional[list[str]] = None
                  ) -> tuple[list[dict[str, Any]], bool]:
        """The file's stages, then the request's; True if rows come wrapped (:mod:`dbp.mongo.order`)."""
        centre = cone_for(node, sort, projection)
        if centre is not None or any(True for _ in sky_cones(node)):
            self._where()
        plain_sort = [k for k in sort if k.field != DISTANCE]
        plain = None if projection is None else [f for f in projection if f != DISTANCE]
        for name in [k.field for k in plain_sort] + (plain or []):
            _path(name)
        check(self.fields, "find", node=node, sort=plain_sort, projection=plain)
        stages = list(self.stages)
        condition = compile_filter(node, position=self.position, name=self.name)
        if condition:
            stages.append({"$match": condition})
        wrapped = order.wraps(sort, centre is not None)
        if wrapped:
            distance = None
            if centre is not None:
                assert self.position is not None
                distance = cones.distance_expression(centre, self.position)
            stages.append(order.wrap(sort, distance))
        if sort:
            stages.append({"$sort": order.sort_keys(sort, wrapped)})
        return stages, wrapped

    def _crossmatch(self, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                    node: Node) -> list[Match]:
        """The file's stages, the filter and an ``$or`` of the cones' boxes; exact distances here."""
        where = self._where()
        check(self.fields, "crossmatch", node=node)
        condition = compile_filter(node, position=where, name=self.name)
        boxes = {"$or": [cones.box_candidates(where, Cone(ra, dec, radius)) for _, ra, dec in positions]}
        order = {k: 1 for k in self._tie_break()}  # ties go to the lowest key, as in SQL
        stages = [*self.stages, {"$match": {"$and": [condition, boxes]} if condition else boxes}, {"$sort": order}]
        try:
            docs = [self._shape(doc, None) for doc in self._aggregate(stages, "crossmatch")]
        except PyMongoError as exc:
            raise translate(exc, "crossmatch", self.name) from None
        return cones.nearest_matches(docs, lambda doc: _ra_dec(doc, where), positions, radius, nearest)

    def _aggregate(self, stages: list[dict[str, Any]], what: str, **kwargs: Any) -> Any:
        try:
            return self.collection.aggregate(stages, **kwargs, **self.db.time_limit)
        except UNENCODABLE as exc:
            raise _unencodable(f"{what} on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, what, self.name, limit_ms=self.db.settings.max_time_ms) from None

    def _select(self, node: Node, sort: list[SortKey], projection: Optional[list[str]],
                limit: Optional[int] = None, offset: int = 0) -> list[Row]:
        if limit == 0:
            return []
        stages, wrapped = self._pipeline(node, sort, projection)
        if offset:
            stages.append({"$skip": offset})
        if limit is not None:
            stages.append({"$limit": limit})
        try:
            return [self._shape(doc, projection, wrapped) for doc in self._aggregate(stages, "aggregate")]
        except PyMongoError as exc:  # raised while reading the cursor
            raise translate(exc, "aggregate", self.name, limit_ms=self.db.settings.max_time_ms) from None

    def _stream(self, node: Node, sort: list[SortKey], projection: Optional[list[str]], batch: int
                ) -> Iterator[Row]:
        stages, wrapped = self._pipeline(node, sort, projection)
        cursor = self._aggregate(stages, "aggregate", batchSize=batch)
        try:
            for doc in cursor:
                yield self._shape(doc, projection, wrapped)
        except PyMongoError as exc:
            raise translate(exc, "aggregate", self.name, limit_ms=self.db.settings.max_time_ms) from None
        finally:
            cursor.close()

    def _count(self, node: Node, limit: Optional[int]) -> int:
        if limit == 0:
            return 0
        stages, _ = self._pipeline(node, [])
        stages += [{"$limit": limit}] if limit is not None else []
        stages.append({"$count": "n"})
        try:
            found = list(self._aggregate(stages, "count"))
        except PyMongoError as exc:
            raise translate(exc, "count", self.name, limit_ms=self.db.settings.max_time_ms) from None
        return int(found[0]["n"]) if found else 0


def _ra_dec(row: Row, where: Position) -> Optional[tuple[float, float]]:
    ra, dec = row.get(where.ra), row.get(where.dec)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ra, dec)):
        return None  # no position: never a match, as a NULL in SQL
    return float(cast(float, ra)) % 360.0, float(cast(float, dec))


def queries(db: MongoConnection) -> Queries:
    found = db._named_queries
    if found is None:
        found = queries_for(db.settings.queries_dir, db.settings.schema_set)
        db._named_queries = found
    return found


def resolve(db: MongoConnection, name: str, params: Optional[Mapping[str, Any]]
            ) -> Union[MongoQuery, PipelineSource]:
    """``db.query(name)``: a collection's query, or a named pipeline's source (see README, Named queries)."""
    check_name(name)
    named = queries(db).get(name, ".json")
    if named is not None:
        assert isinstance(named, NamedPipeline)
        decided = db._resolved.get(name)
        if decided is None:
            try:
                exists = bool(db.database.list_collection_names(filter={"name": name}))
            except PyMongoError as exc:
                raise translate(exc, "listing collections", name) from None
            if exists and not queries(db).bundled(name, ".json"):
                raise ConfigError(f"{name} is both a collection and a named pipeline ({named.where}); "
                                  "rename the pipeline file")
            decided = db._resolved[name] = "collection" if exists else "query"
        if decided == "query":
            return PipelineSource(db, named, params)
    if params is not None:
        raise FilterError(f"collection {shown(name, 60)} takes no parameters (there is no named pipeline "
                          f"{shown(name, 60)})")
    return db.collection_query(name)
