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
_PLAIN = frozenset({str, int, float, bool, type(None), bytes, _dt.datetime, _dt.date, _dt.timedelta})
_CONTAINERS = (list, tuple, dict)
_CONTAINER_KINDS = frozenset(_CONTAINERS)
#: Whether numpy or pandas was imported when the plans were made: until then no container can hold their values.
_FOREIGN = False
_CONVERTERS: dict[type, Optional[Converter]] = {}
_PLANS: dict[tuple[type, ...], Optional[tuple[Optional[Converter], ...]]] = {}
_PLAN_LIMIT = 4096


def _none(value: Any) -> None:
    return None


def _foreign() -> bool:
    """Whether numpy or pandas is imported (checked in ``sys.modules``; once true, it stays so)."""
    global _FOREIGN
    if not _FOREIGN and ("numpy" in sys.modules or "pandas" in sys.modules):
        _FOREIGN = True
        _PLANS.clear()  # plans made before took containers as plain
    return _FOREIGN


def _item(value: Any) -> Any:
    """``value`` made plain, containers walked (the same object when nothing in it changes)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind in _CONTAINER_KINDS or isinstance(value, _CONTAINERS):
        return _walk(value)
    convert = converter(kind)
    if convert is None:
        return value
    value = convert(value)
    return _walk(value) if isinstance(value, _CONTAINERS) else value


def _walk(value: Any) -> Any:
    """A list, tuple or dict with the numpy and pandas values in it, at any depth, made plain.

    The same object when there are none (a dict subclass that changes comes back a dict).
    """
    if _PLAIN.issuperset(map(type, value.values() if isinstance(value, dict) else value)):
        return value  # the common case, checked at C speed: nothing inside to walk or convert
    if isinstance(value, dict):
        changed: Optional[dict[Any, Any]] = None
        for key, item in value.items():
            new = _item(item)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    items: Optional[list[Any]] = None
    for index, item in enumerate(value):
        new = _item(item)
        if new is not item:
            if items is None:
                items = list(value)
            items[index] = new
    if items is None:
        return value
    return tuple(items) if isinstance(value, tuple) else items


def _nested(value: Any) -> Any:
    """A container's numpy and pandas values made plain, if numpy or pandas is imported at all."""
    return _walk(value) if _foreign() else value


def _datetime64(value: Any) -> Optional[_dt.datetime]:
    numpy = sys.modules["numpy"]
    if numpy.isnat(value):
        return None
    item = value.astype("datetime64[us]").item()
    if isinstance(item, int):  # numpy gives the microseconds of a time outside Python's years
        raise FilterError(f"numpy datetime64 {value} is outside years 1..9999, where Python datetimes are")
    return item if isinstance(item, _dt.datetime) else _dt.datetime.combine(item, _dt.time())


def _timedelta64(value: Any) -> Optional[_dt.timedelta]:
    numpy = sys.modules["numpy"]
    if numpy.isnat(value):
        return None
    unit = numpy.datetime_data(value.dtype)[0]
    if unit == "generic":
        raise FilterError(f"numpy timedelta64 {value!r} has no unit; dbp cannot tell which duration it is")
    if unit in ("Y", "M"):
        raise FilterError(f"numpy timedelta64 {value!r} counts years or months, which have no fixed length")
    item = value.astype("timedelta64[us]").item()
    if not isinstance(item, _dt.timedelta):  # numpy gives the microseconds of a duration Python cannot hold
        raise FilterError(f"numpy timedelta64 {value} is longer than a Python timedelta can be")
    return item


def _array(value: Any) -> list[Any]:
    kind = value.dtype.kind
    if kind in "mM":  # datetime64 and timedelta64: tolist() gives ints for ns precision
        scalar = _datetime64 if kind == "M" else _timedelta64
        return [scalar(v) for v in value.ravel()] if value.ndim == 1 else [_array(v) for v in value]
    items: list[Any] = value.tolist()
    return _walk(items) if kind == "O" else items


def _timestamp(value: Any) -> _dt.datetime:
    try:
        converted: _dt.datetime = value.to_pydatetime(warn=False)
    except (ValueError, OverflowError):
        raise FilterError(f"pandas Timestamp {value} is outside years 1..9999, where Python datetimes are") from None
    return converted


def _timedelta(value: Any) -> _dt.timedelta:
    try:
        converted: _dt.timedelta = value.to_pytimedelta()
    except (ValueError, OverflowError):
        raise FilterError(f"pandas Timedelta {value} is longer than a Python timedelta can be") from None
    return converted


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
        if issubclass(kind, numpy.timedelta64):  # before integer: numpy counts it as a signed integer
            return _timedelta64
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
        if kind.__name__ == "Timedelta":
            return _timedelta
        if _is_pandas_list(kind):
            return _pandas_list
    return None


def converter(kind: type) -> Optional[Converter]:
    """How to make a value of type ``kind`` plain; None if it already is.

    A list, tuple or dict is walked (:func:`_walk`) only once numpy or pandas is imported.
    """
    if kind in _PLAIN:
        return None
    if kind in _CONTAINER_KINDS:
        return _nested if _foreign() else None
    try:
        return _CONVERTERS[kind]
    except KeyError:
        found = _CONVERTERS[kind] = _find(kind)
        return found


def plain(value: Any) -> Any:
    """``value`` as plain Python (a list for an ndarray, None for NaT, ...), inside lists and dicts too."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind in _CONTAINER_KINDS or isinstance(value, _CONTAINERS):
        return _nested(value)
    return _item(value) if converter(kind) is not None else value


def plan(kinds: tuple[type, ...]) -> Optional[tuple[Optional[Converter], ...]]:
    """Per position, the converter a row with these value types needs; None if the row is plain."""
    _foreign()
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
    """A DataFrame's rows as dicts of plain values; NaN, NaT and NA become None.

    FilterError for a frame with two columns of one name (a row holds one value per name).
    """
    repeated = frame.columns[frame.columns.duplicated()]
    if len(repeated):
        raise FilterError(f"the DataFrame has more than one column named {str(repeated[0])!r}")
    cleaned = frame.astype(object).where(frame.notna(), None)
    rows: Iterable[dict[str, Any]] = cleaned.to_dict("records")
    out = []
    for row in rows:
        kinds = tuple(map(type, row.values()))
        steps = plan(kinds)
        out.append(row if steps is None else dict(zip(row, convert_row(list(row.values()), steps))))
    return out
