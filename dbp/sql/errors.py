"""PostgreSQL errors made safe to show: literals elided, driver errors redacted and wrapped.

A statement's string literals may hold secrets (``CREATE ROLE x PASSWORD '...'``)
or bulk data; :func:`elide_literals` replaces them with ``'...'`` in linear time.
:func:`query_error` turns a psycopg error into a :class:`dbp.QueryError` whose
``__cause__`` is a copy of the driver's error with a bounded, scrubbed message.
"""

from __future__ import annotations

import re
from typing import Optional

import psycopg

from dbp._redact import scrub, shorten
from dbp.errors import QueryError

__all__ = ["cause", "elide_literals", "query_error", "redacted"]

_PLAIN = re.compile(r"[^'\"$]+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
ELIDED = "'...'"


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def elide_literals(text: str) -> str:
    """``text`` with every SQL string literal ('...', E'...', $tag$...$tag$) replaced by ``'...'``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        plain = _PLAIN.match(text, i)
        if plain:
            out.append(plain.group())
            i = plain.end()
            continue
        c = text[i]
        if c == "'":
            backslashes = i > 0 and text[i - 1] in "eE" and (i < 2 or not _is_word(text[i - 2]))
            j = i + 1
            while j < n:
                if backslashes and text[j] == "\\":
                    j += 2
                elif text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                    else:
                        break
                else:
                    j += 1
            out.append(ELIDED)
            i = j + 1
        elif c == '"':  # a quoted identifier: kept as it is
            j = i + 1
            while j < n:
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        j += 2
                        continue
                    break
                j += 1
            out.append(text[i : j + 1])
            i = j + 1
        else:  # '$': a dollar-quoted literal, or a parameter / part of a name
            tag = _DOLLAR_TAG.match(text, i)
            if tag and not (i > 0 and _is_word(text[i - 1])):
                end = text.find(tag.group(), tag.end())
                out.append(ELIDED)
                i = n if end < 0 else end + len(tag.group())
            else:
                out.append(c)
                i += 1
    return "".join(out)


def cause(exc: psycopg.Error) -> str:
    """The server's one-line reason, literals elided, bounded."""
    diag = getattr(exc, "diag", None)
    primary: Optional[str] = diag.message_primary if diag is not None else None
    text = primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return scrub(elide_literals(shorten(text, 500)))


def redacted(exc: psycopg.Error) -> psycopg.Error:
    """A copy of ``exc`` (same class, so the same ``sqlstate``) whose message is bounded and scrubbed."""
    try:
        copy = type(exc)(cause(exc))
    except Exception:  # noqa: BLE001 - a driver class that takes other arguments
        copy = psycopg.Error(cause(exc))
    return copy.with_traceback(exc.__traceback__)


def query_error(exc: psycopg.Error, what: str = "query", *, query: Optional[str] = None) -> QueryError:
    """A :class:`QueryError` for ``exc``, naming the SQLSTATE, with the redacted driver error as its cause."""
    sqlstate = getattr(exc, "sqlstate", None)
    error = QueryError(f"{what} failed: {cause(exc)}" + (f" (SQLSTATE {sqlstate})" if sqlstate else ""),
                       sqlstate=sqlstate, query=query)
    error.__cause__ = redacted(exc)
    error.__suppress_context__ = True
    return error
