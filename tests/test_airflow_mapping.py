"""Airflow connections as dbp settings (``dbp.airflow.mapping``), without Airflow.

Airflow's ``Connection`` is plain data (type, host, port, login, password,
schema, extra); :class:`Conn` carries the same fields. What Airflow itself
does with them is checked by tests/test_airflow.py under a real Airflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import unquote

import pytest
from psycopg.conninfo import conninfo_to_dict

from dbp.airflow import get_provider_info
from dbp.airflow.mapping import engine_for, section_for
from dbp.config import resolve_config
from dbp.errors import ConfigError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from tests.conftest import ROOT, unique_name

HOSTILE = "p@ss w:rd/%?#&='\"\\é$${X}"


@dataclass
class Conn:
    conn_type: Optional[str]
    host: Optional[str] = "db.example.org"
    port: Optional[int] = None
    login: Optional[str] = "alerce"
    password: Optional[str] = None
    schema: Optional[str] = "ztf"
    extra: Optional[str] = None
    conn_id: str = "c1"


def settings_of(conn: Conn, engine: Optional[str] = None, **kw: Any) -> Any:
    found = engine_for(conn, engine)
    section = section_for(conn, found, **kw)
    key = "SQL" if found == "sql" else "MONGO"
    return resolve_config({key: section}, environ={}).settings(found)


def test_postgres_fields_and_libpq_extras() -> None:
    extra = {"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem", "application_name": "ingest",
             "keepalives_idle": 30, "cursor": "dictcursor", "iam": False, "sqlalchemy_options": {"a": 1}}
    settings = settings_of(Conn("postgres", port=6543, password=HOSTILE, extra=json.dumps(extra)))
    assert isinstance(settings, SQLSettings)
    params = dict(settings.params)
    assert params["host"] == "db.example.org" and params["port"] == 6543
    assert params["user"] == "alerce" and params["dbname"] == "ztf" and params["password"] == HOSTILE
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == "/etc/ca.pem"
    assert params["application_name"] == "ingest" and str(params["keepalives_idle"]) == "30"
    for airflow_only in ("cursor", "iam", "sqlalchemy_options"):
        assert airflow_only not in params
    assert HOSTILE not in repr(settings) and HOSTILE not in settings.masked_url()


def test_postgresql_type_and_database_override() -> None:
    settings = settings_of(Conn("postgresql", schema=None, extra='{"dbname": "fromextra"}'))
    assert settings.database == "fromextra"
    assert settings_of(Conn("postgres"), database="other").database == "other"


@pytest.mark.parametrize("key", ["host", "hostaddr", "port", "user", "password"])
def test_postgres_extras_cannot_move_the_address(key: str) -> None:
    with pytest.raises(ConfigError, match="would change the address"):
        settings_of(Conn("postgres", schema="db", extra=json.dumps({key: "elsewhere", "database": "x"})))


def test_mongo_fields_extras_and_auth_source() -> None:
    extra = {"ssl": "true", "allow_insecure": "true", "replicaSet": "rs0", "connectTimeoutMS": 3000}
    settings = settings_of(Conn("mongo", port=27018, password=HOSTILE, extra=json.dumps(extra)))
    assert isinstance(settings, MongoSettings)
    options = {k.lower(): v for k, v in settings.options.items()}
    assert settings.host == "db.example.org" and options["port"] == 27018 and settings.database == "ztf"
    assert options["username"] == "alerce" and options["password"] == HOSTILE
    # Airflow's MongoHook puts the schema in the URI path: the credentials' database.
    assert options["authsource"] == "ztf"
    assert options["tlsallowinvalidcertificates"] is True and options["ssl"] == "true"
    assert options["replicaset"] == "rs0" and options["connecttimeoutms"] == 3000
    assert "allow_insecure" not in options and "srv" not in options
    assert HOSTILE not in repr(settings) and HOSTILE not in settings.masked_url()


def test_mongo_explicit_auth_source_and_insecure_needs_tls() -> None:
    settings = settings_of(Conn("mongo", extra='{"authSource": "admin", "allow_insecure": true}'))
    options = {k.lower(): v for k, v in settings.options.items()}
    assert options["authsource"] == "admin" and "tlsallowinvalidcertificates" not in options
    anonymous = settings_of(Conn("mongo", login=None))
    assert "authsource" not in {k.lower() for k in anonymous.options}


def test_mongo_srv_is_a_url_with_quoted_credentials() -> None:
    settings = settings_of(Conn("mongo", host="cluster.example.org", port=27017, password=HOSTILE,
                                extra='{"srv": true}'))
    assert settings.host.startswith("mongodb+srv://alerce:") and settings.host.endswith("@cluster.example.org/")
    assert HOSTILE not in settings.host  # percent-encoded
    assert "port" not in settings.options
    assert HOSTILE in list(settings.secrets())
    assert HOSTILE not in settings.masked_url()


@pytest.mark.parametrize("key", ["host", "HOST", "port", "username", "password", "url"])
def test_mongo_extras_cannot_move_the_address(key: str) -> None:
    with pytest.raises(ConfigError, match="would change the address"):
        settings_of(Conn("mongo", extra=json.dumps({key: "elsewhere"})))


def test_engine_choice() -> None:
    assert engine_for(Conn("postgres")) == "sql"
    assert engine_for(Conn("Mongo")) == "mongo"
    assert engine_for(Conn("dbp"), "mongo") == "mongo"
    assert engine_for(Conn("dbp", extra='{"engine": "sql"}')) == "sql"
    with pytest.raises(ConfigError, match="name the engine"):
        engine_for(Conn("dbp"))
    with pytest.raises(ConfigError, match="is a postgres connection"):
        engine_for(Conn("postgres"), "mongo")
    with pytest.raises(ConfigError, match="has type 'http'"):
        engine_for(Conn("http"))
    with pytest.raises(ConfigError, match="unknown engine"):
        engine_for(Conn("postgres"), "mysql")


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        (Conn("postgres", host=None), "has no host"),
        (Conn("postgres", schema=None), "names no database"),
        (Conn("postgres", login=None), "has no login"),
        (Conn("postgres", extra="{not json"), "not JSON"),
        (Conn("postgres", extra="[1, 2]"), "not a JSON object"),
        (Conn("postgres", port=0), "PORT"),
    ],
)
def test_bad_connections_are_one_config_error(conn: Conn, message: str) -> None:
    conn.password = HOSTILE
    with pytest.raises(ConfigError, match=message) as info:
        settings_of(conn)
    assert HOSTILE not in str(info.value)


def test_settings_add_keys() -> None:
    settings = settings_of(Conn("postgres"), settings={"schema_dir": str(ROOT / "sql")})
    assert settings.schema_dir == ROOT / "sql"


def test_sql_connection_from_airflow_fields_reaches_the_server(sql_server_url: str) -> None:
    params = conninfo_to_dict(sql_server_url)
    conn = Conn("postgres", host=params.get("host"), port=int(params.get("port") or 5432),
                login=params.get("user", "postgres"), schema=params.get("dbname", "postgres"),
                extra='{"application_name": "dbp-airflow-test", "cursor": "realdictcursor"}')
    settings = settings_of(conn)
    with SQLConnection(settings=settings) as db:
        row = db.execute("SELECT current_setting('application_name') AS name").fetchone()
    assert row is not None and row["name"] == "dbp-airflow-test"


def test_mongo_connection_from_airflow_fields_reaches_the_server(mongo_server_url: str) -> None:
    netloc = mongo_server_url.partition("://")[2].partition("/")[0].partition("?")[0]
    userinfo, _, address = netloc.rpartition("@")
    host, _, port = address.rpartition(":")
    user, _, password = userinfo.partition(":")  # the local server's own credentials, if it has them
    name = unique_name()
    extra = '{"directConnection": true, "authSource": "admin"}' if user else '{"directConnection": true}'
    settings = settings_of(Conn("mongo", host=host, port=int(port), login=unquote(user) or None,
                                password=unquote(password) or None, schema=name, extra=extra))
    try:
        with MongoConnection(settings=settings) as db:
            db.query("probe").bulk_insert([{"_id": 1}, {"_id": 1}], on_conflict="ignore")
            assert db.query("probe").count() == 1
    finally:
        MongoConnection(settings=settings).drop_db()


def test_provider_info_names_the_installed_distribution() -> None:
    from importlib.metadata import entry_points

    info = get_provider_info()
    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("dbp.airflow")]
    assert ep.dist is not None
    assert info["package-name"] == ep.dist.name.lower().replace("_", "-").replace(".", "-")
    assert info["connection-types"][0]["hook-class-name"] == "dbp.airflow.hook.DbpHook"


def test_importing_dbp_and_its_mapping_loads_no_airflow() -> None:
    code = (
        "import sys, dbp, dbp.airflow, dbp.airflow.mapping; dbp.airflow.get_provider_info(); "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
