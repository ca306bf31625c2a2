"""The update language both engines speak: a subset of MongoDB's update operators.

::

    {"ndet": 2, "lastmjd": 60000.5}                  # a plain dict means $set
    {"$set": {"features.amp": 0.3}}                  # dotted paths reach into documents / jsonb
    {"$unset": {"flag": ""}}
    {"$inc": {"ndet": 1}, "$mul": {"w": 0.5}}         # numbers only
    {"$min": {"firstmjd": 59000.1}, "$max": {"lastmjd": 60001.2}}
    {"$push": {"oids": "ZTF1"}}, {"$push": {"oids": {"$each": ["A", "B"]}}}
    {"$addToSet": {"oids": {"$each": ["A", "B"]}}}   # order-preserving; existing items stay
    {"$pull": {"oids": "A"}}, {"$pull": {"probabilities": {"classifier_name": "lc"}}}

A field that is NULL and a field that is missing are one thing, as in filters:
``$inc`` on either sets the value, ``$mul`` sets 0, ``$min``/``$max`` set the
value, ``$push``/``$addToSet`` start a new array and ``$pull`` does nothing.
(dbp never stores a null on MongoDB: setting a field to None unsets it.)

One path may take several operators only as ``$pull`` then ``$push``: the
pull applies first, so ``{"$pull": {"p": {"classifier_name": "lc"}}, "$push":
{"p": {"$each": new}}}`` replaces one classifier's entries in one update.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple, Optional

from dbp._values import converter, plain
from dbp.errors import FilterError

__all__ = ["OPERATORS", "Change", "Columns", "columnar", "initial", "is_plain", "parse_update", "replaces", "same",
           "unique"]

#: Update operators, by their spelling, and the name dbp uses for each.
OPERATORS = {"$set": "set", "$unset": "unset", "$inc": "inc", "$mul": "mul", "$min": "min", "$max": "max",
             "$push": "push", "$addToSet": "add_to_set", "$pull": "pull"}
_NUMBERS = (int, float)
#: The order in which a path's operators apply (only pull-then-push is allowed to share a path).
_ORDER = {"pull": 0, "push": 1}
MAX_DEPTH = 32


class Change(NamedTuple):
    #: set unset inc mul min max push add_to_set pull
    op: str
    #: The field, or a dotted path into an embedded document / jsonb value.
    path: str
    #: The operand; for push and add_to_set, the tuple of items to add.
    value: Any

    @property
    def field(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def subpath(self) -> tuple[str, ...]:
        return tuple(self.path.split(".")[1:])


def _path(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise FilterError(f"{where}: field names are non-empty strings, not {_short(name)}")
    parts = name.split(".")
    if len(parts) > MAX_DEPTH:
        raise FilterError(f"{where}: {_short(name)} has {len(parts)} parts; paths are at most {MAX_DEPTH} deep")
    if any(not p or p.startswith("$") or "\x00" in p for p in parts):
        raise FilterError(f"{where}: {_short(name)} is not a field name or dotted path "
                          "(a part is empty, starts with $ or holds a NUL)")
    if any(p.isdigit() for p in parts[1:]):
        raise FilterError(f"{where}: {_short(name)}: array positions in paths are not supported")
    return name


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_plain(update: Mapping[str, Any]) -> bool:
    """True for a dict of fields (an implicit $set), False for a dict of operators."""
    return not any(isinstance(k, str) and k.startswith("$") for k in update)


#: Validated structures (operators and paths, in the order they apply), by the update's shape.
_TEMPLATES: dict[tuple[Any, ...], tuple[tuple[str, str, str], ...]] = {}
_TEMPLATE_LIMIT = 4096


def parse_update(update: Any, what: str = "update") -> tuple[Change, ...]:
    """Parse an update dict; FilterError names the first problem, before anything is written.

    The names and paths of a shape seen before are not checked again (bulk_update
    parses thousands of updates of one shape); operands always are.
    """
    if not isinstance(update, Mapping) or not update:
        raise FilterError(f"{what} needs a non-empty dict of fields or update operators")
    shape = _shape(update)
    template = _TEMPLATES.get(shape) if shape else None
    if template is None:
        template = _template(update, what)
        if shape and len(_TEMPLATES) < _TEMPLATE_LIMIT:
            _TEMPLATES[shape] = template
    if template[0][1] == "":  # plain fields: an implicit $set
        return tuple([Change("set", path, plain(update[path])) for _, _, path in template])
    return tuple([Change(name, path, _operand(name, op, update[op][path], what)) for name, op, path in template])


class Columns(NamedTuple):
    """Updates of one shape held by column: ``values[j][i]`` is update i's operand for ``template[j]``."""

    #: ``(name, operator, path)`` per operand, in the order they apply (as parse_update's template).
    template: tuple[tuple[str, str, str], ...]
    values: list[list[Any]]

    def changes(self, row: int) -> tuple[Change, ...]:
        return tuple([Change(name, path, column[row]) for (name, _, path), column in zip(self.template, self.values)])

    def rows(self) -> list[tuple[Change, ...]]:
        """What parse_update returns for each update."""
        names = [(name, path) for name, _, path in self.template]
        return [tuple([Change(name, path, value) for (name, path), value in zip(names, row)])
                for row in zip(*self.values)]


