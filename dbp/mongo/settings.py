"""MongoDB settings: ``DB_CONFIG.MONGO`` checked and turned into ``MongoClient`` arguments."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from dbp._redact import MASK, mask_url, register_secret
from dbp._types import check_number, check_port, check_str
from dbp.engines import EngineSettings
from dbp.errors import ConfigError

__all__ = ["MongoSettings"]

KEYS = ("HOST", "PORT", "USERNAME", "PASSWORD", "DATABASE", "AUTH_SOURCE", "URL", "SCHEMA_DIR")
DEFAULT_PORT = 27017
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5000
URL_SCHEMES = {"mongodb": "mongodb", "mongodb+srv": "mongodb+srv", "mongo": "mongodb"}


def camel(key: str) -> str:
    """``SERVER_SELECTION_TIMEOUT_MS`` -> ``serverSelectionTimeoutMs`` (pymongo ignores case)."""
    first, *rest = key.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True, repr=False)
class MongoSettings(EngineSettings):
    #: The URL (or host) given to MongoClient; it may hold the password: never log it.
    host: str
    database: str
    #: Further MongoClient keyword arguments (port, username, password, authSource, ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: The user's ``mongo_migrations/`` folder; None: the bundled ALeRCE one.
    schema_dir: Optional[Path] = None
    address: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", f"{_hosts(self.host, self.options)}/{self.database}")

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, where: str) -> MongoSettings:
        options: dict[str, Any] = {}
        for key, value in section.items():
            if key not in KEYS:
                options[camel(key)] = value
        if "URL" in section:
            clash = [k for k in ("HOST", "PORT", "USERNAME", "PASSWORD") if k in section]
            if clash:
                raise ConfigError(f"{where}: give either URL or {'/'.join(clash)}, not both")
            host, url_db = _parse_url(check_str(section["URL"], f"{where}.URL"), f"{where}.URL")
            database = section.get("DATABASE", url_db)
            if not database:
                raise ConfigError(f"{where}: missing key DATABASE (or a /database in URL)")
        else:
            missing = [k for k in ("HOST", "DATABASE") if k not in section]
            if missing:
                raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} (or give URL)")
            host = check_str(section["HOST"], f"{where}.HOST")
            database = section["DATABASE"]
            options["port"] = check_port(section.get("PORT", DEFAULT_PORT), f"{where}.PORT")
            if "USERNAME" in section:
                options["username"] = check_str(section["USERNAME"], f"{where}.USERNAME")
            if section.get("PASSWORD") is not None:
                options["password"] = check_str(section["PASSWORD"], f"{where}.PASSWORD", empty=True)
                register_secret(options["password"])
        if "AUTH_SOURCE" in section:
            options["authSource"] = check_str(section["AUTH_SOURCE"], f"{where}.AUTH_SOURCE")
        database = check_str(database, f"{where}.DATABASE")
        if any(c in database for c in '/\\. "$\x00'):
            raise ConfigError(f"{where}.DATABASE {database!r} is not a valid MongoDB database name")
        lowered = {k.lower() for k in options}
        for key in list(options):
            if key.lower().endswith("ms"):
                options[key] = check_number(options[key], f"{where}.{key}")
        if "serverselectiontimeoutms" not in lowered:
            options["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
        schema_dir = Path(section["SCHEMA_DIR"]) if section.get("SCHEMA_DIR") else None
        return cls(host=host, database=database, options=options, schema_dir=schema_dir)

    def secrets(self) -> Iterable[str]:
        found = [str(self.options["password"])] if self.options.get("password") else []
        password = urlsplit(self.host).password if "://" in self.host else None
        if password:
            found.append(unquote(password))
        return found

    @property
    def timeout_seconds(self) -> float:
        for key, value in self.options.items():
            if key.lower() == "serverselectiontimeoutms":
                return float(value) / 1000
        return DEFAULT_SERVER_SELECTION_TIMEOUT_MS / 1000

    def with_database(self, database: str) -> MongoSettings:
        return replace(self, database=database)

    def masked_url(self) -> str:
        if "://" in self.host:
            scheme, _, rest = mask_url(self.host).partition("://")
            netloc, _, tail = rest.partition("/")
            query = tail.partition("?")[2]
            return f"{scheme}://{netloc}/{self.database}" + (f"?{query}" if query else "")
        user = self.options.get("username")
        auth = f"{user}:{MASK}@" if user and self.options.get("password") else (f"{user}@" if user else "")
        return f"mongodb://{auth}{_hosts(self.host, self.options)}/{self.database}"


def _parse_url(url: str, where: str) -> tuple[str, str]:
    """The URL with its scheme normalised and Airflow's ``__extra__`` removed, and its database."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        raise ConfigError(
            f"{where}: scheme {scheme.lower() + '://' if sep else '(none)'} is not MongoDB; "
            "use mongodb:// or mongodb+srv://"
        )
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        if ":" in userinfo:
            register_secret(unquote(userinfo.partition(":")[2]))
    if not netloc.rpartition("@")[2]:
        raise ConfigError(f"{where}: no host in URL")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "__extra__"]
    clean = urlunsplit((URL_SCHEMES[scheme.lower()], netloc, "/" + path, urlencode(params), ""))
    return clean, unquote(path)


def _hosts(host: str, options: Mapping[str, Any]) -> str:
    if "://" in host:
        netloc = host.partition("://")[2].partition("/")[0].partition("?")[0]
        return netloc.rpartition("@")[2]
    port = options.get("port")
    return f"{host}:{port}" if port else host
