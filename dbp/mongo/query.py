"""Queries on a MongoDB collection: the filter language compiled to a query document.

Writes use pymongo's bulk APIs: ``insert_many(ordered=False)`` and
``bulk_write``, one round trip per batch (pymongo splits at the server's
``maxWriteBatchSize``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from bson import ObjectId, encode
from bson.errors import InvalidDocument
from pymongo import ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError as PyMongoBulkWriteError
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from dbp.errors import BulkWriteError, FilterError, OperationError
from dbp.filters import After, And, Cmp, ElemMatch, Node, Not, Or, equalities, parse, register_scalar
from dbp.pagination import TokenTypes
from dbp.query import BaseQuery, ConflictMode, Filter, Row, collapse

if TYPE_CHECKING:
    from dbp.mongo.connection import MongoConnection

__all__ = ["MongoQuery", "compile_filter"]

register_scalar(ObjectId)

DUPLICATE_KEY = 11000
_UPSERT_RETRIES = 5
#: Matches no document (an empty $or is not allowed).
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


def _path(field: str) -> str:
    """A field path MongoDB accepts: dot-separated, no empty part, no part starting with $."""
    if any(not part or part.startswith("$") for part in field.split(".")):
        raise FilterError(f"{field!r} is not a usable MongoDB field path")
    return field


#: Every BSON type but null: ``{path: {"$type": NON_NULL}}`` is "some non-null value is reached".
NON_NULL = ["double", "string", "object", "array", "binData", "objectId", "bool", "date", "regex", "javascript",
            "int", "timestamp", "long", "decimal", "minKey", "maxKey"]
#: At most this many key orders of a document value (equality ignores key order, as jsonb's does).
MAX_ORDERS = 120


def _orders(value: Any) -> list[Any]:
    """``value`` with its documents' keys in every order (MongoDB compares documents in key order)."""
    if isinstance(value, Mapping):
        keys = list(value)
        variants: list[dict[str, Any]] = []
        for order in itertools.permutations(keys):
            for values in itertools.product(*(_orders(value[k]) for k in order)):
                variants.append(dict(zip(order, values)))
                if len(variants) > MAX_ORDERS:
                    raise FilterError(f"a document value with more than {MAX_ORDERS} key orders (at most 5 keys "
                                      "in all its documents): equality ignores key order")
        return variants
    if isinstance(value, list):
        combos = [list(c) for c in itertools.product(*(_orders(v) for v in value))]
        if len(combos) > MAX_ORDERS:
            raise FilterError(f"a document value with more than {MAX_ORDERS} key orders: equality ignores key order")
        return combos
    return [value]


def _equal(value: Any, json: bool) -> Any:
    """The condition on one field for equality with ``value``."""
    if value is None:
        return {"$not": {"$type": NON_NULL}} if json else None
    if isinstance(value, (Mapping, list)):
        variants = _orders(value)
        return {"$eq": value} if len(variants) == 1 else {"$in": variants}
    return value


def _condition(node: Cmp, json: bool) -> Any:
    """The condition on ``node.field`` (a value or an operator dict)."""
    op, value = node.op, node.value
    if op == "eq":
        return _equal(value, json)  # a plain None matches null and missing
    if op == "ne":
        if value is None and json:
            return {"$type": NON_NULL}
        equal = _equal(value, json)
        return {"$nin": equal["$in"]} if isinstance(equal, dict) and "$in" in equal else {"$ne": value}
    if op == "exists":
        if json:
            return {"$type": NON_NULL} if value else {"$not": {"$type": NON_NULL}}
        return {"$ne": None} if value else None
    if op in ("in", "nin"):
        if json and None in value:
            absent = {"$nin": [v for v in value if v is not None], "$type": NON_NULL}
            return {"$not": absent} if op == "in" else absent
        return {f"${op}": list(value)}
    if op == "regex":
        return {"$regex": value.mongo}
    if op == "all":
        return {"$all": list(value)} if value else {"$in": []}
    return {f"${op}": value}


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One document for a conjunction where fields do not collide (``$elemMatch`` on some servers has no ``$and``)."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, spec in part.items():
            if key.startswith("$") or key in merged:
                return {"$and": parts}
            merged[key] = spec
    return merged


