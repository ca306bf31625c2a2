"""An Airflow connection as a ``DB_CONFIG`` section; needs no Airflow.

Airflow's ``postgres`` and ``mongo`` connection types keep the address in the
connection's fields (``host``, ``port``, ``login``, ``password``, ``schema`` =
the database) and driver options in ``extra``. :func:`section_for` turns them
into the keys :mod:`dbp.config` already checks, so there is one normalisation.
Extras that only Airflow's own hooks understand are left out, by name, in a
log line. :func:`connection_from_env` reads an ``AIRFLOW_CONN_*`` variable
(JSON, or a URI with its extras as query parameters or in ``__extra__``) into
the same fields, so the variable and ``DbpHook`` map a connection alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol
from urllib.parse import parse_qsl, quote, unquote

from dbp._redact import AMBIGUOUS_AT, ambiguous_at, is_secret_key, register_secret, userinfo_end
from dbp.errors import ConfigError

__all__ = ["AirflowConnection", "CONN_TYPES", "ParsedConnection", "connection_from_env", "engine_for", "section_for"]

log = logging.getLogger("dbp.airflow")

#: Airflow connection types and the dbp engine each one maps to (``dbp``: the engine the hook names).
CONN_TYPES: dict[str, Optional[str]] = {
    "postgres": "sql",
    "postgresql": "sql",
    "mongo": "mongo",
    "mongodb": "mongo",
    "dbp": None,
}
_TRUE = frozenset({"1", "true", "yes", "on"})
# Airflow's Mongo hook handles these itself instead of handing them to MongoClient.
_MONGO_AIRFLOW_ONLY = frozenset({"srv", "allow_insecure"})


class AirflowConnection(Protocol):
    """The fields of ``airflow.sdk.Connection`` that dbp reads."""

    conn_id: str
    conn_type: Optional[str]
    host: Optional[str]
    port: Optional[int]
    login: Optional[str]
    password: Optional[str]
    schema: Optional[str]
    extra: Optional[str]


@dataclass(repr=False)
class ParsedConnection:
    """An Airflow connection read from an ``AIRFLOW_CONN_*`` variable (the fields dbp reads)."""

    conn_id: str
    conn_type: Optional[str]
    host: Optional[str]
    port: Optional[int]
    login: Optional[str]
    password: Optional[str]
    schema: Optional[str]
    extra: Optional[str]

    def __repr__(self) -> str:
        return f"ParsedConnection(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, host={self.host!r})"


def connection_from_env(value: str, conn_id: str, var: str) -> ParsedConnection:
    """The connection in ``value`` (``$var``), in JSON or URI form, parsed as Airflow parses it.

    Errors name ``$var`` and never quote its value: it holds the password.
    """
    value = value.strip()
    if value.startswith("{"):
        return _from_json(value, conn_id, var)
    scheme, sep, rest = value.partition("://")
    if not sep or not scheme.replace("+", "").replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"${var} is neither a URI nor valid JSON")
    if ambiguous_at(rest):
        raise ConfigError(f"${var}: {AMBIGUOUS_AT}")
    at = userinfo_end(rest)
    userinfo, address = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    login, colon, password = userinfo.partition(":")
    if colon and password:
        register_secret(unquote(password))
    cut = min((i for i in map(address.find, "/?#") if i >= 0), default=len(address))
    hostport, tail = address[:cut], address[cut:]
    tail = tail.partition("#")[0]
    path, _, query = tail.partition("?")
    host, port = _host_port(hostport, var)
    extra: Optional[str] = None
    if query:
        items = dict(parse_qsl(query, keep_blank_values=True))
        extra = items["__extra__"] if "__extra__" in items else json.dumps(items)
    conn_type = scheme.lower().replace("-", "_")
    return ParsedConnection(
        conn_id=conn_id, conn_type="postgres" if conn_type == "postgresql" else conn_type,
        host=unquote(host) or None, port=port, login=unquote(login) or None,
        password=unquote(password) if colon else None, schema=unquote(path[1:]) or None, extra=extra,
    )


def _host_port(hostport: str, var: str) -> tuple[str, Optional[int]]:
    if hostport.startswith("["):  # [IPv6]:port
        host, _, after = hostport.partition("]")
        host, port = host[1:], after[1:] if after.startswith(":") else ""  # Airflow's host: no brackets
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not port:
        return host, None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"${var}: the port is not a number from 1 to 65535")
    return host, int(port)


def _from_json(value: str, conn_id: str, var: str) -> ParsedConnection:
    try:
        conn = json.loads(value)
    except ValueError:
        raise ConfigError(f"${var} is neither a URI nor valid JSON") from None
    if not isinstance(conn, dict) or "conn_type" not in conn:
        raise ConfigError(f"${var}: a JSON Airflow connection needs at least conn_type")
    extra = conn.get("extra")
    if isinstance(extra, dict):
        extra = json.dumps(extra)
    elif extra is not None and not isinstance(extra, str):
        raise ConfigError(f"${var}: its extra is neither a JSON object nor a string")
    port = conn.get("port")
    if port is not None and port != "":
        port = _host_port(f"h:{port}", var)[1]

    def text(key: str) -> Optional[str]:
        field_value = conn.get(key)
        if field_value is None or field_value == "":
            return None
        if not isinstance(field_value, (str, int)) or isinstance(field_value, bool):
            raise ConfigError(f"${var}: its {key} is not a string")
        return str(field_value)

    password = text("password")
    if password:
        register_secret(password)
    conn_type = str(conn["conn_type"]).lower().replace("-", "_")
    return ParsedConnection(
        conn_id=conn_id, conn_type="postgres" if conn_type == "postgresql" else conn_type, host=text("host"),
        port=port or None, login=text("login"), password=password, schema=text("schema"), extra=extra or None,
    )


def engine_for(conn: AirflowConnection, engine: Optional[str] = None) -> str:
    """The dbp engine for ``conn``: its type decides; ``engine`` must agree, or choose for type ``dbp``."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type not in CONN_TYPES:
        raise ConfigError(
            f"Airflow connection {conn.conn_id!r} has type {conn.conn_type!r}; dbp reads "
            + ", ".join(repr(t) for t in CONN_TYPES)
        )
    implied = CONN_TYPES[conn_type] or _extras(conn).get("engine")
    if engine is not None and engine not in ("sql", "mongo"):
        raise ConfigError(f"unknown engine {engine!r}; expected 'sql' or 'mongo'")
    if implied is not None and engine is not None and implied != engine:
        raise ConfigError(
            f"Airflow connection {conn.conn_id!r} is a {conn_type} connection ({implied}), not {engine}"
        )
    found = engine or implied
    if found not in ("sql", "mongo"):
        raise ConfigError(
            f"Airflow connection {conn.conn_id!r} has type 'dbp': name the engine ('sql' or 'mongo') "
            "in the hook or in the extra field 'engine'"
        )
    return str(found)


