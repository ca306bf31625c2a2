"""Queries on a MongoDB collection: the filter language compiled to a query document.

Writes use pymongo's bulk APIs: ``insert_many(ordered=False)`` and
``bulk_write``, one round trip per batch (pymongo splits at the server's
``maxWriteBatchSize`` and message size). Every document is encoded before the
first write, so a value BSON cannot hold writes nothing (inserts send the
encoded documents; updates are encoded twice, ~2-5 us a small one).
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp, encode
from bson.codec_options import TypeRegistry
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument
from pymongo import ReturnDocument, UpdateMany, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError as PyMongoBulkWriteError
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from dbp._values import convert_row, find_overflow, overflow_message, plain, plan
from dbp.errors import BulkWriteError, FilterError, OperationError
from dbp.filters import (
    After,
    And,
    Cmp,
    ElemMatch,
    Node,
    Not,
    Or,
    SortKey,
    TypeBeyond,
    equalities,
    parse,
    register_scalar,
)
from dbp.mongo import cone as cones
from dbp.mongo import cone_run, order
from dbp.mongo.errors import translate
from dbp.mongo.fields import DeclaredFields, check, declared
from dbp.mongo.lock import Lease
from dbp.pagination import TokenTypes
from dbp.query import BaseQuery, ConflictMode, Filter, Round, Row, collapse
from dbp.sky import DISTANCE, Cone, Match, Position, cone_for
from dbp.updates import Change

if TYPE_CHECKING:
    from dbp.mongo.connection import MongoConnection

__all__ = ["MongoQuery", "compile_filter"]

register_scalar(ObjectId)

DUPLICATE_KEY = 11000
_UPSERT_RETRIES = 5
#: How long a bulk_insert by key= fields without a unique index waits for another one's lease (seconds).
_LEASE_WAIT = 120.0
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
#: BSON's sort order of types (null, below every other, left out), as ``$type`` aliases: the values of one
#: entry compare with each other. Arrays sort by an element, and ``$type`` matches their elements, so
#: "array" is not named (keyset pages over array values are not supported).
TYPE_ORDER: list[tuple[tuple[type, ...], list[str]]] = [
    ((MinKey,), ["minKey"]),
    ((int, float, decimal.Decimal, Decimal128, Int64), ["int", "long", "double", "decimal"]),
    ((str,), ["string", "symbol"]),
    ((Mapping,), ["object"]),
    ((list, tuple), []),
    ((bytes, uuid.UUID, Binary), ["binData"]),
    ((ObjectId,), ["objectId"]),
    ((bool,), ["bool"]),
    ((dt.datetime, dt.date), ["date"]),
    ((Timestamp,), ["timestamp"]),
    ((Regex, re.Pattern), ["regex"]),
    ((MaxKey,), ["maxKey"]),
]
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


def compile_filter(node: Node, *, nested: bool = False, position: Optional[Position] = None,
                   name: str = "this collection") -> dict[str, Any]:
    """A query document for ``node``, with dbp's semantics (NULL and missing are one thing).

    On a dotted path, or a field inside ``$elemMatch`` (``nested``), "null"
    means "no non-null value is reached", the meaning dbp gives it on both
    engines; document values compare regardless of key order. ``position``:
    where collection ``name`` keeps positions, for ``$cone``.
    """
    if isinstance(node, Cone):
        return cones.compile_cone(node, position, name)
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
        return _merge([compile_filter(i, nested=nested, position=position, name=name)
                       for i in node.items]) if node.items else {}
    if isinstance(node, Or):
        return {"$or": [compile_filter(i, nested=nested, position=position, name=name)
                        for i in node.items]} if node.items else dict(_NOTHING)
    if isinstance(node, Not):
        if isinstance(node.item, Cmp) and node.item.op not in ("eq", "exists", "in") and nested:
            # a field-level $not, which servers without $nor inside $elemMatch accept
            return {_path(node.item.field): {"$not": _condition(node.item, True)}}
        return {"$nor": [compile_filter(node.item, nested=nested, position=position, name=name)]}
    if isinstance(node, TypeBeyond):
        return _type_beyond(node)
    assert isinstance(node, After)
    return compile_filter(node.expand(nan_below=True))


def _type_beyond(node: TypeBeyond) -> dict[str, Any]:
    """``{path: {"$type": [...]}}``: the types BSON sorts after (before) the value's; nothing for an unknown type."""
    value = node.value
    rank = next((i for i, (kinds, _) in enumerate(TYPE_ORDER)
                 if isinstance(value, kinds) and (kinds == (bool,) or not isinstance(value, bool))), None)
    if rank is None:
        return dict(_NOTHING)
    beyond = TYPE_ORDER[rank + 1:] if node.direction == 1 else TYPE_ORDER[:rank]
    aliases = [alias for _, names in beyond for alias in names]
    return {_path(node.field): {"$type": aliases}} if aliases else dict(_NOTHING)


