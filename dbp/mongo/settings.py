"""MongoDB settings: ``DB_CONFIG.MONGO`` checked and turned into ``MongoClient`` arguments."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote, unquote_plus

from dbp._redact import (
    AMBIGUOUS_AT,
    MASK,
    ambiguous_at,
    is_secret_key,
    mask_query,
    register_public,
    register_secret,
    shown,
    userinfo_end,
)
from dbp._types import check_number, check_port, check_str
from dbp.engines import EngineSettings, project_paths
from dbp.errors import ConfigError

__all__ = ["MongoSettings"]

KEYS = ("HOST", "PORT", "USERNAME", "PASSWORD", "DATABASE", "AUTH_SOURCE", "URL", "SCHEMA_SET", "SCHEMA_DIR",
        "QUERIES_DIR", "MAX_TIME_MS")
#: The server-side time limit of every dbp read (``maxTimeMS``) unless MAX_TIME_MS says otherwise.
DEFAULT_MAX_TIME_MS = 60_000
DEFAULT_PORT = 27017
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5000
URL_SCHEMES = {"mongodb": "mongodb", "mongodb+srv": "mongodb+srv", "mongo": "mongodb"}
#: Keys that may accompany URL, filling in or replacing the URL's own credentials.
_URL_COMPANIONS = {"USERNAME": "username", "PASSWORD": "password"}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


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
    #: The named queries' folder (QUERIES_DIR); None: ``./queries`` if it exists, and dbp's bundled ones.
    queries_dir: Optional[Path] = None
    #: The bundled schema set named by SCHEMA_SET (only ``ztf`` has a MongoDB schema).
    schema_set: Optional[str] = None
    #: ``maxTimeMS`` of every dbp read (find, count, aggregate, named pipelines); None: no limit.
    max_time_ms: Optional[int] = DEFAULT_MAX_TIME_MS
    address: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", f"{_hosts(self.host, self.options)}/{self.database}")

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, where: str) -> MongoSettings:
        options: dict[str, Any] = {}
        url_options: dict[str, str] = {}
        for key, value in section.items():
            if key not in KEYS:
                options[camel(key)] = value
        if "URL" in section:
            clash = [k for k in ("HOST", "PORT") if k in section]
            if clash:
                raise ConfigError(
                    f"{where}: give either URL or {'/'.join(clash)}, not both (USERNAME and PASSWORD may accompany URL)"
                )
            host, url_db, url_options = _parse_url(check_str(section["URL"], f"{where}.URL"), f"{where}.URL")
            database = section.get("DATABASE", url_db)
            if not database:
                raise ConfigError(f"{where}: missing key DATABASE (or a /database in URL)")
            for key, option in _URL_COMPANIONS.items():
                if section.get(key) is not None:
                    options[option] = check_str(section[key], f"{where}.{key}", empty=key == "PASSWORD")
        else:
            missing = [k for k in ("HOST", "DATABASE") if k not in section]
            if missing:
                raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} (or give URL)")
            host = check_str(section["HOST"], f"{where}.HOST")
            # an IPv6 address as Airflow stores it (no brackets): MongoClient needs them
            if host.count(":") > 1 and not host.startswith("[") and not any(c in host for c in ",/"):
                host = f"[{host}]"
            database = section["DATABASE"]
            options["port"] = check_port(section.get("PORT", DEFAULT_PORT), f"{where}.PORT")
            if "USERNAME" in section:
                options["username"] = check_str(section["USERNAME"], f"{where}.USERNAME")
            if section.get("PASSWORD") is not None:
                options["password"] = check_str(section["PASSWORD"], f"{where}.PASSWORD", empty=True)
        if "AUTH_SOURCE" in section:
            options["authSource"] = check_str(section["AUTH_SOURCE"], f"{where}.AUTH_SOURCE")
        database = check_str(database, f"{where}.DATABASE")
        if any(c in database for c in '/\\. "$\x00') or len(database) > 63:
            raise ConfigError(f"{where}.DATABASE {shown(database, 60)} is not a valid MongoDB database name")
        for key, value in options.items():
            if isinstance(value, str):
                check_str(value, f"{where}.{shown(key, 60)[1:-1]}", empty=True)
            if is_secret_key(key) and value:
                register_secret(str(value))
        lowered = {k.lower() for k in options} | set(url_options)
        for key in list(options):
            if key.lower().endswith("ms"):
                options[key] = check_number(options[key], f"{where}.{shown(key, 60)[1:-1]}")
        if "serverselectiontimeoutms" in url_options:
            check_number(url_options["serverselectiontimeoutms"], f"{where}.URL serverSelectionTimeoutMS")
        if "serverselectiontimeoutms" not in lowered:
            options["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
        register_public(database)
        for address in _hosts(host, options).split(","):  # printed in every message: never masked
            register_public(address)
            register_public(address.rpartition(":")[0] if address.rpartition(":")[2].isdigit() else address)
        if options.get("username"):
            register_public(options["username"])
        schema_dir, queries_dir, schema_set = project_paths(section, "mongo", where)
        return cls(host=host, database=database, options=options, schema_dir=schema_dir,
                   queries_dir=queries_dir, schema_set=schema_set, max_time_ms=_max_time_ms(section, where))

    def secrets(self) -> Iterable[str]:
        found = [str(v) for k, v in self.options.items() if is_secret_key(k) and v]
        if "://" in self.host:
            rest = self.host.partition("://")[2]
            at = userinfo_end(rest)
            if at >= 0 and ":" in rest[:at]:
                found.append(unquote(rest[:at].partition(":")[2]))
            for key, value in _query_items(rest.partition("?")[2]):
                if is_secret_key(key) and value:
                    found.append(value)
        return found

    @property
    def timeout_seconds(self) -> float:
        for key, value in self.options.items():
            if key.lower() == "serverselectiontimeoutms":
                return float(value) / 1000
        if "://" in self.host:
            for key, value in _query_items(self.host.partition("?")[2]):
                if key.lower() == "serverselectiontimeoutms":
                    return float(value) / 1000
        return DEFAULT_SERVER_SELECTION_TIMEOUT_MS / 1000

    def with_database(self, database: str) -> MongoSettings:
        return replace(self, database=database)

    def masked_url(self) -> str:
        """Built from the parts: the password and secret URL options never enter it."""
        if "://" in self.host:
            scheme, _, rest = self.host.partition("://")
            at = userinfo_end(rest)
            userinfo, address = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
            user = userinfo.partition(":")[0]
            if self.options.get("username"):
                user = quote(str(self.options["username"]), safe="")
            secret = ":" in userinfo or bool(self.options.get("password"))
            auth = f"{user}:{MASK}@" if user and secret else (f"{user}@" if user else "")
            query = address.partition("?")[2]
            return f"{scheme}://{auth}{_hosts(self.host, self.options)}/{self.database}" + (
                f"?{mask_query(query)}" if query else ""
            )
        name = quote(str(self.options["username"]), safe="") if self.options.get("username") else ""
        auth = f"{name}:{MASK}@" if name and self.options.get("password") else (f"{name}@" if name else "")
        return f"mongodb://{auth}{_hosts(self.host, self.options)}/{self.database}"


def _query_items(query: str) -> list[tuple[str, str]]:
    """A URL query's (key, value) pairs, percent-decoded (``+`` stays ``+``, as pymongo reads it)."""
    out = []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        out.append((unquote(key), unquote(value)))
    return out


