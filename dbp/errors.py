"""dbp's exceptions. Each carries the CLI exit code (sysexits) it maps to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Optional

from dbp._redact import scrub, shorten

__all__ = [
    "AuthenticationFailed",
    "BulkWriteError",
    "ConcurrencyError",
    "ConfigError",
    "DatabaseMissing",
    "DbpError",
    "ExtraMissing",
    "FilterError",
    "LockTimeout",
    "OperationError",
    "QueryError",
    "ServerUnavailable",
    "UsageError",
]

#: The longest message an error keeps; values and names in it are cut shorter where they are quoted.
MAX_MESSAGE = 2000


class DbpError(Exception):
    """Base class of every error dbp raises on purpose.

    The message is bounded (:data:`MAX_MESSAGE` characters) and scrubbed of every
    registered secret when the error is built, so ``str(exc)`` is always safe to log.
    """

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(scrub(shorten(message, MAX_MESSAGE)))
        #: Supporting lines (e.g. every schema difference), printed before the message.
        self.details = [scrub(shorten(line, MAX_MESSAGE)) for line in details[:1000]]

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(DbpError):
    """The command line asks for something it must not do as given (e.g. dropdb without --yes)."""

    exit_code = 2


class ConfigError(DbpError):
    """The configuration is missing, malformed or inconsistent."""

    exit_code = 78


class ExtraMissing(ConfigError, ImportError):
    """An optional part of dbp needs a package that is not installed; the message names the extra that installs
    it (``pip install 'alerce-dbp[airflow]'``). An ImportError too, so that ``except ImportError`` catches it."""

    def __init__(self, message: str, *, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name


class ServerUnavailable(DbpError):
    """A server could not be reached (down, starting, full, timed out): a retry may succeed."""

    exit_code = 69


class AuthenticationFailed(DbpError):
    """The server refused the credentials (wrong password, unknown user, no access): retrying will not help."""

    exit_code = 77


class LockTimeout(DbpError):
    """Another run held the migration lock for longer than we were willing to wait."""

    exit_code = 75


class ConcurrencyError(DbpError):
    """Concurrent writers kept colliding (deadlock, serialization failure) after dbp's own retries.

    Nothing of the failed call was written; calling it again is safe.
    """

    exit_code = 75


class FilterError(DbpError, ValueError):
    """A filter, sort, projection, table or row that cannot be used as given; nothing was run."""

    exit_code = 65


class OperationError(DbpError):
    """An operation on a reachable server failed."""

    exit_code = 1


class DatabaseMissing(DbpError):
    """The server answers, but the configured database does not exist: create it first; a retry will not help.

    ``create_sql`` is the statement that creates it, for a role that may (where the engine has one).
    """

    exit_code = 66

    def __init__(self, message: str, *, create_sql: str = "", details: Sequence[str] = ()) -> None:
        super().__init__(message, details=details)
        self.create_sql = create_sql


class QueryError(OperationError):
    """A statement failed on the server; ``sqlstate`` is PostgreSQL's error code (None if unknown), ``query`` its name.

    ``__cause__`` is the driver's error with its message redacted.
    """

    def __init__(self, message: str, *, sqlstate: Optional[str] = None, details: Sequence[str] = (),
                 query: Optional[str] = None) -> None:
        super().__init__(message, details=details)
        self.sqlstate = sqlstate
        #: The named query that failed (None for db.execute and table queries).
        self.query = query


class BulkWriteError(OperationError):
    """A bulk write failed; ``rows`` holds the indexes of the rows (documents) that failed, if known."""

    def __init__(self, message: str, rows: Sequence[int] = (), *, details: Sequence[str] = ()) -> None:
        super().__init__(message, details=details)
        self.rows = list(rows)
        #: The server's SQLSTATE, where the server refused the write.
        self.sqlstate: Optional[str] = None
        #: The column the server named, where it named one.
        self.column: Optional[str] = None
