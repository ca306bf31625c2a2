"""Sorts that ``$sort`` cannot run on documents as stored: by ``$distance``, or with NULLs sorting high.

MongoDB sorts null and missing values as the lowest, which is dbp's default
placement (first ascending, last descending). A sort entry with the other
placement (``"nulls_last"`` ascending, ``"nulls_first"`` descending) needs a key
of its own, so such a read runs as an aggregation that wraps each document::

    {"doc": <the document>, "distance": <to the cone's centre>, "n<i>": 1 if entry i's field is null or missing else 0}

and sorts by ``n<i>`` just before the field, in the field's direction. The
wrapper's fields are dbp's alone (no field of the document is overwritten or
added): rows are read from ``doc``. No index serves such a sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from dbp.filters import SortKey
from dbp.sky import DISTANCE

__all__ = ["DISTANCE_KEY", "DOC_KEY", "sort_keys", "unwrap", "wrap", "wraps"]

#: The fields of the wrapper: the document, and its distance to the cone's centre.
DOC_KEY, DISTANCE_KEY = "doc", "distance"


def _flag(i: int) -> str:
    return f"n{i}"


def wraps(sort: Sequence[SortKey], distance: bool) -> bool:
    """True if a read with ``sort`` (and ``$distance``, if ``distance``) needs wrapped documents."""
    return distance or any(not k.nulls_lowest for k in sort)


def wrap(sort: Sequence[SortKey], distance: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The stage that puts each document beside its ``distance`` (an expression, if any) and NULL flags."""
    root: dict[str, Any] = {DOC_KEY: "$$ROOT"}
    if distance is not None:
        root[DISTANCE_KEY] = distance
    for i, key in enumerate(sort):
        if not key.nulls_lowest:
            root[_flag(i)] = {"$cond": [{"$eq": [{"$ifNull": ["$" + key.field, None]}, None]}, 1, 0]}
    return {"$replaceRoot": {"newRoot": root}}


def sort_keys(sort: Sequence[SortKey], wrapped: bool) -> dict[str, int]:
    """``$sort``'s document for ``sort``, on documents that :func:`wrap` wrapped if ``wrapped``."""
    inside = DOC_KEY + "." if wrapped else ""
    out: dict[str, int] = {}
    for i, key in enumerate(sort):
        if key.field == DISTANCE:
            out[DISTANCE_KEY] = key.direction
            continue
        if not key.nulls_lowest:
            out[_flag(i)] = key.direction
        out[inside + key.field] = key.direction
    return out


def unwrap(doc: dict[str, Any], wrapped: bool) -> tuple[dict[str, Any], Any]:
    """The document as stored, and its distance (None if not wrapped, or measured from no cone)."""
    if not wrapped:
        return doc, None
    inner: dict[str, Any] = doc[DOC_KEY]
    return inner, doc.get(DISTANCE_KEY)
