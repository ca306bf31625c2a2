"""What both engines' migrations share: reconciling files with a ledger, planning, reporting.

An engine lists its migration files (:class:`MigrationFile`) and its ledger
(:class:`LedgerEntry`); :func:`reconcile` says what state each migration is
in, and :func:`plan` decides what a run may apply, refusing edited or
out-of-order migrations unless told otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, TextIO

from dbp._redact import scrub, shorten
from dbp.errors import OperationError

log = logging.getLogger("dbp")

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
    "interrupted",
    "slug",
    "user_code_error",
    "folders_locked",
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


#: Each folder a ``write_files`` run writes into holds its journal while the run lasts (see :func:`interrupted`).
JOURNAL_PREFIX = ".dbp-writing-"


#: How long make_migrations waits for another run on the same migrations folder.
FOLDER_LOCK_TIMEOUT = 60.0


@contextmanager
def folders_locked(folders: Sequence[Path], timeout: float = FOLDER_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each folder (its nearest existing one) for the block.

    make_migrations numbers, drafts and writes inside it: a second run then finds the first one's file
    pending and refuses, instead of writing the same change under the next number. The lock is on the
    folder itself, so nothing is left behind; it ends with the process.
    """
    import time

    handles: list[int] = []
    try:
        for folder in sorted({_existing(Path(f)) for f in folders}):
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            handles.append(fd)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OperationError(f"another make_migrations run has been writing in {folder} for "
                                             f"{timeout:g} s; try again when it ends") from None
                    time.sleep(0.05)
        yield
    finally:
        for fd in handles:
            os.close(fd)  # the lock goes with it


def _existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def write_files(files: Sequence[tuple[Path, str]]) -> list[Path]:
    """Write every file or none; return their paths.

    Each is written under a temporary name beside it, then linked into place
    (the last one first: an SQL migration's rollback before the migration), so
    a half-written file never appears under its name; an existing file is never
    replaced. If anything fails, or Ctrl-C or SIGTERM arrives, the files this
    call wrote are removed (the signal then acts as usual). A journal in each
    folder, locked while the run lasts, lets the next run find the files of a
    run that was killed (SIGKILL, power loss): see :func:`interrupted`.
    """
    files = list(files)
    if not files:
        return []
    received: list[int] = []
    failure: Optional[OperationError] = None
    with _signals_deferred(received):
        try:
            _write(files, received)
        except OperationError as exc:
            failure = exc
    if received:  # this run's files are gone: now the signal does what it would have done
        signal.raise_signal(received[0])
        raise OperationError("interrupted; nothing was written")
    if failure is not None:
        raise failure
    return [path for path, _ in files]


class _Stop(Exception):
    """A deferred signal arrived: stop writing and remove this run's files."""