#: Operators whose operands bulk_update checks a column at a time (on top-level fields).
_COLUMNAR = frozenset({"set", "inc", "mul", "min", "max"})
_ORDERABLE = frozenset({int, float, str, bool})


def columnar(updates: Sequence[Any], what: str) -> Optional[Columns]:
    """``updates`` by column, if they share one shape and their operands need no conversion; else None.

    The fast path of bulk_update: one check per column and Python type instead
    of a parse per update. It holds exactly what :func:`parse_update` would
    return for each update; anything it does not cover (another shape, numpy
    values, NaN, array operators, dotted paths) returns None, and the caller
    parses each update, which also names the row of any error.
    """
    if not updates or type(updates[0]) is not dict:
        return None
    first = updates[0]
    parse_update(first, f"{what}[0]")  # checks the shape once, and caches its template
    template = _TEMPLATES.get(_shape(first))
    if template is None or any(name not in _COLUMNAR or "." in path for name, _, path in template):
        return None
    if set(map(type, updates)) != {dict} or set(map(len, updates)) != {len(first)}:
        return None
    try:  # with as many keys as the first update, and each of its keys, an update has its shape
        if template[0][1] == "":  # plain fields
            values = [list(map(itemgetter(path), updates)) for _, _, path in template]
        else:
            inner = {}
            for op, fields in first.items():
                given = inner[op] = list(map(itemgetter(op), updates))
                if set(map(type, given)) != {dict} or set(map(len, given)) != {len(fields)}:
                    return None
            values = [list(map(itemgetter(path), inner[op])) for _, op, path in template]
    except KeyError:
        return None
    for (name, _, _), column in zip(template, values):
        kinds = set(map(type, column))
        for kind in kinds:  # a list of plain values stays itself (once numpy is imported lists are walked)
            step = converter(kind)
            if step is not None and any(step(v) is not v for v in column if type(v) is kind):
                return None
        if name in ("inc", "mul"):
            if not kinds <= {int, float} or (float in kinds and any(v != v for v in column)):
                return None
        elif name in ("min", "max") and (not kinds <= _ORDERABLE or (float in kinds and any(v != v for v in column))):
            return None
    return Columns(template, values)


def _shape(update: Mapping[Any, Any]) -> tuple[Any, ...]:
    """The key under which ``update``'s checked structure is cached; () where it must not be cached."""
    if type(update) is not dict:
        return ()
    items: list[tuple[Any, Any]] = []
    for op, fields in update.items():
        if type(fields) is dict:
            items.append((op, tuple(fields)))
        elif isinstance(fields, Mapping):
            return ()  # another mapping type: checked every time
        else:
            items.append((op, None))
    shape = tuple(items)
    try:
        hash(shape)
    except TypeError:  # an unhashable name: the full check names it
        return ()
    return shape


def _template(update: Mapping[Any, Any], what: str) -> tuple[tuple[str, str, str], ...]:
    """Check an update's operators and paths; ``(name, operator, path)`` in the order they apply."""
    if is_plain(update):
        changes = [("set", "", _path(k, what)) for k in update]
    else:
        changes = []
        for op, fields in update.items():
            name = OPERATORS.get(op) if isinstance(op, str) else None
            if name is None:
                if isinstance(op, str) and not op.startswith("$"):
                    raise FilterError(f"{what}: {_short(op)} mixes a plain field with update operators; "
                                      "put it under $set")
                raise FilterError(f"{what}: unknown update operator {_short(op)}; valid: {', '.join(OPERATORS)}")
            if not isinstance(fields, Mapping) or not fields:
                raise FilterError(f"{what}: {op} takes a non-empty dict of fields")
            for path in fields:
                changes.append((name, op, _path(path, f"{what}: {op}")))
    _check_conflicts([Change(name, path, None) for name, _, path in changes], what)
    changes.sort(key=lambda c: _ORDER.get(c[0], 0))  # a pull before a push on the same path
    return tuple(changes)


