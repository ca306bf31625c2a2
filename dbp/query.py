"""The query contract: db-plugins' BaseQuery, without an ORM, the same on both engines.

:class:`BaseQuery` implements what is engine-neutral (finding, counting,
both kinds of pagination) on a few primitives each engine provides
(:meth:`BaseQuery._select`, :meth:`BaseQuery._stream`, :meth:`BaseQuery._count`)
and declares the writes each engine implements on its fast path.

Results are ordered by the sort you give, then by the primary key (SQL) or
``_id`` (MongoDB), so that pages are stable. Sorts put NULLs first ascending
and last descending, and compare text by code point, on both engines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Optional, Union

from dbp._redact import shown
from dbp.errors import FilterError
from dbp.filters import After, And, Node, parse, parse_projection, parse_sort
from dbp.pagination import (
    KeysetPage,
    Pagination,
    PaginationNoCount,
    TokenTypes,
    decode_token,
    encode_token,
    fingerprint,
)

__all__ = ["BaseQuery", "ConflictMode", "Filter", "Row", "Sort"]

Row = dict[str, Any]
Filter = Optional[Mapping[str, Any]]
Sort = Optional[Sequence[Any]]
ConflictMode = Literal["ignore", "error", "update"]
DEFAULT_PER_PAGE = 10
STREAM_BATCH = 2000
#: The largest ``batch_size`` of a streamed find_all (rows held in memory at once).
MAX_BATCH = 100_000
#: Offsets, limits and counts stay within a signed 64-bit integer on both servers.
MAX_ROWS = 2**62
#: The longest table / collection name (MongoDB's namespace limit; PostgreSQL's is 63 bytes).
MAX_NAME = 255


def _positive_int(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_ROWS) -> int:
    """``value`` as an int for argument ``name``; FilterError naming it if it is not a whole number in range.

    Floats are refused, even whole ones, so that ``page=1.5`` cannot silently mean another page.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(f"{name} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise FilterError(f"{name} must be from {minimum} to {maximum:,}, not {shown(value, 40)}")
    return value


def _mapping(name: str, value: Any) -> Any:
    """``value`` if it is a dict-like mapping; FilterError naming argument ``name`` otherwise."""
    if not isinstance(value, Mapping):
        raise FilterError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def _rows(name: str, value: Any) -> Any:
    """``value`` if it is a list (sequence) of dicts; FilterError naming argument ``name`` otherwise."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise FilterError(f"{name} must be a list of dicts, not {type(value).__name__}")
    bad = next((i for i, row in enumerate(value) if not isinstance(row, Mapping)), None)
    if bad is not None:
        raise FilterError(f"{name}[{bad}] must be a dict, not {type(value[bad]).__name__}")
    return value


def check_name(name: Any, what: str = "a table or collection name") -> str:
    """A table / collection name for ``db.query(name)``; FilterError if it cannot be one."""
    if not isinstance(name, str):
        raise FilterError(f"{what} is a string, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise FilterError(f"{what} is 1 to {MAX_NAME} characters without NUL, not {shown(name, 60)}")
    return name


class BaseQuery(ABC):
    """Queries on one table (SQL) or collection (MongoDB); get one with ``db.query(name)``."""

    #: The table or collection name.
    name: str
    #: Engine-specific value types that keyset tokens carry (see dbp.pagination.TokenTypes).
    token_types: ClassVar[TokenTypes] = MappingProxyType({})

    # -- primitives each engine provides ------------------------------------------------------

    @abstractmethod
    def _select(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        """Rows matching ``node`` in ``sort`` order (already completed with the key)."""

    @abstractmethod
    def _stream(
        self, node: Node, sort: list[tuple[str, int]], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        """Like _select, streamed from the server in batches."""

    @abstractmethod
    def _count(self, node: Node, limit: Optional[int]) -> int: ...

    @abstractmethod
    def _key(self) -> list[str]:
        """The fields that identify a row: the primary key or ``_id`` ([] if there is none)."""

    # -- writes each engine implements ----------------------------------------------------------

    @abstractmethod
    def get_or_create(self, filter_by: Mapping[str, Any], **kwargs: Any) -> tuple[Row, bool]:
        """The row matching ``filter_by``, created from ``kwargs`` and ``filter_by`` if missing.

        Race-free: concurrent calls for the same key create one row and all get
        it back. A primary key, unique constraint or unique index must cover the
        filter's fields. ``filter_by`` wins over ``kwargs``.
        """

    def update(self, filter_by: Filter, attrs: Mapping[str, Any]) -> int:
        """Set ``attrs`` on every matching row; return how many rows matched."""
        if not _mapping("attrs", attrs):
            raise FilterError("update needs attributes to set")
        return self._update(parse(filter_by), attrs)

    def bulk_update(
        self, instances: Sequence[Mapping[str, Any]], attrs: Sequence[Mapping[str, Any]],
        filter_fields: Optional[Sequence[str]] = None,
    ) -> int:
        """Update ``instances[i]`` with ``attrs[i]``; rows are found by ``filter_fields`` (default the key).

        Unequal lengths raise ValueError. One round trip per batch.
        """
        _rows("instances", instances)
        _rows("attrs", attrs)
        if len(instances) != len(attrs):  # a FilterError is a ValueError, as db-plugins raised
            raise FilterError(f"bulk_update got {len(instances)} instances but {len(attrs)} attribute sets")
        empty = next((i for i, changes in enumerate(attrs) if not changes), None)
        if empty is not None:
            raise FilterError(f"bulk_update: attrs[{empty}] is empty")
        keys = list(filter_fields) if filter_fields is not None else self._key()
        if not keys:
            raise FilterError(f"bulk_update on {self.name}: give filter_fields (there is no primary key)")
        for i, instance in enumerate(instances):
            missing = [k for k in keys if k not in instance]
            if missing:
                raise FilterError(f"bulk_update: instances[{i}] lacks the filter field(s) {', '.join(missing)}")
        return self._bulk_update(instances, attrs, keys) if instances else 0

    def bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode = "ignore") -> int:
        """Insert many rows; return how many were inserted.

        ``ignore`` skips rows whose key exists, ``error`` raises, ``update``
        overwrites them with the new values.
        """
        if on_conflict not in ("ignore", "error", "update"):
            raise FilterError(f"on_conflict is 'ignore', 'error' or 'update', not {shown(on_conflict, 40)}")
        return self._bulk_insert(_rows("rows", rows), on_conflict) if rows else 0

    @abstractmethod
    def _update(self, node: Node, attrs: Mapping[str, Any]) -> int: ...

    @abstractmethod
    def _bulk_update(
        self, instances: Sequence[Mapping[str, Any]], attrs: Sequence[Mapping[str, Any]], keys: list[str]
    ) -> int: ...

    @abstractmethod
    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode) -> int: ...

    @abstractmethod
    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        """Update the row matching ``filter_by`` with ``attrs``, or insert it; return it."""

    @abstractmethod
    def delete(self, filter_by: Filter) -> int:
        """Delete every matching row; return how many."""

    # -- engine-neutral ------------------------------------------------------------------------------

    def _full_sort(self, sort: Sort) -> list[tuple[str, int]]:
        order = parse_sort(sort)
        named = {f for f, _ in order}
        return order + [(k, 1) for k in self._key() if k not in named]

    def check_exists(self, filter_by: Filter = None) -> bool:
        return bool(self._select(parse(filter_by), [], None, limit=1))

    def find_one(self, filter_by: Filter = None, sort: Sort = None, projection: Optional[Sequence[str]] = None
                 ) -> Optional[Row]:
        """The first matching row, or None."""
        rows = self._select(parse(filter_by), parse_sort(sort), parse_projection(projection), limit=1)
        return rows[0] if rows else None

    def count(self, filter_by: Filter = None, limit: Optional[int] = None) -> int:
        """How many rows match, counting at most ``limit``."""
        if limit is not None:
            limit = _positive_int("limit", limit)
        return self._count(parse(filter_by), limit)

    def find_all(
        self, filter_by: Filter = None, sort: Sort = None, projection: Optional[Sequence[str]] = None,
        paginate: bool = True, **kwargs: Any,
    ) -> Union[Pagination, KeysetPage, Iterator[Row]]:
        """A page (``paginate=True``, with :meth:`paginate`'s keyword arguments), or every row streamed.

        The stream reads from a server-side cursor (SQL) or a batched cursor
        (MongoDB): memory stays flat however many rows match.
        """
        if paginate:
            return self.paginate(filter_by, sort=sort, projection=projection, **kwargs)
        batch = _positive_int("batch_size", kwargs.pop("batch_size", STREAM_BATCH), minimum=1, maximum=MAX_BATCH)
        if kwargs:
            raise FilterError(f"unexpected argument(s) {', '.join(kwargs)} for a streamed find_all")
        return self._stream(parse(filter_by), self._full_sort(sort), parse_projection(projection), batch)

    def paginate(
        self,
        filter_by: Filter = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
        count: bool = True,
        max_results: int = 50000,
        sort: Sort = None,
        projection: Optional[Sequence[str]] = None,
        after: Optional[str] = None,
        keyset: bool = False,
    ) -> Union[Pagination, KeysetPage]:
        """A page, as db-plugins pages: page < 1 is 1, negative ``per_page`` is 10.

        ``count=True`` returns a :class:`Pagination` whose total counts at most
        ``max_results``; ``count=False`` a :class:`PaginationNoCount`. With
        ``after=token`` (or ``keyset=True`` for the first page) it returns a
        :class:`KeysetPage`, whose cost does not grow with depth.
        """
        per_page = _positive_int("per_page", per_page, minimum=-MAX_ROWS)
        if per_page < 0:
            per_page = DEFAULT_PER_PAGE
        if after is not None and not isinstance(after, str):
            raise FilterError(f"after must be a token string from a previous page, not {type(after).__name__}")
        if after is not None or keyset:
            return self._keyset(filter_by, per_page, sort, projection, after)
        page = max(_positive_int("page", page, minimum=-MAX_ROWS), 1)
        max_results = _positive_int("max_results", max_results)
        if (page - 1) * per_page > MAX_ROWS:
            raise FilterError(f"page {page} of {per_page} rows starts beyond row {MAX_ROWS:,}")
        node = parse(filter_by)
        order = self._full_sort(sort)
        fields = parse_projection(projection)
        offset = (page - 1) * per_page

        def again(new_page: int, new_per_page: int) -> Pagination:
            result = self.paginate(filter_by, new_page, new_per_page, count, max_results, sort, projection)
            assert isinstance(result, Pagination)
            return result

        if not count:
            rows = self._select(node, order, fields, limit=per_page + 1, offset=offset) if per_page else []
            return PaginationNoCount(self, page, per_page, rows[:per_page], len(rows) > per_page, repeat=again)
        items = self._select(node, order, fields, limit=per_page, offset=offset) if per_page else []
        total = self._count(node, max_results)
        return Pagination(self, page, per_page, total, items, repeat=again)

    def _keyset(
        self, filter_by: Filter, per_page: int, sort: Sort, projection: Optional[Sequence[str]],
        after: Optional[str],
    ) -> KeysetPage:
        node = parse(filter_by)
        order = self._full_sort(sort)
        key = self._key()
        if not key:
            raise FilterError(f"keyset pagination of {self.name} needs a primary key")
        owner = fingerprint(self.name, repr(node), order)
        fields = parse_projection(projection)
        wanted = fields if fields is None else [*fields, *(f for f, _ in order if f not in fields)]
        if after:
            values = decode_token(after, owner, len(order), self.token_types)
            node = And((node, After(tuple(order), tuple(values))))
        rows = self._select(node, order, wanted, limit=per_page + 1) if per_page else []
        page = rows[:per_page]
        token = None
        if len(rows) > per_page and page:
            token = encode_token([page[-1].get(f) for f, _ in order], owner, self.token_types)
        if fields is not None:
            page = [{f: row.get(f) for f in fields} for row in page]

        def again(next_token: str) -> KeysetPage:
            result = self.paginate(filter_by, per_page=per_page, sort=sort, projection=projection, after=next_token)
            assert isinstance(result, KeysetPage)
            return result

        return KeysetPage(page, per_page, token, again)
