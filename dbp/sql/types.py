"""What each PostgreSQL column accepts, and how a Python value becomes its parameter.

One rule set serves every path: filters, ``update``, ``upsert``,
``get_or_create``, ``bulk_update`` and COPY in ``bulk_insert``. Writes take
only values of the column's own kind (no ``42`` into a text column, no float
into an integer column); filters also compare any number with any numeric
column, as numbers.

Datetimes follow one rule on every path, and on both engines: an aware value
is converted to UTC; a naive one is taken as UTC. A ``timestamp`` column
stores the naive UTC value, a ``timestamptz`` column the instant. An aware
value whose UTC time falls outside years 1..9999 is refused: PostgreSQL would
store it, and every read of it would fail.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import re
import struct
import uuid
from collections.abc import Sequence
from typing import Any, Optional

from psycopg import sql
from psycopg.types.json import Jsonb

from dbp._values import converter, find_overflow, overflow_message, plain, utc_overflows
from dbp.errors import FilterError

__all__ = ["ColumnRule", "cast_type", "category"]

UTC = _dt.timezone.utc
NUMBERS = (int, float, decimal.Decimal)


def category(type_name: str) -> str:
    """The kind of a column, from ``format_type`` (``integer``, ``character varying(20)``, ``bigint[]``)."""
    if type_name.endswith("[]"):
        return "array"
    if "with time zone" in type_name and type_name.startswith("timestamp"):
        return "datetimetz"  # also timestamp(3) with time zone
    base = type_name.split("(")[0].strip()
    if base in ("smallint", "integer", "bigint"):
        return "int"
    if base in ("real", "double precision", "numeric"):
        return "number"
    if base in ("character varying", "text", "character", "bpchar", "name", "citext"):
        return "text"
    if base == "boolean":
        return "bool"
    if base == "timestamp with time zone":
        return "datetimetz"
    if base.startswith("timestamp"):
        return "datetime"
    if base == "date":
        return "date"
    if base in ("json", "jsonb"):
        return "json"
    return {"uuid": "uuid", "bytea": "bytes"}.get(base, "other")


_TYPMOD = re.compile(r"\(\d+(?:,\d+)?\)")
#: Types whose name without a modifier means a length of 1 (a cast to them would cut values).
_UNBOUNDED = {"character": "bpchar", "bit": "bit varying"}


def cast_type(type_name: str) -> str:
    """``type_name`` without its modifier, for casting parameters.

    A cast to ``character varying(3)`` cuts a longer value without an error,
    and one to ``numeric(4,1)`` rounds; a parameter cast to the unmodified type
    keeps its value, so that storing it applies the column's own checks (an
    error for a value too long) and comparing it compares the whole value.
    """
    array = type_name.endswith("[]")
    base = _TYPMOD.sub("", type_name[:-2] if array else type_name).strip()
    base = _UNBOUNDED.get(base, base)
    return base + "[]" if array else base


#: Python types a write may store in a column of each kind; None: anything (the server decides).
_WRITES: dict[str, Optional[tuple[type, ...]]] = {
    "int": (int,),
    "number": NUMBERS,
    "text": (str,),
    "bool": (bool,),
    "datetime": (_dt.datetime,),
    "datetimetz": (_dt.datetime,),
    "date": (_dt.date,),
    "uuid": (uuid.UUID, str),
    "bytes": (bytes, bytearray, memoryview),
    "array": (list, tuple),
    "json": None,
    "other": None,
}
#: Filters compare any number with any numeric column.
_FILTERS = {**_WRITES, "int": NUMBERS}
#: Kinds whose values need converting one by one (the others pass through as they are).
_PER_VALUE = frozenset({"datetime", "datetimetz", "json", "array"})
#: Element kinds of array columns whose elements are checked (the server checks the others).
_ELEMENTS = {"int": (int,), "number": NUMBERS, "text": (str,), "bool": (bool,)}


def _json_default(value: Any) -> Any:
    converted = plain(value)
    if converted is value:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return converted


#: A JSON string (skipped whole), or a number with a positive exponent: what json writes for a float of 1e16 or more.
_EXPONENT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?[0-9]+(?:\.[0-9]+)?e\+[0-9]+)')


def _positional(match: re.Match[str]) -> str:
    number = match.group(1)
    return match.group(0) if number is None else format(decimal.Decimal(number), "f") + ".0"


def dumps(value: Any) -> str:
    """JSON for a jsonb parameter, numpy and pandas values inside taken as their plain values.

    jsonb keeps a number as ``numeric``, which prints ``1e+16`` as
    ``10000000000000000``: read back, an int. A float that json writes with an
    exponent is written positionally with a ``.0`` instead, which jsonb keeps and
    prints so, and which reads back as the same float (ints stay ints).
    Numbers jsonb already holds keep their form.
    """
    text = json.dumps(value, default=_json_default)
    return _EXPONENT.sub(_positional, text) if "e+" in text else text


def json_double(expr: sql.Composable) -> sql.Composable:
    """``to_jsonb`` of the double ``expr`` that reads back as a float (``2.0``, not ``2``), as :func:`dumps` writes."""
    return sql.SQL("(SELECT to_jsonb(round(x.n, greatest(scale(x.n), 1))) FROM (SELECT ({})::text::numeric AS n) AS x)"
                   ).format(expr)


def _utc_naive(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def _utc_aware(value: _dt.datetime) -> _dt.datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class ColumnRule:
    """One column's rule: which Python types it takes, and the conversion they need."""

    __slots__ = ("cast", "category", "element", "label", "name", "per_value", "type")

    def __init__(self, table: str, name: str, type_name: str, *, base: Optional[str] = None) -> None:
        self.name = name
        self.type = type_name
        #: The type to cast this column's parameters to (see :func:`cast_type`); a domain's base
        #: type, whose checks (and the domain's) apply when the value is stored.
        self.cast = cast_type(base or type_name)
        self.category = category(base or type_name)
        self.element = category(self.cast[:-2]) if self.category == "array" else None
        self.label = f"{table}.{name}"
        #: True if :meth:`adapt` changes values (so a COPY must convert each one).
        self.per_value = self.category in _PER_VALUE

    def accepts(self, kind: type, *, write: bool = True) -> bool:
        """Whether values of Python type ``kind`` fit (None always does)."""
        if kind is type(None):
            return True
        allowed = (_WRITES if write else _FILTERS)[self.category]
        if allowed is None:
            return True
        if kind is bool:
            return self.category in ("bool", "other", "json")
        if self.category == "date" and issubclass(kind, _dt.datetime):
            return False
        return issubclass(kind, allowed)

    def refuse(self, value: Any, where: str = "") -> FilterError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return FilterError(f"{where}{self.label} is {self.type}; {type(value).__name__} {shown} does not fit")

    def adapt(self, value: Any, *, write: bool = True, where: str = "") -> Any:
        """``value`` as the parameter for this column; FilterError if it does not fit."""
        if value is None:
            return None
        if converter(type(value)) is not None:
            value = plain(value)
            if value is None:
                return None
        if not self.accepts(type(value), write=write):
            raise self.refuse(value, where)
        kind = self.category
        if kind == "number" and write and type(value) is float and self.cast == "numeric":
            return decimal.Decimal(repr(value))  # as COPY stores it (a float8 cast keeps 15 digits)
        if kind == "number" and not write and type(value) is float and self.cast == "real":
            return _as_real(value)  # compared in the column's precision: a value read back finds its row
        if kind == "int" and not write and type(value) is float:  # compared exactly, as MongoDB does
            return int(value) if value.is_integer() else decimal.Decimal(value)
        if kind == "uuid" and type(value) is str:  # one form for each spelling of a uuid
            try:
                return uuid.UUID(value)
            except ValueError:
                raise self.refuse(value, where) from None
        if kind in ("datetime", "datetimetz"):
            if utc_overflows(value):
                raise FilterError(overflow_message(f"{where}{self.label}", value))
            return _utc_naive(value) if kind == "datetime" else _utc_aware(value)
        if kind == "json":
            return Jsonb(value, dumps=dumps)
        if kind == "array":
            items = [plain(item) for item in value]
            if self.element in ("datetime", "datetimetz"):  # the datetime rule, inside arrays too
                found = find_overflow(items)
                if found is not None:
                    raise FilterError(overflow_message(f"{where}{self.label}", found[1]))
                items = _each(items, _utc_naive if self.element == "datetime" else _utc_aware)
            allowed = _ELEMENTS.get(self.element or "")
            if allowed is not None:
                for item in _flatten(items):
                    if item is not None and (not isinstance(item, allowed) or (isinstance(item, bool)
                                                                                 and self.element != "bool")):
                        raise FilterError(f"{where}{self.label} is {self.type}; it cannot hold "
                                          f"{type(item).__name__} {item!r:.40}")
            return items
        return value


def _as_real(value: float) -> float:
    """``value`` rounded to float4, as a ``real`` column holds it (unchanged where float4 cannot hold it)."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except (OverflowError, struct.error):
        return value


def _each(items: Sequence[Any], convert: Any) -> list[Any]:
    """``items`` (nested lists too) with ``convert`` applied to each datetime."""
    return [_each(item, convert) if isinstance(item, (list, tuple)) else
            convert(item) if isinstance(item, _dt.datetime) else item for item in items]


def _flatten(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


INT_RANGE = (-(2**63), 2**63 - 1)


def integral(values: Sequence[Any]) -> list[int]:
    """The numbers among ``values`` that an integer column can equal, as ints (``2.0`` is 2; 1.5 none)."""
    out: list[int] = []
    for value in values:
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            if not value.is_integer():
                continue
            value = int(value)
        elif isinstance(value, decimal.Decimal):
            if not value.is_finite() or value != value.to_integral_value():
                continue
            value = int(value)
        if INT_RANGE[0] <= value <= INT_RANGE[1]:
            out.append(value)
    return out
