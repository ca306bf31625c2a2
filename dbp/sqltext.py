"""Splitting SQL scripts into statements, keeping each one's line for error messages.

A shared module, not part of :mod:`dbp.sql`: named queries (:mod:`dbp.named`) lex
SQL files with it without loading the SQL engine. It imports nothing from dbp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Statement", "read_script", "split_statements", "transaction_control"]

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_TRANSACTION_CONTROL = re.compile(
    r"(COMMIT|ROLLBACK|BEGIN|START\s+TRANSACTION|END|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    text: str
    #: 1-based line where the statement starts in its file.
    line: int
    source: str = ""

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.source else f"line {self.line}"

    def summary(self, width: int = 80) -> str:
        """The statement on one line, shortened to ``width`` characters."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= width else flat[: width - 3] + "..."


def split_statements(text: str, source: str = "") -> list[Statement]:
    """Split on top-level semicolons.

    Quotes ('...', "..."), dollar quotes ($tag$...$tag$), line comments and
    nested block comments are respected; statements that are only comments
    and white space are dropped.
    """
    statements: list[Statement] = []
    start = 0
    i = 0
    n = len(text)
    has_code = False
    while i < n:
        char = text[i]
        if char == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if char == "/" and text.startswith("/*", i):
            i = _block_comment_end(text, i)
            continue
        if char in ("'", '"'):
            escapes = char == "'" and i > 0 and text[i - 1] in "eE" and not _ident_char(text, i - 2)
            i = _quote_end(text, i, char, escapes)
            has_code = True
            continue
        if char == "$":
            match = _DOLLAR_TAG.match(text, i)
            if match and not _ident_char(text, i - 1):
                end = text.find(match.group(), match.end())
                i = n if end < 0 else end + len(match.group())
                has_code = True
                continue
        if char == ";":
            _add(statements, text, start, i, has_code, source)
            start, has_code = i + 1, False
        elif not char.isspace():
            has_code = True
        i += 1
    _add(statements, text, start, n, has_code, source)
    return statements


def _add(out: list[Statement], text: str, start: int, end: int, has_code: bool, source: str) -> None:
    if not has_code:
        return
    chunk = text[start:end]
    stripped = chunk.lstrip()
    offset = start + len(chunk) - len(stripped)
    # skip leading comments for the reported line
    body = _strip_leading_comments(stripped)
    offset += len(stripped) - len(body)
    out.append(Statement(body.rstrip(), text.count("\n", 0, offset) + 1, source))


def _strip_leading_comments(chunk: str) -> str:
    while True:
        if chunk.startswith("--"):
            end = chunk.find("\n")
            chunk = "" if end < 0 else chunk[end + 1 :].lstrip()
        elif chunk.startswith("/*"):
            chunk = chunk[_block_comment_end(chunk, 0) :].lstrip()
        else:
            return chunk


def _block_comment_end(text: str, i: int) -> int:
    depth = 0
    n = len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _ident_char(text: str, i: int) -> bool:
    return i >= 0 and (text[i].isalnum() or text[i] in "_$")


def _quote_end(text: str, i: int, quote: str, escapes: bool = False) -> int:
    """Index after the closing quote; a doubled quote (or, in E'...', a backslash) escapes one."""
    i += 1
    n = len(text)
    while i < n:
        if escapes and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if i + 1 < n and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def read_script(path: Path) -> list[Statement]:
    return split_statements(path.read_text(encoding="utf-8"), source=path.name)


def transaction_control(statement: Statement) -> str:
    """The transaction-control command ``statement`` is (``COMMIT``, ``BEGIN``, ...), or "" if none.

    dbp runs a schema or a transactional migration in one transaction; such a
    statement would end it half-way.
    """
    match = _TRANSACTION_CONTROL.match(statement.text)
    return " ".join(match.group(1).upper().split()) if match else ""
