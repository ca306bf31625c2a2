"""The local MongoDB-compatible server: SecantusDB's ``secantusd-py``, data in ``ROOT/mongo``.

It runs as a separate process in its own session, on a free loopback port
recorded in ``ROOT/mongo.json``, and logs to ``ROOT/mongo.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from dbp.errors import ConfigError, ServerUnavailable
from dbp.local import (
    INSTALL_HINT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    ServerState,
    alive,
    cmdline,
    free_port,
    port_open,
    tail,
    wait_gone,
)

__all__ = ["section", "start", "status", "stop"]


def _data(root: Path) -> Path:
    return root / "mongo"


def _state(root: Path) -> Path:
    return root / "mongo.json"


def _secantusd() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if found is None:
        raise ConfigError(INSTALL_HINT + " (secantusd-py not found)")
    return found


def _process(root: Path) -> Optional[tuple[int, int]]:
    """(pid, port) of our running server; a reused pid running something else does not count."""
    try:
        state = json.loads(_state(root).read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not alive(pid) or str(_data(root)) not in cmdline(pid):
        return None
    return pid, port


def start(root: Path) -> str:
    """Start (or find running) the server; return its URL. Call it locked."""
    found = _process(root)
    if found is not None and port_open(found[1]):
        return f"mongodb://127.0.0.1:{found[1]}/"
    executable = _secantusd()
    _data(root).mkdir(parents=True, exist_ok=True)
    port = free_port()
    logfile = root / "mongo.log"
    with open(logfile, "ab") as out:
        process = subprocess.Popen(
            [executable, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(_data(root))],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            last = tail(logfile)
            raise ServerUnavailable(
                f"the local MongoDB server did not start on 127.0.0.1:{port}; see {logfile}"
                + (f": {last}" if last else "")
            )
        time.sleep(0.05)
    _state(root).write_text(json.dumps({"pid": process.pid, "port": port}))
    return f"mongodb://127.0.0.1:{port}/"


def stop(root: Path) -> bool:
    found = _process(root)
    _state(root).unlink(missing_ok=True)
    if found is None:
        return False
    pid = found[0]
    os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, STOP_TIMEOUT):
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, STOP_TIMEOUT)
    return True


def status(root: Path) -> ServerState:
    found = _process(root)
    if found is None or not port_open(found[1]):
        return ServerState("mongo", False, str(_data(root)))
    return ServerState("mongo", True, f"mongodb://127.0.0.1:{found[1]}/", found[0])


def section(url: str, database: str) -> dict[str, Any]:
    """The DB_CONFIG.MONGO section for ``database`` on the server at ``url``."""
    return {"URL": url, "DATABASE": database}
