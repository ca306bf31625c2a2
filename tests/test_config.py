"""DB_CONFIG loading: file forms, search order, overrides and every error case."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dbp import ConfigError, load_config
from dbp.config import find_settings, resolve_config

TOML = """
[DB_CONFIG.SQL]
ENGINE = "postgresql"
HOST = "db.example.org"
USER = "alerce"
PASSWORD = "pw-toml-1"
PORT = 5433
DB_NAME = "ztf"

[DB_CONFIG.SQL.OPTIONS]
sslmode = "prefer"
application_name = "broker"

[DB_CONFIG.MONGO]
HOST = "mongo.example.org"
USERNAME = "alerce"
PASSWORD = "pw-toml-1"
PORT = 27018
DATABASE = "ztf"
AUTH_SOURCE = "admin"
"""

PY = """
DB_CONFIG = {
    "SQL": {
        "ENGINE": "postgresql",
        "HOST": "db.example.org",
        "USER": "alerce",
        "PASSWORD": "pw-toml-1",
        "PORT": 5433,
        "DB_NAME": "ztf",
        "OPTIONS": {"sslmode": "prefer", "application_name": "broker"},
    },
    "MONGO": {
        "HOST": "mongo.example.org",
        "USERNAME": "alerce",
        "PASSWORD": "pw-toml-1",
        "PORT": 27018,
        "DATABASE": "ztf",
        "AUTH_SOURCE": "admin",
    },
}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_toml_and_python_give_the_same_dict(tmp_path: Path) -> None:
    from_toml = load_config(write(tmp_path / "dbp.toml", TOML), environ={})
    from_py = load_config(write(tmp_path / "settings.py", PY), environ={})
    assert dict(from_toml) == dict(from_py)
    assert from_toml["SQL"]["PORT"] == 5433
    sql = from_toml.settings("sql")
    assert sql.address == "db.example.org:5433/ztf"
    assert sql.params["sslmode"] == "prefer"  # type: ignore[attr-defined]
    assert sql.params["connect_timeout"] == 5  # type: ignore[attr-defined]
    mongo = from_py.settings("mongo")
    assert mongo.address == "mongo.example.org:27018/ztf"
    assert mongo.options["authSource"] == "admin"  # type: ignore[attr-defined]
    assert mongo.options["serverSelectionTimeoutMS"] == 5000  # type: ignore[attr-defined]


def test_search_order(tmp_path: Path) -> None:
    explicit = write(tmp_path / "explicit.toml", TOML)
    from_env = write(tmp_path / "env.py", PY)
    (tmp_path / "dbp.toml").write_text(TOML)
    (tmp_path / "settings.py").write_text(PY)
    env = {"DBP_SETTINGS": str(from_env)}
    assert find_settings(explicit, cwd=tmp_path, environ=env) == explicit
    assert find_settings(None, cwd=tmp_path, environ=env) == from_env
    assert find_settings(None, cwd=tmp_path, environ={}) == tmp_path / "dbp.toml"
    (tmp_path / "dbp.toml").unlink()
    assert find_settings(None, cwd=tmp_path, environ={}) == tmp_path / "settings.py"
    (tmp_path / "settings.py").unlink()
    assert find_settings(None, cwd=tmp_path, environ={}) is None


def test_nothing_found_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no settings found"):
        load_config(environ={})
    with pytest.raises(ConfigError, match=r"DBP_SETTINGS.*does not exist"):
        load_config(environ={"DBP_SETTINGS": str(tmp_path / "nope.toml")})


