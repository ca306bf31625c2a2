"""Page objects with db-plugins' semantics, and keyset (cursor) pages.

:class:`Pagination` and :class:`PaginationNoCount` behave as db-plugins'
classes do (``pages``, ``has_next``, ``next()``, ...). :class:`KeysetPage`
carries a ``next_token`` instead of a page number: the position after its last
row, so that the next page costs the same however deep it is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import ceil
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Optional

from dbp.errors import FilterError

if TYPE_CHECKING:
    from dbp.query import ReadQuery

__all__ = ["KeysetPage", "Pagination", "PaginationNoCount", "decode_token", "encode_token"]

Row = dict[str, Any]


class Pagination:
    """One page of results and the total (counted up to ``max_results``)."""

    def __init__(
        self,
        query: Optional[ReadQuery],
        page: int,
        per_page: int,
        total: Optional[int],
        items: list[Row],
        *,
        repeat: Optional[Callable[[int, int], Pagination]] = None,
    ) -> None:
        self.query = query
        self.page = page
        self.per_page = per_page
        self.total = total
        self.items = items
        self._repeat = repeat

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} page={self.page} per_page={self.per_page} total={self.total} "
                f"items={len(self.items)}>")

    def __iter__(self) -> Any:
        return iter(self.items)

    @property
    def pages(self) -> int:
        if self.per_page == 0 or self.total is None:
            return 0
        return ceil(self.total / self.per_page)

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> Optional[int]:
        return self.page - 1 if self.has_prev else None

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def next_num(self) -> Optional[int]:
        return self.page + 1 if self.has_next else None

    def prev(self) -> Pagination:
        """The previous page of the same query."""
        return self._again(self.page - 1)

    def next(self) -> Pagination:
        """The next page of the same query."""
        return self._again(self.page + 1)

    def _again(self, page: int) -> Pagination:
        if self._repeat is None:
            raise FilterError("this page was not made by a query, so it cannot fetch another")
        return self._repeat(page, self.per_page)


class PaginationNoCount(Pagination):
    """A page without a total: ``has_next`` comes from fetching one row more than the page."""

    def __init__(
        self,
        query: Optional[ReadQuery],
        page: int,
        per_page: int,
        items: list[Row],
        has_next: bool,
        *,
        repeat: Optional[Callable[[int, int], Pagination]] = None,
    ) -> None:
        super().__init__(query, page, per_page, None, items, repeat=repeat)
        self._has_next = has_next

    @property
    def has_next(self) -> bool:
        return self._has_next


@dataclass
class KeysetPage:
    """A page found by position: pass ``next_token`` as ``after=`` for the next one (None: the end)."""

    items: list[Row]
    per_page: int
    next_token: Optional[str] = None
    _repeat: Optional[Callable[[str], KeysetPage]] = field(default=None, repr=False)

    @property
    def has_next(self) -> bool:
        return self.next_token is not None

    def __iter__(self) -> Any:
        return iter(self.items)

    def next(self) -> KeysetPage:
        if self.next_token is None or self._repeat is None:
            raise FilterError("there is no next page")
        return self._repeat(self.next_token)


# -- tokens ---------------------------------------------------------------------------------------


#: Extra value types an engine puts in tokens: tag -> (type, to text, from text).
TokenTypes = Mapping[str, tuple[type, Callable[[Any], str], Callable[[str], Any]]]


def _encode_value(value: Any, extra: TokenTypes) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    for tag, (kind, to_text, _) in extra.items():
        if isinstance(value, kind):
            return {tag: to_text(value)}
    if isinstance(value, float):
        return {"$f": repr(value)}
    if isinstance(value, _dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"$d": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    raise FilterError(f"cannot paginate by keyset on a value of type {type(value).__name__}")


def _decode_value(value: Any, extra: TokenTypes) -> Any:
    if not isinstance(value, dict):
        return value
    (tag, text), = value.items()
    if tag in extra:
        return extra[tag][2](text)
    if tag == "$f":
        return float(text)
    if tag == "$dt":
        return _dt.datetime.fromisoformat(text)
    if tag == "$d":
        return _dt.date.fromisoformat(text)
    if tag == "$dec":
        return decimal.Decimal(text)
    if tag == "$uuid":
        return uuid.UUID(text)
    if tag == "$b":
        return base64.b64decode(text)
    raise ValueError(tag)


def fingerprint(*parts: Any) -> str:
    """A short digest of what a token belongs to (table, filter, sort), to refuse a stray token."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(values: Sequence[Any], owner: str, extra: TokenTypes = MappingProxyType({})) -> str:
    payload = json.dumps({"v": [_encode_value(v, extra) for v in values], "o": owner}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, owner: str, width: int, extra: TokenTypes = MappingProxyType({})) -> list[Any]:
    """The row position in ``token``; FilterError if it is malformed or from another query."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values = [_decode_value(v, extra) for v in payload["v"]]
        found_owner = payload["o"]
    except Exception:  # noqa: BLE001 - any malformed token is the caller's error
        raise FilterError("the pagination token is malformed") from None
    if found_owner != owner or len(values) != width:
        raise FilterError("the pagination token belongs to another query (table, filter or sort differ)")
    return values
