"""pymongo's errors as dbp's: the one place that classifies them.

A server that cannot be reached, or that dropped the connection mid-call, is
:class:`~dbp.errors.ServerUnavailable` (worth a retry: pymongo reconnects by
itself once the server is back); a command the server refused is the class the
caller names (``FilterError`` for a query it could not run); anything else is
:class:`~dbp.errors.OperationError`.
"""

from __future__ import annotations

from typing import Optional

from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    CursorNotFound,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from dbp.errors import DbpError, OperationError, QueryError, ServerUnavailable

__all__ = ["UNREACHABLE", "reason", "translate"]

#: Errors that mean the server could not be reached or went away during the call.
UNREACHABLE = (ServerSelectionTimeoutError, AutoReconnect, ConnectionFailure, NetworkTimeout, WaitQueueTimeoutError)
#: Authentication failed.
AUTH_CODES = frozenset({18})


def reason(exc: PyMongoError) -> str:
    """The cause in a pymongo error, without its topology description or full error document."""
    if isinstance(exc, ServerSelectionTimeoutError):
        text = str(exc).split(", Timeout:")[0]
        text = text.split(" (configured timeouts")[0]
        return text.split(": ", 1)[1] if ": " in text else text
    if isinstance(exc, OperationFailure) and exc.details:
        return str(exc.details.get("errmsg") or exc).strip() or type(exc).__name__
    text = str(exc).split(", full error:")[0].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: PyMongoError, what: str, name: str, refused: type[DbpError] = OperationError,
              *, limit_ms: Optional[int] = None) -> DbpError:
    """The dbp error for ``exc``, raised by ``what`` (``"find"``) on collection ``name``.

    ``refused`` is the class for a command the server refused (an OperationFailure);
    ``limit_ms`` the read's ``maxTimeMS``, named when the server stopped it.
    """
    if isinstance(exc, ExecutionTimeout):  # the server's MaxTimeMSExpired
        limit = f"its time limit of {limit_ms} ms" if limit_ms else "its time limit"
        return QueryError(f"{what} on {name}: MongoDB stopped it at {limit}; narrow the filter (an indexed "
                          "field), or raise DB_CONFIG.MONGO.MAX_TIME_MS (0: no limit)")
    if isinstance(exc, UNREACHABLE):
        return ServerUnavailable(f"{what} on {name}: MongoDB did not answer: {reason(exc)}")
    if isinstance(exc, CursorNotFound):  # a stream's cursor, gone with a server restart (or timed out)
        return ServerUnavailable(f"{what} on {name}: MongoDB lost the cursor (restarted, or the cursor "
                                 f"timed out); read the stream again: {reason(exc)}")
    if isinstance(exc, OperationFailure) and not isinstance(exc, ExecutionTimeout):
        if exc.code in AUTH_CODES:
            return ServerUnavailable(f"{what} on {name}: MongoDB refused the credentials: {reason(exc)}")
        if exc.code == 13:  # Unauthorized: the user lacks a privilege
            return OperationError(f"{what} on {name}: {reason(exc)}")
        return refused(f"{what} on {name}: {reason(exc)}")
    return OperationError(f"{what} on {name}: {reason(exc)}")