def _fallback(value: Any) -> Any:
    """For BSON: a numpy or pandas value as its plain value (anything else stays, and BSON refuses it)."""
    return plain(value)


_NATIVE = {"set": "$set", "unset": "$unset", "inc": "$inc", "mul": "$mul", "min": "$min", "max": "$max",
           "push": "$push", "add_to_set": "$addToSet", "pull": "$pull"}


def compile_update(changes: Sequence[Change]) -> list[dict[str, Any]]:
    """The update document(s) for ``changes``: two where a path is pulled from, then pushed to.

    Setting a field to None unsets it, so dbp never stores a null: update
    operators then treat it as missing, as they do a NULL in SQL.
    """
    docs: list[dict[str, Any]] = [{}]
    pulled: set[str] = set()
    for change in changes:
        op, value = _NATIVE[change.op], change.value
        if change.op == "set" and value is None:
            op, value = "$unset", ""
        elif change.op == "unset":
            value = ""
        elif change.op in ("push", "add_to_set"):
            value = {"$each": list(value)}
        doc = docs[0]
        if change.op == "pull":
            pulled.add(change.path)
        elif change.op == "push" and change.path in pulled:
            if len(docs) == 1:
                docs.append({})
            doc = docs[1]
        doc.setdefault(op, {})[change.path] = value
    return docs


#: What each operator needs of the value it changes: a number, an array (None: anything).
_NEEDS = {"inc": "number", "mul": "number", "push": "array", "add_to_set": "array", "pull": "array"}
#: Operators that create the path's missing parents (which must then be embedded documents).
_CREATES = frozenset({"set", "inc", "mul", "min", "max", "push", "add_to_set"})


def clashes(changes: Sequence[Change]) -> list[tuple[str, dict[str, Any]]]:
    """(what is wrong, a query for documents where it is) for each way ``changes`` can fail on a
    document's types: ``$inc`` of a non-number, ``$push`` to a non-array, a write below a value
    that is not an embedded document. Used to refuse an update before its first write (MongoDB
    has no multi-document atomicity without transactions: a failure midway keeps earlier writes).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for change in changes:
        need = _NEEDS.get(change.op)
        if need == "number":
            out.append((f"{change.path!r} holds a non-number (${change.op} needs numbers)",
                        {"$or": [{change.path: {"$exists": True, "$not": {"$type": "number"}}},
                                 {change.path: {"$type": "array"}}]}))
        elif need == "array":
            out.append((f"{change.path!r} holds a non-array (the operator needs an array)",
                        {change.path: {"$exists": True, "$not": {"$type": "array"}}}))
        if change.op in _CREATES and not (change.op == "set" and change.value is None):
            parts = change.path.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                out.append((f"{parent!r} holds a value that is not an embedded document (a write to "
                            f"{change.path!r} goes below it)",
                            {"$or": [{parent: {"$exists": True, "$not": {"$type": "object"}}},
                                     {parent: {"$type": "array"}}]}))
    return out


def _reaching(filters: list[dict[str, Any]], size: int = 5000) -> Iterator[dict[str, Any]]:
    """Queries for the documents ``filters`` reach, ``size`` filters each: ``{k: {"$in": [...]}}`` when
    they are all one field's equality to a scalar (an index serves it), else an ``$or``."""
    for start in range(0, len(filters), size):
        chunk = filters[start:start + size]
        keys = {tuple(f) for f in chunk}
        if len(keys) == 1 and len(next(iter(keys))) == 1:
            (key,) = next(iter(keys))
            values = [f[key] for f in chunk]
            if not any(isinstance(v, (dict, list, tuple)) for v in values):
                yield {key: {"$in": values}}
                continue
        yield chunk[0] if len(chunk) == 1 else {"$or": chunk}


