"""Issue 20, item 15: an ``AIRFLOW_CONN_*`` variable maps exactly as ``DbpHook`` maps the same connection.

Airflow stores a connection as JSON, or as a URI whose extras are plain query
parameters (all strings) or one ``__extra__`` JSON parameter (whenever an extra
is not a string). Every form must give the settings that
``dbp.airflow.mapping.section_for`` gives for the connection's fields; before,
the ``__extra__`` form of a MongoDB connection lost ``tls``, ``tlsCAFile`` and
``authSource``. No Airflow is needed (none is imported).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote, urlencode

import pytest

from dbp.airflow.mapping import engine_for, section_for
from dbp.config import resolve_config
from dbp.errors import ConfigError

PASSWORD = "p@ss w:rd/%?#&='é"


@dataclass
class Conn:
    conn_type: str
    host: str = "db.example.org"
    port: Optional[int] = 6000
    login: Optional[str] = "alerce"
    password: Optional[str] = PASSWORD
    schema: Optional[str] = "ztf"
    extras: dict[str, Any] = field(default_factory=dict)
    conn_id: str = "c1"

    @property
    def extra(self) -> Optional[str]:
        return json.dumps(self.extras) if self.extras else None


def _netloc(c: Conn) -> str:
    userinfo = quote(c.login or "", safe="") + (":" + quote(c.password, safe="") if c.password else "")
    return (userinfo + "@" if userinfo else "") + c.host + (f":{c.port}" if c.port else "")


def forms(c: Conn) -> dict[str, str]:
    """The variable's value in each form Airflow writes (``Connection.get_uri`` / ``as_json``)."""
    base = f"{c.conn_type}://{_netloc(c)}/{quote(c.schema or '', safe='')}"
    out = {
        "json": json.dumps({"conn_type": c.conn_type, "host": c.host, "port": c.port, "login": c.login,
                            "password": c.password, "schema": c.schema, "extra": c.extras}),
        "json-extra-string": json.dumps({"conn_type": c.conn_type, "host": c.host, "port": c.port,
                                         "login": c.login, "password": c.password, "schema": c.schema,
                                         "extra": json.dumps(c.extras)}),
        "uri-__extra__": base + "?" + urlencode({"__extra__": json.dumps(c.extras)}),
    }
    if all(isinstance(v, str) for v in c.extras.values()):
        out["uri-strings"] = base + "?" + urlencode(c.extras)
    return out


def by_hook(c: Conn, section: dict[str, Any]) -> Any:
    engine = engine_for(c)
    key = "SQL" if engine == "sql" else "MONGO"
    return resolve_config({key: section_for(c, engine, settings=section)}, environ={}).settings(engine)


def by_env(c: Conn, value: str, section: dict[str, Any]) -> Any:
    engine = "sql" if c.conn_type.startswith("postgres") else "mongo"
    key = "SQL" if engine == "sql" else "MONGO"
    return resolve_config({key: {"AIRFLOW_CONN_ID": c.conn_id, **section}},
                          environ={"AIRFLOW_CONN_C1": value}).settings(engine)


CONNS = [
    Conn("mongo", extras={"tls": "true", "tlsCAFile": "/etc/ca.pem", "authSource": "admin"}),
    Conn("mongo", extras={"tls": True, "tlsCAFile": "/etc/ca.pem", "authSource": "admin", "connectTimeoutMS": 2000}),
    Conn("mongo", extras={"ssl": True, "allow_insecure": True, "replicaSet": "rs0"}, login=None, password=None),
    Conn("mongo", extras={}, schema="other"),
    Conn("postgres", extras={"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem", "application_name": "ingest"}),
    Conn("postgres", extras={"sslmode": "require", "keepalives_idle": 30, "cursor": "dictcursor"}),
    Conn("postgres", extras={}),
]


@pytest.mark.parametrize("conn", CONNS, ids=[f"{c.conn_type}-{sorted(c.extras)}" for c in CONNS])
def test_every_form_maps_like_the_hook(conn: Conn) -> None:
    section = {"DATABASE": "ztf"} if conn.conn_type == "mongo" else {}
    expected = by_hook(conn, section)
    for form, value in forms(conn).items():
        assert by_env(conn, value, section) == expected, form


def test_mongo_tls_extras_survive_the_extra_parameter() -> None:
    conn = CONNS[1]
    value = forms(conn)["uri-__extra__"]
    settings = by_env(conn, value, {"DATABASE": "ztf"})
    options = {k.lower(): v for k, v in settings.options.items()}
    assert options["tls"] is True and options["tlscafile"] == "/etc/ca.pem" and options["authsource"] == "admin"
    assert options["connecttimeoutms"] == 2000


def test_bad_variables_are_one_config_error() -> None:
    for value, message in [("{not json", "neither a URI nor valid JSON"), ('{"host": "h"}', "needs at least conn_type"),
                           ("mongo://h:99999/db", "port"),
                           ("mongo://u:p@Zq9W/x@h/db", "percent-encode"),
                           ("postgres://u:pw@h/db", "is a postgres connection")]:
        with pytest.raises(ConfigError, match=message) as info:
            resolve_config({"MONGO": {"AIRFLOW_CONN_ID": "c1", "DATABASE": "d"}},
                           environ={"AIRFLOW_CONN_C1": value}).settings("mongo")
        assert "\n" not in str(info.value) and "Zq9W" not in str(info.value)


def test_no_airflow_was_imported() -> None:
    assert not any(name == "airflow" or name.startswith("airflow.") for name in sys.modules)
