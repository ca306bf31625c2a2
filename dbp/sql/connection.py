"""The PostgreSQL connection: psycopg 3, rows as dicts, optional psycopg_pool."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional, Union, cast

import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import DictRow, dict_row

from dbp._redact import shown
from dbp.connection import Connection
from dbp.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseNotFound,
    DbpError,
    FilterError,
    OperationError,
    ServerUnavailable,
)
from dbp.sql.errors import query_error
from dbp.sql.settings import DEFAULT_CONNECT_TIMEOUT, SQLSettings

if TYPE_CHECKING:
    from dbp.sql.catalog import Catalog, Table
    from dbp.sql.query import SQLQuery

__all__ = ["SQLConnection"]

log = logging.getLogger("dbp.sql")

PgConnection = psycopg.Connection[DictRow]
#: A statement: a literal string, or one composed with :mod:`psycopg.sql`.
QueryText = Union[str, bytes, sql.Composable]
#: Databases to connect to when creating or dropping the configured one.
MAINTENANCE_DATABASES = ("postgres", "template1")


def reason(exc: BaseException) -> str:
    """The cause in a psycopg error, without libpq's "connection to server at ..." preamble."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for marker in ("failed: ", "connection failed: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.replace("FATAL:  ", "").strip()


#: libpq / server messages at connection time that mean the credentials were refused (SQLSTATE class 28).
_AUTH_FAILURES = (
    "password authentication failed", "no password supplied", "authentication failed for user",
    "no pg_hba.conf entry", "pg_hba.conf rejects",
    "scram authentication requires", "authentication method", "permission denied for database",
    "is not permitted to log in", "certificate authentication failed", "sslpassword",
)


def connect_error(exc: psycopg.Error, address: str, database: str) -> DbpError:
    """The DbpError for a failed connection attempt: refused credentials, a missing database, or unavailable.

    libpq reports connection failures without a SQLSTATE, so the server's
    message decides. The message is dbp's own; the driver's text is not kept.
    """
    text = str(exc)
    lowered = text.lower()
    fatal = lowered.rsplit("fatal:", 1)[1].strip() if "fatal:" in lowered else lowered
    if fatal.startswith("database ") and fatal.rstrip().endswith("does not exist"):
        return DatabaseNotFound(
            f"PostgreSQL at {address.rsplit('/', 1)[0]} has no database {database!r}; create it first "
            "(dbp initdb, or create_db())"
        )
    if (fatal.startswith("role ") and "does not exist" in fatal) or any(m in fatal for m in _AUTH_FAILURES):
        return AuthenticationFailed(f"PostgreSQL at {address} refused the credentials: {reason(exc)}")
    return ServerUnavailable(f"cannot connect to PostgreSQL at {address}: {reason(exc)}")


def open_connection(settings: SQLSettings, database: Optional[str] = None) -> PgConnection:
    """A plain autocommit psycopg connection, dict rows; failures name the address.

    Raises :class:`AuthenticationFailed`, :class:`DatabaseNotFound` or, for what
    a retry may fix, :class:`ServerUnavailable`.
    """
    target = settings if database is None else settings.with_database(database)
    failure: DbpError
    try:
        return psycopg.connect(settings.conninfo(database), row_factory=dict_row, autocommit=True)
    except psycopg.OperationalError as exc:
        failure = connect_error(exc, target.address, target.database)
    raise failure  # outside the handler: no __context__ keeps the driver's error


STATEMENT_CACHE_SIZE = 512


