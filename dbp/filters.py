"""The filter language both engines speak, parsed once into a small tree.

Syntax (a subset of MongoDB's)::

    {"oid": "ZTF20aaa"}                                # equality
    {"ndet": {"$gte": 5, "$lt": 100}}                  # $eq $ne $gt $gte $lt $lte
    {"fid": {"$in": [1, 2]}, "rb": {"$exists": True}}  # $in $nin $exists
    {"$or": [{"ndet": 1}, {"ndet": {"$gt": 10}}]}      # $and $or
    {"ndet": {"$not": {"$gt": 5}}}, {"$not": {...}}    # $not, on a field or a whole filter
    {"oid": {"$regex": "^ZTF2[01]", "$options": "i"}}  # the portable subset of dbp.regex
    {"tags": {"$all": ["a", "b"]}, "oids": {"$size": 2}}
    {"probs": {"$elemMatch": {"name": "lc", "p": {"$gt": 0.5}}}}, {"nums": {"$elemMatch": {"$gt": 1}}}
    {"j": {"a": 1, "b": [1, 2]}}                       # a whole embedded document (key order ignored)
    {"j.a.b": 1}, {"probs.classifier": "lc"}           # dotted paths, through arrays of documents
    {"$cone": {"ra": 10.68, "dec": 41.27, "radius": 2.0}}  # within 2 arcseconds (dbp.sky)

Semantics are the same on both engines, MongoDB's where they differ from
SQL's: a missing field and a NULL are one thing; ``$ne``, ``$nin`` and ``$not``
match NULLs; ``$exists: true`` means "present and not null". On a dotted path
(or a field inside ``$elemMatch``) "null" means "no non-null value is reached"
on both engines (see README, Filters). NaN is refused. Each engine compiles the
tree (:class:`Cmp`, :class:`And`, :class:`Or`, :class:`Not`,
:class:`ElemMatch`, :class:`After`, :class:`TypeBeyond`) into its own query, values always as
parameters.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import operator
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Union

from dbp._redact import shown
from dbp._types import MAX_DEPTH, too_deep
from dbp._values import overflow_message, plain, utc_overflows
from dbp.errors import FilterError
from dbp.regex import Regex, translate
from dbp.sky import DISTANCE, Cone, cones, parse_cone

__all__ = [
    "OPERATORS",
    "After",
    "And",
    "Cmp",
    "ElemMatch",
    "Node",
    "Not",
    "Or",
    "SortKey",
    "TypeBeyond",
    "parse",
    "parse_projection",
    "parse_sort",
    "check_key_value",
    "register_scalar",
]

#: Comparison operators, by their filter spelling.
OPERATORS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte",
             "$in": "in", "$nin": "nin", "$exists": "exists", "$regex": "regex", "$all": "all",
             "$size": "size", "$elemMatch": "elemMatch"}
#: Operators allowed in the operator form of ``$elemMatch`` (on each element of an array of values).
ELEMENT_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex", "$options")
#: How deep an embedded document given as a value may nest.
MAX_VALUE_DEPTH = 20
LOGICAL = ("$and", "$or", "$not", "$cone")
SCALARS: tuple[type, ...] = (str, int, float, bool, _dt.datetime, _dt.date, decimal.Decimal, uuid.UUID, bytes)


def register_scalar(kind: type) -> None:
    """Accept values of ``kind`` in filters (an engine's own scalar type, such as bson's ObjectId)."""
    global SCALARS
    if kind not in SCALARS:
        SCALARS = (*SCALARS, kind)


@dataclass(frozen=True)
class Cmp:
    """``field`` (possibly dotted; ``""``: the element, inside an operator-form :class:`ElemMatch`)."""

    field: str
    #: eq ne gt gte lt lte in nin exists; regex (a :class:`dbp.regex.Regex`), all (a tuple), size (an int)
    op: str
    value: Any


@dataclass(frozen=True)
class ElemMatch:
    """Some element of the array at ``field`` matches ``item``.

    ``scalar``: ``item`` compares the elements themselves (its fields are
    ``""``); otherwise the elements are documents and ``item``'s fields are
    relative to them.
    """

    field: str
    item: Node
    scalar: bool


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


#: A sort entry's third element: where that field's NULL (and missing) values go.
NULLS = ("nulls_first", "nulls_last")


class SortKey(NamedTuple):
    """One sort entry, parsed: ``field``, ``direction`` (1 or -1), and whether its NULLs come last.

    By default NULLs come first ascending and last descending (MongoDB's
    order: NULL is the lowest value); ``(field, d, "nulls_first" | "nulls_last")`` says otherwise.
    """

    field: str
    direction: int
    nulls_last: bool

    @classmethod
    def default(cls, field: str, direction: int = 1) -> SortKey:
        return cls(field, direction, direction == -1)

    @property
    def nulls_lowest(self) -> bool:
        """True where NULLs sort as the lowest value: the default, and MongoDB's own order."""
        return self.nulls_last == (self.direction == -1)

    def entry(self) -> tuple[Any, ...]:
        """The entry as a caller writes it: a pair for the default placement, else with its placement."""
        if self.nulls_lowest:
            return (self.field, self.direction)
        return (self.field, self.direction, NULLS[self.nulls_last])


