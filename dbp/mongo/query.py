"""Queries on a MongoDB collection: the filter language compiled to a query document.

Writes use pymongo's bulk APIs: ``insert_many(ordered=False)`` and
``bulk_write``, one round trip per batch (pymongo splits at the server's
``maxWriteBatchSize``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from bson import ObjectId
from pymongo import ReplaceOne, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError as PyMongoBulkWriteError
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from dbp.errors import BulkWriteError, FilterError, OperationError
from dbp.filters import After, And, Cmp, Node, Not, Or, equalities, parse
from dbp.mongo.errors import translate
from dbp.pagination import TokenTypes
from dbp.query import BaseQuery, ConflictMode, Filter, Row

if TYPE_CHECKING:
    from dbp.mongo.connection import MongoConnection

__all__ = ["MongoQuery", "compile_filter"]

DUPLICATE_KEY = 11000
_UPSERT_RETRIES = 5
#: Matches no document (an empty $or is not allowed).
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


def _path(field: str) -> str:
    """A field path MongoDB accepts: dot-separated, no empty part, no part starting with $."""
    if any(not part or part.startswith("$") for part in field.split(".")):
        raise FilterError(f"{field!r} is not a usable MongoDB field path")
    return field


def compile_filter(node: Node) -> dict[str, Any]:
    """A query document for ``node``, with dbp's semantics (NULL and missing are one thing)."""
    if isinstance(node, Cmp):
        field, op, value = _path(node.field), node.op, node.value
        if op == "eq":
            return {field: value}  # {field: None} matches null and missing
        if op == "exists":
            return {field: {"$ne": None}} if value else {field: None}
        if op in ("in", "nin"):
            return {field: {f"${op}": list(value)}}
        return {field: {f"${op}": value}}
    if isinstance(node, And):
        return {"$and": [compile_filter(i) for i in node.items]} if node.items else {}
    if isinstance(node, Or):
        return {"$or": [compile_filter(i) for i in node.items]} if node.items else dict(_NOTHING)
    if isinstance(node, Not):
        return {"$nor": [compile_filter(node.item)]}
    assert isinstance(node, After)
    return compile_filter(node.expand())


def _valid_name(name: Any) -> str:
    if (not isinstance(name, str) or not name or "\x00" in name or "$" in name or name.startswith(("system.", "."))
            or name.endswith(".")):
        raise FilterError(f"{name!r} is not a usable collection name")
    return name


def _reason(exc: PyMongoError) -> str:
    if isinstance(exc, OperationFailure) and exc.details:
        return str(exc.details.get("errmsg") or exc)
    return str(exc).split(", full error:")[0]


