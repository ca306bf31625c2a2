"""The MongoDB connection: a pymongo client with a bounded server-selection timeout."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional, Union

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from dbp._redact import shown
from dbp._version import __version__
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
from dbp.mongo.ledger import MARKER
from dbp.mongo.settings import MongoSettings

if TYPE_CHECKING:
    from dbp.mongo.pipeline import PipelineSource
    from dbp.mongo.query import MongoQuery
    from dbp.named import Queries

__all__ = ["MongoConnection"]

log = logging.getLogger("dbp.mongo")

Document = dict[str, Any]
#: Authentication failures (18) and unauthorized commands (13).
_AUTH_CODES = frozenset({13, 18})


def client_options(settings: MongoSettings) -> dict[str, Any]:
    """The settings' client options; uuids as BSON's standard binary (subtype 4) unless they choose another form."""
    query = settings.host.partition("?")[2].lower()
    chosen = any(k.lower() == "uuidrepresentation" for k in settings.options) or "uuidrepresentation=" in query
    return dict(settings.options) if chosen else {"uuidRepresentation": "standard", **settings.options}


def reason(exc: PyMongoError) -> str:
    """The cause in a pymongo error, without its topology description."""
    if isinstance(exc, ServerSelectionTimeoutError):
        text = str(exc).split(", Timeout:")[0]
        text = text.split(" (configured timeouts")[0]
        return text.split(": ", 1)[1] if ": " in text else text
    if isinstance(exc, OperationFailure):
        return str(exc.details.get("errmsg") if exc.details else exc).strip() or type(exc).__name__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else "") or type(exc).__name__


class MongoConnection(Connection[MongoSettings]):
    """A MongoDB database: :attr:`database` and :meth:`collection` are the escape hatches."""

    engine = "mongo"

    def __init__(self, config: Any = None, *, settings: Optional[MongoSettings] = None) -> None:
        super().__init__(config, settings=settings)
        self._client: Optional[MongoClient[Document]] = None
        self._queries: dict[str, MongoQuery] = {}
        self._named_queries: Optional[Queries] = None
        #: Per name: "collection" or "query", decided once (see dbp.mongo.pipeline.resolve).
        self._resolved: dict[str, str] = {}

    @property
    def closed(self) -> bool:
        return self._client is None

    def _open(self) -> None:
        settings = self.settings
        problem = None
        try:
            client: MongoClient[Document] = MongoClient(
                settings.host, connect=False, appname="dbp", **client_options(settings)
            )
        except ConfigurationError as exc:  # an unresolvable mongodb+srv:// name, among others
            problem = _first_line(exc)
        except (TypeError, ValueError) as exc:
            problem = _first_line(exc)
        if problem is not None:  # raised outside the handler: no __context__ keeps the driver's error
            raise ConfigError(f"DB_CONFIG.MONGO ({settings.masked_url()}): {problem}")
        self._client = client
        try:
            self.ping()
        except BaseException:
            self.close()
            raise
        log.debug("connected to MongoDB at %s", settings.address)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._queries.clear()
        self._resolved.clear()
        self._let_go()

    @property
    def client(self) -> MongoClient[Document]:
        if self._client is None:
            raise OperationError(f"the connection to {self.address} is not open; call connect() first")
        return self._client

    @property
    def database(self) -> Database[Document]:
        return self.client[self.settings.database]

    def collection(self, name: str) -> Collection[Document]:
        return self.database[name]

    @property
    def time_limit(self) -> dict[str, Any]:
        """``maxTimeMS`` for a dbp read's aggregate or count (settings.max_time_ms; empty: no limit)."""
        limit = self.settings.max_time_ms
        return {"maxTimeMS": limit} if limit else {}

    def query(self, name: str, params: Optional[Mapping[str, Any]] = None) -> Union[MongoQuery, PipelineSource]:
        """Queries on collection ``name``, or on the named pipeline ``name`` with ``params`` (read-only)."""
        from dbp.mongo.pipeline import resolve

        return resolve(self, name, params)

    def run(self, name: str, params: Optional[Mapping[str, Any]] = None) -> Union[int, list[Document]]:
        """Named writes are SQL statements; MongoDB has none (a named pipeline is read-only)."""
        raise FilterError(f"db.run({shown(name, 60)}): named writes are .sql statements; on MongoDB use "
                          "db.query(collection) writes or db.collection(name)")

    def collection_query(self, name: str) -> MongoQuery:
        """Queries on collection ``name``."""
        from dbp.mongo.query import MongoQuery
        from dbp.query import check_name

        query = self._queries.get(name) if isinstance(name, str) else None
        if query is None:
            if "$" in check_name(name):
                raise FilterError(f"a MongoDB collection name cannot contain '$': {shown(name, 60)}")
            query = self._queries[name] = MongoQuery(self, name)
        return query

    def ping(self) -> float:
        start = time.perf_counter()
        failure: DbpError
        try:
            self.database.command("ping")
            return time.perf_counter() - start
        except PyMongoError as exc:
            failure = self._connect_error(exc)
        raise failure  # outside the handler: no __context__ keeps the driver's error

    def _connect_error(self, exc: PyMongoError) -> DbpError:
        """Refused credentials, a configuration pymongo cannot use, or a server that is unavailable."""
        if isinstance(exc, OperationFailure):
            if exc.code in _AUTH_CODES:
                return AuthenticationFailed(f"MongoDB at {self.address} refused the credentials: {reason(exc)}")
            return OperationError(f"MongoDB at {self.address}: {reason(exc)}")
        if isinstance(exc, ConnectionFailure):
            return ServerUnavailable(
                f"cannot connect to MongoDB at {self.address}: {reason(exc)} "
                f"(timeout {self.settings.timeout_seconds:g} s)"
            )
        if isinstance(exc, ConfigurationError):  # e.g. MONGODB-AWS without pymongo-auth-aws
            return ConfigError(f"DB_CONFIG.MONGO: {reason(exc)}")
        return OperationError(f"MongoDB at {self.address}: {reason(exc)}")

    def require_database(self) -> None:
        """MongoDB keeps no empty database: one without any collection (not even dbp's ``_dbp``) does not exist."""
        try:
            exists = bool(self.database.list_collection_names())
        except PyMongoError:
            return  # not allowed to list them: the server answered, whether the database exists is unknown
        if not exists:
            raise DatabaseMissing(
                f"database {self.settings.database} does not exist on {self.address.rsplit('/', 1)[0]} (it has no "
                "collection): `dbp initdb` creates it (library: MongoConnection(config).create_db())"
            )

    def server_version(self) -> str:
        info = self.client.server_info()
        return f"MongoDB {info.get('version', '?')}"

    def create_db(self) -> bool:
        """Create the database by writing its dbp marker (MongoDB has no empty databases)."""
        self.connect()
        try:
            result = self.database[MARKER].update_one(
                {"_id": "database"},
                {"$setOnInsert": {"created_at": datetime.now(timezone.utc), "dbp_version": __version__}},
                upsert=True,
            )
        except PyMongoError as exc:
            raise OperationError(f"cannot create database {self.address}: {reason(exc)}") from None
        created = result.upserted_id is not None
        if created:
            log.info("created database %s", self.address)
        return created

    def drop_db(self) -> bool:
        self.connect()
        name = self.settings.database
        try:
            existed = name in self.client.list_database_names()
            self.client.drop_database(name)
        except PyMongoError as exc:
            raise OperationError(f"cannot drop database {self.address}: {reason(exc)}") from None
        log.info("dropped database %s", self.address)
        return existed
