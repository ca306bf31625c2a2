"""The PostgreSQL connection: psycopg 3, rows as dicts, optional psycopg_pool."""

from __future__ import annotations

import contextlib
import itertools
import logging
import select
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional, Union, cast

import psycopg
from psycopg import pq, sql
from psycopg.abc import Params
from psycopg.rows import DictRow, dict_row

from dbp._redact import shown
from dbp.connection import Connection
from dbp.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseMissing,
    DbpError,
    FilterError,
    OperationError,
    ServerUnavailable,
)
from dbp.sql.errors import query_error
from dbp.sql.settings import DEFAULT_CONNECT_TIMEOUT, SQLSettings

if TYPE_CHECKING:
    from dbp.named import Queries
    from dbp.sql.catalog import Catalog, Table
    from dbp.sql.query import SQLQuery
    from dbp.sql.source import SQLSource

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


def create_statement(settings: SQLSettings) -> str:
    """The SQL that creates the configured database, owned by the configured role (for messages)."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.database))
    if settings.params.get("user"):
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(str(settings.params["user"])))
    return statement.as_string(None)


#: libpq / server messages at connection time that mean the credentials were refused (SQLSTATE class 28).
_AUTH_FAILURES = (
    "password authentication failed", "no password supplied", "authentication failed for user",
    "no pg_hba.conf entry", "pg_hba.conf rejects",
    "scram authentication requires", "authentication method", "permission denied for database",
    "is not permitted to log in", "certificate authentication failed", "sslpassword",
)


def connect_error(exc: psycopg.Error, settings: SQLSettings) -> DbpError:
    """The DbpError for a failed connection attempt: refused credentials, a missing database, or unavailable.

    libpq reports connection failures without a SQLSTATE, so the server's
    message decides. The message is dbp's own; the driver's text is not kept.
    """
    address, database = settings.address, settings.database
    text = str(exc)
    lowered = text.lower()
    fatal = lowered.rsplit("fatal:", 1)[1].strip() if "fatal:" in lowered else lowered
    if fatal.startswith("database ") and fatal.rstrip().endswith("does not exist"):
        return DatabaseMissing(
            f"database {database} does not exist on {address.rsplit('/', 1)[0]}: "
            "`dbp initdb` creates it (library: SQLConnection(config).create_db())",
            create_sql=create_statement(settings),
        )
    if (fatal.startswith("role ") and "does not exist" in fatal) or any(m in fatal for m in _AUTH_FAILURES):
        return AuthenticationFailed(f"PostgreSQL at {address} refused the credentials: {reason(exc)}")
    return ServerUnavailable(f"cannot connect to PostgreSQL at {address}: {reason(exc)}")


def open_connection(settings: SQLSettings, database: Optional[str] = None) -> PgConnection:
    """A plain autocommit psycopg connection, dict rows; failures name the address.

    Raises :class:`AuthenticationFailed`, :class:`DatabaseMissing` or, for what
    a retry may fix, :class:`ServerUnavailable`.
    """
    target = settings if database is None else settings.with_database(database)
    failure: DbpError
    try:
        return psycopg.connect(settings.conninfo(database), row_factory=dict_row, autocommit=True)
    except psycopg.OperationalError as exc:
        failure = connect_error(exc, target)
    raise failure  # outside the handler: no __context__ keeps the driver's error


STATEMENT_CACHE_SIZE = 512
_streams = itertools.count()
_OK = pq.ConnStatus.OK
_IDLE = pq.TransactionStatus.IDLE
#: The server ended the session: shut down, crashed, or not accepting connections yet.
_SHUTDOWN = (psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow)


def usable(conn: PgConnection) -> bool:
    """False if ``conn`` is closed, or idle and dropped by the server; about a microsecond, no round trip.

    A server that shut down or restarted has already sent its farewell and
    closed the socket, so a statement that would meet it is never sent: the
    caller opens a new session instead and runs it there. An idle session
    with nothing to read (a poll) is fine.
    """
    pgconn = conn.pgconn
    if pgconn.status != _OK:
        return False
    if pgconn.transaction_status != _IDLE:
        return True  # in use: its own statements will tell
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    if not poller.poll(0):
        return True
    farewell: list[Any] = []

    def heard(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized in ("FATAL", "PANIC"):
            farewell.append(diag.sqlstate)

    # libpq hands an idle session's unsolicited error to the notice handlers. The server's
    # farewell (FATAL) may be read before the socket's EOF arrives, so it decides on its own.
    conn.add_notice_handler(heard)
    try:
        # Twice: a read that finds the server's farewell message stops there; the next one finds the EOF.
        pgconn.consume_input()
        pgconn.consume_input()
        pgconn.is_busy()  # parses what was read: consume_input only reads
    except psycopg.OperationalError:
        return False
    finally:
        conn.remove_notice_handler(heard)
    return pgconn.status == _OK and not farewell


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
    """A PostgreSQL database: one session per thread.

    Each thread that uses the object gets a psycopg connection of its own,
    opened on first use and closed by :meth:`close` (or when the thread has
    ended and another thread opens one), so that one thread's transaction
    never holds, commits or rolls back another thread's statements. Outside
    :meth:`transaction`, each statement commits on its own (autocommit).
    With ``POOL`` configured, every call borrows a pooled connection instead,
    and a transaction keeps its connection until it ends.

    A session the server dropped (a restart, a network fault) makes the call
    that finds it raise :class:`~dbp.errors.ServerUnavailable`; the next call
    opens a new session, so the object keeps working once the server is back.
    """

    engine = "sql"

    def __init__(self, config: Any = None, *, settings: Optional[SQLSettings] = None) -> None:
        super().__init__(config, settings=settings)
        self._is_open = False
        #: close() ran after a connect(): errors then say so, rather than "call connect() first".
        self._was_closed = False
        self._pool: Any = None
        self._close_pool: Optional[weakref.finalize[Any, Any]] = None
        self._local = threading.local()
        #: Every session opened for a thread or a stream, with its owner, to close at close().
        self._sessions: list[tuple[threading.Thread, PgConnection]] = []
        self._sessions_lock = threading.Lock()
        self._catalog: Optional[Catalog] = None
        self._code_point: Optional[bool] = None
        self._queries: dict[str, SQLQuery] = {}
        #: Statement texts by shape, for dbp.sql.query (bounded; cleared when the catalog is re-read).
        self.statement_cache: BoundedCache = BoundedCache(STATEMENT_CACHE_SIZE)
        #: The named queries (dbp.sql.source), indexed when first used.
        self.named_queries: Optional[Queries] = None

    @property
    def closed(self) -> bool:
        if self._pool is not None:
            return bool(self._pool.closed)
        return not self._is_open

    def _open(self) -> None:
        settings = self.settings
        if settings.pool is None:
            self._is_open = True
            try:
                self._session()  # connect now, so that connect() reports an unreachable server
            except BaseException:
                self._is_open = False
                raise
            log.debug("connected to PostgreSQL at %s", settings.address)
            return
        try:
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise ConfigError(
                "DB_CONFIG.SQL.POOL needs psycopg_pool: pip install 'alerce-dbp[pool]'"
            ) from None
        timeout = self._timeout()
        # One direct attempt first: it names the cause (wrong password, no such database, a silent
        # host after connect_timeout), which the pool would only report as a timeout.
        open_connection(settings).close()
        options = {"timeout": timeout, **settings.pool}
        pool = ConnectionPool(
            settings.conninfo(),
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            name=f"dbp {settings.address}",
            **options,
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            pool.close()
            raise ServerUnavailable(
                f"cannot connect to PostgreSQL at {settings.address}: pool did not fill in {timeout:g} s"
            ) from None
        self._pool = pool
        # Closed at close(), at garbage collection, or at interpreter exit: never left
        # for psycopg_pool's own threads to trip over at shutdown.
        self._close_pool = weakref.finalize(self, pool.close)
        log.debug("opened a pool to PostgreSQL at %s", settings.address)

    def _not_open(self) -> OperationError:
        if self._was_closed:
            return OperationError(
                f"the connection to {self.address} is not open: it was closed (by close(), or at the end of its "
                "with block), and a find_all(paginate=False) stream must be read before that; connect() opens it "
                "again"
            )
        return OperationError(f"the connection to {self.address} is not open; call connect() first")

    def _timeout(self) -> float:
        return float(self.settings.params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)

    def close(self) -> None:
        """Close the pool, or every thread's session (and any open stream's); connect() opens it again."""
        if self._is_open or self._close_pool is not None:
            self._was_closed = True
        if self._close_pool is not None:
            self._close_pool()
            self._close_pool = None
            self._pool = None
        self._is_open = False
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for _, conn in sessions:
            conn.close()
        self._local = threading.local()
        self._let_go()

    # -- sessions ---------------------------------------------------------------------------------

    def _register(self, conn: PgConnection) -> None:
        me = threading.current_thread()
        with self._sessions_lock:
            # Sessions of threads that have ended go now, rather than at close().
            ended = [c for t, c in self._sessions if not t.is_alive()]
            self._sessions = [(t, c) for t, c in self._sessions if t.is_alive() and not c.closed]
            self._sessions.append((me, conn))
        for c in ended:
            c.close()

    def _forget(self, conn: PgConnection) -> None:
        with self._sessions_lock:
            self._sessions = [(t, c) for t, c in self._sessions if c is not conn]
        conn.close()

    def _session(self) -> PgConnection:
        """This thread's own session (plain mode), opened now if it has none or the server dropped it."""
        conn: Optional[PgConnection] = getattr(self._local, "session", None)
        if conn is not None:
            if usable(conn):
                return conn
            self._local.session = None
            self._forget(conn)
        if not self._is_open:
            raise self._not_open()
        conn = open_connection(self.settings)
        self._register(conn)
        self._local.session = conn
        return conn

    @property
    def _conn(self) -> Optional[PgConnection]:
        """The calling thread's session (plain mode), or None when closed."""
        return None if self.closed or self._pool is not None else self._session()

    def _failed(self, conn: PgConnection, exc: BaseException) -> Optional[ServerUnavailable]:
        """If ``exc`` came from a dead session, drop the session and return the error to raise instead."""
        if isinstance(exc, ServerUnavailable) or not (conn.closed or conn.broken or isinstance(exc, _SHUTDOWN)):
            return None
        if self._pool is None:
            if getattr(self._local, "session", None) is conn:
                self._local.session = None
            self._forget(conn)
        else:
            conn.close()  # the pool discards it when it comes back
            with contextlib.suppress(Exception):
                self._pool.check()  # and the others that the same fault killed
        text = reason(exc) if isinstance(exc, psycopg.Error) else str(exc)
        return ServerUnavailable(f"lost the connection to PostgreSQL at {self.address}: {text}")

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        """The psycopg connection to use now: the current transaction's, this thread's, or a pooled one.

        An error that leaves the session dead leaves this block as
        :class:`~dbp.errors.ServerUnavailable`; the next call reconnects.
        """
        current: Optional[PgConnection] = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        if self._pool is not None:
            with self._borrow() as conn, self._translating(conn):
                yield conn
            return
        conn = self._session()
        with self._translating(conn):
            yield conn

    @contextmanager
    def _translating(self, conn: PgConnection) -> Iterator[None]:
        """A fault that lost ``conn``'s session leaves the block as ServerUnavailable; other errors as they are."""
        try:
            yield
        except Exception as exc:
            lost = self._failed(conn, exc)
            if lost is None:
                raise
            raise lost from exc

    @contextmanager
    def _borrow(self) -> Iterator[PgConnection]:
        """A pooled connection that the server has not dropped, for the duration of the block."""
        from psycopg_pool import PoolClosed, PoolTimeout

        pool = self._pool
        try:
            conn = pool.getconn()
            if not usable(conn):
                # Dropped by the server since it was last used: the pool discards it, checks the others
                # (the same fault has likely killed them too) and opens new ones; we wait for one.
                conn.close()
                pool.putconn(conn)
                pool.check()
                conn = pool.getconn()
        except PoolTimeout:
            raise ServerUnavailable(
                f"PostgreSQL at {self.address}: no pooled connection within {pool.timeout:g} s "
                "(the server is down, or every connection is busy)"
            ) from None
        except PoolClosed:
            raise self._not_open() from None
        try:
            yield conn
        finally:
            pool.putconn(conn)

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """A transaction: commit on success, roll back on error; nested ones are savepoints.

        It holds this thread's session (or a pooled connection) until it ends;
        other threads are not affected. If the server goes away inside it, the
        transaction is lost and raises ServerUnavailable; the next one reconnects.
        """
        with self.connection() as conn:
            outer = getattr(self._local, "conn", None)
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield conn
            finally:
                self._local.conn = outer

    @contextmanager
    def stream_cursor(self, query: QueryText, params: Optional[Params], itersize: int
                      ) -> Iterator[psycopg.Cursor[DictRow]]:
        """``query`` run on a server-side cursor, fetched ``itersize`` rows at a time.

        Outside :meth:`transaction` the cursor lives in a read transaction on a
        session of its own (plain mode: opened for it; pooled: borrowed), so
        that whatever the caller writes while reading commits on its own,
        whichever way the loop ends. Inside :meth:`transaction` it runs in that
        transaction: it sees its writes and ends with it.
        """
        name = f"dbp_stream_{next(_streams)}"
        current: Optional[PgConnection] = getattr(self._local, "conn", None)
        if current is not None:
            with current.cursor(name=name, row_factory=dict_row) as cur:
                cur.itersize = itersize
                with current.transaction():  # a bad query must not abort the caller's transaction
                    cur.execute(cast(Any, query), params)
                yield cur
            return
        if self.closed:
            raise self._not_open()
        if self._pool is not None:
            with self._borrow() as conn, self._streaming(conn, name, query, params, itersize) as cur:
                yield cur
            return
        conn = open_connection(self.settings)
        self._register(conn)
        try:
            with self._streaming(conn, name, query, params, itersize) as cur:
                yield cur
        finally:
            self._forget(conn)

    @contextmanager
    def _streaming(self, conn: PgConnection, name: str, query: QueryText, params: Optional[Params],
                   itersize: int) -> Iterator[psycopg.Cursor[DictRow]]:
        try:
            with conn.transaction(), conn.cursor(name=name, row_factory=dict_row) as cur:
                cur.itersize = itersize
                cur.execute(cast(Any, query), params)
                yield cur
        except Exception as exc:
            if self.closed and not isinstance(exc, DbpError):
                raise OperationError(
                    f"the stream on {self.address} was cut: the with block (or close()) of its connection "
                    "closed it before the stream was read to the end"
                ) from None
            lost = self._failed(conn, exc)
            if lost is None:
                raise
            raise lost from exc

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
        """:meth:`execute` letting psycopg's errors through, for dbp's own code that maps them itself.

        A session lost to a fault still raises :class:`ServerUnavailable`.
        """
        conn: Optional[PgConnection] = getattr(self._local, "session", None)
        if conn is not None and getattr(self._local, "conn", None) is None and self._is_open and usable(conn):
            try:  # the common case, without a context manager
                return conn.execute(cast(Any, query), params)
            except psycopg.OperationalError as exc:
                lost = self._failed(conn, exc)
                if lost is None:
                    raise
                raise lost from exc
        with self.connection() as conn:
            # psycopg takes any Composable, though its stubs list only SQL and Composed
            return conn.execute(cast(Any, query), params)

    def query(self, name: str, params: Optional[Mapping[str, Any]] = None) -> SQLQuery:
        """Queries on table ``name``, or on the named query ``name`` with ``params`` (an SQLSource: read-only).

        Unknown names raise FilterError; see README, Named queries.
        """
        from dbp.sql.source import resolve

        return resolve(self, name, params)

    def sql(self, text: str, params: Optional[Mapping[str, Any]] = None) -> SQLSource:
        """A read-only, pageable source over an inline SELECT with ``%(name)s`` parameters."""
        from dbp.sql.source import inline

        return inline(self, text, params)

    def run(self, name: str, params: Optional[Mapping[str, Any]] = None) -> Union[int, list[DictRow]]:
        """Run the named statement ``name``: its returned rows, or the row count; joins db.transaction()."""
        from dbp.sql.source import run

        return run(self, name, params)

    def table_query(self, name: str) -> SQLQuery:
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
            parent = self._partition_of(name)
            if parent is not None:
                raise FilterError(f"{shown(name, 100)} is a partition of table {parent} in {self.address}: query "
                                  f"{parent} (a filter on its partition key reads this partition alone)")
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
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition",
            (schema, name),
        ).fetchone()
        return row is not None

    def _partition_of(self, name: str) -> Optional[str]:
        """The top-level table that ``name`` is a partition of (at any depth), or None."""
        if len(name.encode()) > 63 or "\x00" in name:
            return None
        row = self.execute_raw(
            "SELECT r.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_class r ON r.oid = pg_partition_root(c.oid) "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relispartition",
            (self.catalog().schema, name),
        ).fetchone()
        return str(row["relname"]) if row is not None else None

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
            except (ServerUnavailable, DatabaseMissing) as exc:
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
                    f"cannot create database {name} on {self.address}: {reason(exc)}; "
                    f"a role that may create databases can run: {create_statement(self.settings)}"
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