def _operand(name: str, op: str, operand: Any, what: str) -> Any:
    where = f"{what}: {op}"
    operand = plain(operand)
    if name == "unset":
        return None
    if name in ("inc", "mul"):
        if isinstance(operand, bool) or not isinstance(operand, _NUMBERS):
            raise FilterError(f"{where} takes a number, not {type(operand).__name__}")
        if operand != operand:
            raise FilterError(f"{where}: NaN is not a usable operand")
        return operand
    if name in ("min", "max"):
        if operand is None or isinstance(operand, (list, tuple, Mapping)):
            raise FilterError(f"{where} takes a plain, non-null value, not {_short(operand)}")
        if (isinstance(operand, float) and operand != operand) or (isinstance(operand, Decimal) and operand.is_nan()):
            raise FilterError(f"{where}: NaN orders differently on each engine")
        return operand
    if name in ("push", "add_to_set"):
        if isinstance(operand, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in operand):
            extra = [k for k in operand if k != "$each"]
            if extra:
                raise FilterError(f"{where}: only the $each modifier is supported, not {_short(extra[0])}")
            items = plain(operand["$each"])  # an ndarray or a pandas Series is a list
            if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
                raise FilterError(f"{where}: $each takes a list")
            return tuple(plain(item) for item in items)
        return (operand,)
    if name == "pull":
        if isinstance(operand, Mapping):
            if not operand or any(not isinstance(k, str) or k.startswith("$") or "." in k
                                  or isinstance(v, (Mapping, list)) for k, v in operand.items()):
                raise FilterError(f"{where}: a document condition is a dict of plain field values, "
                                  f"e.g. {{'classifier_name': 'lc'}}")
        elif isinstance(operand, (list, tuple)):
            raise FilterError(f"{where} takes one value or a dict of field values, not a list")
        return operand
    return operand


def _check_conflicts(changes: list[Change], what: str) -> None:
    seen: dict[str, str] = {}
    for change in changes:
        for other, op in seen.items():
            same = other == change.path
            if same and {op, change.op} == {"pull", "push"}:
                continue
            if same or other.startswith(change.path + ".") or change.path.startswith(other + "."):
                raise FilterError(f"{what}: {_short(change.path)} and {_short(other)} conflict "
                                  "(one path, one operator; only $pull then $push may share a path)")
        seen[change.path] = change.op


def _apply_missing(change: Change) -> tuple[bool, Any]:
    """What ``change`` leaves in a missing field: (present, value)."""
    op, value = change.op, change.value
    if op in ("set", "inc", "min", "max"):
        return value is not None, value
    if op == "mul":
        return True, 0.0 if isinstance(value, float) else 0
    if op == "push":
        return True, list(value)
    if op == "add_to_set":
        return True, unique(value)
    return False, None  # unset, pull


def initial(changes: Sequence[Change]) -> dict[str, Any]:
    """The fields a new row gets from ``changes`` (as they apply to missing fields), nested for dotted paths."""
    row: dict[str, Any] = {}
    for change in changes:
        present, value = _apply_missing(change)
        if not present:
            continue
        target = row
        parts = change.path.split(".")
        for part in parts[:-1]:
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = target[part] = {}
            target = nested
        target[parts[-1]] = value
    return row


def instant(value: Any) -> Any:
    """An aware datetime as its UTC instant (Python ignores ``fold`` between two of one zone); others as they are."""
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        return value.astimezone(_dt.timezone.utc)
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as stored values, as MongoDB compares them: ``True`` is not ``1``, NaN is NaN, aware datetimes
    equal only at one instant, inside documents too.

    Key order counts nowhere here (jsonb keeps none; MongoDB's documents do: see the README).
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if (type(a) is bool) != (type(b) is bool):
        return False
    if _nan(a) or _nan(b):
        return _nan(a) and _nan(b)
    return bool(instant(a) == instant(b))


def _nan(value: Any) -> bool:
    return (isinstance(value, float) and value != value) or (isinstance(value, Decimal) and value.is_nan())


def _identity(value: Any) -> Any:
    """A hashable stand-in, equal for two scalars exactly when ``same`` says so; None for containers."""
    if isinstance(value, (Mapping, list, tuple)):
        return None
    if type(value) is bool:
        return (bool, value)
    if _nan(value):
        return (float, "nan")
    try:
        moment = instant(value)
        hash(moment)
    except TypeError:
        return None
    return (None, moment)


def unique(items: Sequence[Any]) -> list[Any]:
    """``items`` without repeats, in order (``same`` decides); linear for scalars, quadratic only among containers."""
    out: list[Any] = []
    seen: set[Any] = set()
    containers: list[Any] = []
    for item in items:
        identity = _identity(item)
        if identity is not None:
            if identity in seen:
                continue
            seen.add(identity)
        elif any(same(item, other) for other in containers):
            continue
        else:
            containers.append(item)
        out.append(item)
    return out


def replaces(changes: Sequence[Change]) -> bool:
    """True if ``changes`` pull from and push to the same path (which only bulk_update runs)."""
    pulled = {c.path for c in changes if c.op == "pull"}
    return any(c.op == "push" and c.path in pulled for c in changes)
