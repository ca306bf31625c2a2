"""What both engines' migrations share: reconciling files with a ledger, planning, reporting.

An engine lists its migration files (:class:`MigrationFile`) and its ledger
(:class:`LedgerEntry`); :func:`reconcile` says what state each migration is
in, and :func:`plan` decides what a run may apply, refusing edited or
out-of-order migrations unless told otherwise.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, TextIO

from dbp.errors import OperationError

__all__ = [
    "STATES",
    "Draft",
    "MigrationFailed",
    "EngineStatus",
    "LedgerEntry",
    "MigrationFile",
    "MigrationStatus",
    "Progress",
    "next_number",
    "order_key",
    "plan",
    "reconcile",
    "rollback_targets",
    "description",
    "slug",
    "write_files",
]

#: Every state a migration can be in, as ``status`` reports it.
STATES = ("applied", "pending", "failed", "changed", "out-of-order", "missing")
_NUMBER = re.compile(r"^(\d+)")


def order_key(migration_id: str) -> tuple[int, str]:
    match = _NUMBER.match(migration_id)
    return (int(match.group(1)) if match else sys.maxsize, migration_id)


class MigrationFailed(OperationError):
    """A migration failed; the message names it, the statement (SQL) and the cause."""


@dataclass(frozen=True)
class MigrationFile:
    id: str
    description: str
    #: sha256 of the migration's file (for SQL, the apply file; rollback files may be fixed later).
    checksum: str
    has_rollback: bool


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    #: ``applied``, ``baseline`` (recorded by initdb without running), ``failed`` or ``running``.
    status: str
    checksum: Optional[str] = None
    applied_at: Optional[datetime] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class MigrationStatus:
    id: str
    state: str
    description: str = ""
    applied_at: Optional[datetime] = None
    error: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "description": self.description,
            "applied_at": _utc(self.applied_at).isoformat() if self.applied_at else None,
            "error": self.error,
        }


def _utc(when: datetime) -> datetime:
    """Ledger times are UTC; the drivers hand some back without a zone."""
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


@dataclass
class EngineStatus:
    engine: str
    address: str
    migrations: list[MigrationStatus] = field(default_factory=list)
    #: False when dbp never initialized the database (or it does not exist): no schema, nothing applied.
    initialized: bool = True
    #: Why it is not initialized, when more can be said (e.g. the database does not exist).
    detail: str = ""

    def count(self, state: str) -> int:
        return sum(1 for m in self.migrations if m.state == state)

    @property
    def needs_attention(self) -> bool:
        return not self.initialized or any(m.state != "applied" for m in self.migrations)

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "initialized": self.initialized,
            "counts": {state: self.count(state) for state in STATES},
            "migrations": [m.as_json() for m in self.migrations],
        }


def reconcile(files: Sequence[MigrationFile], ledger: Mapping[str, LedgerEntry], *, live_run: bool = False
              ) -> list[MigrationStatus]:
    """The state of every migration, in order; ledger entries without a file come last as ``missing``.

    ``live_run``: another run holds the lock now, so a migration recorded as
    ``running`` is being applied, not left behind by a run that died.
    """
    done = [i for i, e in ledger.items() if e.status in ("applied", "baseline")]
    last_done = max((order_key(i) for i in done), default=None)
    out = []
    for f in sorted(files, key=lambda f: order_key(f.id)):
        entry = ledger.get(f.id)
        if entry is None or entry.status == "running":
            late = last_done is not None and order_key(f.id) < last_done
            state = "out-of-order" if late else "pending"
            error = None
            if entry is not None:
                error = ("running: another run is applying it now" if live_run
                         else "interrupted: a run stopped while applying it")
            out.append(MigrationStatus(f.id, state, f.description, error=error))
        elif entry.status == "failed":
            out.append(MigrationStatus(f.id, "failed", f.description, entry.applied_at, entry.error))
        elif entry.checksum is not None and entry.checksum != f.checksum:
            out.append(MigrationStatus(f.id, "changed", f.description, entry.applied_at))
        else:
            out.append(MigrationStatus(f.id, "applied", f.description, entry.applied_at))
    known = {f.id for f in files}
    for migration_id in sorted(set(ledger) - known, key=order_key):
        entry = ledger[migration_id]
        if entry.status in ("applied", "baseline"):
            out.append(MigrationStatus(migration_id, "missing", "(file not found)", entry.applied_at))
    return out


def plan(
    engine: str,
    statuses: Sequence[MigrationStatus],
    *,
    to: Optional[str] = None,
    allow_changed: bool = False,
    allow_out_of_order: bool = False,
    allow_missing: bool = False,
) -> list[str]:
    """The ids a ``migrate`` run applies, in order; raise if the ledger and files disagree."""
    missing = [s.id for s in statuses if s.state == "missing"]
    if missing and not allow_missing:
        raise OperationError(
            f"{engine}: applied migration(s) {', '.join(missing)} have no file any more; restore the file(s), "
            "or pass --allow-missing to apply newer migrations on top anyway"
        )
    changed = [s.id for s in statuses if s.state == "changed"]
    if changed and not allow_changed:
        raise OperationError(
            f"{engine}: applied migration(s) {', '.join(changed)} changed since they were applied; "
            "restore the file(s), or pass --allow-changed if the edit is deliberate"
        )
    late = [s.id for s in statuses if s.state == "out-of-order"]
    if late and not allow_out_of_order:
        raise OperationError(
            f"{engine}: migration(s) {', '.join(late)} are numbered below the last applied one but were never "
            "applied; renumber them, or pass --allow-out-of-order to apply them now"
        )
    ids = [s.id for s in statuses if s.state in ("pending", "failed", "out-of-order")]
    if to is not None:
        known = [s.id for s in statuses]
        if to not in known:
            raise OperationError(f"{engine}: no migration {to!r}")
        ids = [i for i in ids if order_key(i) <= order_key(to)]
    return ids


def rollback_targets(engine: str, applied: Sequence[str], steps: Optional[int], to: Optional[str],
                     baseline: Collection[str] = ()) -> list[str]:
    """What a rollback undoes, newest first: the last ``steps`` (default 1), or all applied after ``to``.

    ``baseline``: migrations initdb recorded as applied without running them;
    a rollback never reaches them, and refuses before undoing anything.
    """
    if to is not None:
        if to not in applied:
            raise OperationError(f"{engine}: {to!r} is not an applied migration")
        targets = list(reversed(applied[list(applied).index(to) + 1 :]))
    else:
        count = 1 if steps is None else steps
        if count < 1:
            raise OperationError(f"{engine}: --steps must be at least 1")
        targets = list(reversed(applied))[:count]
    reached = [i for i in targets if i in baseline]
    if reached:
        possible = len([i for i in targets if i not in baseline])
        first = reached[0]
        raise OperationError(
            f"{engine}: cannot roll back {first}: initdb recorded it as applied (the baseline) without running "
            f"it, so there is nothing of it to undo; rollback stops at the baseline ({possible} migration(s) "
            "can be rolled back before it); nothing was rolled back"
        )
    return targets


def slug(name: str) -> str:
    """A migration name as a file-name part: ``Add mag index`` -> ``add_mag_index`` (``[a-z0-9_]`` only)."""
    if not isinstance(name, str):
        raise OperationError(f"a migration name is a string, not {type(name).__name__}")
    cleaned = re.sub(r"[^0-9a-zA-Z]+", "_", name[:1000]).strip("_").lower()
    if not cleaned:
        raise OperationError("a migration name needs letters or digits (it becomes the file name)")
    return cleaned[:60].rstrip("_")


_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,:;()+=<>*/-]+")


def description(name: str, limit: int = 200) -> str:
    """``name`` as one line of text that is safe inside a SQL comment or a Python docstring.

    Only letters, digits, spaces and ``_.,:;()+=<>*/-`` are kept; quotes,
    backslashes, ``#`` and every line break (``\\n``, ``\\r``, ``\\u2028``, ...) become a space.
    """
    text = " ".join(_UNSAFE.sub(" ", name[: limit * 4]).split())[:limit]
    return text.replace("*/", "* /") or "(no description)"


@dataclass(frozen=True)
class Draft:
    """The migration ``make_migrations`` would write for one engine, not written yet."""

    engine: str
    #: How the database differs from the schema files, one line each; empty when they agree.
    changes: list[str]
    #: Each file to write and its text; empty when nothing differs (and no --empty).
    files: list[tuple[Path, str]]


def write_files(files: Sequence[tuple[Path, str]]) -> list[Path]:
    """Write every file or none; return their paths.

    Each is written under a temporary name beside it, then linked into place,
    so a half-written file never appears under its name; an existing file is
    never replaced. If anything fails, the files this call wrote are removed.
    A crash (power loss, SIGKILL) between two links can still leave some.
    """
    temps: list[Path] = []
    placed: list[Path] = []
    failure: Optional[OperationError] = None
    finished = False
    try:
        current = None
        placing = False
        try:
            for path, text in files:
                current = path
                path.parent.mkdir(parents=True, exist_ok=True)
                temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
                with open(temp, "x", encoding="utf-8") as handle:
                    temps.append(temp)
                    handle.write(text)
            placing = True
            for (path, _), temp in zip(files, temps):
                current = path
                _place(temp, path)
                placed.append(path)
            finished = True
        except OSError as exc:
            if placing and isinstance(exc, FileExistsError):  # the final name was taken meanwhile
                failure = OperationError(f"{current} appeared while dbp was writing it (another run?); "
                                         "nothing was written")
            else:
                failure = OperationError(f"cannot write {current}: {(exc.strerror or type(exc).__name__).lower()}; "
                                         "nothing was written")
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
        if not finished:
            for path in placed:
                path.unlink(missing_ok=True)
    if failure is not None:
        raise failure
    return [path for path, _ in files]


def _place(temp: Path, path: Path) -> None:
    """Move ``temp`` to ``path`` unless ``path`` exists (FileExistsError then)."""
    try:
        os.link(temp, path)  # atomic, and refuses an existing path
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (a narrow race)
        if path.exists() or path.is_symlink():
            raise FileExistsError(path) from None
        os.rename(temp, path)


def next_number(existing: Sequence[str]) -> str:
    numbers = [order_key(i)[0] for i in existing if _NUMBER.match(i)]
    return f"{max(numbers, default=0) + 1:04d}"


class Progress:
    """Reports a run: ``k of n`` on one updating line on a TTY, plain lines otherwise."""

    def __init__(self, stream: Optional[TextIO] = None, *, tty: Optional[bool] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = 0
        self.engine = ""

    def start(self, engine: str, total: int) -> None:
        self.engine, self.total = engine, total

    def step(self, index: int, migration_id: str, verb: str = "applying") -> None:
        if self.tty:
            self.stream.write(f"\r\x1b[K{self.engine}: {verb} {index} of {self.total}: {migration_id}")
            self.stream.flush()

    def done(self, index: int, migration_id: str, seconds: float, verb: str = "applied") -> None:
        line = f"{self.engine}: {verb} {migration_id} ({index} of {self.total}, {seconds:.2f} s)"
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(line + "\n")
        self.stream.flush()
