"""numpy and pandas values as plain Python, converted once, without importing either library.

A value whose type comes from numpy or pandas means, to dbp, the plain value
it stands for: ``np.int64`` an int, ``np.float32`` a float, ``np.bool_`` a
bool, an ``ndarray`` a list, ``np.datetime64`` and ``pd.Timestamp`` a
datetime (to the microsecond), and ``NaT`` / ``pd.NA`` None. A pandas
``Series``, ``Index`` or extension array (``StringArray``, ``IntegerArray``,
what ``df[c].unique()`` returns) is a list of plain values, its missing values
(NaN, NaT, NA) None, as :func:`records` makes them. numpy and pandas
are looked up in ``sys.modules`` only when such a value arrives, so a caller
that imports neither pays nothing. Conversions are cached by type, and rows
are planned once per combination of value types (:func:`plan`).
"""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

from dbp.errors import FilterError

__all__ = ["convert_row", "find_overflow", "is_frame", "overflow_message", "plain", "plan", "records",
           "utc_overflows"]

Converter = Callable[[Any], Any]
_PLAIN = frozenset({str, int, float, bool, type(None), bytes, list, tuple, dict, _dt.datetime, _dt.date})
_CONVERTERS: dict[type, Optional[Converter]] = {}
_PLANS: dict[tuple[type, ...], Optional[tuple[Optional[Converter], ...]]] = {}
_PLAN_LIMIT = 4096


def _none(value: Any) -> None:
    return None


def _datetime64(value: Any) -> Optional[_dt.datetime]:
    numpy = sys.modules["numpy"]
    if numpy.isnat(value):
        return None
    item = value.astype("datetime64[us]").item()
    if isinstance(item, int):  # numpy gives the microseconds of a time outside Python's years
        raise FilterError(f"numpy datetime64 {value} is outside years 1..9999, where Python datetimes are")
    return item if isinstance(item, _dt.datetime) else _dt.datetime.combine(item, _dt.time())


def _array(value: Any) -> list[Any]:
    if value.dtype.kind == "M":  # datetime64: tolist() gives ints for ns precision
        return [_datetime64(v) for v in value.ravel()] if value.ndim == 1 else [_array(v) for v in value]
    items: list[Any] = value.tolist()
    return items


def _timestamp(value: Any) -> Any:
    return value.to_pydatetime(warn=False)


def _pandas_list(value: Any) -> list[Any]:
    """A Series, Index or extension array as a list of plain values; missing ones (NaN, NaT, NA) None."""
    items = list(value.tolist())
    try:
        missing = sys.modules["numpy"].asarray(sys.modules["pandas"].isna(value), dtype=bool).ravel().tolist()
    except (NotImplementedError, TypeError):  # a MultiIndex: tuples, none of them missing
        missing = [False] * len(items)
    return [None if gone else plain(item) for item, gone in zip(items, missing)]


def _is_pandas_list(kind: type) -> bool:
    pandas = sys.modules.get("pandas")
    if pandas is None or sys.modules.get("numpy") is None:
        return False
    lists = (pandas.Series, pandas.Index, pandas.api.extensions.ExtensionArray)
    return issubclass(kind, lists)


def _find(kind: type) -> Optional[Converter]:
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("numpy"):
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return None
        if issubclass(kind, numpy.ndarray):
            return _array
        if issubclass(kind, numpy.bool_):
            return bool
        if issubclass(kind, numpy.integer):
            return int
        if issubclass(kind, numpy.floating):
            return None if issubclass(kind, float) else float  # np.float64 is a float already
        if issubclass(kind, numpy.datetime64):
            return _datetime64
        if issubclass(kind, numpy.str_):
            return str
        if issubclass(kind, numpy.bytes_):
            return bytes
        return None
    if module.startswith("pandas"):
        if kind.__name__ in ("NaTType", "NAType"):
            return _none
        if kind.__name__ == "Timestamp":
            return _timestamp
        if _is_pandas_list(kind):
            return _pandas_list
    return None


def converter(kind: type) -> Optional[Converter]:
    """How to make a value of type ``kind`` plain; None if it already is."""
    if kind in _PLAIN:
        return None
    try:
        return _CONVERTERS[kind]
    except KeyError:
        found = _CONVERTERS[kind] = _find(kind)
        return found


def plain(value: Any) -> Any:
    """``value`` as plain Python (a list for an ndarray, None for NaT, ...)."""
    convert = converter(type(value))
    return value if convert is None else convert(value)


def plan(kinds: tuple[type, ...]) -> Optional[tuple[Optional[Converter], ...]]:
    """Per position, the converter a row with these value types needs; None if the row is plain."""
    try:
        return _PLANS[kinds]
    except KeyError:
        converters = tuple(converter(kind) for kind in kinds)
        found = converters if any(c is not None for c in converters) else None
        if len(_PLANS) < _PLAN_LIMIT:
            _PLANS[kinds] = found
        return found


def convert_row(values: Sequence[Any], steps: Sequence[Optional[Converter]]) -> list[Any]:
    return [value if step is None else step(value) for value, step in zip(values, steps)]


def utc_overflows(value: _dt.datetime) -> bool:
    """Whether aware ``value`` falls outside years 1..9999 once in UTC (a naive value is UTC already)."""
    offset = value.utcoffset()
    if offset is None or not offset:
        return False
    try:
        value.replace(tzinfo=None) - offset
    except OverflowError:
        return True
    return False


def overflow_message(where: str, value: _dt.datetime) -> str:
    """The refusal of a datetime that :func:`utc_overflows` (no engine reads such a value back)."""
    return f"{where}: {value.isoformat()} is outside years 1..9999 in UTC; stored, it could not be read back"


def find_overflow(value: Any, path: str = "") -> Optional[tuple[str, _dt.datetime]]:
    """The first datetime in ``value`` (dicts and lists walked) that :func:`utc_overflows`, and its path."""
    if isinstance(value, _dt.datetime):
        return (path, value) if utc_overflows(value) else None
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and key.startswith("$"):  # an update operator: the path goes on below it
            found = find_overflow(item, path)
        else:
            found = find_overflow(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def is_frame(value: Any) -> bool:
    """True for a pandas DataFrame (checked without importing pandas)."""
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")


def records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame's rows as dicts of plain values; NaN, NaT and NA become None."""
    cleaned = frame.astype(object).where(frame.notna(), None)
    rows: Iterable[dict[str, Any]] = cleaned.to_dict("records")
    out = []
    for row in rows:
        kinds = tuple(map(type, row.values()))
        steps = plan(kinds)
        out.append(row if steps is None else dict(zip(row, convert_row(list(row.values()), steps))))
    return out