def _parse_url(url: str, where: str) -> tuple[str, str, dict[str, str]]:
    """The URL with its scheme normalised and Airflow's ``__extra__`` removed, its database and options.

    Errors never quote the URL: a malformed one may hold a password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        named = f"{scheme.lower()}://" if sep and len(scheme) < 20 and scheme.replace("+", "").isalnum() else "(none)"
        raise ConfigError(f"{where}: scheme {named} is not MongoDB; use mongodb:// or mongodb+srv://")
    if ambiguous_at(rest):
        raise ConfigError(f"{where}: {AMBIGUOUS_AT}")
    at = userinfo_end(rest)
    userinfo, address = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    user, _, password = userinfo.partition(":")
    if ":" in password:
        raise ConfigError(
            f"{where}: the password holds an unescaped ':'; percent-encode it (urllib.parse.quote(password, safe=''))"
        )
    if _BAD_ESCAPE.search(userinfo):
        raise ConfigError(f"{where}: the user name or password holds a '%' that starts no %XX escape; write it %25")
    if "\x00" in unquote_plus(userinfo):
        raise ConfigError(f"{where}: the user name or password contains a NUL character")
    register_secret(unquote_plus(password))
    if user:
        register_public(unquote_plus(user))
    hosts, _, path = address.partition("/")
    path, _, query = path.partition("?")
    if "?" in hosts:
        hosts, _, query = hosts.partition("?")
    query = query.partition("#")[0]
    if not hosts:
        raise ConfigError(f"{where}: no host in URL")
    if "\x00" in unquote(hosts + path + query):
        raise ConfigError(f"{where}: the URL contains a NUL character")
    kept = []
    options: dict[str, str] = {}
    for item in query.split("&") if query else []:
        if "=" not in item:  # pymongo refuses it too; it may be the tail of a value holding '&'
            raise ConfigError(f"{where}: a URL query parameter has no '=' (a value holding '&' must "
                              "percent-encode it: %26)")
        key = unquote(item.partition("=")[0])
        value = unquote(item.partition("=")[2])
        if key == "__extra__":
            extra = _json_object(unquote_plus(item.partition("=")[2]))
            for ekey, evalue in extra.items():
                if is_secret_key(ekey) and evalue:
                    register_secret(str(evalue))
            continue
        if is_secret_key(key):
            register_secret(value)
        options[key.lower()] = value
        kept.append(item)
    clean = f"{URL_SCHEMES[scheme.lower()]}://{userinfo + '@' if at >= 0 else ''}{hosts}/{path}"
    if kept:
        clean += "?" + "&".join(kept)
    return clean, unquote(path), options


def _max_time_ms(section: Mapping[str, Any], where: str) -> Optional[int]:
    """MAX_TIME_MS: a whole number of milliseconds (also as digits, from ``${VAR}``); 0 or None: no limit."""
    value = section.get("MAX_TIME_MS", DEFAULT_MAX_TIME_MS)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ConfigError(f"{where}.MAX_TIME_MS must be a whole number of milliseconds (0: no limit), "
                          f"not {shown(value, 40)}")
    return value or None


def _json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _hosts(host: str, options: Mapping[str, Any]) -> str:
    if "://" in host:
        rest = host.partition("://")[2]
        at = userinfo_end(rest)
        return rest[at + 1 :].partition("/")[0].partition("?")[0]
    port = options.get("port")
    return f"{host}:{port}" if port else host
