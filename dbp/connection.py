"""The contract both engines' connections keep."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Optional, TypeVar

from dbp.config import ConfigSource, resolve_config
from dbp.engines import ENGINES, EngineSettings
from dbp.errors import ConfigError

if TYPE_CHECKING:
    from dbp.query import ReadQuery

__all__ = ["Connection", "connect"]

S = TypeVar("S", bound=EngineSettings)
C = TypeVar("C", bound="Connection[Any]")


class Connection(ABC, Generic[S]):
    """A short-lived connection to one database, the same contract on every engine.

    Nothing happens on construction; :meth:`connect` (or ``with``) opens it and
    :meth:`close` (or leaving the ``with`` block, also on error) closes it.
    ``config`` is a settings path, a ``DB_CONFIG`` dict, a section dict, or
    ``None`` for the usual search (``--settings``, ``$DBP_SETTINGS``, ...).
    """

    engine: ClassVar[str]
    #: The local servers this connection holds (see :func:`connect` with ``local``), until :meth:`close`.
    _local_servers: Optional[Any] = None

    def __init__(self, config: ConfigSource = None, *, settings: Optional[S] = None) -> None:
        self._config = config
        self._settings = settings

    @property
    def settings(self) -> S:
        if self._settings is None:
            # only this engine's section is checked: another engine's mistakes are not this connection's
            found = resolve_config(self._config, engine=self.engine, engines=[self.engine]).settings(self.engine)
            self._settings = found  # type: ignore[assignment]
        assert self._settings is not None
        return self._settings

    @property
    def address(self) -> str:
        """``host:port/database``, safe to print."""
        return self.settings.address

    def connect(self: C, config: ConfigSource = None) -> C:
        """Open the connection (a no-op if open); ``config`` replaces the one given at construction."""
        if config is not None:
            if not self.closed:
                raise ConfigError("cannot change the configuration of an open connection")
            self._config, self._settings = config, None
        if self.closed:
            if self._local_servers is not None:
                self._local_servers.start([self.engine], hold=True)  # (opened again: held again, started if stopped)
            self._open()
        return self

    def require_database(self) -> None:
        """Raise :class:`~dbp.errors.DatabaseMissing` if the open connection's database does not exist.

        PostgreSQL refuses to connect to a missing database, so only MongoDB checks here.
        """

    def _let_go(self) -> None:
        """Let go of the local servers (call it in :meth:`close`): ``local stop`` and ``delete`` may go on."""
        if self._local_servers is not None:
            self._local_servers.release()

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True until :meth:`connect`, and again after :meth:`close`."""

    @abstractmethod
    def _open(self) -> None:
        """Open the driver connection; raise ServerUnavailable naming the address."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; closing a closed connection does nothing."""

    @abstractmethod
    def ping(self) -> float:
        """Round-trip to the server; return the seconds it took."""

    @abstractmethod
    def server_version(self) -> str:
        """The server's product and version, e.g. ``PostgreSQL 18.1``."""

    @abstractmethod
    def query(self, name: str, params: Optional[Mapping[str, Any]] = None) -> ReadQuery:
        """Queries on table / collection ``name``, or a named query's read-only source: the same reads everywhere."""

    @abstractmethod
    def run(self, name: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        """Run the named write ``name`` (SQL): its returned rows, or the row count."""

    @abstractmethod
    def create_db(self) -> bool:
        """Create the configured database if it does not exist; True if it was created."""

    @abstractmethod
    def drop_db(self) -> bool:
        """Drop the configured database if it exists; True if it was dropped."""

    def __enter__(self: C) -> C:
        return self.connect()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        try:
            where = self.settings.masked_url()
        except ConfigError:
            where = "(unconfigured)"
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {where} {state}>"


def connect(config: ConfigSource = None, engine: str = "sql", *, local: bool = False) -> Connection[Any]:
    """Open a connection to ``engine`` (``"sql"`` or ``"mongo"``); use it in a ``with`` block.

    ``local=True`` connects to the project-local server instead (see dbp.local:
    ``$DBP_LOCAL_DIR``, else ``.dbp`` beside the nearest ``dbp.toml``, else ``./.dbp``; database ``dbp``),
    starting it if needed; until the connection is closed, ``local stop`` and ``local delete`` refuse.
    """
    spec = ENGINES.get(engine)
    if spec is None:
        raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if local:
        from dbp.local import LocalServers

        if config is not None:
            raise ConfigError("connect(local=True) uses the project-local servers: give no config with it")
        servers = LocalServers()
        connection = spec.connection_class()(servers.config([engine], hold=True))
        try:
            connection.connect()
        except BaseException:
            servers.release()
            raise
        connection._local_servers = servers  # (from now on: see Connection.connect and close)
        return connection
    return spec.connection_class()(config).connect()