def section_for(
    conn: AirflowConnection,
    engine: str,
    *,
    database: Optional[str] = None,
    settings: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The ``DB_CONFIG`` section (``SQL`` or ``MONGO``) that ``conn`` describes.

    ``database`` replaces the connection's ``schema`` field; ``settings`` adds
    further keys of the section (``SCHEMA_DIR``, ``POOL``...), which win over
    the connection's.
    """
    if conn.password:
        register_secret(conn.password)
    extras = {k: v for k, v in _extras(conn).items() if k != "engine"}
    for key, value in extras.items():
        if isinstance(value, str) and is_secret_key(key):
            register_secret(value)
    where = f"Airflow connection {conn.conn_id!r}"
    named = [extras.pop(k) for k in ("database", "dbname") if k in extras]  # as some providers allow
    dbname = database or conn.schema or next((n for n in named if n), None)
    if not conn.host:
        raise ConfigError(f"{where} has no host")
    if not dbname:
        raise ConfigError(f"{where} names no database: set its schema field, or pass database=")
    section = _sql(conn, str(dbname), extras, where) if engine == "sql" else _mongo(conn, str(dbname), extras, where)
    for key, value in (settings or {}).items():
        section[str(key).upper()] = value
    return section


def _extras(conn: AirflowConnection) -> dict[str, Any]:
    extra_dejson = getattr(conn, "extra_dejson", None)
    if isinstance(extra_dejson, Mapping):  # Airflow's own parse, which also masks secret-looking values
        return dict(extra_dejson)
    if not conn.extra:
        return {}
    try:
        parsed = json.loads(conn.extra)
    except ValueError:
        raise ConfigError(f"Airflow connection {conn.conn_id!r}: its extra field is not JSON") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"Airflow connection {conn.conn_id!r}: its extra field is not a JSON object")
    return parsed


def _sql(conn: AirflowConnection, dbname: str, extras: dict[str, Any], where: str) -> dict[str, Any]:
    from dbp.engines import ENGINES

    if not conn.login:
        raise ConfigError(f"{where} has no login (the PostgreSQL user)")
    section: dict[str, Any] = {"HOST": conn.host, "USER": conn.login, "DB_NAME": dbname}
    if conn.port is not None:
        section["PORT"] = conn.port
    if conn.password is not None and conn.password != "":
        section["PASSWORD"] = conn.password
    address = {"host", "hostaddr", "port", "user", "password", "dbname"}
    fields = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password, "dbname": dbname}
    clash = sorted(k for k in address & set(extras) if k not in fields or str(extras[k]) != str(fields[k]))
    if clash:
        raise ConfigError(f"{where}: extra(s) {', '.join(clash)} would change the address; set the fields instead")
    # The SQL engine through the registry: a shared module imports no engine (import-linter's contracts).
    libpq_keywords: frozenset[str] = ENGINES["sql"].module("settings").libpq_keywords()
    known = libpq_keywords - address
    options = {k: v for k, v in extras.items() if k in known and isinstance(v, (str, int, float, bool))}
    ignored = sorted(set(extras) - set(options))
    if ignored:
        log.info("%s: extra(s) that are not libpq parameters left to Airflow: %s", where, ", ".join(ignored))
    if options:
        section["OPTIONS"] = options
    return section


def _mongo(conn: AirflowConnection, dbname: str, extras: dict[str, Any], where: str) -> dict[str, Any]:
    srv = _truthy(extras.pop("srv", False))
    tls = _truthy(extras.get("tls", False)) or _truthy(extras.get("ssl", False))
    if _truthy(extras.pop("allow_insecure", False)) and tls:  # as Airflow's MongoHook: only with TLS
        extras["tlsAllowInvalidCertificates"] = True
    section: dict[str, Any] = {"DATABASE": dbname}
    auth_source = extras.pop("authSource", None) or extras.pop("auth_source", None)
    if not auth_source and conn.login:
        # Airflow's MongoHook puts the schema field in the URI's path, which makes it the
        # database the credentials are checked against; the same here.
        auth_source = conn.schema or dbname
    if auth_source:
        section["AUTH_SOURCE"] = auth_source
    if srv:  # SRV names a DNS record, not a host and port: only the URL form says it
        userinfo = quote(conn.login or "", safe="")
        if conn.password:
            userinfo += ":" + quote(conn.password, safe="")
        section["URL"] = "mongodb+srv://" + (userinfo + "@" if userinfo else "") + f"{conn.host}/"
    else:
        section["HOST"] = conn.host
        if conn.port is not None:
            section["PORT"] = conn.port
        if conn.login:
            section["USERNAME"] = conn.login
        if conn.password is not None and conn.password != "":
            section["PASSWORD"] = conn.password
    for key, value in extras.items():
        if key.upper() in section or key.upper() in ("URL", "HOST", "PORT", "USERNAME", "PASSWORD", "DATABASE",
                                                     "SCHEMA_DIR"):
            raise ConfigError(f"{where}: extra {key!r} would change the address; set the fields instead")
        section[key] = value  # MongoClient options match names case-insensitively
    return section


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE)
