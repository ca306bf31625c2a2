"""The filter language both engines speak, parsed once into a small tree.

Syntax (a subset of MongoDB's)::

    {"oid": "ZTF20aaa"}                                # equality
    {"ndet": {"$gte": 5, "$lt": 100}}                  # $eq $ne $gt $gte $lt $lte
    {"fid": {"$in": [1, 2]}, "rb": {"$exists": True}}  # $in $nin $exists
    {"$or": [{"ndet": 1}, {"ndet": {"$gt": 10}}]}      # $and $or
    {"ndet": {"$not": {"$gt": 5}}}, {"$not": {...}}    # $not, on a field or a whole filter

Semantics are the same on both engines, MongoDB's where they differ from
SQL's: a missing field and a NULL are one thing; ``$ne``, ``$nin`` and ``$not``
match NULLs; ``$exists: true`` means "present and not null". Each engine
compiles the tree (:class:`Cmp`, :class:`And`, :class:`Or`, :class:`Not`,
:class:`After`) into its own query, values always as parameters.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from dbp._types import MAX_DEPTH, too_deep
from dbp._values import plain
from dbp.errors import FilterError

__all__ = [
    "OPERATORS",
    "After",
    "And",
    "Cmp",
    "Node",
    "Not",
    "Or",
    "parse",
    "parse_projection",
    "parse_sort",
    "check_key_value",
    "register_scalar",
]

#: Comparison operators, by their filter spelling.
OPERATORS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte",
             "$in": "in", "$nin": "nin", "$exists": "exists"}
LOGICAL = ("$and", "$or", "$not")
SCALARS: tuple[type, ...] = (str, int, float, bool, _dt.datetime, _dt.date, decimal.Decimal, uuid.UUID, bytes)


def register_scalar(kind: type) -> None:
    """Accept values of ``kind`` in filters (an engine's own scalar type, such as bson's ObjectId)."""
    global SCALARS
    if kind not in SCALARS:
        SCALARS = (*SCALARS, kind)


@dataclass(frozen=True)
class Cmp:
    field: str
    #: eq ne gt gte lt lte in nin exists
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class After:
    """Rows after a keyset position: ``keys`` are ``(field, 1 | -1)``, ``values`` the last row's.

    Sorts put NULLs first ascending and last descending, as MongoDB does.
    """

    keys: tuple[tuple[str, int], ...]
    values: tuple[Any, ...]

    def expand(self) -> Node:
        """The same condition from plain comparisons (for engines without row comparisons)."""
        disjuncts: list[Node] = []
        for i, ((field, direction), value) in enumerate(zip(self.keys, self.values)):
            equal: list[Node] = [Cmp(f, "eq", v) for (f, _), v in zip(self.keys[:i], self.values[:i])]
            if direction == 1:
                beyond: Node = Cmp(field, "ne", None) if value is None else Cmp(field, "gt", value)
            elif value is None:
                continue  # nothing sorts after NULL when descending
            else:
                beyond = Or((Cmp(field, "lt", value), Cmp(field, "eq", None)))
            disjuncts.append(And((*equal, beyond)) if equal else beyond)
        return Or(tuple(disjuncts))


Node = Union[Cmp, And, Or, Not, After]


def _check_value(value: Any, where: str, *, allow_none: bool = True, allow_list: bool = False) -> None:
    if value is None:
        if not allow_none:
            raise FilterError(f"{where}: None cannot be compared with an ordering operator")
        return
    if isinstance(value, (list, tuple)):
        if not allow_list:
            raise FilterError(f"{where}: a list is not a valid operand here")
        for item in value:
            _check_value(item, where)
        return
    if (isinstance(value, float) and math.isnan(value)) or (isinstance(value, decimal.Decimal) and value.is_nan()):
        raise FilterError(f"{where}: NaN compares differently on each engine")
    if not isinstance(value, SCALARS):
        raise FilterError(f"{where}: values of type {type(value).__name__} are not supported")


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


def _operand_list(value: Any, where: str) -> tuple[Any, ...]:
    value = plain(value)
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise FilterError(f"{where} takes a list of values, not {type(value).__name__}")
    items = [plain(item) for item in value]
    _check_value(items, where, allow_list=True)
    return tuple(items)


def _operators(field: str, spec: Mapping[Any, Any]) -> list[Node]:
    nodes: list[Node] = []
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
        name = OPERATORS.get(op) if isinstance(op, str) else None
        if name is None:
            valid = ", ".join([*OPERATORS, "$not"])
            raise FilterError(f"unknown operator {op!r} on field {field!r}; valid: {valid}")
        if name in ("in", "nin"):
            nodes.append(Cmp(field, name, _operand_list(operand, where)))
        elif name == "exists":
            if not isinstance(operand, bool):
                raise FilterError(f"{where} takes true or false, not {operand!r}")
            nodes.append(Cmp(field, name, operand))
        else:
            ordering = name in ("gt", "gte", "lt", "lte")
            _check_value(operand, where, allow_none=not ordering, allow_list=not ordering)
            nodes.append(Cmp(field, name, list(operand) if isinstance(operand, tuple) else operand))
    return nodes


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
        elif isinstance(key, str) and key == "$not":
            if not isinstance(value, Mapping):
                raise FilterError("$not takes a filter dict or, on a field, operators")
            nodes.append(Not(parse(value)))
        else:
            field = _field(key)
            if isinstance(value, Mapping):
                dollar = [isinstance(k, str) and k.startswith("$") for k in value]
                if not value or not all(dollar):
                    raise FilterError(
                        f"field {field!r}: compare with operators ({{'$gt': 5}}); "
                        "matching a whole embedded document is not supported"
                    )
                nodes.extend(_operators(field, value))
            else:
                value = plain(value)
                if isinstance(value, (list, tuple)):
                    value = [plain(item) for item in value]
                _check_value(value, field, allow_list=True)
                nodes.append(Cmp(field, "eq", value))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _not_a_filter(key: str, item: Any) -> Node:
    raise FilterError(f"{key} takes a list of filter dicts, not {type(item).__name__}")


def equalities(filter_by: Union[Node, Mapping[str, Any], None]) -> dict[str, Any]:
    """A filter of plain field equalities as a dict (for get_or_create, upsert); else FilterError."""
    node = filter_by if isinstance(filter_by, (Cmp, And, Or, Not, After)) else parse(filter_by)
    items = node.items if isinstance(node, And) else (node,)
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Cmp) or item.op != "eq" or item.value is None:
            raise FilterError("this needs a filter of plain equalities, e.g. {'oid': 'ZTF20aaa'}")
        out[item.field] = item.value
    if not out:
        raise FilterError("this needs a non-empty filter of equalities")
    return out


def parse_sort(sort: Any) -> list[tuple[str, int]]:
    """``[("col", 1 | -1), ...]``; a bare field name sorts ascending."""
    if sort is None:
        return []
    if isinstance(sort, (str, bytes, Mapping)) or not isinstance(sort, Sequence):
        raise FilterError(f"sort is a list of (field, 1 | -1) pairs, not {type(sort).__name__}")
    out: list[tuple[str, int]] = []
    for item in sort:
        if isinstance(item, str):
            item = (item, 1)
        if (not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 2
                or isinstance(item[1], bool) or item[1] not in (1, -1)):
            raise FilterError(f"sort entries are (field, 1 | -1) pairs, not {item!r}")
        field = _field(item[0])
        if field in (f for f, _ in out):
            raise FilterError(f"sort names {field!r} twice")
        out.append((field, int(item[1])))
    return out


def parse_projection(projection: Any) -> Optional[list[str]]:
    """A list of field names to return, or None for every field."""
    if projection is None:
        return None
    if isinstance(projection, (str, bytes, Mapping)) or not isinstance(projection, Sequence) or not projection:
        raise FilterError("projection is a non-empty list of field names")
    out = [_field(f) for f in projection]
    if len(set(out)) != len(out):
        raise FilterError("projection names a field twice")
    return out
