"""PostgreSQL settings: ``DB_CONFIG.SQL`` checked and turned into libpq parameters."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from dbp._redact import MASK, register_secret
from dbp._types import check_port, check_str
from dbp.engines import EngineSettings
from dbp.errors import ConfigError

__all__ = ["SQLSettings"]

log = logging.getLogger("dbp.sql")

KEYS = ("ENGINE", "HOST", "PORT", "USER", "PASSWORD", "DB_NAME", "URL", "OPTIONS", "POOL", "SCHEMA_DIR")
ENGINE_NAMES = ("postgresql", "postgres")
URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2", "psql")
DEFAULT_PORT = 5432
DEFAULT_CONNECT_TIMEOUT = 5
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
        unknown = sorted(set(section) - set(KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(KEYS)}"
            )
        engine = section.get("ENGINE", "postgresql")
        if not isinstance(engine, str) or engine.lower() not in ENGINE_NAMES:
            raise ConfigError(f"{where}.ENGINE: unknown engine {engine!r}; dbp supports 'postgresql'")
        if "URL" in section:
            clash = [k for k in ("HOST", "PORT", "USER", "PASSWORD", "DB_NAME") if k in section]
            if clash:
                raise ConfigError(
                    f"{where}: give either URL or {'/'.join(clash)}, not both"
                )
            params = parse_url(check_str(section["URL"], f"{where}.URL"), where=f"{where}.URL")
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
                register_secret(params["password"])
        params.update(_options(section.get("OPTIONS", {}), f"{where}.OPTIONS"))
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        schema_dir = Path(section["SCHEMA_DIR"]) if section.get("SCHEMA_DIR") else None
        return cls(params=params, pool=_pool(section.get("POOL"), f"{where}.POOL"), schema_dir=schema_dir)

    def secrets(self) -> Iterable[str]:
        return [str(v) for k, v in self.params.items() if k in ("password", "sslpassword") and v]

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
        netloc = f"{auth}{host}" + (f":{port}" if port and host else "")
        if port and not host:
            query["port"] = str(port)
        dbname = quote(str(self.params.get("dbname", "")), safe="")
        return f"postgresql://{netloc}/{dbname}" + (f"?{urlencode(query, safe='/')}" if query else "")


def parse_url(url: str, *, where: str) -> dict[str, Any]:
    """libpq parameters from a ``postgresql://``, ``postgres://`` or Airflow URI.

    Query parameters libpq would reject (Airflow's ``__extra__`` and friends)
    are dropped; libpq parameters found inside ``__extra__`` are kept.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    parts = urlsplit(url)
    if parts.password:
        register_secret(parts.password)
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{where}: scheme {scheme + '://' if scheme else '(none)'} is not PostgreSQL; "
            "use postgresql://user:password@host:port/dbname"
        )
    known = libpq_keywords()
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            for ekey, evalue in _json_object(value).items():
                (kept.append((ekey, str(evalue))) if ekey in known else dropped.append(ekey))
        elif key in known:
            kept.append((key, value))
        else:
            dropped.append(key)
    if dropped:
        log.info("%s: ignoring parameter(s) libpq does not accept: %s", where, ", ".join(dropped))
    clean = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), ""))
    try:
        params: dict[str, Any] = conninfo_to_dict(clean)
    except ProgrammingError as exc:
        raise ConfigError(f"{where}: invalid PostgreSQL URL: {exc}") from None
    for secret_key in ("password", "sslpassword"):
        if params.get(secret_key):
            register_secret(params[secret_key])
    if "port" in params:
        params["port"] = check_port(params["port"], f"{where} port")
    return params


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
            raise ConfigError(f"{where}.{key}: not a libpq connection parameter")
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}.{key} must be a string or a number, not {type(value).__name__}")
        if key == "sslpassword":
            register_secret(str(value))
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
            raise ConfigError(f"{where}.{key}: unknown pool setting; valid: {', '.join(POOL_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}.{key} must be a non-negative number, not {value!r}")
        if kind is int and value != int(value):
            raise ConfigError(f"{where}.{key} must be a whole number, not {value!r}")
        out[key] = kind(value)
    return out
