"""The engine registry: the one place that knows which engines exist.

Everything outside ``dbp.sql`` and ``dbp.mongo`` reaches an engine through
:data:`ENGINES`; the modules are imported only when an engine is used, so that
``import dbp`` loads neither driver.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

if TYPE_CHECKING:
    from dbp.connection import Connection

__all__ = ["ENGINES", "EngineSettings", "EngineSpec", "engine_for_section", "project_paths", "schema_set_names"]

S = TypeVar("S", bound="EngineSettings")


class EngineSettings(ABC):
    """One engine's checked settings. Its repr and :attr:`address` carry no secret."""

    #: ``host:port/database``, for messages.
    address: str
    #: The database that dbp works in.
    database: str
    #: The engine's schema folder (SCHEMA_DIR); None: the one bundled with dbp.
    schema_dir: Optional[Path]
    #: The bundled schema set the section names (SCHEMA_SET), or None; its named queries are offered.
    schema_set: Optional[str]

    @classmethod
    @abstractmethod
    def from_section(cls: type[S], section: Mapping[str, Any], *, where: str) -> S:
        """Check a ``DB_CONFIG`` section; raise ConfigError naming ``where`` on any problem."""

    @abstractmethod
    def secrets(self) -> Iterable[str]:
        """The secret strings in these settings, to keep out of every message."""

    @abstractmethod
    def masked_url(self) -> str:
        """A URL for these settings with the password replaced by ``***``."""

    @abstractmethod
    def with_database(self: S, database: str) -> S:
        """The same server and credentials, another database."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.masked_url()!r})"


@dataclass(frozen=True)
class EngineSpec:
    name: str
    #: The DB_CONFIG section, e.g. ``SQL``.
    section: str
    #: Environment variable whose URL overrides the section's address.
    url_env: str
    #: Keys that describe where the server is and who we are; a URL override replaces them.
    address_keys: frozenset[str]
    #: The engine's subpackage: ``settings``, ``connection``, ``admin`` (initdb, dropdb) and
    #: ``migrations`` (status, migrate, rollback, make_migration) modules.
    package: str
    settings_name: str
    connection_name: str
    #: What the engine's schema folder (``SCHEMA_DIR``, ``--NAME-dir``) holds.
    schema_folder: str = ""
    #: The engine's schema folder's name in a project (init-project), and its root in ``dbp._bundled``.
    bundled_folder: str = ""
    #: The schema sets shipped with dbp for this engine (``SCHEMA_SET``): name -> folder in ``dbp._bundled``.
    #: The first is the default, used when a section names neither ``SCHEMA_SET`` nor ``SCHEMA_DIR``.
    schema_sets: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: Why a set that another engine offers is missing here, for the ConfigError.
    missing_set_reason: str = ""

    @property
    def default_set(self) -> str:
        return next(iter(self.schema_sets))

    def module(self, name: str) -> Any:
        return importlib.import_module(f"{self.package}.{name}")

    def settings_class(self) -> type[EngineSettings]:
        cls: type[EngineSettings] = getattr(self.module("settings"), self.settings_name)
        return cls

    def connection_class(self) -> type[Connection[Any]]:
        cls: type[Connection[Any]] = getattr(self.module("connection"), self.connection_name)
        return cls


ENGINES: dict[str, EngineSpec] = {
    "sql": EngineSpec(
        name="sql",
        section="SQL",
        url_env="DBP_SQL_URL",
        address_keys=frozenset(
            {"URL", "ENGINE", "HOST", "USER", "PASSWORD", "PORT", "DB_NAME", "AIRFLOW_CONN_ID"}
        ),
        package="dbp.sql",
        settings_name="SQLSettings",
        connection_name="SQLConnection",
        schema_folder="the SQL folder: schema/*.sql and migrations/",
        bundled_folder="sql",
        schema_sets={"ztf": "sql/ztf", "multisurvey": "sql/multisurvey"},
    ),
    "mongo": EngineSpec(
        name="mongo",
        section="MONGO",
        url_env="DBP_MONGO_URL",
        address_keys=frozenset(
            {"URL", "HOST", "USERNAME", "PASSWORD", "PORT", "AUTH_SOURCE", "AIRFLOW_CONN_ID"}
        ),
        package="dbp.mongo",
        settings_name="MongoSettings",
        connection_name="MongoConnection",
        schema_folder="the Mongo migrations folder: collections.toml and NNNN_name.py",
        bundled_folder="mongo_migrations",
        schema_sets={"ztf": "mongo_migrations"},
        missing_set_reason="ALeRCE's multi-survey library dropped MongoDB",
    ),
}


def project_paths(section: Mapping[str, Any], engine: str, where: str
                  ) -> tuple[Optional[Path], Optional[Path], Optional[str]]:
    """A section's ``SCHEMA_DIR``, ``QUERIES_DIR`` and ``SCHEMA_SET``; the set's folder if it has no SCHEMA_DIR."""
    from dbp._bundled import schema_set

    name = section.get("SCHEMA_SET")
    schema_dir = Path(section["SCHEMA_DIR"]) if section.get("SCHEMA_DIR") else None
    if name is not None:
        folder = schema_set(engine, name, f"{where}.SCHEMA_SET")
        schema_dir = schema_dir or folder
    queries_dir = Path(section["QUERIES_DIR"]) if section.get("QUERIES_DIR") else None
    return schema_dir, queries_dir, name


def schema_set_names() -> list[str]:
    """Every bundled schema set, in the registry's order."""
    return list(dict.fromkeys(name for spec in ENGINES.values() for name in spec.schema_sets))


def engine_for_section(section: str) -> Optional[str]:
    for spec in ENGINES.values():
        if spec.section == section.upper():
            return spec.name
    return None
