"""The local MongoDB-compatible server: SecantusDB's ``secantusd-py``, data in ``ROOT/mongo``.

It runs as a separate process in its own session, with authentication on
(``--auth``, SCRAM-SHA-256): dbp creates a user ``dbp`` with a random password
kept in ``ROOT/mongo.secret`` (mode 0600) the first time, and connects as it.
Its port is recorded in ``ROOT/mongo.json`` and kept across restarts when it is
free; it logs to ``ROOT/mongo.log``.

A process counts as this server only if it is the one dbp started (same pid
and start time), runs ``secantusd-py`` with exactly this storage path, and
holds the listening socket of the recorded port: nothing else is ever
signalled, and a server answering on a port dbp chose but did not get is
never used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from dbp.errors import ConfigError, OperationError, ServerUnavailable
from dbp.local import (
    INSTALL_HINT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    ServerState,
    alive,
    argv,
    check_owned,
    check_path,
    free_port,
    listens,
    open_private,
    port_open,
    private_file,
    read_private,
    shown_path,
    start_time,
    tail,
    wait_gone,
)

__all__ = ["check", "database_url", "delete", "locations", "section", "start", "status", "stop"]

log = logging.getLogger("dbp.mongo")

USER = "dbp"
#: Ports tried before giving up, when the chosen one is taken between choosing and binding.
PORT_ATTEMPTS = 5


def _data(root: Path) -> Path:
    return root / "mongo"


def _state_file(root: Path) -> Path:
    return root / "mongo.json"


def _secret_file(root: Path) -> Path:
    return root / "mongo.secret"


def _secantusd() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if found is None:
        raise ConfigError(INSTALL_HINT + " (secantusd-py not found)")
    return found


def _read_state(root: Path) -> dict[str, Any]:
    try:
        state = json.loads(read_private(_state_file(root)) or "")
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(root: Path, state: dict[str, Any]) -> None:
    private_file(_state_file(root), json.dumps(state))


def _password(root: Path) -> str:
    path = _secret_file(root)
    text = (read_private(path, secret=True) or "").strip()
    if not text:
        text = secrets.token_urlsafe(24)
        private_file(path, text + "\n")
    return text


def _runs_our_storage(pid: int, data: Path) -> bool:
    args = argv(pid)
    if not any(Path(a).name == "secantusd-py" for a in args[:2]):
        return False
    return any(a == "--storage-path" and b == str(data) for a, b in zip(args, args[1:]))


def _is_ours(root: Path, pid: int, started: Any, port: Any) -> bool:
    return (
        alive(pid)
        and start_time(pid) == started
        and _runs_our_storage(pid, _data(root))
        and isinstance(port, int)
        and listens(pid, port)
    )


def _process(root: Path) -> Optional[tuple[int, int]]:
    """(pid, port) of our running server, checked as the module docstring says."""
    state = _read_state(root)
    pid, port = state.get("pid"), state.get("port")
    if not isinstance(pid, int) or not _is_ours(root, pid, state.get("started"), port):
        return None
    assert isinstance(port, int)
    return pid, port


def _serves(pid: int, data: Path) -> bool:
    """True if ``pid`` runs ``secantusd-py`` on the folder ``data`` under whatever name it had when it started:
    dbp starts it in its storage folder, whose device and inode a move keeps."""
    args = argv(pid)
    if not any(Path(a).name == "secantusd-py" for a in args[:2]):
        return False
    try:
        here, wanted = os.stat(f"/proc/{pid}/cwd"), os.stat(data)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (wanted.st_dev, wanted.st_ino)


def _orphans(root: Path) -> list[int]:
    """secantusd-py processes on this folder's data that dbp no longer knows: its mongo.json was deleted, or
    the project was moved while it ran (it was started with the old path, which it keeps using: never reused)."""
    data = _data(root)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if _runs_our_storage(pid, data) or _serves(pid, data):
                found.append(pid)
    return found


def _still_orphan(root: Path, pid: int) -> bool:
    return _runs_our_storage(pid, _data(root)) or _serves(pid, _data(root))


def _moved_from(pid: int) -> Optional[str]:
    """The storage path ``pid`` was started with."""
    args = argv(pid)
    return next((b for a, b in zip(args, args[1:]) if a == "--storage-path"), None)


def _url(port: int, password: str) -> str:
    return f"mongodb://{USER}:{quote(password, safe='')}@127.0.0.1:{port}/?authSource=admin"


def _terminate(pid: int, still_ours: Any) -> None:
    """SIGTERM, then SIGKILL, each only while ``still_ours()``; OperationError if it does not stop."""
    if still_ours():
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, STOP_TIMEOUT):
        return
    if still_ours():
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, STOP_TIMEOUT):
        raise OperationError(f"the local MongoDB server (pid {pid}) did not stop in {2 * STOP_TIMEOUT:g} s")


def _spawn(root: Path, port: int, *, auth: bool) -> Optional[subprocess.Popen[bytes]]:
    """Start the server on ``port``; None if it could not have that port (taken, or someone else answers)."""
    args = [_secantusd(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(_data(root))]
    if auth:
        args.append("--auth")
    logfile = root / "mongo.log"
    fd = open_private(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as out:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, umask=0o077, cwd=_data(root),  # (not the caller's folder: it reads ./secantusd.toml)
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            last = tail(logfile)
            if "in use" in last.lower():
                return None  # the port was taken between choosing and binding
            raise ServerUnavailable(
                f"the local MongoDB server exited at start on 127.0.0.1:{port}; see {shown_path(logfile)}"
                + (f": {last}" if last else "")
            )
        if port_open(port):
            if listens(process.pid, port):
                return process
            if time.monotonic() > deadline:  # someone else answers there, and ours never got it
                _stop_child(process)
                return None
        elif time.monotonic() > deadline:
            _stop_child(process)
            raise ServerUnavailable(
                f"the local MongoDB server did not start on 127.0.0.1:{port}; see {shown_path(logfile)}")
        time.sleep(0.05)


def _stop_child(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def _provision(root: Path, port: int, password: str) -> None:
    """Create (or reset) the ``dbp`` user on a server started without --auth, then stop that server."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError

    process = _spawn(root, port, auth=False)
    if process is None:
        raise _PortTaken
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=5000, directConnection=True)
        with client:
            admin = client["admin"]
            try:
                admin.command("createUser", USER, pwd=password, roles=["root"])
            except OperationFailure:  # it exists: a data folder whose secret was lost
                admin.command("updateUser", USER, pwd=password)
            users = admin.command("usersInfo", {"forAllDBs": True}).get("users", [])
    except PyMongoError as exc:
        _stop_child(process)
        raise ServerUnavailable(f"cannot set up authentication on the local MongoDB server: {exc}") from None
    _stop_child(process)
    others = sorted(f"{u.get('user')}@{u.get('db')}" for u in users if (u.get("user"), u.get("db")) != (USER, "admin"))
    if others:
        raise OperationError(
            f"the local MongoDB data in {shown_path(_data(root))} has users dbp did not create ({', '.join(others)}); "
            "refusing to use it: remove them, or the folder"
        )