def test_keys_are_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", """
        [DB_CONFIG.sql]
        host = "h"
        User = "u"
        db_name = "d"
        [DB_CONFIG.Mongo]
        url = "mongodb://m1:27017,m2:27017/?replicaSet=rs0"
        database = "x"
        server_selection_timeout_ms = 1500
    """)
    config = load_config(path, environ={})
    assert config["SQL"] == {"HOST": "h", "USER": "u", "DB_NAME": "d"}
    assert config.settings("sql").address == "h:5432/d"
    mongo = config.settings("mongo")
    assert mongo.address == "m1:27017,m2:27017/x"
    assert mongo.timeout_seconds == 1.5  # type: ignore[attr-defined]


def test_duplicate_keys_differing_in_case_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.py", 'DB_CONFIG = {"SQL": {"HOST": "a", "host": "b"}}')
    with pytest.raises(ConfigError, match="HOST is given twice"):
        load_config(path, environ={})


@pytest.mark.parametrize("mongo", ['[DB_CONFIG.mongo]\nDATABASE = "d"\n[DB_CONFIG.MONGO]\nDATABASE = "e"\n',
                                   '[DB_CONFIG.MONGO]\nDATABASE = "d"\ndatabase = "e"\n'])
def test_a_section_or_key_given_twice_is_that_engines_mistake_alone(tmp_path: Path, mongo: str) -> None:
    path = write(tmp_path / "dbp.toml", '[DB_CONFIG.SQL]\nURL = "postgresql://u@h/d"\n' + mongo)
    with pytest.raises(ConfigError, match="is given twice"):
        load_config(path, environ={})  # every engine: the mistake is the error
    config = load_config(path, environ={}, engines=["sql"])  # the SQL side alone goes on
    assert config.settings("sql").address == "h:5432/d"
    with pytest.raises(ConfigError, match=r"DB_CONFIG\.MONGO.*is given twice|section MONGO is given twice"):
        config.settings("mongo")


def test_a_folder_named_dbp_toml_is_named_as_such(tmp_path: Path) -> None:
    from dbp.config import find_project

    (tmp_path / "dbp.toml").mkdir()
    below = tmp_path / "sub"
    below.mkdir()
    with pytest.raises(ConfigError, match=r"dbp\.toml is a folder, not dbp's settings file"):
        find_project(below)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p%40ss@h:6000/db", {"host": "h", "port": 6000, "user": "u", "dbname": "db"}),
        ("postgres://u@h/db?sslmode=require", {"host": "h", "dbname": "db", "sslmode": "require"}),
        (  # Airflow's Connection.get_uri(): postgres:// and __extra__, which libpq rejects
            "postgres://u:pw@h:5432/db?__extra__=%7B%22sslmode%22%3A+%22verify-full%22%2C+%22cursor%22%3A+%22dict%22%7D",
            {"host": "h", "port": 5432, "sslmode": "verify-full"},
        ),
        ("postgresql://u@h/db?cursor=realdictcursor&application_name=x", {"application_name": "x"}),
        ("postgresql://postgres@/db?host=/tmp/sock&port=5432", {"host": "/tmp/sock", "dbname": "db"}),
    ],
)
def test_sql_urls(url: str, expected: dict[str, Any]) -> None:
    settings = resolve_config({"SQL": {"URL": url}}, environ={}).settings("sql")
    params = settings.params  # type: ignore[attr-defined]
    for key, value in expected.items():
        assert params[key] == value
    assert "__extra__" not in params and "cursor" not in params


def test_env_url_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "dbp.toml", TOML)
    env = {"DBP_SQL_URL": "postgresql://other@o:7000/odb", "DBP_MONGO_URL": "mongodb://mo:27000/"}
    config = load_config(path, environ=env)
    assert config.settings("sql").address == "o:7000/odb"
    assert config["SQL"]["OPTIONS"]["application_name"] == "broker"  # non-address keys stay
    assert config.settings("mongo").address == "mo:27000/ztf"  # DATABASE stays from the file


def test_env_url_alone_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={"DBP_SQL_URL": "postgresql://u@h/d"})
    assert list(config) == ["SQL"]
    assert config.source is None


def test_env_expansion_in_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "dbp.toml", """
        [DB_CONFIG.SQL]
        HOST = "${PGHOST_X}"
        USER = "u"
        PASSWORD = "${SECRET_PW}"
        PORT = "${PORT_X}"
        DB_NAME = "price$$list"
    """)
    config = load_config(path, environ={"PGHOST_X": "h", "SECRET_PW": "from-env", "PORT_X": "6543"})
    assert config["SQL"]["PASSWORD"] == "from-env"
    assert config["SQL"]["DB_NAME"] == "price$list"
    assert config.settings("sql").address == "h:6543/price$list"
    with pytest.raises(ConfigError, match=r"\$\{SECRET_PW\} but environment variable SECRET_PW is not set"):
        load_config(path, environ={"PGHOST_X": "h", "PORT_X": "1"})


def test_airflow_connection_by_id(tmp_path: Path) -> None:
    path = write(tmp_path / "dbp.toml", """
        [DB_CONFIG.SQL]
        AIRFLOW_CONN_ID = "alerce_pg"
        [DB_CONFIG.MONGO]
        AIRFLOW_CONN_ID = "alerce-mongo"
        DATABASE = "ztf"
    """)
    json_conn = json.dumps({
        "conn_type": "mongo", "host": "mh", "port": 27017, "login": "u", "password": "p/w",
        "schema": "", "extra": {"authSource": "admin"},
    })
    env = {
        "AIRFLOW_CONN_ALERCE_PG": "postgres://u:pw@ah:5432/adb?__extra__=%7B%7D",
        "AIRFLOW_CONN_ALERCE_MONGO": json_conn,
    }
    config = load_config(path, environ=env)
    assert config.settings("sql").address == "ah:5432/adb"
    mongo = config.settings("mongo")
    assert mongo.address == "mh:27017/ztf"
    assert mongo.options["authSource"] == "admin"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"\$AIRFLOW_CONN_ALERCE_PG is not set"):
        load_config(path, environ={"AIRFLOW_CONN_ALERCE_MONGO": json_conn})


def test_mongo_snake_case_options_become_camel_case() -> None:
    config = resolve_config(
        {"MONGO": {"HOST": "h", "DATABASE": "d", "max_pool_size": 7, "retry_writes": False}}, environ={}
    )
    options = config.settings("mongo").options  # type: ignore[attr-defined]
    assert options["maxPoolSize"] == 7
    assert options["retryWrites"] is False


def test_section_dict_in_db_plugins_style() -> None:
    config = resolve_config({"HOST": "h", "USER": "u", "DB_NAME": "d", "PORT": 1}, engine="sql", environ={})
    assert config.settings("sql").address == "h:1/d"


def test_repr_hides_passwords(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "dbp.toml", TOML), environ={})
    assert "pw-toml-1" not in repr(config)
    assert "pw-toml-1" not in str(config)
    assert "pw-toml-1" not in repr(config["SQL"])
    assert "pw-toml-1" not in repr(config.settings("sql"))
    assert "pw-toml-1" not in repr(config.settings("mongo"))
    url_config = resolve_config({"SQL": {"URL": "postgresql://u:url-pw-9@h/d"}}, environ={})
    assert "url-pw-9" not in repr(url_config)


# -- errors: each one ConfigError, one line, naming the problem ---------------

BAD_CONFIGS = {
    "toml-syntax": ("dbp.toml", '[DB_CONFIG.SQL]\nHOST = "h"\nUSER = \n', r"invalid TOML.*line 3"),
    "missing-keys": ("dbp.toml", '[DB_CONFIG.SQL]\nENGINE = "postgresql"\n',
                     r"missing key\(s\) HOST, USER, DB_NAME"),
    "bad-port": ("dbp.toml", '[DB_CONFIG.SQL]\nHOST="h"\nUSER="u"\nDB_NAME="d"\nPORT = "5432x"\n',
                 r"PORT must be a port number.*'5432x'"),
    "bool-port": ("dbp.toml", '[DB_CONFIG.MONGO]\nHOST="h"\nDATABASE="d"\nPORT = true\n',
                  r"MONGO.PORT must be a port number"),
    "unknown-engine": ("dbp.toml", '[DB_CONFIG.SQL]\nENGINE="mysql"\nHOST="h"\nUSER="u"\nDB_NAME="d"\n',
                       r"unknown engine 'mysql'"),
    "unknown-key": ("dbp.toml", '[DB_CONFIG.SQL]\nHOST="h"\nUSER="u"\nDB_NAME="d"\nPASWORD="x"\n',
                    r"unknown key\(s\) PASWORD"),
    "unknown-section": ("dbp.toml", '[DB_CONFIG.REDIS]\nHOST="h"\n', r"unknown section DB_CONFIG.REDIS"),
    "no-db-config": ("dbp.toml", '[SQL]\nHOST="h"\n', r"no \[DB_CONFIG\] table"),
    "url-and-host": ("dbp.toml", '[DB_CONFIG.SQL]\nURL="postgresql://h/d"\nHOST="h"\n',
                     r"either URL or HOST"),
    "wrong-scheme": ("dbp.toml", '[DB_CONFIG.SQL]\nURL="mysql://h/d"\n', r"scheme mysql:// is not PostgreSQL"),
    "bad-option": ("dbp.toml", '[DB_CONFIG.SQL]\nURL="postgresql://h/d"\n[DB_CONFIG.SQL.OPTIONS]\nfoo=1\n',
                   r"OPTIONS.foo: not a libpq connection parameter"),
    "mongo-no-db": ("dbp.toml", '[DB_CONFIG.MONGO]\nURL="mongodb://h:1/"\n', r"missing key DATABASE"),
    "py-syntax": ("settings.py", "DB_CONFIG = {\n  'SQL': {'HOST': 'h',,}\n}\n", r"Python syntax error at line 2"),
    "py-raises": ("settings.py", "import os\nDB_CONFIG = {'SQL': {'HOST': os.environ['NO_SUCH_VAR_X']}}\n",
                  r"line 2 reads environment variable NO_SUCH_VAR_X .*, which is not set"),
    "py-raises-keyerror": ("settings.py", "x = {}\nDB_CONFIG = {'SQL': {'HOST': x['host']}}\n",
                           r"raised KeyError at line 2$"),
    "py-no-db-config": ("settings.py", "CONFIG = {}\n", r"does not define DB_CONFIG"),
    "py-not-a-dict": ("settings.py", "DB_CONFIG = ['SQL']\n", r"DB_CONFIG must be a table/dict"),
    "bad-pool": ("settings.py", "DB_CONFIG = {'SQL': {'URL': 'postgresql://h/d', 'POOL': {'size': 3}}}\n",
                 r"POOL.size: unknown pool setting"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_raises_config_error(tmp_path: Path, case: str) -> None:
    name, text, pattern = BAD_CONFIGS[case]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path, environ={})
    assert "\n" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_config(binary, environ={})
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path / "locked.py", PY)
        locked.chmod(0)
        with pytest.raises(ConfigError, match="cannot read settings file"):
            load_config(locked, environ={})