class MongoQuery(BaseQuery):
    """Queries on one collection; :attr:`collection` is the pymongo escape hatch."""

    token_types: ClassVar[TokenTypes] = MappingProxyType({"$oid": (ObjectId, str, ObjectId)})

    def __init__(self, db: MongoConnection, name: str) -> None:
        self.db = db
        self.name = _valid_name(name)
        self.collection: Collection[Any] = db.collection(name)
        self._keys: Optional[list[tuple[str, ...]]] = None

    def __repr__(self) -> str:
        return f"<MongoQuery {self.name} on {self.db.address}>"

    def _key(self) -> list[str]:
        return ["_id"]

    def _find_args(self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]]) -> dict[str, Any]:
        for name in [f for f, _ in sort] + (projection or []):
            _path(name)
        args: dict[str, Any] = {"filter": compile_filter(node)}
        if projection is not None:
            args["projection"] = {**{f: 1 for f in projection}, **({} if "_id" in projection else {"_id": 0})}
        if sort:
            args["sort"] = sort
        return args

    @staticmethod
    def _shape(doc: Row, projection: Optional[list[str]]) -> Row:
        # as in SQL, a projected field that is missing reads as None
        return doc if projection is None else {f: doc.get(f) for f in projection}

    def _select(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        if limit == 0:
            return []  # pymongo's limit(0) means "no limit"
        try:
            cursor = self.collection.find(**self._find_args(node, sort, projection), skip=offset, limit=limit or 0)
            return [self._shape(doc, projection) for doc in cursor]
        except PyMongoError as exc:
            raise translate(exc, "find", self.name, FilterError) from None

    def _stream(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        cursor = self.collection.find(**self._find_args(node, sort, projection), batch_size=batch)
        try:
            for doc in cursor:
                yield self._shape(doc, projection)
        except PyMongoError as exc:
            raise translate(exc, "find", self.name, FilterError) from None
        finally:
            cursor.close()

    def _count(self, node: Node, limit: Optional[int]) -> int:
        if limit == 0:
            return 0
        try:
            if limit is None:
                return self.collection.count_documents(compile_filter(node))
            return self.collection.count_documents(compile_filter(node), limit=limit)
        except PyMongoError as exc:
            raise translate(exc, "count", self.name, FilterError) from None

    # -- writes ----------------------------------------------------------------------------------

    def _unique_keys(self, *, refresh: bool = False) -> list[tuple[str, ...]]:
        """``_id`` and the unique, non-partial indexes' keys; read once per query object."""
        if self._keys is None or refresh:
            keys: list[tuple[str, ...]] = [("_id",)]
            try:
                indexes = self.collection.index_information()
            except PyMongoError as exc:
                raise translate(exc, "reading the unique indexes", self.name) from None
            for info in indexes.values():
                if info.get("unique") and "partialFilterExpression" not in info:
                    keys.append(tuple(str(k) for k, _ in info["key"]))
            self._keys = keys
        return self._keys

    def _require_unique(self, names: Sequence[str], what: str) -> None:
        wanted = set(names)
        covered = any(wanted.issuperset(k) for k in self._unique_keys())
        if not covered:  # an index made since we looked?
            covered = any(wanted.issuperset(k) for k in self._unique_keys(refresh=True))
        if not covered:
            shown = "; ".join(", ".join(k) for k in self._unique_keys())
            raise FilterError(
                f"{what} on {self.name} needs _id or a unique index covering the filter's fields "
                f"({', '.join(names)}), so that concurrent calls cannot create duplicates; unique keys: {shown}"
            )

    def get_or_create(self, filter_by: Mapping[str, Any], **kwargs: Any) -> tuple[Row, bool]:
        """One ``find_one_and_update($setOnInsert, upsert)``; ``created`` is read from the ``_id`` we chose.

        (Servers that retry a racing upsert do not always return the pre-image,
        so ``return_document=BEFORE`` cannot tell who created the document.)
        With ``_id`` in the filter there is no ``_id`` to choose: ``update_one``'s
        ``upserted_id`` tells, and an existing document costs a second read.
        """
        eq = equalities(filter_by)
        self._require_unique(list(eq), "get_or_create")
        on_insert = {k: v for k, v in kwargs.items() if k not in eq}
        for attempt in range(_UPSERT_RETRIES):
            try:
                found = self._get_or_create_once(eq, on_insert)
            except DuplicateKeyError:
                found = None
            except PyMongoError as exc:
                raise translate(exc, "get_or_create", self.name) from None
            if found is not None:
                return found
            # A racing upsert inserted first (a duplicate key, or a server that answered the retried upsert
            # with no document): retried, ours matches its document, as MongoDB advises.
            time.sleep(0.005 * (attempt + 1))
        try:
            existing = self.collection.find_one(eq)
        except PyMongoError as exc:
            raise translate(exc, "get_or_create", self.name) from None
        if existing is None:
            raise OperationError(
                f"get_or_create on {self.name}: a document with the same unique key exists but does not match "
                "the rest of the filter"
            )
        return existing, False

    def _get_or_create_once(self, eq: dict[str, Any], on_insert: dict[str, Any]) -> Optional[tuple[Row, bool]]:
        if "_id" in eq:
            result = self.collection.update_one(eq, {"$setOnInsert": on_insert}, upsert=True)
            if result.upserted_id is not None:
                return {**on_insert, **eq}, True
            found = self.collection.find_one(eq)
        else:
            fresh = on_insert.get("_id", ObjectId())
            found = self.collection.find_one_and_update(
                eq, {"$setOnInsert": {**on_insert, "_id": fresh}}, upsert=True, return_document=ReturnDocument.AFTER,
            )
            if found is not None and found.get("_id") == fresh:
                return found, True
        return None if found is None else (found, False)

    def _update(self, node: Node, attrs: Mapping[str, Any]) -> int:
        try:
            return self.collection.update_many(compile_filter(node), {"$set": dict(attrs)}).matched_count
        except PyMongoError as exc:
            raise translate(exc, "update", self.name) from None

    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        eq = equalities(filter_by)
        self._require_unique(list(eq), "upsert")
        changes = {k: v for k, v in attrs.items() if k not in eq}
        update: dict[str, Any] = {"$set": changes or dict(eq)}
        try:
            doc: Optional[Row] = self.collection.find_one_and_update(
                eq, update, upsert=True, return_document=ReturnDocument.AFTER)
        except PyMongoError as exc:
            raise translate(exc, "upsert", self.name) from None
        assert doc is not None
        return doc

    def delete(self, filter_by: Filter) -> int:
        try:
            return self.collection.delete_many(compile_filter(parse(filter_by))).deleted_count
        except PyMongoError as exc:
            raise translate(exc, "delete", self.name) from None

    def _bulk_update(
        self, instances: Sequence[Mapping[str, Any]], attrs: Sequence[Mapping[str, Any]], keys: list[str]
    ) -> int:
        operations = [UpdateOne({k: instance[k] for k in keys}, {"$set": dict(changes)})
                      for instance, changes in zip(instances, attrs)]
        try:
            return self.collection.bulk_write(operations, ordered=False).matched_count
        except PyMongoBulkWriteError as exc:
            raise _bulk_error(self.name, "bulk_update", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "bulk_update", self.name) from None

    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode) -> int:
        docs = [dict(r) for r in rows]  # pymongo adds _id to what it inserts: keep the caller's dicts intact
        try:
            if on_conflict == "update":
                missing = [i for i, d in enumerate(docs) if "_id" not in d]
                if missing:
                    raise FilterError(f"bulk_insert(on_conflict='update') needs _id in every document; "
                                      f"row {missing[0]} has none")
                result = self.collection.bulk_write(
                    [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
                return result.upserted_count
            return len(self.collection.insert_many(docs, ordered=False).inserted_ids)
        except PyMongoBulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if on_conflict == "ignore" and all(e.get("code") == DUPLICATE_KEY for e in errors):
                return int(exc.details.get("nInserted", 0))
            raise _bulk_error(self.name, "bulk_insert", exc, ignore_duplicates=on_conflict == "ignore") from None
        except PyMongoError as exc:
            raise translate(exc, "bulk_insert", self.name) from None


def _bulk_error(name: str, what: str, exc: PyMongoBulkWriteError, *, ignore_duplicates: bool = False
                ) -> BulkWriteError:
    errors = [e for e in exc.details.get("writeErrors", [])
              if not (ignore_duplicates and e.get("code") == DUPLICATE_KEY)]
    rows = [int(e["index"]) for e in errors]
    lines = [f"row {e['index']}: {e.get('errmsg', '')} (code {e.get('code')})" for e in errors[:20]]
    first = lines[0] if lines else "write error"
    more = f" and {len(lines) - 1} more" if len(lines) > 1 else ""
    done = exc.details.get("nInserted", 0) + exc.details.get("nUpserted", 0) + exc.details.get("nModified", 0)
    return BulkWriteError(
        f"{what} into {name}: {first}{more}; the other {done} write(s) went through", rows, details=lines,
    )