class _PortTaken(Exception):
    pass


def _candidate_ports(state: dict[str, Any]) -> list[int]:
    wanted = state.get("port")
    ports = [wanted] if isinstance(wanted, int) and not port_open(wanted) else []
    return ports + [free_port() for _ in range(PORT_ATTEMPTS)]


def start(root: Path) -> str:
    """Start (or find running) the server; return its URL. Call it locked."""
    password = _password(root)
    found = _process(root)
    if found is not None:
        return _url(found[1], password)
    for orphan in _orphans(root):  # a server of this folder that dbp lost track of: stop it, start ours
        if _runs_our_storage(orphan, _data(root)):
            log.warning("stopping the local MongoDB server pid %s, left running without its state file", orphan)
        else:
            log.warning("stopping the local MongoDB server pid %s, left running on this data from %s (the project "
                        "moved)", orphan, _moved_from(orphan))
        _terminate(orphan, lambda pid=orphan: _still_orphan(root, pid))
    _secantusd()  # missing: the install hint, before anything else
    data = _data(root)
    if not check_path(data):
        data.mkdir(mode=0o700)
    _private_tree(data)
    state = _read_state(root)
    for port in _candidate_ports(state):
        try:
            if not state.get("auth"):
                _provision(root, port, password)
                state = {"port": port, "auth": True}
                _write_state(root, state)
            process = _spawn(root, port, auth=True)
        except _PortTaken:
            continue
        if process is None:
            continue
        _write_state(root, {"port": port, "auth": True, "pid": process.pid, "started": start_time(process.pid)})
        return _url(port, password)
    raise ServerUnavailable(f"the local MongoDB server found no free port in {PORT_ATTEMPTS + 1} tries")