@dataclass(frozen=True)
class TypeBeyond:
    """The non-null values of ``field`` whose type sorts after ``value``'s (``direction`` -1: before it).

    ``$gt``/``$lt`` match values of ``value``'s own type only, while a sort orders
    across types, each engine its own way (BSON's order on MongoDB, jsonb's on
    PostgreSQL; a typed SQL column holds one type, so nothing). Only for keyset
    conditions: on an array-valued field it matches by element, as ``$type`` does.
    """

    field: str
    value: Any
    direction: int


@dataclass(frozen=True)
class After:
    """Rows after a keyset position: ``keys`` are the full sort, ``values`` the last row's."""

    keys: tuple[SortKey, ...]
    values: tuple[Any, ...]

    def expand(self, nan_below: bool = False) -> Node:
        """The same condition from plain comparisons (for engines without row comparisons).

        NaN equals itself on both engines. With ``nan_below`` (MongoDB) it sorts
        below every number and no range comparison matches it; otherwise
        (PostgreSQL) it sorts above every number and compares so.
        """
        disjuncts: list[Node] = []
        for i, (key, value) in enumerate(zip(self.keys, self.values)):
            beyond = _beyond(key, value, nan_below)
            if beyond is None:
                continue  # nothing sorts after this value in this key
            equal: list[Node] = [Cmp(k.field, "eq", v) for k, v in zip(self.keys[:i], self.values[:i])]
            disjuncts.append(And((*equal, beyond)) if equal else beyond)
        return Or(tuple(disjuncts))


def _beyond(key: SortKey, value: Any, nan_below: bool) -> Optional[Node]:
    """The values of ``key.field`` that sort after ``value`` in ``key``'s order (None: none do)."""
    field = key.field
    if value is None:
        return None if key.nulls_last else Cmp(field, "ne", None)
    nan = nan_below and _is_nan(value)
    after: list[Node]
    if key.direction == 1:
        after = [Cmp(field, "gte", -math.inf) if nan else Cmp(field, "gt", value)]
    elif nan:
        after = []  # NaN is MongoDB's lowest number
    elif nan_below and _is_number(value):
        after = [Cmp(field, "lt", value), Cmp(field, "eq", math.nan)]
    else:
        after = [Cmp(field, "lt", value)]
    after.append(TypeBeyond(field, value, key.direction))  # the comparisons above stay within value's type
    if key.nulls_last:
        after.append(Cmp(field, "eq", None))
    return Or(tuple(after))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


Node = Union[Cmp, And, Or, Not, ElemMatch, After, TypeBeyond, Cone]


