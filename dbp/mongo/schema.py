"""MongoDB collections and indexes, declared as data in ``collections.toml``.

``initdb`` creates them, ``--adopt`` and ``make_migrations`` compare them with
a live database. The file sits in the Mongo migrations folder. A collection may
also declare its top-level ``fields`` (``_id`` is always one); queries on it
then refuse unknown fields (:mod:`dbp.mongo.fields`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from dbp._bundled import bundled
from dbp.errors import ConfigError

__all__ = ["DECLARATION", "CollectionSpec", "IndexSpec", "MongoSchema", "index_differences"]

DECLARATION = "collections.toml"
Direction = Union[int, str]
#: index_information() fields that describe the server's bookkeeping, not the index.
_SERVER_FIELDS = frozenset({"v", "ns", "background", "2dsphereIndexVersion", "textIndexVersion"})
_DIRECTIONS = (1, -1, "2dsphere", "2d", "text", "hashed")


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[tuple[str, Direction], ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    def model_args(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "name": self.name, **self.options}

    def matches(self, info: Mapping[str, Any]) -> bool:
        """True if ``info`` (one entry of ``index_information()``) is this index."""
        return _normal(info) == _normal({"key": list(self.keys), **self.options})

    def describe(self) -> str:
        keys = ", ".join(f"{k} {d}" for k, d in self.keys)
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"({keys}{opts})"


def _normal(info: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in info.items() if k not in _SERVER_FIELDS}
    out["key"] = [(str(k), int(d) if isinstance(d, (int, float)) else d) for k, d in out.get("key", [])]
    return out


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    indexes: tuple[IndexSpec, ...] = ()
    #: The declared top-level fields (``_id`` included), or None: free-form.
    fields: Optional[frozenset[str]] = None
    #: Where positions live: a GeoJSON point field and its longitude's offset from ra (``$cone``).
    position: Optional[tuple[str, float]] = None


@dataclass(frozen=True)
class MongoSchema:
    """A Mongo migrations folder: ``collections.toml`` and numbered ``NNNN_name.py`` files."""

    root: Path
    collections: tuple[CollectionSpec, ...]

    @classmethod
    def load(cls, root: Optional[Path] = None) -> MongoSchema:
        root = root if root is not None else bundled("mongo_migrations")
        path = root / DECLARATION
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no {DECLARATION} in the Mongo migrations folder {root}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        _known(doc, ("collection",), str(path))
        declared = doc.get("collection", [])
        if not isinstance(declared, list):
            raise ConfigError(f"{path}: collection is a list of tables ([[collection]] ...), not "
                              f"{type(declared).__name__}")
        return cls(root, tuple(_collection(c, f"{path}: collection[{i}]") for i, c in enumerate(declared)))

    def collection(self, name: str) -> Optional[CollectionSpec]:
        return next((c for c in self.collections if c.name == name), None)

    @property
    def index_count(self) -> int:
        return sum(len(c.indexes) for c in self.collections)


#: What a collection declares; an index: its name, keys and these create_index options.
COLLECTION_KEYS = ("name", "fields", "indexes", "position")
INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds", "hidden", "collation",
                 "weights", "default_language", "language_override", "textIndexVersion", "2dsphereIndexVersion",
                 "bits", "min", "max", "wildcardProjection", "storageEngine")


def _known(raw: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    """Refuse a key not in ``valid`` (a typo such as ``indexs`` would otherwise drop every index)."""
    unknown = sorted(str(k) for k in raw if k not in valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                          f"valid keys are {', '.join(valid)}")


def _collection(raw: Any, where: str) -> CollectionSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(f"{where} needs a name")
    _known(raw, COLLECTION_KEYS, f"{where} ({raw['name']})")
    declared = raw.get("indexes", [])
    if not isinstance(declared, list):
        raise ConfigError(f"{where} ({raw['name']}): indexes is a list of {{ name = ..., keys = [...] }}")
    indexes = []
    for j, index in enumerate(declared):
        iwhere = f"{where} ({raw['name']}) index[{j}]"
        if not isinstance(index, dict) or not isinstance(index.get("name"), str):
            raise ConfigError(f"{iwhere} needs a name")
        _known(index, ("name", "keys", *INDEX_OPTIONS), f"{iwhere} ({index['name']})")
        keys = index.get("keys")
        if not isinstance(keys, list) or not keys:
            raise ConfigError(f"{iwhere} ({index['name']}) needs keys: [[field, direction], ...]")
        pairs: list[tuple[str, Direction]] = []
        for pair in keys:
            if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str)
                    or pair[1] not in _DIRECTIONS):
                raise ConfigError(
                    f"{iwhere} ({index['name']}): key {pair!r} is not [field, 1 | -1 | \"2dsphere\" | ...]"
                )
            pairs.append((pair[0], pair[1]))
        options = {k: v for k, v in index.items() if k not in ("name", "keys")}
        indexes.append(IndexSpec(index["name"], tuple(pairs), options))
    names = [i.name for i in indexes]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where} ({raw['name']}) declares an index name twice")
    fields = _fields(raw, f"{where} ({raw['name']})")
    if fields is not None:
        for index in indexes:
            for key, _ in index.keys:
                if key.split(".", 1)[0] not in fields:
                    raise ConfigError(f"{where} ({raw['name']}) index {index.name}: {key!r} is not a declared field")
    return CollectionSpec(raw["name"], tuple(indexes), fields, _position(raw, f"{where} ({raw['name']})", fields))


def _position(raw: Mapping[str, Any], where: str, fields: Optional[frozenset[str]]) -> Optional[tuple[str, float]]:
    """``position = { point = "loc", ra_offset = -180 }``: GeoJSON longitude = ra + ra_offset (wrapped)."""
    if "position" not in raw:
        return None
    spec = raw["position"]
    if (not isinstance(spec, dict) or not set(spec) <= {"point", "ra_offset"} or not isinstance(spec.get("point"), str)
            or not spec["point"] or isinstance(spec.get("ra_offset", 0), bool)
            or not isinstance(spec.get("ra_offset", 0), (int, float))
            or not -360 <= spec.get("ra_offset", 0) <= 360):  # NaN fails this too
        raise ConfigError(f'{where}: position is {{ point = "field", ra_offset = number from -360 to 360 }}')
    if fields is not None and spec["point"].split(".", 1)[0] not in fields:
        raise ConfigError(f"{where}: position point {spec['point']!r} is not a declared field")
    return spec["point"], float(spec.get("ra_offset", 0))


def _fields(raw: Mapping[str, Any], where: str) -> Optional[frozenset[str]]:
    if "fields" not in raw:
        return None
    fields = raw["fields"]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ConfigError(f"{where}: fields must be a list of field names")
    bad = [f for f in fields if not f or "." in f or f.startswith("$") or "\x00" in f]
    if bad:
        raise ConfigError(f"{where}: {bad[0]!r} is not a top-level field name")
    if len(set(fields)) != len(fields):
        raise ConfigError(f"{where}: fields names a field twice")
    return frozenset(["_id", *fields])


def index_differences(
    spec: CollectionSpec, live: Optional[Mapping[str, Mapping[str, Any]]]
) -> list[str]:
    """How a collection's live ``index_information()`` differs from ``spec`` (``_id_`` aside)."""
    if live is None:
        return [f"collection {spec.name} is missing"]
    out = []
    declared = {i.name: i for i in spec.indexes}
    for name, index in declared.items():
        if name not in live:
            out.append(f"index {spec.name}.{name} {index.describe()} is missing")
        elif not index.matches(live[name]):
            out.append(f"index {spec.name}.{name} differs: live {_normal(live[name])}, declared {index.describe()}")
    for name in sorted(set(live) - set(declared) - {"_id_"}):
        out.append(f"index {spec.name}.{name} is not declared")
    return out