def compile_filter(node: Node, *, nested: bool = False) -> dict[str, Any]:
    """A query document for ``node``, with dbp's semantics (NULL and missing are one thing).

    On a dotted path, or a field inside ``$elemMatch`` (``nested``), "null"
    means "no non-null value is reached", the meaning dbp gives it on both
    engines; document values compare regardless of key order.
    """
    if isinstance(node, Cmp):
        field = _path(node.field)
        return {field: _condition(node, nested or "." in field)}
    if isinstance(node, ElemMatch):
        field = _path(node.field)
        if not node.scalar:
            return {field: {"$elemMatch": compile_filter(node.item, nested=True)}}
        spec: dict[str, Any] = {}
        for cmp in (node.item.items if isinstance(node.item, And) else (node.item,)):
            assert isinstance(cmp, Cmp)
            spec[f"${cmp.op}"] = cmp.value.mongo if cmp.op == "regex" else list(cmp.value) \
                if isinstance(cmp.value, tuple) else cmp.value
        return {field: {"$elemMatch": spec}}
    if isinstance(node, And):
        return _merge([compile_filter(i, nested=nested) for i in node.items]) if node.items else {}
    if isinstance(node, Or):
        return {"$or": [compile_filter(i, nested=nested) for i in node.items]} if node.items else dict(_NOTHING)
    if isinstance(node, Not):
        if isinstance(node.item, Cmp) and node.item.op not in ("eq", "exists", "in") and nested:
            # a field-level $not, which servers without $nor inside $elemMatch accept
            return {_path(node.item.field): {"$not": _condition(node.item, True)}}
        return {"$nor": [compile_filter(node.item, nested=nested)]}
    assert isinstance(node, After)
    return compile_filter(node.expand())


def _valid_name(name: Any) -> str:
    if (not isinstance(name, str) or not name or "\x00" in name or "$" in name or name.startswith(("system.", "."))
            or name.endswith(".")):
        raise FilterError(f"{name!r} is not a usable collection name")
    return name


#: What BSON cannot encode (a Decimal, an int of 2**63 or more, a lone surrogate, a NUL in a name, too large).
UNENCODABLE = (InvalidDocument, OverflowError, UnicodeEncodeError)