def _valid_name(name: Any) -> str:
    if (not isinstance(name, str) or not name or "\x00" in name or "$" in name or name.startswith(("system.", "."))
            or name.endswith(".") or ".." in name):
        raise FilterError(f"{name!r} is not a usable collection name")
    return name


#: What BSON cannot encode (a Decimal, an int of 2**63 or more, a lone surrogate, a NUL in a name, too large).
UNENCODABLE = (InvalidDocument, OverflowError, UnicodeEncodeError)


def _unencodable(what: str, exc: Exception, docs: Sequence[Mapping[str, Any]] = (), *, rows: bool = True,
                 indexes: Optional[Sequence[int]] = None) -> FilterError:
    """A FilterError for a value BSON cannot encode, naming the first such document of ``docs`` (with ``rows``),
    by its index in ``indexes`` (default its position)."""
    where = ""
    for i, doc in enumerate(docs):  # a datetime beyond BSON's years: named with its field
        found = find_overflow(doc["u"] if set(doc) == {"w", "u"} else doc)  # bulk_update's: the update
        if found is not None:
            at = i if indexes is None else indexes[i]
            return FilterError(overflow_message(f"{what}: {f'row {at}: ' if rows else ''}{found[0]}", found[1]))
    for i, doc in enumerate(docs):
        try:
            encode(doc)
        except UNENCODABLE:
            where = f"row {i if indexes is None else indexes[i]}: "
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
        collection = db.collection(name)
        #: numpy and pandas values anywhere in a document are stored as their plain values.
        codecs = collection.codec_options.with_options(type_registry=TypeRegistry(fallback_encoder=_fallback))
        self.collection: Collection[Any] = collection.with_options(codec_options=codecs)
        self._keys: Optional[list[tuple[str, ...]]] = None
        spec = declared(db.settings.schema_dir, self.name)
        #: The fields collections.toml declares for this collection (None: free-form).
        self.fields = DeclaredFields(self.name, spec.fields) if spec is not None and spec.fields is not None else None
        #: Where it keeps positions ($cone, crossmatch), if collections.toml says.
        self.position = Position(point=spec.position[0], ra_offset=spec.position[1]) \
            if spec is not None and spec.position is not None else None

    def __repr__(self) -> str:
        return f"<MongoQuery {self.name} on {self.db.address}>"

    def _frame_columns(self) -> Optional[list[str]]:
        if self.fields is None:
            return None
        return sorted(self.fields.names, key=lambda n: (n != "_id", n))

    def _key(self) -> list[str]:
        return ["_id"]

    def _filter(self, node: Node) -> dict[str, Any]:
        return compile_filter(node, position=self.position, name=self.name)

    def _crossmatch(self, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                    node: Node) -> list[Match]:
        check(self.fields, "crossmatch", node=node)
        try:
            return cone_run.crossmatch(self, positions, radius, nearest, self._filter(node))
        except UNENCODABLE as exc:
            raise _unencodable(f"crossmatch on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "crossmatch", self.name, FilterError, limit_ms=self.db.settings.max_time_ms) from None

    def _near(self, node: Node, centre: Optional[Cone], sort: list[SortKey],
              projection: Optional[list[str]], limit: Optional[int], offset: int, batch: int = 0) -> Iterator[Row]:
        """Rows read by an aggregation (dbp.mongo.cone): a filter with a cone, a sort by ``$distance`` or one
        that places NULLs high (dbp.mongo.order)."""
        plain_sort = [k for k in sort if k.field != DISTANCE]
        check(self.fields, "find", node=node, sort=plain_sort,
              projection=[f for f in projection or () if f != DISTANCE])
        for name in [k.field for k in plain_sort] + [f for f in projection or () if f != DISTANCE]:
            _path(name)
        try:
            yield from cone_run.rows(self, node, centre, sort, projection, limit, offset, batch)
        except UNENCODABLE as exc:
            raise _unencodable(f"find on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "find", self.name, FilterError, limit_ms=self.db.settings.max_time_ms) from None

    def _find_args(self, node: Node, sort: list[SortKey], projection: Optional[list[str]]) -> dict[str, Any]:
        for name in [k.field for k in sort] + (projection or []):
            _path(name)
        check(self.fields, "find", node=node, sort=sort, projection=projection)
        args: dict[str, Any] = {"filter": self._filter(node), "max_time_ms": self.db.settings.max_time_ms}
        if projection is not None:
            args["projection"] = {**{f: 1 for f in projection}, **({} if "_id" in projection else {"_id": 0})}
        if sort:
            args["sort"] = [(k.field, k.direction) for k in sort]
        return args

    @staticmethod
    def _shape(doc: Row, projection: Optional[list[str]]) -> Row:
        # as in SQL, a projected field that is missing reads as None
        return doc if projection is None else {f: doc.get(f) for f in projection}

    def _aggregated(self, node: Node, centre: Optional[Cone], sort: list[SortKey]) -> bool:
        """True if a read runs as an aggregation (see :meth:`_near`), not a find."""
        return centre is not None or bool(cones.top_cones(node)) or order.wraps(sort, False)

    def _select(
        self, node: Node, sort: list[SortKey], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        if limit == 0:
            return []  # pymongo's limit(0) means "no limit"
        centre = cone_for(node, sort, projection)
        if self._aggregated(node, centre, sort):
            return list(self._near(node, centre, sort, projection, limit, offset))
        try:
            cursor = self.collection.find(**self._find_args(node, sort, projection), skip=offset, limit=limit or 0)
            return [self._shape(doc, projection) for doc in cursor]
        except UNENCODABLE as exc:
            raise _unencodable(f"find on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "find", self.name, FilterError, limit_ms=self.db.settings.max_time_ms) from None

    def _stream(
        self, node: Node, sort: list[SortKey], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        centre = cone_for(node, sort, projection)
        if self._aggregated(node, centre, sort):
            yield from self._near(node, centre, sort, projection, None, 0, batch)
            return
        cursor = self.collection.find(**self._find_args(node, sort, projection), batch_size=batch)
        try:
            for doc in cursor:
                yield self._shape(doc, projection)
        except UNENCODABLE as exc:
            raise _unencodable(f"find on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "find", self.name, FilterError, limit_ms=self.db.settings.max_time_ms) from None
        finally:
            cursor.close()

    def _count(self, node: Node, limit: Optional[int]) -> int:
        check(self.fields, "count", node=node)
        if limit == 0:
            return 0
        try:
            if cones.top_cones(node):
                return cone_run.count(self, node, limit)
            if limit is None:
                return self.collection.count_documents(self._filter(node), **self.db.time_limit)
            return self.collection.count_documents(self._filter(node), limit=limit, **self.db.time_limit)
        except UNENCODABLE as exc:
            raise _unencodable(f"count on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "count", self.name, FilterError, limit_ms=self.db.settings.max_time_ms) from None

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
        ``upserted_id`` tells, and a second read returns the document as stored.
        """
        eq = equalities(filter_by)
        self._check_fields(kwargs, "get_or_create")
        check(self.fields, "get_or_create", names=[*eq, *kwargs])
        self._require_unique(list(eq), "get_or_create")
        on_insert = {k: v for k, v in _document(kwargs).items() if k not in eq}
        for attempt in range(_UPSERT_RETRIES):
            try:
                found = self._get_or_create_once(eq, on_insert)
            except DuplicateKeyError:
                found = None
            except UNENCODABLE as exc:
                raise _unencodable(f"get_or_create on {self.name}", exc, [on_insert], rows=False) from None
            except PyMongoError as exc:
                raise translate(exc, "get_or_create", self.name) from None
            if found is not None:
                return found
            # A racing upsert inserted first (a duplicate key, or a server that answered the retried upsert
            # with no document): retried, ours matches its document, as MongoDB advises.
            time.sleep(0.005 * (attempt + 1))
        try:
            existing = self.collection.find_one(eq, max_time_ms=self.db.settings.max_time_ms)
        except PyMongoError as exc:
            raise translate(exc, "get_or_create", self.name, limit_ms=self.db.settings.max_time_ms) from None
        if existing is None:
            raise OperationError(
                f"get_or_create on {self.name}: a document with the same unique key exists but does not match "
                "the rest of the filter"
            )
        return existing, False

    def _get_or_create_once(self, eq: dict[str, Any], on_insert: dict[str, Any]) -> Optional[tuple[Row, bool]]:
        if "_id" in eq:
            result = self.collection.update_one(eq, {"$setOnInsert": on_insert}, upsert=True)
            # as stored (UTC datetimes to the millisecond, lists)
            found = self.collection.find_one(eq, max_time_ms=self.db.settings.max_time_ms)
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

    def _update(self, node: Node, changes: Sequence[Change]) -> int:
        check(self.fields, "update", node=node, names=[c.path for c in changes])
        try:
            self._refuse_clashes("update", [(self._filter(node), changes)])
            return self.collection.update_many(self._filter(node), compile_update(changes)[0]).matched_count
        except UNENCODABLE as exc:
            raise _unencodable(f"update on {self.name}", exc, [_fields(changes)], rows=False) from None
        except PyMongoError as exc:
            raise translate(exc, "update", self.name) from None

    def _refuse_clashes(self, what: str, writes: Sequence[tuple[dict[str, Any], Sequence[Change]]]) -> None:
        """Raise a FilterError naming the field if a document the ``writes`` (filter, changes) reach
        would make them fail midway (see :func:`clashes`). One query per kind of change and 5,000 filters;
        a concurrent writer can still change a type between this check and the write."""
        groups: dict[tuple[tuple[str, str], ...], tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]] = {}
        for where, changes in writes:
            found = clashes(changes)
            if found:
                key = tuple((c.op, c.path) for c in changes if c.op != "set" or c.value is not None)
                groups.setdefault(key, (found, []))[1].append(where)
        for found, filters in groups.values():
            if len(filters) > 1 and not self._reads({"$or": [q for _, q in found]}):
                continue  # no document of the collection clashes: the usual case, one read
            for reached in _reaching(filters):
                if self._reads({"$and": [reached, {"$or": [q for _, q in found]}]}):
                    problem = next(p for p, q in found if self._reads({"$and": [reached, q]}))
                    raise FilterError(f"{what} on {self.name}: a document it would change: {problem}; "
                                      "nothing was changed")

    def _reads(self, query: dict[str, Any]) -> bool:
        """Whether a document matches ``query`` (a read with the settings' maxTimeMS)."""
        found = self.collection.find_one(query, {"_id": 1}, max_time_ms=self.db.settings.max_time_ms)
        return found is not None

    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        eq = equalities(filter_by)
        changes = self._upsert_changes(eq, attrs)
        check(self.fields, "upsert", names=[*eq, *(c.path for c in changes)])
        self._require_unique(list(eq), "upsert")
        update = compile_update(changes)[0] if changes else {"$set": dict(eq)}
        try:
            doc: Optional[Row] = self.collection.find_one_and_update(
                eq, update, upsert=True, return_document=ReturnDocument.AFTER)
        except UNENCODABLE as exc:
            raise _unencodable(f"upsert on {self.name}", exc, [_fields(changes)], rows=False) from None
        except PyMongoError as exc:
            raise translate(exc, "upsert", self.name) from None
        assert doc is not None
        return doc

    def delete(self, filter_by: Filter) -> int:
        check(self.fields, "delete", node=parse(filter_by))
        try:
            return self.collection.delete_many(self._filter(parse(filter_by))).deleted_count
        except UNENCODABLE as exc:
            raise _unencodable(f"delete on {self.name}", exc) from None
        except PyMongoError as exc:
            raise translate(exc, "delete", self.name) from None

    def _key_form(self, keys: list[str], value: tuple[Any, ...], where: str = "") -> tuple[Any, ...]:
        """As both engines, and datetimes truncated to milliseconds, as BSON stores them."""
        return tuple(_millis(v) for v in super()._key_form(keys, value, where))

    def _encodable(self, what: str, docs: Sequence[Mapping[str, Any]], origin: Sequence[int]) -> None:
        """Encode every document before anything is written: pymongo splits a large write (maxWriteBatchSize,
        maxMessageSizeBytes) and encodes a later part only after sending the first. Costs ~2 us a small document."""
        codecs = self.collection.codec_options
        for doc, index in zip(docs, origin):
            try:
                encode(doc, codec_options=codecs)
            except UNENCODABLE as exc:
                raise _unencodable(what, exc, [doc], indexes=[index]) from None

    def _bulk_update(self, keys: list[str], rounds: Sequence[Round],
                     origins: Optional[Sequence[Sequence[int]]] = None) -> int:
        check(self.fields, "bulk_update", names=[*keys, *{c.path for _, changes in rounds for row in changes
                                                          for c in row}])
        # by _id, one document each; by other fields, every document that matches (as SQL's UPDATE)
        write: Any = UpdateOne if keys == ["_id"] else UpdateMany
        batches: list[list[tuple[dict[str, Any], dict[str, Any], int]]] = []
        for number, (instances, changes) in enumerate(rounds):
            indexes = origins[number] if origins is not None else range(len(instances))
            first, second = [], []  # second: the $push of a $pull-then-$push on one path
            for instance, row_changes, index in zip(instances, changes, indexes):
                updates = compile_update(row_changes)
                first.append((instance, updates[0], index))
                second += [(instance, u, index) for u in updates[1:]]
            batches += [first, second] if second else [first]
        what = f"bulk_update on {self.name}"
        every = [op for batch in batches for op in batch]  # checked before the first write: all or nothing
        self._encodable(what, [{"w": w, "u": u} for w, u, _ in every], [i for *_, i in every])
        matched = done = 0
        batch: list[tuple[dict[str, Any], dict[str, Any], int]] = []
        try:
            self._refuse_clashes("bulk_update", [(w, c) for instances, changes in rounds
                                                 for w, c in zip(instances, changes)])
            for number, batch in enumerate(batches):
                result = self.collection.bulk_write([write(w, u) for w, u, _ in batch], ordered=False)
                done += result.modified_count + result.upserted_count
                if number == 0:
                    matched = result.matched_count
        except UNENCODABLE as exc:
            raise _unencodable(what, exc) from None
        except PyMongoBulkWriteError as exc:
            raise _bulk_error(self.name, "bulk_update", exc, origin=[i for *_, i in batch], before=done) from None
        except PyMongoError as exc:
            raise translate(exc, "bulk_update", self.name) from None
        return matched

    def _check_conflict_key(self, key: list[str]) -> None:
        """Top-level fields (declared ones, on a declared collection); ``_id``, or a unique index's fields
        exactly if the collection has a unique index besides ``_id``.

        ``_id``, which every document has, does not make a collection keyed: on one without other unique
        indexes any fields may be the key, and bulk_insert serializes its writers with a lease instead.
        """
        dotted = next((k for k in key if "." in k), None)
        if dotted is not None:
            raise FilterError(f"bulk_insert: key names top-level fields, not the path {dotted!r}")
        check(self.fields, "bulk_insert: key", names=key)
        if key == ["_id"]:
            return
        unique = [u for u in self._unique_keys(refresh=True) if u != ("_id",)]
        if unique and not any(set(u) == set(key) for u in unique):
            shown = "; ".join(", ".join(u) for u in [("_id",), *unique])
            raise FilterError(
                f"bulk_insert: key=[{', '.join(key)}] is not a unique key of {self.name}, so documents cannot "
                f"conflict on it; its unique keys: {shown} (name one of them, or leave key out)")

    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode,
                     update_fields: Optional[Sequence[str]], key: Optional[list[str]] = None) -> int:
        seen: set[tuple[Any, ...]] = set()
        for i, row in enumerate(rows):  # field names are checked once per distinct set of them
            if not isinstance(row, Mapping):
                raise FilterError(f"bulk_insert: row {i} is a {type(row).__name__}, not a dict")
            names = tuple(row)
            if names not in seen:
                self._check_fields(row, f"bulk_insert: row {i}")
                check(self.fields, f"bulk_insert, row {i}", rows=[row])
                seen.add(names)
        what = f"bulk_insert into {self.name}"
        origin: Optional[list[int]] = None
        try:
            if key is not None and key != ["_id"]:
                return self._upsert_by(rows, on_conflict, update_fields, key)
            if on_conflict == "update":
                return self._upsert_many(rows, update_fields)
            # pymongo adds _id to what it inserts: keep the caller's dicts intact; None means missing
            docs = [_document(r) for r in rows]
            raw = self._raw(what, docs)  # encoded once, all before the first write
            self.collection.insert_many(raw, ordered=False)
            return len(raw)
        except UNENCODABLE as exc:
            raise _unencodable(what, exc, rows) from None
        except _UpsertError as exc:
            upserts = exc.error.details.get("writeErrors", [])
            if on_conflict == "ignore" and all(e.get("code") == DUPLICATE_KEY for e in upserts):
                return int(exc.error.details.get("nUpserted", 0))  # a taken _id (or unique key): skipped, as in SQL
            origin, error = exc.origin, exc.error
        except PyMongoBulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if on_conflict == "ignore" and all(e.get("code") == DUPLICATE_KEY for e in errors):
                return int(exc.details.get("nInserted", 0))
            raise _bulk_error(self.name, "bulk_insert", exc, ignore_duplicates=on_conflict == "ignore") from None
        except PyMongoError as exc:
            raise translate(exc, "bulk_insert", self.name) from None
        raise _bulk_error(self.name, "bulk_insert", error, origin=origin) from None

    def _raw(self, what: str, docs: Sequence[Mapping[str, Any]]) -> list[RawBSONDocument]:
        """``docs`` encoded, so that a document BSON cannot hold is refused before pymongo sends any part."""
        codecs = self.collection.codec_options
        out = []
        for i, doc in enumerate(docs):
            try:
                out.append(RawBSONDocument(encode(doc, codec_options=codecs)))
            except UNENCODABLE as exc:
                raise _unencodable(what, exc, [doc], indexes=[i]) from None
        return out

    def _upsert_many(self, rows: Sequence[Mapping[str, Any]], update_fields: Optional[Sequence[str]],
                     key: Sequence[str] = ("_id",), *, ignore: bool = False) -> int:
        """Upserts: ``$set`` for the fields to update (none with ``ignore``), ``$setOnInsert`` for the rest.

        By ``_id``, ``UpdateOne``s; by other ``key`` fields, ``UpdateMany``s, which, as SQL's UPDATE,
        change every document with those values (a collection without a unique index on them may hold several).
        """
        key = list(key)
        if key == ["_id"]:
            missing = next((i for i, row in enumerate(rows) if row.get("_id") is None), None)
            if missing is not None:
                raise FilterError(f"bulk_insert(on_conflict='update') needs a non-null _id in every document; "
                                  f"row {missing} has none")
        merged, origin = collapse([_document(r, keep_none=True) for r in rows], key, last_wins=not ignore,
                                  normalize=lambda value: self._key_form(key, value))
        wanted = None if update_fields is None else set(update_fields)
        if wanted is not None and self.fields is not None:
            check(self.fields, "bulk_insert: update_fields", names=wanted)
        fixed = {*key, "_id"}  # never updated: the key, and _id (which MongoDB keeps)
        updates = []
        for doc in merged:
            changes = {} if ignore else {k: v for k, v in doc.items()
                                         if k not in fixed and (wanted is None or k in wanted)}
            rest = {k: v for k, v in doc.items() if k not in key and k not in changes and v is not None}
            update: dict[str, Any] = {}
            if any(v is not None for v in changes.values()):
                update["$set"] = {k: v for k, v in changes.items() if v is not None}
            if any(v is None for v in changes.values()):
                update["$unset"] = {k: "" for k, v in changes.items() if v is None}
            where = {k: doc[k] for k in key}
            if rest or not update:
                update["$setOnInsert"] = rest or dict(where)
            updates.append((where, update))
        self._encodable(f"bulk_insert into {self.name}", [{"w": w, "u": u} for w, u in updates], origin)
        write: Any = UpdateOne if key == ["_id"] else UpdateMany
        try:
            return self.collection.bulk_write([write(w, u, upsert=True) for w, u in updates],
                                              ordered=False).upserted_count
        except PyMongoBulkWriteError as exc:
            raise _UpsertError(exc, origin) from None

    def _upsert_by(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode,
                   update_fields: Optional[Sequence[str]], key: list[str]) -> int:
        """bulk_insert by ``key=`` fields: upserts filtered on them (``ignore``: ``$setOnInsert`` only).

        Without a unique index on the key, two writers could each find a key missing and both insert it,
        so writers by key hold a lease on the collection (dbp.mongo.lock) while they write: they run one at
        a time, against each other (not against other writers). With one, the server keeps keys unique.
        """
        for i, row in enumerate(rows):
            bad = next((k for k in key if isinstance(row.get(k), (Mapping, list, tuple))), None)
            if bad is not None:  # MongoDB's equality on them is not SQL's (an array matches its elements)
                raise FilterError(f"bulk_insert: row {i}: the key field {bad!r} holds a "
                                  f"{type(row[bad]).__name__}; key values are plain values")
        ignore = on_conflict == "ignore"
        if any(set(u) == set(key) for u in self._unique_keys()):
            return self._upsert_many(rows, update_fields, key, ignore=ignore)
        with Lease(self.db.database, timeout=_LEASE_WAIT, name=f"bulk_insert:{self.name}",
                   what=f"the bulk_insert lock of {self.name}",
                   advice="a dbp bulk_insert with key= writes there; try again"):
            return self._upsert_many(rows, update_fields, key, ignore=ignore)


class _UpsertError(Exception):
    """A write error of _upsert_many, with the caller's index of each upsert."""

    def __init__(self, error: PyMongoBulkWriteError, origin: list[int]) -> None:
        super().__init__(str(error))
        self.error, self.origin = error, origin


def _millis(value: Any) -> Any:
    """A datetime as BSON stores it (milliseconds, truncated); others as they are."""
    if isinstance(value, dt.datetime) and value.microsecond % 1000:
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


_NONE = type(None)


def _fields(changes: Sequence[Change]) -> dict[str, Any]:
    """An update's operands by path (to name the one BSON cannot encode)."""
    return {c.path: c.value for c in changes}


def _document(row: Mapping[str, Any], *, keep_none: bool = False) -> dict[str, Any]:
    """A copy of ``row`` to store: numpy and pandas values made plain, None (missing) left out."""
    kinds = tuple(map(type, row.values()))
    steps = plan(kinds)
    if steps is None and (keep_none or _NONE not in kinds):
        return dict(row)  # the common case: plain values, nothing to leave out
    values = row.values() if steps is None else convert_row(list(row.values()), steps)
    if keep_none:
        return dict(zip(row, values))
    return {k: v for k, v in zip(row, values) if v is not None}


def _bulk_error(name: str, what: str, exc: PyMongoBulkWriteError, *, ignore_duplicates: bool = False,
                origin: Optional[Sequence[int]] = None, before: int = 0) -> BulkWriteError:
    """``origin``: the caller's index of each operation; ``before``: the writes earlier rounds made."""
    errors = [e for e in exc.details.get("writeErrors", [])
              if not (ignore_duplicates and e.get("code") == DUPLICATE_KEY)]
    rows = [int(e["index"]) if origin is None else origin[int(e["index"])] for e in errors]
    lines = [f"row {row}: {e.get('errmsg', '')} (code {e.get('code')})" for row, e in zip(rows, errors[:20])]
    first = lines[0] if lines else "write error"
    more = f" and {len(lines) - 1} more" if len(lines) > 1 else ""
    done = before + exc.details.get("nInserted", 0) + exc.details.get("nUpserted", 0) + exc.details.get("nModified", 0)
    return BulkWriteError(
        f"{what} into {name}: {first}{more}; the other {done} write(s) went through", rows, details=lines,
    )
