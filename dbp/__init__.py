"""dbp: one small contract over PostgreSQL (psycopg 3) and MongoDB (pymongo).

Importing dbp loads neither driver; each loads when its engine is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dbp._version import __version__
from dbp.config import Config, load_config
from dbp.errors import (
    AuthenticationFailed,
    BulkWriteError,
    ConcurrencyError,
    ConfigError,
    DatabaseMissing,
    DbpError,
    FilterError,
    LockTimeout,
    OperationError,
    QueryError,
    ServerUnavailable,
)

if TYPE_CHECKING:
    from dbp.connection import Connection, connect
    from dbp.mongo.connection import MongoConnection
    from dbp.sql.connection import SQLConnection

__all__ = [
    "AuthenticationFailed",
    "BulkWriteError",
    "ConcurrencyError",
    "Config",
    "ConfigError",
    "Connection",
    "DatabaseMissing",
    "DbpError",
    "FilterError",
    "LockTimeout",
    "MongoConnection",
    "OperationError",
    "QueryError",
    "SQLConnection",
    "ServerUnavailable",
    "__version__",
    "connect",
    "load_config",
]

_LAZY = {
    "Connection": "dbp.connection",
    "connect": "dbp.connection",
    "SQLConnection": "dbp.sql.connection",
    "MongoConnection": "dbp.mongo.connection",
}


#: Submodules reachable as attributes (``dbp.admin.initdb(...)``), imported when first used.
_SUBMODULES = frozenset({"admin", "project"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"dbp.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dbp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