def _unencodable(what: str, exc: Exception, docs: Sequence[Mapping[str, Any]] = ()) -> FilterError:
    """A FilterError for a value BSON cannot encode, naming the first such document of ``docs``."""
    where = ""
    for i, doc in enumerate(docs):
        try:
            encode(doc)
        except UNENCODABLE:
            where = f"row {i}: "
            break
    text = str(exc)
    text = text if len(text) <= 200 else text[:197] + "..."
    return FilterError(f"{what}: {where}MongoDB cannot store this: {text}")


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
        except UNENCODABLE as exc:
            raise _unencodable(f"find on {self.name}", exc) from None
        except OperationFailure as exc:  # the server refused the query itself
            raise FilterError(f"find on {self.name}: {_reason(exc)}") from None
        except PyMongoError as exc:
            raise OperationError(f"find on {self.name}: {_reason(exc)}") from None

    def _stream(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        cursor = self.collection.find(**self._find_args(node, sort, projection), batch_size=batch)
        try:
            for doc in cursor:
                yield self._shape(doc, projection)
        finally:
            cursor.close()

    def _count(self, node: Node, limit: Optional[int]) -> int:
        if limit == 0:
            return 0
        try:
            if limit is None:
                return self.collection.count_documents(compile_filter(node))
            return self.collection.count_documents(compile_filter(node), limit=limit)
        except UNENCODABLE as exc:
            raise _unencodable(f"count on {self.name}", exc) from None
        except OperationFailure as exc:
            raise FilterError(f"count on {self.name}: {_reason(exc)}") from None
        except PyMongoError as exc:
            raise OperationError(f"count on {self.name}: {_reason(exc)}") from None

    # -- writes ----------------------------------------------------------------------------------

    def _unique_keys(self, *, refresh: bool = False) -> list[tuple[str, ...]]:
        """``_id`` and the unique, non-partial indexes' keys; read once per query object."""
        if self._keys is None or refresh:
            keys: list[tuple[str, ...]] = [("_id",)]
            for info in self.collection.index_information().values():
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
        ``upserted_id`` tells, and a second read returns the document as stored.
        """
        eq = equalities(filter_by)
        self._check_fields(kwargs, "get_or_create")
        self._require_unique(list(eq), "get_or_create")
        on_insert = {k: v for k, v in kwargs.items() if k not in eq}
        for attempt in range(_UPSERT_RETRIES):
            try:
                found = self._get_or_create_once(eq, on_insert)
            except DuplicateKeyError:
                found = None
            except UNENCODABLE as exc:
                raise _unencodable(f"get_or_create on {self.name}", exc) from None
            except PyMongoError as exc:
                raise OperationError(f"get_or_create on {self.name}: {_reason(exc)}") from None
            if found is not None:
                return found
            # A racing upsert inserted first (a duplicate key, or a server that answered the retried upsert
            # with no document): retried, ours matches its document, as MongoDB advises.
            time.sleep(0.005 * (attempt + 1))
        existing = self.collection.find_one(eq)
        if existing is None:
            raise OperationError(
                f"get_or_create on {self.name}: a document with the same unique key exists but does not match "
                "the rest of the filter"
            )
        return existing, False

    def _get_or_create_once(self, eq: dict[str, Any], on_insert: dict[str, Any]) -> Optional[tuple[Row, bool]]:
        if "_id" in eq:
            result = self.collection.update_one(eq, {"$setOnInsert": on_insert}, upsert=True)
            found = self.collection.find_one(eq)  # as stored (UTC datetimes to the millisecond, lists)
            if result.upserted_id is not None:
                return (found if found is not None else {**on_insert, **eq}), True
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
        except UNENCODABLE as exc:
            raise _unencodable(f"update on {self.name}", exc) from None
        except PyMongoError as exc:
            raise OperationError(f"update on {self.name}: {_reason(exc)}") from None

    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        eq = equalities(filter_by)
        if not isinstance(attrs, Mapping):
            raise FilterError("upsert needs a dict of attributes")
        self._check_fields(attrs, "upsert")
        self._require_unique(list(eq), "upsert")
        changes = {k: v for k, v in attrs.items() if k not in eq}
        update: dict[str, Any] = {"$set": changes or dict(eq)}
        try:
            doc: Optional[Row] = self.collection.find_one_and_update(
                eq, update, upsert=True, return_document=ReturnDocument.AFTER)
        except UNENCODABLE as exc:
            raise _unencodable(f"upsert on {self.name}", exc) from None
        except PyMongoError as exc:
            raise OperationError(f"upsert on {self.name}: {_reason(exc)}") from None
        assert doc is not None
        return doc

    def delete(self, filter_by: Filter) -> int:
        try:
            return self.collection.delete_many(compile_filter(parse(filter_by))).deleted_count
        except UNENCODABLE as exc:
            raise _unencodable(f"delete on {self.name}", exc) from None
        except PyMongoError as exc:
            raise OperationError(f"delete on {self.name}: {_reason(exc)}") from None

    def _bulk_update(
        self, instances: Sequence[Mapping[str, Any]], attrs: Sequence[Mapping[str, Any]], keys: list[str]
    ) -> int:
        operations = [UpdateOne({k: instance[k] for k in keys}, {"$set": dict(changes)})
                      for instance, changes in zip(instances, attrs)]
        try:
            return self.collection.bulk_write(operations, ordered=False).matched_count
        except UNENCODABLE as exc:
            raise _unencodable(f"bulk_update on {self.name}", exc, [{**i, **a} for i, a in zip(instances, attrs)]
                               ) from None
        except PyMongoBulkWriteError as exc:
            raise _bulk_error(self.name, "bulk_update", exc) from None
        except PyMongoError as exc:
            raise OperationError(f"bulk_update on {self.name}: {_reason(exc)}") from None

    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode,
                     update_fields: Optional[Sequence[str]]) -> int:
        seen: set[tuple[Any, ...]] = set()
        for i, row in enumerate(rows):  # field names are checked once per distinct set of them
            if not isinstance(row, Mapping):
                raise FilterError(f"bulk_insert: row {i} is a {type(row).__name__}, not a dict")
            names = tuple(row)
            if names not in seen:
                self._check_fields(row, f"bulk_insert: row {i}")
                seen.add(names)
        try:
            if on_conflict == "update":
                return self._upsert_many(rows, update_fields)
            docs = [dict(r) for r in rows]  # pymongo adds _id to what it inserts: keep the caller's dicts intact
            return len(self.collection.insert_many(docs, ordered=False).inserted_ids)
        except UNENCODABLE as exc:
            raise _unencodable(f"bulk_insert into {self.name}", exc, rows) from None
        except PyMongoBulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if on_conflict == "ignore" and all(e.get("code") == DUPLICATE_KEY for e in errors):
                return int(exc.details.get("nInserted", 0))
            raise _bulk_error(self.name, "bulk_insert", exc, ignore_duplicates=on_conflict == "ignore") from None
        except PyMongoError as exc:
            raise OperationError(f"bulk_insert into {self.name}: {_reason(exc)}") from None

    def _upsert_many(self, rows: Sequence[Mapping[str, Any]], update_fields: Optional[Sequence[str]]) -> int:
        """Upserting ``UpdateOne``s: ``$set`` for the fields to update, ``$setOnInsert`` for the rest."""
        missing = next((i for i, row in enumerate(rows) if "_id" not in row), None)
        if missing is not None:
            raise FilterError(f"bulk_insert(on_conflict='update') needs _id in every document; "
                              f"row {missing} has none")
        merged, _ = collapse(rows, ["_id"], last_wins=True)
        wanted = None if update_fields is None else set(update_fields)
        operations = []
        for doc in merged:
            changes = {k: v for k, v in doc.items() if k != "_id" and (wanted is None or k in wanted)}
            rest = {k: v for k, v in doc.items() if k != "_id" and k not in changes}
            update: dict[str, Any] = {}
            if changes:
                update["$set"] = changes
            if rest or not changes:
                update["$setOnInsert"] = rest or {"_id": doc["_id"]}
            operations.append(UpdateOne({"_id": doc["_id"]}, update, upsert=True))
        return self.collection.bulk_write(operations, ordered=False).upserted_count


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