def _check_value(value: Any, where: str, *, allow_none: bool = True, allow_list: bool = False,
                 allow_document: bool = False) -> None:
    if value is None:
        if not allow_none:
            raise FilterError(f"{where}: None cannot be compared with an ordering operator")
        return
    if isinstance(value, Mapping) and allow_document:
        _check_document(value, where, 0)
        return
    if isinstance(value, (list, tuple)):
        if not allow_list:
            raise FilterError(f"{where}: a list is not a valid operand here")
        for item in value:
            _check_value(item, where, allow_document=allow_document)
        return
    if (isinstance(value, float) and math.isnan(value)) or (isinstance(value, decimal.Decimal) and value.is_nan()):
        raise FilterError(f"{where}: NaN compares differently on each engine")
    if not isinstance(value, SCALARS):
        raise FilterError(f"{where}: values of type {type(value).__name__} are not supported")
    if isinstance(value, _dt.datetime) and utc_overflows(value):
        raise FilterError(overflow_message(where, value))


def _check_document(value: Any, where: str, depth: int) -> None:
    """An embedded document or list given as a value: string keys, no operators, scalars inside."""
    if depth > MAX_VALUE_DEPTH:
        raise FilterError(f"{where}: a value nested more than {MAX_VALUE_DEPTH} deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
                raise FilterError(f"{where}: {key!r} is not a usable key in a document value "
                                  "(non-empty, no '$' first, no '.', no NUL)")
            _check_document(item, where, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_document(item, where, depth + 1)
    else:
        _check_value(value, where)


def check_key_value(value: Any, where: str) -> Any:
    """A value that identifies a row (bulk_update's keys): a plain, non-null scalar."""
    value = plain(value)
    if value is None or isinstance(value, (list, tuple, Mapping)):
        raise FilterError(f"{where}: a key value is a plain value, not {type(value).__name__}")
    _check_value(value, where)
    return value


def _field(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise FilterError(f"field names are non-empty strings, not {key!r}")
    if key.startswith("$"):
        raise FilterError(f"unknown operator {key!r}; top-level operators are {', '.join(LOGICAL)}")
    if "\x00" in key:
        raise FilterError(f"field name {key!r} contains a NUL character")
    return key


def _filter_field(key: Any) -> str:
    """A field to filter on: a name, or a dotted path of names (no empty part, no array position)."""
    field = _field(key)
    if "." in field:
        for part in field.split("."):
            if not part or part.startswith("$"):
                raise FilterError(f"{field!r} is not a usable path: each part is a non-empty name, "
                                  "not starting with '$'")
            if part.isdigit():
                raise FilterError(f"{field!r}: array positions ({part!r}) in paths are not supported; "
                                  "use $elemMatch")
    return field


def _operand_list(value: Any, where: str) -> tuple[Any, ...]:
    value = plain(value)
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise FilterError(f"{where} takes a list of values, not {type(value).__name__}")
    items = [plain(item) for item in value]
    _check_value(items, where, allow_list=True)
    return tuple(items)


def _operators(field: str, spec: Mapping[Any, Any]) -> list[Node]:
    nodes: list[Node] = []
    if "$options" in spec and "$regex" not in spec:
        raise FilterError(f"{field}.$options goes with $regex")
    for op, operand in spec.items():
        where = f"{field}.{op}"
        operand = plain(operand)
        if op == "$not":
            if not isinstance(operand, Mapping) or not operand or not all(
                    isinstance(k, str) and k.startswith("$") for k in operand):
                raise FilterError(f"{where} takes operators, e.g. {{'$not': {{'$gt': 5}}}}")
            inner = _operators(field, operand)
            nodes.append(Not(inner[0] if len(inner) == 1 else And(tuple(inner))))
            continue
        if op == "$options":
            continue  # read with $regex
        name = OPERATORS.get(op) if isinstance(op, str) else None
        if name is None:
            valid = ", ".join([*OPERATORS, "$options", "$not"])
            raise FilterError(f"unknown operator {op!r} on field {field!r}; valid: {valid}")
        if name in ("in", "nin"):
            nodes.append(Cmp(field, name, _operand_list(operand, where)))
        elif name == "exists":
            if not isinstance(operand, bool):
                raise FilterError(f"{where} takes true or false, not {operand!r}")
            nodes.append(Cmp(field, name, operand))
        elif name == "regex":
            regex: Regex = translate(operand, spec.get("$options", ""))
            nodes.append(Cmp(field, name, regex))
        elif name == "all":
            values = _operand_list(operand, where)
            if any(v is None or isinstance(v, (list, tuple)) for v in values):
                raise FilterError(f"{where} takes a list of plain values (no None, no lists)")
            nodes.append(Cmp(field, name, values))
        elif name == "size":
            if isinstance(operand, bool) or not isinstance(operand, int) or operand < 0:
                raise FilterError(f"{where} takes a non-negative integer, not {operand!r}")
            nodes.append(Cmp(field, name, operand))
        elif name == "elemMatch":
            nodes.append(_elem_match(field, operand, where))
        else:
            ordering = name in ("gt", "gte", "lt", "lte")
            operand = _plain(operand)
            _check_value(operand, where, allow_none=not ordering, allow_list=not ordering,
                         allow_document=not ordering)
            nodes.append(Cmp(field, name, operand))
    return nodes


def _elem_match(field: str, spec: Any, where: str) -> ElemMatch:
    if not isinstance(spec, Mapping) or not spec:
        raise FilterError(f"{where} takes a non-empty filter (for documents) or operators (for values)")
    operator_form = [isinstance(k, str) and k.startswith("$") and k not in LOGICAL for k in spec]
    if all(operator_form):
        for op, operand in spec.items():
            operand = plain(operand)
            if op not in ELEMENT_OPERATORS:
                raise FilterError(f"{where}: {op!r} is not supported on array elements; "
                                  f"valid: {', '.join(ELEMENT_OPERATORS)}")
            if operand is None or (isinstance(operand, (list, tuple)) and None in operand):
                raise FilterError(f"{where}: None is not supported on array elements")
        inner = _operators("", spec)
        return ElemMatch(field, inner[0] if len(inner) == 1 else And(tuple(inner)), True)
    if any(operator_form):
        raise FilterError(f"{where} takes either a filter on the elements' fields or operators, not both")
    item = parse(spec)
    if any(cones(item)):
        raise FilterError(f"{where}: $cone applies to rows, not to array elements")
    return ElemMatch(field, item, False)


def _plain(value: Any) -> Any:
    """Tuples as lists, numpy and pandas values as plain ones, all the way down (documents stay dicts)."""
    value = plain(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse(filter_by: Optional[Mapping[str, Any]]) -> Node:
    """Parse a filter dict; raise :class:`FilterError` naming the first problem."""
    if filter_by is None:
        return And(())
    if not isinstance(filter_by, Mapping):
        raise FilterError(f"a filter is a dict, not {type(filter_by).__name__}")
    if too_deep(filter_by):  # before recursing: Python's own limit would raise RecursionError
        raise FilterError(f"the filter nests more than {MAX_DEPTH} levels deep")
    nodes: list[Node] = []
    for key, value in filter_by.items():
        if isinstance(key, str) and key in ("$and", "$or"):
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters")
            parts = tuple(parse(item) if isinstance(item, Mapping) else _not_a_filter(key, item) for item in value)
            nodes.append(And(parts) if key == "$and" else Or(parts))
        elif isinstance(key, str) and key == "$cone":
            nodes.append(parse_cone(value))
        elif isinstance(key, str) and key == "$not":
            if not isinstance(value, Mapping):
                raise FilterError("$not takes a filter dict or, on a field, operators")
            nodes.append(Not(parse(value)))
        else:
            field = _filter_field(key)
            dollar = [isinstance(k, str) and k.startswith("$") for k in value] if isinstance(value, Mapping) else []
            if dollar and all(dollar):
                nodes.extend(_operators(field, value))
            elif any(dollar):
                raise FilterError(f"field {field!r}: a dict mixes operators and fields; compare with "
                                  "operators ({'$gt': 5}) or with a whole document ({'a': 1})")
            else:
                value = _plain(value)
                _check_value(value, field, allow_list=True, allow_document=True)
                nodes.append(Cmp(field, "eq", value))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _not_a_filter(key: str, item: Any) -> Node:
    raise FilterError(f"{key} takes a list of filter dicts, not {type(item).__name__}")


def equalities(filter_by: Union[Node, Mapping[str, Any], None]) -> dict[str, Any]:
    """A filter of plain field equalities as a dict (for get_or_create, upsert); else FilterError."""
    nodes = (Cmp, And, Or, Not, ElemMatch, After, TypeBeyond, Cone)
    node = filter_by if isinstance(filter_by, nodes) else parse(filter_by)
    items = node.items if isinstance(node, And) else (node,)
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Cmp) or item.op != "eq" or item.value is None or isinstance(item.value, Mapping):
            raise FilterError("this needs a filter of plain equalities, e.g. {'oid': 'ZTF20aaa'}")
        out[item.field] = item.value
    if not out:
        raise FilterError("this needs a non-empty filter of equalities")
    return out


def parse_sort(sort: Any, key: Sequence[str] = ()) -> list[SortKey]:
    """``[("col", 1 | -1), ...]``; a bare field name sorts ascending.

    A third element, ``"nulls_first"`` or ``"nulls_last"``, places that
    field's NULLs (default: first ascending, last descending). ``key``: the
    fields that identify a row, never NULL, which take no placement.
    """
    if sort is None:
        return []
    if isinstance(sort, (str, bytes, Mapping)) or not isinstance(sort, Sequence):
        raise FilterError(f"sort is a list of (field, 1 | -1) pairs, not {type(sort).__name__}")
    out: list[SortKey] = []
    for item in sort:
        if isinstance(item, str):
            item = (item, 1)
        direction = _direction(item[1]) if isinstance(item, Sequence) and len(item) in (2, 3) else None
        if (not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or direction is None
                or (len(item) == 3 and not (isinstance(item[2], str) and item[2] in NULLS))):
            raise FilterError("sort entries are (field, 1 | -1) pairs or (field, 1 | -1, 'nulls_first' | "
                              f"'nulls_last'), not {shown(item, 80)}")
        field = DISTANCE if isinstance(item[0], str) and item[0] == DISTANCE else _field(item[0])
        nulls_last = direction == -1
        if len(item) == 3:
            if field == DISTANCE:
                raise FilterError(f"sort: {DISTANCE} takes no NULL placement (every row in a cone has a distance)")
            if field in key:
                raise FilterError(f"sort: {field!r} is the key, never NULL: it takes no NULL placement")
            nulls_last = item[2] == "nulls_last"
        if field in (k.field for k in out):
            raise FilterError(f"sort names {field!r} twice")
        out.append(SortKey(field, direction, nulls_last))
    return out


def _direction(value: Any) -> Optional[int]:
    """1 or -1 from an int (numpy's too) or a float equal to one of them; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        number = operator.index(value)
    except TypeError:
        number = int(value) if isinstance(value, float) and value in (1.0, -1.0) else 0
    return number if number in (1, -1) else None


def parse_projection(projection: Any) -> Optional[list[str]]:
    """A list of field names to return, or None for every field."""
    if projection is None:
        return None
    projection = plain(projection)  # df.columns, an Index, is a list
    if isinstance(projection, (str, bytes, Mapping)) or not isinstance(projection, Sequence) or not projection:
        raise FilterError("projection is a non-empty list of field names")
    out = [DISTANCE if f == DISTANCE else _field(f) for f in projection]
    if len(set(out)) != len(out):
        raise FilterError("projection names a field twice")
    return out
