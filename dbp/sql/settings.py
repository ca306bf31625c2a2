"""PostgreSQL settings: ``DB_CONFIG.SQL`` checked and turned into libpq parameters."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote, unquote_plus, urlencode

from dbp._redact import (
    AMBIGUOUS_AT,
    MASK,
    ambiguous_at,
    is_secret_key,
    register_public,
    register_secret,
    shown,
    userinfo_end,
)
from dbp._types import check_port, check_str
from dbp.engines import EngineSettings, project_paths
from dbp.errors import ConfigError

__all__ = ["SQLSettings"]

log = logging.getLogger("dbp.sql")

KEYS = ("ENGINE", "HOST", "PORT", "USER", "PASSWORD", "DB_NAME", "URL", "OPTIONS", "POOL", "SCHEMA_SET", "SCHEMA_DIR",
        "QUERIES_DIR")
ENGINE_NAMES = ("postgresql", "postgres")
URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2", "psql")
DEFAULT_PORT = 5432
DEFAULT_CONNECT_TIMEOUT = 5
#: psycopg_pool's own default min_size.
POOL_DEFAULT_MIN_SIZE = 4
POOL_KEYS = {
    "min_size": int,
    "max_size": int,
    "timeout": float,
    "max_idle": float,
    "max_lifetime": float,
    "max_waiting": int,
    "reconnect_timeout": float,
    "num_workers": int,
}
# Set through the main keys, never through OPTIONS.
_ADDRESS_PARAMS = frozenset({"host", "hostaddr", "port", "user", "password", "dbname"})
#: Keys that may accompany URL, filling in or replacing the URL's own user and password.
_URL_COMPANIONS = {"USER": "user", "PASSWORD": "password"}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@lru_cache(maxsize=1)
def libpq_keywords() -> frozenset[str]:
    """Every connection parameter the linked libpq knows."""
    from psycopg import pq

    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


@dataclass(frozen=True, repr=False)
class SQLSettings(EngineSettings):
    #: libpq keyword parameters, password included: never log them.
    params: Mapping[str, Any]
    #: psycopg_pool.ConnectionPool keyword arguments, or None for plain connections.
    pool: Optional[Mapping[str, Any]] = None
    #: The user's ``sql/`` folder (``schema/`` and ``migrations/``); None: the bundled ALeRCE schema.
    schema_dir: Optional[Path] = None
    #: The named queries' folder (QUERIES_DIR); None: ``./queries`` if it exists, and dbp's bundled ones.
    queries_dir: Optional[Path] = None
    #: The bundled schema set named by SCHEMA_SET (None: not named; the bundled named queries are ztf's).
    schema_set: Optional[str] = None
    address: str = field(init=False)
    database: str = field(init=False)

    def __post_init__(self) -> None:
        host = str(self.params.get("host") or self.params.get("hostaddr") or "localhost")
        host = host.split(",")[0]
        port = str(self.params.get("port") or DEFAULT_PORT).split(",")[0]
        database = str(self.params.get("dbname") or self.params.get("user") or "postgres")
        object.__setattr__(self, "database", database)
        object.__setattr__(self, "address", f"{host}:{port}/{database}")

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, where: str) -> SQLSettings:
        unknown = sorted(str(k) for k in set(section) - set(KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {_names(unknown)}; valid keys are {', '.join(KEYS)}"
            )
        engine = section.get("ENGINE", "postgresql")
        if not isinstance(engine, str) or engine.lower() not in ENGINE_NAMES:
            raise ConfigError(f"{where}.ENGINE: unknown engine {shown(engine, 40)}; dbp supports 'postgresql'")
        if "URL" in section:
            clash = [k for k in ("HOST", "PORT", "DB_NAME") if k in section]
            if clash:
                raise ConfigError(
                    f"{where}: give either URL or {'/'.join(clash)}, not both (USER and PASSWORD may accompany URL)"
                )
            params = parse_url(check_str(section["URL"], f"{where}.URL"), where=f"{where}.URL")
            for key, param in _URL_COMPANIONS.items():
                if section.get(key) is not None:
                    params[param] = check_str(section[key], f"{where}.{key}", empty=key == "PASSWORD")
        else:
            missing = [k for k in ("HOST", "USER", "DB_NAME") if k not in section]
            if missing:
                raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} (or give URL)")
            params = {
                "host": check_str(section["HOST"], f"{where}.HOST"),
                "port": check_port(section.get("PORT", DEFAULT_PORT), f"{where}.PORT"),
                "user": check_str(section["USER"], f"{where}.USER"),
                "dbname": check_str(section["DB_NAME"], f"{where}.DB_NAME"),
            }
            if section.get("PASSWORD") is not None:
                params["password"] = check_str(section["PASSWORD"], f"{where}.PASSWORD", empty=True)
        params.update(_options(section.get("OPTIONS", {}), f"{where}.OPTIONS"))
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        for key in ("host", "user", "dbname", "port"):
            if params.get(key) is not None:
                register_public(params[key])
        for key, value in params.items():
            if is_secret_key(key):
                register_secret(str(value))
        schema_dir, queries_dir, schema_set = project_paths(section, "sql", where)
        return cls(params=params, pool=_pool(section.get("POOL"), f"{where}.POOL"), schema_dir=schema_dir,
                   queries_dir=queries_dir, schema_set=schema_set)

    def secrets(self) -> Iterable[str]:
        return [str(v) for k, v in self.params.items() if is_secret_key(k) and v]

    def conninfo(self, database: Optional[str] = None) -> str:
        """A libpq conninfo string (it holds the password: never log it)."""
        from psycopg.conninfo import make_conninfo

        params = dict(self.params)
        if database is not None:
            params["dbname"] = database
        return make_conninfo(**{k: str(v) for k, v in params.items()})

    def with_database(self, database: str) -> SQLSettings:
        return replace(self, params={**self.params, "dbname": database})

    def masked_url(self) -> str:
        user = quote(str(self.params.get("user", "")), safe="")
        auth = f"{user}:{MASK}@" if self.params.get("password") else (f"{user}@" if user else "")
        host = str(self.params.get("host", ""))
        query = {}
        if host.startswith("/"):
            query["host"], host = host, ""
        port = self.params.get("port")
        if ":" in host and not host.startswith("["):  # IPv6: bracketed in a URL
            host = f"[{host}]"
        netloc = f"{auth}{host}" + (f":{port}" if port and host else "")
        if port and not host:
            query["port"] = str(port)
        dbname = quote(str(self.params.get("dbname", "")), safe="")
        return f"postgresql://{netloc}/{dbname}" + (f"?{urlencode(query, safe='/')}" if query else "")


def parse_url(url: str, *, where: str) -> dict[str, Any]:
    """libpq parameters from a ``postgresql://``, ``postgres://`` or Airflow URI.

    Query parameters libpq would reject (Airflow's ``__extra__`` and friends)
    are dropped; libpq parameters found inside ``__extra__`` are kept. Values
    are percent-decoded as libpq does (a ``+`` stays a ``+``). Errors never
    quote the URL: a malformed one may hold a password.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        named = f"{shown(scheme, 20)[1:-1]}://" if sep and scheme.isalnum() else "(none)"
        raise ConfigError(
            f"{where}: scheme {named} is not PostgreSQL; use postgresql://user:password@host:port/dbname"
        )
    if "%00" in rest:  # libpq would refuse it quoting the text around it; a NUL is never valid
        raise ConfigError(f"{where}: the URL contains a NUL character (%00)")
    if ambiguous_at(rest):
        raise ConfigError(f"{where}: {AMBIGUOUS_AT}")
    at = userinfo_end(rest)
    userinfo, address = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    if _BAD_ESCAPE.search(userinfo):
        raise ConfigError(f"{where}: the user name or password holds a '%' that starts no %XX escape; write it %25")
    password = unquote(userinfo.partition(":")[2])
    register_secret(password)
    hostpart, _, query = address.partition("?")
    query = query.partition("#")[0]
    known = libpq_keywords()
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    after_secret = False
    for item in query.split("&") if query else []:
        raw_key, eq, raw_value = item.partition("=")
        if not eq:  # libpq refuses it too; it may be the tail of a password holding '&'
            raise ConfigError(f"{where}: a URL query parameter has no '=' (a value holding '&' must "
                              "percent-encode it: %26)")
        key = unquote(raw_key)
        shy, after_secret = after_secret or not _PARAM_NAME.fullmatch(key), is_secret_key(key)
        if key == "__extra__":  # Airflow encodes it with '+' for spaces
            for ekey, evalue in _json_object(unquote_plus(raw_value)).items():
                if is_secret_key(ekey):
                    register_secret(str(evalue))
                (kept.append((ekey, str(evalue))) if ekey in known else dropped.append(ekey))
        elif key in known:
            kept.append((key, unquote(raw_value)))
        else:  # a name after a secret value may be the tail of a secret holding '&': counted, not named
            dropped.append("(one more)" if shy else key)
    if dropped:
        log.info("%s: ignoring parameter(s) libpq does not accept: %s", where, _names(dropped))
    for key, value in kept:
        if is_secret_key(key):
            register_secret(value)
    clean = f"postgresql://{userinfo + '@' if at >= 0 else ''}{hostpart}"
    if kept:
        clean += "?" + urlencode(kept, quote_via=quote)
    problem = None
    try:
        params: dict[str, Any] = conninfo_to_dict(clean)
    except ProgrammingError as exc:
        # libpq quotes the offending text (which may be the password): keep only what went wrong
        problem = re.split(r'[:"]', str(exc).strip().splitlines()[0] if str(exc).strip() else "", maxsplit=1)[0]
    if problem is not None:
        raise ConfigError(f"{where}: invalid PostgreSQL URL ({problem[:100] or 'libpq refused it'})")
    for key, value in params.items():
        if "\x00" in str(value):
            raise ConfigError(f"{where}: the {'password' if is_secret_key(key) else key} contains a NUL character")
    if any("," in str(params.get(key, "")) for key in ("host", "hostaddr", "port")):
        raise ConfigError(f"{where}: multi-host URLs (host1:port1,host2:port2) are not supported; give one host")
    if "port" in params:
        params["port"] = check_port(params["port"], f"{where}: the port", show=False)
    return params


_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _names(names: Sequence[str], limit: int = 10) -> str:
    """At most ``limit`` names, each cut short, for a message."""
    out = [n if len(n) <= 60 else n[:60] + "..." for n in list(names)[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(out) + more


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _options(options: Any, where: str) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where} must be a table of libpq parameters, not {type(options).__name__}")
    out: dict[str, Any] = {}
    known = libpq_keywords()
    for key, value in options.items():
        if key in _ADDRESS_PARAMS:
            raise ConfigError(f"{where}.{key}: set the address with HOST/PORT/USER/PASSWORD/DB_NAME or URL")
        if key not in known:
            raise ConfigError(f"{where}.{_names([str(key)])}: not a libpq connection parameter")
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}.{key} must be a string or a number, not {type(value).__name__}")
        if isinstance(value, str):
            check_str(value, f"{where}.{key}", empty=True)
        out[key] = value
    return out


def _pool(pool: Any, where: str) -> Optional[dict[str, Any]]:
    if pool is None or pool is False:
        return None
    if pool is True:
        return {}
    if not isinstance(pool, Mapping):
        raise ConfigError(f"{where} must be true, false or a table of pool settings")
    out: dict[str, Any] = {}
    for key, value in pool.items():
        kind = POOL_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{where}.{_names([str(key)])}: unknown pool setting; valid: {', '.join(POOL_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            raise ConfigError(f"{where}.{key} must be a non-negative number, not {shown(value, 40)}")
        if kind is int and value != int(value):
            raise ConfigError(f"{where}.{key} must be a whole number, not {shown(value, 40)}")
        out[key] = kind(value)
    # psycopg_pool's min_size defaults to 4 and must not exceed max_size
    if "max_size" in out:
        if out["max_size"] < 1:
            raise ConfigError(f"{where}.max_size must be at least 1")
        if "min_size" not in out:
            out["min_size"] = min(POOL_DEFAULT_MIN_SIZE, out["max_size"])
        elif out["min_size"] > out["max_size"]:
            raise ConfigError(f"{where}: min_size ({out['min_size']}) is larger than max_size ({out['max_size']})")
    return out
