"""dbp's exceptions. Each carries the CLI exit code (sysexits) it maps to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Optional

from dbp._redact import scrub

__all__ = [
    "BulkWriteError",
    "ConcurrencyError",
    "ConfigError",
    "DatabaseMissing",
    "DbpError",
    "FilterError",
    "LockTimeout",
    "OperationError",
    "ServerUnavailable",
    "UsageError",
]


class DbpError(Exception):
    """Base class of every error dbp raises on purpose.

    The message is scrubbed of every registered secret when the error is built,
    so ``str(exc)`` is always safe to log.
    """

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(scrub(message))
        #: Supporting lines (e.g. every schema difference), printed before the message.
        self.details = [scrub(line) for line in details]

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(DbpError):
    """The command line asks for something it must not do as given (e.g. dropdb without --yes)."""

    exit_code = 2


class ConfigError(DbpError):
    """The configuration is missing, malformed or inconsistent."""

    exit_code = 78


class ServerUnavailable(DbpError):
    """A server could not be reached, or it refused the credentials."""

    exit_code = 69


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


class DatabaseMissing(OperationError):
    """The server answers, but the configured database does not exist; not worth a retry.

    ``create_sql`` is the statement that creates it, for a role that may (where the engine has one).
    """

    def __init__(self, message: str, *, create_sql: str = "", details: Sequence[str] = ()) -> None:
        super().__init__(message, details=details)
        self.create_sql = create_sql


class BulkWriteError(OperationError):
    """A bulk write failed; ``rows`` holds the indexes of the rows (documents) that failed, if known."""

    def __init__(self, message: str, rows: Sequence[int] = (), *, details: Sequence[str] = ()) -> None:
        super().__init__(message, details=details)
        self.rows = list(rows)
        #: The server's SQLSTATE, where the server refused the write.
        self.sqlstate: Optional[str] = None