def _private_tree(path: Path) -> None:
    """Owner-only modes on the data an older dbp left readable by everyone; ConfigError (before any change)
    if anything in it is a symbolic link or not the current user's (see :func:`dbp.local.check_owned`)."""
    for entry in [path, *_checked_tree(path)]:
        with contextlib.suppress(FileNotFoundError):  # (a journal the server removed meanwhile)
            os.chmod(entry, 0o700 if entry.is_dir() else 0o600)


def _checked_tree(path: Path) -> list[Path]:
    """Everything under ``path``, each checked (see :func:`dbp.local.check_owned`); what vanishes meanwhile is
    skipped (a journal the running server removed)."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            entry = Path(folder) / name
            try:
                info = os.lstat(entry)
            except FileNotFoundError:
                continue
            check_owned(entry, info)
            found.append(entry)
    return found


def check(root: Path) -> None:
    """Refuse (ConfigError) data dbp would not use, changing nothing (see :func:`_private_tree`)."""
    if check_path(_data(root)):
        _checked_tree(_data(root))


def stop(root: Path) -> bool:
    """Stop our server if it runs (and any lost one of this folder); True if one was stopped."""
    stopped = False
    found = _process(root)
    state = _read_state(root)
    if found is not None:
        pid = found[0]
        _terminate(pid, lambda: _is_ours(root, pid, state.get("started"), state.get("port")))
        stopped = True
    for orphan in _orphans(root):
        _terminate(orphan, lambda pid=orphan: _still_orphan(root, pid))
        stopped = True
    if state:
        state.pop("pid", None)
        state.pop("started", None)
        _write_state(root, state)  # the port stays: the next start takes it again if it is free
    return stopped


def status(root: Path) -> ServerState:
    """The server's state; one left running on this folder's data after dbp lost its state file (``.dbp``
    removed by hand) counts as running."""
    found = _process(root)
    if found is None:
        lost = _orphans(root)
        if lost:
            if _runs_our_storage(lost[0], _data(root)):
                why = "its state file is gone"
            else:
                why = f"started as {shown_path(_moved_from(lost[0]) or '?')}, before the project moved"
            return ServerState("mongo", True, f"{shown_path(_data(root))} ({why}; local stop, local delete or the "
                                              "next start stops it)", lost[0])
        return ServerState("mongo", False, str(_data(root)))
    return ServerState("mongo", True, _url(found[1], "").replace(f"{USER}:@", f"{USER}:***@"), found[0])


def section(url: str, database: str) -> dict[str, Any]:
    """The DB_CONFIG.MONGO section for ``database`` on the server at ``url``."""
    return {"URL": url, "DATABASE": database}


def database_url(url: str, database: str) -> str:
    """``url`` with ``database`` as its path: a complete $DBP_MONGO_URL."""
    head, _, query = url.partition("/?")
    return f"{head}/{quote(database, safe='')}?{query}"


def delete(root: Path) -> list[Path]:
    """Remove the data, its state and its password (call it stopped); return what was removed."""
    removed = [path for _, path in locations(root) if path.exists() or path.is_symlink()]
    shutil.rmtree(_data(root), ignore_errors=True)
    for path in (_state_file(root), _secret_file(root), root / "mongo.log"):
        path.unlink(missing_ok=True)
    return removed


def locations(root: Path) -> list[tuple[str, Path]]:
    """Where this server keeps things, ``(what, path)``: all of it in ``root``."""
    return [("data", _data(root)), ("log", root / "mongo.log"), ("password", _secret_file(root)),
            ("state", _state_file(root))]
