"""dbp's exceptions. Each carries the CLI exit code (sysexits) it maps to."""

from __future__ import annotations

from typing import ClassVar

from dbp._redact import scrub

__all__ = [
    "ConfigError",
    "DbpError",
    "OperationError",
    "ServerUnavailable",
]


class DbpError(Exception):
    """Base class of every error dbp raises on purpose.

    The message is scrubbed of every registered secret when the error is built,
    so ``str(exc)`` is always safe to log.
    """

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(DbpError):
    """The configuration is missing, malformed or inconsistent."""

    exit_code = 78


class ServerUnavailable(DbpError):
    """A server could not be reached, or it refused the credentials."""

    exit_code = 69


class OperationError(DbpError):
    """An operation on a reachable server failed."""

    exit_code = 1
