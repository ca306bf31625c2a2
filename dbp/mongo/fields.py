"""Declared fields: a misspelled field on a declared collection is an error, not an empty result.

``collections.toml`` may list a collection's top-level ``fields``; then every
field a query names (filters, sorts, projections, written keys, ``$set`` paths)
must be one of them, or a path inside one (``features.x``, ``extra_fields.rb``).
Collections without ``fields`` stay free-form.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dbp._bundled import bundled
from dbp.errors import FilterError
from dbp.filters import After, And, Cmp, Node, Not, Or, SortKey
from dbp.mongo.schema import DECLARATION, CollectionSpec, MongoSchema

__all__ = ["DeclaredFields", "check", "declared_fields"]


@dataclass(frozen=True)
class DeclaredFields:
    collection: str
    names: frozenset[str]

    def _refuse(self, name: str, what: str) -> None:
        shown = ", ".join(sorted(self.names, key=lambda n: (n != "_id", n)))
        raise FilterError(f"{self.collection} has no field {name!r} (in {what}); its declared fields are {shown}")

    def names_ok(self, names: Iterable[str], what: str, *, paths: bool = True) -> None:
        """Each name must be a declared field or (``paths``) a dotted path inside one."""
        for name in names:
            if name in self.names:
                continue
            parts = name.split(".") if paths and isinstance(name, str) else []
            if len(parts) > 1 and parts[0] in self.names and all(p and not p.startswith("$") for p in parts):
                continue
            self._refuse(str(name), what)

    def filter_ok(self, node: Node, what: str = "the filter") -> None:
        self.names_ok(_node_fields(node), what)

    def rows_ok(self, rows: Sequence[Mapping[str, Any]], what: str) -> None:
        allowed = self.names
        for i, row in enumerate(rows):
            if not row.keys() <= allowed:  # the common case costs one set comparison per row
                self.names_ok(row.keys(), f"{what}, row {i}", paths=False)  # an inserted key is a name, not a path


def check(
    fields: Optional[DeclaredFields],
    what: str,
    *,
    node: Optional[Node] = None,
    sort: Sequence[SortKey] = (),
    projection: Optional[Sequence[str]] = None,
    names: Iterable[str] = (),
    rows: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Raise FilterError if anything names a field ``fields`` does not declare; free-form (None) passes.

    ``names`` are paths (filter keys, ``$set`` keys); the keys of ``rows`` are
    inserted as they are, so they must be declared names themselves.
    """
    if fields is None:
        return
    if node is not None:
        fields.filter_ok(node, f"the filter of {what}")
    fields.names_ok((k.field for k in sort), f"the sort of {what}")
    fields.names_ok(projection or (), f"the projection of {what}")
    fields.names_ok(names, what)
    fields.rows_ok(rows, what)


def _node_fields(node: Node) -> Iterable[str]:
    if isinstance(node, Cmp):
        yield node.field
    elif isinstance(node, (And, Or)):
        for item in node.items:
            yield from _node_fields(item)
    elif isinstance(node, Not):
        yield from _node_fields(node.item)
    elif isinstance(node, After):
        yield from (k.field for k in node.keys)


_CACHE: dict[tuple[Path, int], MongoSchema] = {}
_LOCK = threading.Lock()


def declared_fields(schema_dir: Optional[Path], collection: str) -> Optional[DeclaredFields]:
    """The fields ``collection`` declares in the schema folder (default: the bundled one); None if free-form.

    The declaration is read once per version of the file. A folder without a
    ``collections.toml`` declares nothing.
    """
    spec = declared(schema_dir, collection)
    if spec is None or spec.fields is None:
        return None
    return DeclaredFields(collection, spec.fields)


def declared(schema_dir: Optional[Path], collection: str) -> Optional[CollectionSpec]:
    """What the schema folder's ``collections.toml`` declares of ``collection`` (None: nothing)."""
    root = schema_dir if schema_dir is not None else bundled("mongo_migrations")
    try:
        stamp = (root / DECLARATION).stat().st_mtime_ns
    except OSError:
        return None
    key = (root, stamp)
    with _LOCK:
        schema = _CACHE.get(key)
    if schema is None:
        schema = MongoSchema.load(root)
        with _LOCK:
            for old in [k for k in _CACHE if k[0] == root]:
                del _CACHE[old]
            _CACHE[key] = schema
    return schema.collection(collection)