def _write(files: list[tuple[Path, str]], received: list[int]) -> None:
    run = uuid.uuid4().hex[:12]
    temps = [path.with_name(f".{path.name}.{run}.tmp") for path, _ in files]
    folders = list(dict.fromkeys(path.parent for path, _ in files))
    journal = json.dumps({"files": [
        {"path": str(path.absolute()), "temp": str(temp.absolute()),
         "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        for (path, text), temp in zip(files, temps)]})
    handles: list[tuple[Path, TextIO]] = []
    written: list[tuple[Path, tuple[int, int]]] = []  # (final path, the temporary file's device and inode)
    current: Optional[Path] = None
    placing = finished = False
    failure: Optional[OperationError] = None
    try:
        try:
            for folder in folders:
                current = next(path for path, _ in files if path.parent == folder)
                folder.mkdir(parents=True, exist_ok=True)
                name = folder / f"{JOURNAL_PREFIX}{run}"
                handle = open(name, "x", encoding="utf-8")  # noqa: SIM115 - held (and locked) for the run
                handles.append((name, handle))
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(journal)
                handle.flush()
            for (path, text), temp in zip(files, temps):
                current = path
                if received:
                    raise _Stop
                with open(temp, "x", encoding="utf-8") as out:
                    stat = os.fstat(out.fileno())
                    written.append((path, (stat.st_dev, stat.st_ino)))
                    out.write(text)
            placing = True
            for (path, _), temp in reversed(list(zip(files, temps))):
                current = path
                if received:
                    raise _Stop
                _place(temp, path)
                if received:
                    raise _Stop
            finished = True
        except OSError as exc:
            if placing and isinstance(exc, FileExistsError):  # the final name was taken meanwhile
                failure = OperationError(f"{current} appeared while dbp was writing it (another run?); "
                                         "nothing was written")
            else:
                failure = OperationError(f"cannot write {current}: {(exc.strerror or type(exc).__name__).lower()}; "
                                         "nothing was written")
        except _Stop:
            pass
    finally:  # (signals are deferred: nothing interrupts the clean-up)
        for temp in temps:
            _unlink(temp)
        if not finished:
            for path, identity in written:
                if _identity(path) == identity:  # this run's file (linked or renamed into place), no one else's
                    _unlink(path)
        for journal_path, journal_file in handles:
            _unlink(journal_path)
            journal_file.close()
    if failure is not None:
        raise failure


def _identity(path: Path) -> Optional[tuple[int, int]]:
    try:
        stat = os.lstat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


@contextmanager
def _signals_deferred(received: list[int]) -> Iterator[None]:
    """Ctrl-C and SIGTERM only noted in ``received`` inside the block (main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[signal.Signals, Any] = {}
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(number) not in (signal.SIG_IGN, None):
                saved[number] = signal.signal(number, lambda signum, _frame: received.append(signum))
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


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


def interrupted(folder: Path, *, clean: bool = False) -> list[str]:
    """What ``write_files`` runs that did not finish left in ``folder``; ``clean``: remove it first.

    A run still going (its journal locked) is reported, never touched. A run
    that was killed is undone: its temporary files, and its files already in
    place if unchanged (unless every one of them is in place: then the run had
    finished, and only its journal and temporary files go). Returns one line
    per run that is left (``clean``: only those still going).
    """
    out = []
    try:
        journals = sorted(p for p in folder.iterdir() if p.name.startswith(JOURNAL_PREFIX)) if folder.is_dir() else []
    except OSError:
        return []
    for journal in journals:
        try:
            handle = open(journal, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError:
            continue  # gone meanwhile
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                out.append(f"a make_migrations run is writing files in {folder} now ({journal.name}); "
                           "wait for it to finish")
                continue
            try:
                entries = [e for e in json.loads(handle.read())["files"]
                           if isinstance(e, dict) and {"path", "temp", "sha256"} <= set(e)]
            except (ValueError, KeyError, TypeError, OSError):
                entries = []  # killed while writing its journal: it wrote nothing else
            in_place = [e for e in entries if _sha256(Path(e["path"])) == e["sha256"]]
            complete = len(in_place) == len(entries)
            if not clean:
                if not complete:
                    shown = ", ".join(Path(e["path"]).name for e in in_place) or "no migration file"
                    out.append(f"a make_migrations run was stopped while writing files in {folder} and left "
                               f"{shown} ({journal.name}); run dbp make_migrations again, which removes them "
                               "first, or remove them yourself")
                continue
            for entry in entries:
                _unlink(Path(entry["temp"]))
            if not complete:
                for entry in in_place:
                    _unlink(Path(entry["path"]))
                    log.warning("removed %s: a make_migrations run was stopped before it wrote all its files",
                                entry["path"])
            _unlink(journal)
    return out


def _sha256(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def user_code_error(exc: BaseException) -> str:
    """A migration's own exception as one line, secrets scrubbed: ``ValueError: ...``, or that it called sys.exit()."""
    if isinstance(exc, SystemExit):
        return "it called sys.exit()"
    text = str(exc).strip()
    text = shorten(text.splitlines()[0], 500) if text else ""
    return scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


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