class BoundedCache(OrderedDict):  # type: ignore[type-arg]
    """A dict that forgets its least recently used entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if len(self) > self.size:
            self.popitem(last=False)


class SQLConnection(Connection[SQLSettings]):
    """A PostgreSQL database. ``execute`` and ``transaction`` share one session per thread.

    Outside :meth:`transaction`, each statement commits on its own (autocommit).
    With ``POOL`` configured, every call borrows a pooled connection, and a
    transaction keeps its connection until it ends.
    """

    engine = "sql"

    def __init__(self, config: Any = None, *, settings: Optional[SQLSettings] = None) -> None:
        super().__init__(config, settings=settings)
        self._conn: Optional[PgConnection] = None
        self._pool: Any = None
        self._close_pool: Optional[weakref.finalize[Any, Any]] = None
        self._local = threading.local()
        self._catalog: Optional[Catalog] = None
        self._code_point: Optional[bool] = None
        self._queries: dict[str, SQLQuery] = {}
        #: Statement texts by shape, for dbp.sql.query (bounded; cleared when the catalog is re-read).
        self.statement_cache: BoundedCache = BoundedCache(STATEMENT_CACHE_SIZE)

    @property
    def closed(self) -> bool:
        if self._pool is not None:
            return bool(self._pool.closed)
        return self._conn is None or self._conn.closed

    def _open(self) -> None:
        settings = self.settings
        if settings.pool is None:
            self._conn = open_connection(settings)
            log.debug("connected to PostgreSQL at %s", settings.address)
            return
        try:
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise ConfigError(
                "DB_CONFIG.SQL.POOL needs psycopg_pool: pip install 'dbp[pool]'"
            ) from None
        options = dict(settings.pool)
        pool = ConnectionPool(
            settings.conninfo(),
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            name=f"dbp {settings.address}",
            **options,
        )
        timeout = float(settings.params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        try:
            pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            pool.close()
            # The pool hides the cause; one direct attempt names it.
            open_connection(settings).close()
            raise ServerUnavailable(
                f"cannot connect to PostgreSQL at {settings.address}: pool did not fill in {timeout:g} s"
            ) from None
        self._pool = pool
        # Closed at close(), at garbage collection, or at interpreter exit: never left
        # for psycopg_pool's own threads to trip over at shutdown.
        self._close_pool = weakref.finalize(self, pool.close)
        log.debug("opened a pool to PostgreSQL at %s", settings.address)

    def close(self) -> None:
        if self._close_pool is not None:
            self._close_pool()
            self._close_pool = None
            self._pool = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        """The psycopg connection to use now: the current transaction's, the single one, or a pooled one."""
        current: Optional[PgConnection] = getattr(self._local, "conn", None)
        if current is not None:
            yield current
        elif self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
        elif self._conn is not None and not self._conn.closed:
            yield self._conn
        else:
            raise OperationError(f"the connection to {self.address} is not open; call connect() first")

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """A transaction: commit on success, roll back on error; nested ones are savepoints."""
        with self.connection() as conn:
            outer = getattr(self._local, "conn", None)
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield conn
            finally:
                self._local.conn = outer

    def execute(
        self, query: QueryText, params: Optional[Params] = None
    ) -> psycopg.Cursor[DictRow]:
        """Run one statement with server-side parameters; the cursor yields dicts.

        A statement the server refuses raises :class:`dbp.QueryError` (``.sqlstate``).

        With a pool, fetch the results inside :meth:`transaction` or
        :meth:`connection`, where the connection is still yours.
        """
        failure: DbpError
        try:
            return self.execute_raw(query, params)
        except psycopg.Error as exc:
            failure = query_error(exc, "execute")
        raise failure  # outside the handler: __cause__ is the redacted driver error, no raw __context__

    def execute_raw(
        self, query: QueryText, params: Optional[Params] = None
    ) -> psycopg.Cursor[DictRow]:
        """:meth:`execute` letting psycopg's errors through, for dbp's own code that maps them itself."""
        conn = self._conn
        if conn is not None and getattr(self._local, "conn", None) is None and not conn.closed:
            return conn.execute(cast(Any, query), params)  # the common case, without a context manager
        with self.connection() as conn:
            # psycopg takes any Composable, though its stubs list only SQL and Composed
            return conn.execute(cast(Any, query), params)

    def query(self, name: str) -> SQLQuery:
        """Queries on table ``name`` (of the current schema); unknown tables raise FilterError."""
        from dbp.query import check_name
        from dbp.sql.query import SQLQuery

        query = self._queries.get(name) if isinstance(name, str) else None
        if query is None:
            check_name(name)
            query = self._queries[name] = SQLQuery(self, name)
        return query

    def catalog(self, *, refresh: bool = False) -> Catalog:
        """The current schema's catalog, read once per connection (``refresh=True`` after DDL)."""
        if self._catalog is None or refresh:
            from dbp.sql.catalog import read_catalog

            with self.connection() as conn:
                row = conn.execute("SELECT current_schema() AS schema").fetchone()
                schema = row["schema"] if row and row["schema"] else "public"
                self._catalog = read_catalog(conn, schema)
            self._queries.clear()
            self.statement_cache.clear()
        return self._catalog

    def table(self, name: str) -> Table:
        if not isinstance(name, str) or not name:
            raise FilterError(f"a table name is a non-empty string, not {name!r}")
        table = self.catalog().tables.get(name)
        if table is None and self._table_exists(name):
            table = self.catalog(refresh=True).tables.get(name)  # created since we last looked
        if table is None:
            names = sorted(self.catalog().tables)
            known = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
            raise FilterError(f"no table {shown(name, 100)} in {self.address}; its tables are {known or 'none'}")
        return table

    def _table_exists(self, name: str) -> bool:
        """One cheap catalog probe, so that an unknown name neither re-reads the catalog nor clears caches."""
        from dbp.sql.catalog import LEDGER_TABLES

        if len(name.encode()) > 63 or "\x00" in name or name in LEDGER_TABLES:  # never in the catalog
            return False
        schema = self.catalog().schema
        row = self.execute_raw(  # the tables read_catalog reads
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (schema, name),
        ).fetchone()
        return row is not None

    def code_point_collation(self) -> bool:
        """True if the database sorts text by code point (C, POSIX, C.UTF-8), as MongoDB does."""
        if self._code_point is None:
            row = self.execute(
                "SELECT datcollate FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            collate = str(row["datcollate"]) if row else ""
            self._code_point = collate in ("C", "POSIX") or collate.lower().replace("-", "") in ("c.utf8",)
        return self._code_point

    def ping(self) -> float:
        start = time.perf_counter()
        try:
            self.execute_raw("SELECT 1").fetchone()
        except psycopg.OperationalError as exc:
            raise ServerUnavailable(f"PostgreSQL at {self.address} did not answer: {reason(exc)}") from None
        return time.perf_counter() - start

    def server_version(self) -> str:
        with self.connection() as conn:
            number = conn.info.server_version
        major, minor = divmod(number, 10000)
        return f"PostgreSQL {major}.{minor}"

    @contextmanager
    def _maintenance(self) -> Iterator[PgConnection]:
        """A connection to a database other than ours, to create or drop ours."""
        last: Optional[DbpError] = None
        for name in MAINTENANCE_DATABASES:
            if name == self.settings.database:
                continue
            try:
                conn = open_connection(self.settings, name)
            except (ServerUnavailable, DatabaseNotFound) as exc:
                last = exc
                continue
            with conn:
                yield conn
            return
        assert last is not None
        raise last

    def _database_exists(self, conn: PgConnection) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.database,)
        ).fetchone()
        return row is not None

    def database_exists(self) -> bool:
        with self._maintenance() as conn:
            return self._database_exists(conn)

    def create_db(self) -> bool:
        name = self.settings.database
        with self._maintenance() as conn:
            if self._database_exists(conn):
                return False
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                return False  # created meanwhile by someone else
            except psycopg.Error as exc:
                raise OperationError(
                    f"cannot create database {name} on {self.address}: {reason(exc)}"
                ) from None
        log.info("created database %s", self.address)
        return True

    def drop_db(self) -> bool:
        name = self.settings.database
        self.close()
        with self._maintenance() as conn:
            if not self._database_exists(conn):
                return False
            drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
            if conn.info.server_version >= 130000:
                drop = sql.SQL("{} WITH (FORCE)").format(drop)
            try:
                conn.execute(drop)
            except psycopg.Error as exc:
                raise OperationError(f"cannot drop database {self.address}: {reason(exc)}") from None
        log.info("dropped database %s", self.address)
        return True
