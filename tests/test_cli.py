"""``python -m dbp`` as a user runs it: exit codes, one-line errors, no secrets anywhere."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import dbp
from dbp import ConfigError, DbpError
from dbp.config import load_config
from dbp.engines import ENGINES
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.settings import SQLSettings

from .conftest import sql_section, with_userinfo
from .test_config import BAD_CONFIGS
from .test_connections import closed_port


def test_version_and_help(run_dbp: Any) -> None:
    version = run_dbp("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"dbp {dbp.__version__}"
    helped = run_dbp("--help")
    assert helped.returncode == 0
    assert "check-config" in helped.stdout and "local" in helped.stdout


def test_usage_error_exits_2(run_dbp: Any) -> None:
    assert run_dbp("no-such-command").returncode == 2
    assert run_dbp().returncode == 2


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_78_with_one_line(run_dbp: Any, tmp_path: Path, case: str) -> None:
    name, text, pattern = BAD_CONFIGS[case]
    (tmp_path / name).write_text(text)
    result = run_dbp("check-config", "--settings", name)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dbp: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr


def test_missing_settings_exits_78(run_dbp: Any) -> None:
    result = run_dbp("check-config")
    assert result.returncode == 78
    assert "no settings found" in result.stderr


def test_check_config_reports_reachable(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    (tmp_path / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo_settings.host}"\nDATABASE = "{mongo_settings.database}"\n'
    )
    with MongoConnection(settings=mongo_settings) as db:  # an empty Mongo database does not exist: MISSING
        db.create_db()
    result = run_dbp("check-config")
    assert result.returncode == 0, result.stderr
    assert "settings: " in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "reachable" in lines["sql"] and "PostgreSQL" in lines["sql"]
    assert "reachable" in lines["mongo"] and "MongoDB" in lines["mongo"]
    only_sql = run_dbp("check-config", "--engine", "sql")
    assert only_sql.returncode == 0
    assert "mongo" not in only_sql.stdout


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_down_server_exits_69_within_timeout(run_dbp: Any, tmp_path: Path, engine: str) -> None:
    port = closed_port()
    if engine == "sql":
        text = (f'[DB_CONFIG.SQL]\nHOST="127.0.0.1"\nPORT={port}\nUSER="u"\nDB_NAME="d"\n'
                '[DB_CONFIG.SQL.OPTIONS]\nconnect_timeout = 2\n')
        timeout = 2.0
    else:
        text = f'[DB_CONFIG.MONGO]\nHOST="127.0.0.1"\nPORT={port}\nDATABASE="d"\n'
        timeout = 5.0  # the default server-selection timeout
    (tmp_path / "dbp.toml").write_text(text)
    start = time.monotonic()
    result = run_dbp("check-config")
    elapsed = time.monotonic() - start
    assert result.returncode == 69, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("dbp: error: ")
    assert "Traceback" not in result.stderr
    # the budget: the timeout plus one second, plus the interpreter's own start-up
    assert elapsed < timeout + 1 + 1.5, elapsed


SECRET = "Sup3r-s3cret/pw@42"


@pytest.mark.parametrize("verbose", [[], ["-v"], ["-vv"]])
def test_no_secret_leaks_from_the_cli(
    run_dbp: Any, tmp_path: Path, mongo_settings: MongoSettings, verbose: list[str]
) -> None:
    """A refused password, a down server and a URL with a password: the secret appears nowhere."""
    port = closed_port()
    mongo_url = with_userinfo(mongo_settings.host, f"intruder:{quote(SECRET, safe='')}")
    (tmp_path / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nHOST="127.0.0.1"\nPORT={port}\nUSER="u"\nDB_NAME="d"\nPASSWORD="{SECRET}"\n'
        f'[DB_CONFIG.MONGO]\nURL="{mongo_url}"\nDATABASE="d"\n'
    )
    result = run_dbp(*verbose, "check-config")
    assert result.returncode == 77  # SQL down (69), Mongo refused (77): a retry cannot cure the refusal
    output = result.stdout + result.stderr
    assert SECRET not in output
    assert quote(SECRET, safe="") not in output
    if verbose:
        assert "Traceback" in result.stderr
    # and through the URL override
    env_url = f"postgresql://u:{quote(SECRET, safe='')}@127.0.0.1:{port}/d"
    result = run_dbp(*verbose, "check-config", "--engine", "sql", env={"DBP_SQL_URL": env_url})
    assert result.returncode == 69
    output = result.stdout + result.stderr
    assert SECRET not in output and quote(SECRET, safe="") not in output


def test_no_secret_leaks_from_the_library(
    tmp_path: Path, mongo_settings: MongoSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    secret = quote("lib-" + SECRET, safe="")
    mongo_url = with_userinfo(mongo_settings.host, f"intruder:{secret}")
    path = tmp_path / "dbp.toml"
    path.write_text(
        f'[DB_CONFIG.SQL]\nURL="postgresql://u:{secret}@127.0.0.1:{port}/d"\n'
        f'[DB_CONFIG.MONGO]\nURL="{mongo_url}"\nDATABASE="d"\n'
    )
    config = load_config(path, environ={})
    texts = [repr(config), str(config), repr(config.settings("sql")), repr(config.settings("mongo"))]
    for engine in ("sql", "mongo"):
        conn = ENGINES[engine].connection_class()(config)
        texts.append(repr(conn))
        with pytest.raises(DbpError) as info:
            conn.connect()
        texts += [str(info.value), repr(info.value)]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert "lib-" + SECRET not in text
        assert SECRET not in text


def test_config_error_text_never_repeats_a_password(tmp_path: Path) -> None:
    path = tmp_path / "dbp.toml"
    path.write_text(f'[DB_CONFIG.SQL]\nHOST="h"\nUSER="u"\nDB_NAME="d"\nPASSWORD={SECRET!r}\nPORT="x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert SECRET not in str(info.value)
