"""The SQL migration ledger: yoyo's own tables, plus dbp's ``_dbp_schema`` marker.

yoyo's tables stay the record of applied migrations, so ``yoyo list`` agrees
with dbp. dbp adds one row in ``_dbp_schema``: the database was initialized
(or adopted) by dbp, when, and from which schema files.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dbp._version import __version__
from dbp.sql.connection import connect_error
from dbp.sql.settings import SQLSettings

__all__ = ["LedgerState", "advisory_key", "read_state", "yoyo_backend", "yoyo_url"]

log = logging.getLogger("dbp.sql")

MIGRATION_TABLE = "_yoyo_migration"
MARKER_TABLE = "_dbp_schema"
#: dbp's side of the ledger: content checksums, durations, failures.
LEDGER_TABLE = "_dbp_migrations"

LEDGER_DDL = sql.SQL(
    """CREATE TABLE IF NOT EXISTS {} (
    migration_id text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('applied', 'baseline', 'failed')),
    checksum text,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_s double precision,
    dbp_version text NOT NULL,
    host text NOT NULL,
    error text
)"""
).format(sql.Identifier(LEDGER_TABLE))

_MARKER_DDL = sql.SQL(
    """CREATE TABLE IF NOT EXISTS {} (
    id integer PRIMARY KEY CHECK (id = 1),
    initialized_at timestamptz NOT NULL DEFAULT now(),
    how text NOT NULL,
    dbp_version text NOT NULL,
    schema_dir text NOT NULL,
    schema_checksum text NOT NULL
)"""
).format(sql.Identifier(MARKER_TABLE))


def yoyo_url(settings: SQLSettings) -> str:
    """A ``postgresql+psycopg://`` URL for yoyo (it holds the password: never log it)."""
    params = dict(settings.params)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    auth = user + (":" + quote(str(password), safe="") if password else "")
    host = str(params.pop("host", ""))
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "")), safe="")
    if host.startswith("/") or "," in host:
        params["host"] = host
        host = ""
    if port is not None:
        params["port"] = port
    query = urlencode({k: str(v) for k, v in params.items()})
    netloc = f"{auth}@{host}" if auth else host
    return f"postgresql+psycopg://{netloc}/{dbname}" + (f"?{query}" if query else "")


@contextmanager
def yoyo_backend(settings: SQLSettings) -> Iterator[Any]:
    """yoyo's PostgreSQL backend on its own connection, without yoyo's start-up side effects.

    ``yoyo.get_backend`` creates yoyo's lock table at once; dbp creates yoyo's
    tables inside its own transactions instead, so a failure leaves none behind.
    """
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.connections import parse_uri

    failure = None
    try:
        # yoyo does not unquote the database in the URL path: give it the name itself
        uri = parse_uri(yoyo_url(settings))._replace(database=settings.database)
        backend = PostgresqlPsycopgBackend(uri, MIGRATION_TABLE)
    except psycopg.OperationalError as exc:
        failure = connect_error(exc, settings)
    if failure is not None:  # outside the handler: no __context__ keeps the driver's error
        raise failure
    try:
        yield backend
    finally:
        backend.connection.close()


def advisory_key(database: str) -> int:
    """The advisory-lock key of dbp's schema changes on ``database`` (a signed 64-bit int)."""
    digest = hashlib.sha256(f"dbp-migrate:{database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class LedgerState:
    #: Tables in ``public`` that are not dbp's or yoyo's own.
    user_tables: tuple[str, ...]
    #: yoyo's applied migration ids, in the order applied.
    applied: tuple[str, ...]
    #: dbp's marker row, if dbp initialized or adopted this database.
    marker: Optional[dict[str, Any]]
    has_yoyo_tables: bool = False
    has_ledger_table: bool = False

    @property
    def initialized(self) -> bool:
        return self.marker is not None

    @property
    def version(self) -> str:
        return self.applied[-1] if self.applied else "baseline (no migration applied)"


def read_state(conn: psycopg.Connection[Any]) -> LedgerState:
    from dbp.sql.catalog import LEDGER_TABLES

    with conn.cursor(row_factory=dict_row) as cur:
        names = [
            r["table_name"]
            for r in cur.execute(
                # information_schema.tables' relations, less partitions: they belong to their table
                "SELECT c.relname AS table_name FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'f', 'p') AND NOT c.relispartition "
                "ORDER BY c.relname"
            )
        ]
        applied: list[str] = []
        if MIGRATION_TABLE in names:
            query = sql.SQL("SELECT migration_id FROM {} ORDER BY applied_at_utc, migration_id")
            applied = [r["migration_id"] for r in cur.execute(query.format(sql.Identifier(MIGRATION_TABLE)))]
        marker = None
        if MARKER_TABLE in names:
            marker = cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(MARKER_TABLE))).fetchone()
    user_tables = tuple(n for n in names if n not in LEDGER_TABLES)
    return LedgerState(user_tables, tuple(applied), marker, MIGRATION_TABLE in names, LEDGER_TABLE in names)


def ensure_yoyo_tables(backend: Any) -> None:
    """Create yoyo's tables (its current internal schema) in the open transaction."""
    from yoyo import internalmigrations

    if internalmigrations.needs_upgrading(backend):
        internalmigrations.upgrade(backend)
    backend.create_lock_table()


def mark_applied(backend: Any, migration_ids: Sequence[str], migrations: Any) -> None:
    """Record ``migration_ids`` as applied in yoyo's ledger, as ``yoyo mark`` does."""
    by_id = {m.id: m for m in migrations}
    for migration_id in migration_ids:
        backend.mark_one(by_id[migration_id])


def write_marker(conn: psycopg.Connection[Any], how: str, schema_dir: str, checksum: str) -> None:
    conn.execute(_MARKER_DDL)
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, how, dbp_version, schema_dir, schema_checksum) VALUES (1, %s, %s, %s, %s)"
        ).format(sql.Identifier(MARKER_TABLE)),
        (how, __version__, schema_dir, checksum),
    )


def format_marker(marker: dict[str, Any]) -> str:
    when = marker.get("initialized_at")
    stamp = when.strftime("%Y-%m-%d %H:%M UTC") if isinstance(when, datetime) else "?"
    return f"{marker.get('how', 'initialized')} by dbp {marker.get('dbp_version', '?')} on {stamp}"
