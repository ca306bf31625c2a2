"""dbp's exceptions. Each carries the CLI exit code (sysexits) it maps to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from dbp._redact import scrub

__all__ = [
    "ConfigError",
    "DbpError",
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


class OperationError(DbpError):
    """An operation on a reachable server failed."""

    exit_code = 1
