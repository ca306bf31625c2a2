"""Issue 21's review of the local servers (findings 1, 5, 6, 7, 8, 11): a copied or moved project, a settings
file named by ``$DBP_SETTINGS`` or through a link, a dangling ``.dbp/pg``, a ``.dbp`` removed by hand, and a
``local delete`` racing a running ``--local`` command.

Every command runs as a user runs it: ``python -m dbp`` in a subprocess. As root, PostgreSQL's data lives
outside the project, in ``$DBP_LOCAL_PG_ROOT`` (a folder of the test's, never ``/var/lib/dbp``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbp.config import load_config
from dbp.local import LocalServers

from .conftest import ROOT, server_root
from .test_newcomer2_project import tree

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL's data is outside the project only as root")
needs_local = pytest.mark.skipif(not (Path(sys.executable).parent / "secantusd-py").exists(), reason="needs dbp[local]")


def local_servers(test: Any) -> Any:
    """Mark a test that starts real local servers (of its own: once, in the embedded pass)."""
    return pytest.mark.slow(pytest.mark.own_servers(needs_local(test)))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def digest(root: Path) -> str:
    """The name of the folder dbp keeps ``root``'s PostgreSQL data in, as root."""
    return hashlib.sha256(str(root).encode()).hexdigest()[:16]


def postgres_of(folder: Path) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"postgres.*{folder}"], capture_output=True, text=True).stdout.split()


@pytest.fixture
def top() -> Iterator[Path]:
    """A folder outside pytest's tmp tree (see server_root) holding projects and ``pgroot``, the base."""
    made = server_root("dbp-test-adv21-")
    made.chmod(0o711)  # as root, the server's own user must traverse it to reach its data folder
    (made / "pgroot").mkdir(mode=0o711)
    try:
        yield made
    finally:
        for dbp_dir in made.rglob(".dbp"):
            if dbp_dir.is_dir() and not dbp_dir.is_symlink():
                try:
                    LocalServers(dbp_dir).stop()
                except Exception:  # noqa: BLE001 - best-effort cleanup
                    pass
        base = made / "pgroot"
        for folder in base.iterdir():
            for pid in postgres_of(folder):
                subprocess.run(["kill", "-INT", pid], capture_output=True)
        deadline = time.monotonic() + 15
        while any(postgres_of(f) for f in base.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(made, ignore_errors=True)


def run(folder: Path, top: Path, *args: str, timeout: float = 300, prefix: tuple[str, ...] = (),
        **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "dbp", *args], cwd=folder,
                          env=clean_env(DBP_LOCAL_PG_ROOT=str(top / "pgroot"), **env),
                          capture_output=True, text=True, timeout=timeout)


def fake_started(project: Path, base: Path) -> Path:
    """``PROJECT/.dbp`` as a root start leaves it (no server needed): its link to ``BASE/<hash>/pg``."""
    root = project / ".dbp"
    LocalServers(root).stop()  # the folder, its marker and its lock
    folder = base / digest(root)
    (folder / "pg").mkdir(parents=True)
    folder.chmod(0o711)
    (folder / "project").write_text(f"{root}\n")
    (folder / "project").chmod(0o600)
    (root / "pg").symlink_to(folder / "pg")
    return folder


# -- finding 5: $DBP_SETTINGS and a linked settings file name the project ---------------------------------


def test_dbp_settings_puts_the_local_folder_beside_the_settings_file(top: Path) -> None:
    project = top / "proj"
    (project / "sql").mkdir(parents=True)
    (project / "dbp.toml").write_text('[DB_CONFIG.SQL]\nSCHEMA_DIR = "sql"\n')
    elsewhere = top / "elsewhere"
    elsewhere.mkdir()
    for env in ({"DBP_SETTINGS": str(project / "dbp.toml")}, {"DBP_SETTINGS": "../proj/dbp.toml"}):
        shown = run(elsewhere, top, "local", "status", **env)
        assert shown.returncode == 0, shown.stderr
        assert f"local data in {project / '.dbp'} (none yet)" in shown.stdout, shown.stdout
        stopped = run(elsewhere, top, "local", "stop", **env)
        assert stopped.returncode == 0, stopped.stderr
    assert not (elsewhere / ".dbp").exists() and not (project / ".dbp").exists()


def test_a_linked_settings_file_names_the_project_it_links_to(top: Path) -> None:
    project = top / "proj"
    (project / "sql").mkdir(parents=True)
    (project / "dbp.toml").write_text('[DB_CONFIG.SQL]\nURL = "postgresql://u@h/x"\nSCHEMA_DIR = "sql"\n')
    elsewhere = top / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link.toml").symlink_to(project / "dbp.toml")
    for how in (["--settings", "link.toml"], []):
        env = {} if how else {"DBP_SETTINGS": "link.toml"}
        shown = run(elsewhere, top, "local", *how, "status", **env)
        assert shown.returncode == 0, shown.stderr
        assert f"local data in {project / '.dbp'} (none yet)" in shown.stdout, shown.stdout
    # SCHEMA_DIR is read beside the same folder: the project's, not the link's
    assert load_config(elsewhere / "link.toml")["SQL"]["SCHEMA_DIR"] == str(project / "sql")


# -- findings 1, 6, 7, 11 without servers: what a link may name ------------------------------------------


@as_root
def test_a_copied_link_to_another_projects_data_is_refused_and_never_deleted(top: Path) -> None:
    base = top / "pgroot"
    original = top / "p1"
    original.mkdir()
    (original / "dbp.toml").write_text("")
    folder = fake_started(original, base)
    (folder / "pg" / "PG_VERSION").write_text("18\n")
    copy = top / "p1copy"
    subprocess.run(["cp", "-r", str(original), str(copy)], check=True)
    assert (copy / ".dbp" / "pg").is_symlink()
    before = tree(top)
    expected = (f"dbp: error: refusing {copy / '.dbp' / 'pg'}: it links to {folder / 'pg'}, the PostgreSQL data of "
                f"another project ({original / '.dbp'}), copied with this one?; remove this link (that data is "
                f"kept): rm {copy / '.dbp' / 'pg'}")
    for command in (["local", "status"], ["local", "delete", "--yes"], ["local", "stop"], ["local", "start"],
                    ["--local", "--engine", "sql", "status"]):
        refused = run(copy, top, *command)
        assert refused.returncode == 78, (command, refused.stderr)
        assert refused.stderr.strip() == expected, (command, refused.stderr)
        assert tree(top) == before, command
    # as the message says: the link gone, the copy is a project of its own; the original's data is untouched
    (copy / ".dbp" / "pg").unlink()
    shown = run(copy, top, "local", "status")
    assert shown.returncode == 0, shown.stderr
    assert f"{base / digest(copy / '.dbp') / 'pg'} (none yet, outside the project)" in shown.stdout, shown.stdout
    deleted = run(copy, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert (folder / "pg" / "PG_VERSION").exists() and (original / ".dbp" / "pg").is_symlink()


@as_root
def test_local_delete_removes_a_dangling_link_and_only_it(top: Path) -> None:
    base = top / "pgroot"
    project = top / "p1"
    project.mkdir()
    (project / "dbp.toml").write_text("")
    shutil.rmtree(fake_started(project, base))  # its data folder removed by hand (or by finding 1)
    refused = run(project, top, "local", "status")
    assert refused.returncode == 78
    assert "which no longer exists; python -m dbp local delete removes the link" in refused.stderr, refused.stderr
    deleted = run(project, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"removed {project / '.dbp' / 'pg'}" in deleted.stdout
    assert not (project / ".dbp").exists() and list(base.iterdir()) == []
    # a dangling link into another project's folder: only the link goes
    other = top / "p2"
    other.mkdir()
    (other / "dbp.toml").write_text("")
    theirs = fake_started(other, base)
    shutil.rmtree(theirs / "pg")
    (project / ".dbp").mkdir(mode=0o700)
    LocalServers(project / ".dbp").stop()
    (project / ".dbp" / "pg").symlink_to(theirs / "pg")
    deleted = run(project, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert (theirs / "project").exists() and not (project / ".dbp").exists()


@as_root
def test_a_moved_project_keeps_its_data_and_delete_finds_it(top: Path) -> None:
    base = top / "pgroot"
    project = top / "p1"
    project.mkdir()
    (project / "dbp.toml").write_text("")
    folder = fake_started(project, base)
    moved = top / "p1moved"
    project.rename(moved)
    shown = run(moved, top, "local", "status")  # the old project folder is gone: the data is the moved one's
    assert shown.returncode == 0, shown.stderr
    assert f"{folder / 'pg'} (outside the project)" in shown.stdout, shown.stdout
    deleted = run(moved, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"removed {folder}" in deleted.stdout and list(base.iterdir()) == []


@as_root
def test_before_the_first_start_status_shows_where_the_data_will_be(top: Path) -> None:
    project = top / "p1"
    project.mkdir()
    (project / "dbp.toml").write_text("")
    shown = run(project, top, "local", "status")
    assert shown.returncode == 0, shown.stderr
    where = top / "pgroot" / digest(project / ".dbp") / "pg"
    assert f"sql    stopped  {where}\n" in shown.stdout, shown.stdout
    assert f"data      {where} (none yet, outside the project)" in shown.stdout, shown.stdout


# -- with real servers ------------------------------------------------------------------------------------


def sql_project(top: Path, name: str) -> Path:
    made = run(top, top, "init-project", "--engine", "sql", name)
    assert made.returncode == 0, made.stderr
    return top / name


@as_root
@local_servers
def test_a_copied_project_never_uses_nor_deletes_the_originals_database(top: Path) -> None:
    base = top / "pgroot"
    original = sql_project(top, "p1")
    assert run(original, top, "--local", "initdb").returncode == 0
    folder = base / digest(original / ".dbp")
    copy = top / "p1copy"
    subprocess.run(["cp", "-r", str(original), str(copy)], check=True)
    for command in (["local", "delete", "--yes"], ["--local", "migrate"], ["local", "status"]):
        refused = run(copy, top, *command)
        assert refused.returncode == 78 and "the PostgreSQL data of another project" in refused.stderr, refused.stderr
    assert postgres_of(folder) and (folder / "pg" / "PG_VERSION").exists()
    still = run(original, top, "--local", "status", "--exit-code")
    assert still.returncode in (0, 3), still.stderr  # initialized: its database is intact
    (copy / ".dbp" / "pg").unlink()
    own = run(copy, top, "--local", "initdb")
    assert own.returncode == 0, own.stderr
    assert postgres_of(base / digest(copy / ".dbp")) and postgres_of(folder)  # two servers, one each
    for project in (copy, original):
        deleted = run(project, top, "local", "delete", "--yes")
        assert deleted.returncode == 0, deleted.stderr
    assert list(base.iterdir()) == []


@as_root
@local_servers
def test_a_moved_project_takes_its_running_database_along(top: Path) -> None:
    base = top / "pgroot"
    project = sql_project(top, "p1")
    assert run(project, top, "--local", "initdb").returncode == 0
    old = base / digest(project / ".dbp")
    moved = top / "p1moved"
    project.rename(moved)
    again = run(moved, top, "--local", "status", "--exit-code")
    assert again.returncode in (0, 3), again.stderr  # initialized: the same database
    new = base / digest(moved / ".dbp")
    assert not old.exists() and (new / "pg" / "PG_VERSION").exists()
    assert (new / "project").read_text().splitlines()[0] == str(moved / ".dbp")
    assert os.readlink(moved / ".dbp" / "pg") == str(new / "pg")
    assert not postgres_of(old) and postgres_of(new)
    # moved again, and .dbp removed by hand: the server still runs; status and delete find it
    moved.rename(top / "p1again")
    moved = top / "p1again"
    shutil.rmtree(moved / ".dbp")
    shown = run(moved, top, "local", "status")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("sql    running"), shown.stdout
    deleted = run(moved, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"removed {new}" in deleted.stdout
    assert list(base.iterdir()) == [] and not postgres_of(new)


@local_servers
def test_status_shows_servers_left_running_after_dbp_was_removed_by_hand(top: Path) -> None:
    made = run(top, top, "init-project", "proj")
    assert made.returncode == 0, made.stderr
    project = top / "proj"
    assert run(project, top, "--local", "check-config").returncode == 0
    shutil.rmtree(project / ".dbp")
    shown = run(project, top, "local", "status")
    assert shown.returncode == 0, shown.stderr
    states = [line.split()[:2] for line in shown.stdout.splitlines() if line[:1] != " "][:2]
    assert states == [["sql", "running"], ["mongo", "running"]], shown.stdout
    deleted = run(project, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    after = run(project, top, "local", "status")
    states = [line.split()[:2] for line in after.stdout.splitlines() if line[:1] != " "][:2]
    assert states == [["sql", "stopped"], ["mongo", "stopped"]], after.stdout


@contextlib.contextmanager
def slow_local_migrate(top: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A project whose ``--local migrate`` runs a 4-second migration: yields once it holds the servers,
    and checks on the way out that the migration was applied."""
    project = sql_project(top, "p1")
    assert run(project, top, "--local", "initdb").returncode == 0
    migrations = project / "sql" / "migrations"
    (migrations / "0002_slow.sql").write_text("-- slow\nCREATE TABLE slow1 (x int);\nSELECT pg_sleep(4);\n")
    (migrations / "0002_slow.rollback.sql").write_text("DROP TABLE slow1;\n")
    env = clean_env(DBP_LOCAL_PG_ROOT=str(top / "pgroot"))
    slow = subprocess.Popen([sys.executable, "-m", "dbp", "--local", "migrate"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert slow.stderr is not None
        for line in slow.stderr:  # it has started the servers and holds the folder
            if line.startswith("dbp: local data in"):
                break
        yield project, slow
        out, err = slow.communicate(timeout=120)
        assert slow.returncode == 0, err
        assert "sql: applied 0002_slow" in out
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()


# -- finding 8: delete during a running --local command ----------------------------------------------------


@local_servers
def test_local_delete_refuses_while_a_local_command_runs(top: Path) -> None:
    with slow_local_migrate(top) as (project, _slow):
        before = tree(project)
        busy = run(project, top, "local", "delete", "--yes")
        assert busy.returncode == 75, busy.stderr
        assert busy.stderr.strip() == (f"dbp: error: another dbp command is using the local servers in "
                                       f"{project / '.dbp'} (it holds .use); nothing was changed: run this "
                                       "again once it is done")
        assert tree(project) == before
    deleted = run(project, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not (project / ".dbp").exists()


# -- issue 21, round 2: a moved project's running Mongo server; local stop during a --local command -------------


def mongo_project(top: Path, name: str) -> Path:
    made = run(top, top, "init-project", "--engine", "mongo", name)
    assert made.returncode == 0, made.stderr
    return top / name


def secantus_of(storage: Path) -> list[int]:
    """Every secantusd-py process whose storage folder is ``storage`` (the same folder, whatever its name now:
    dbp starts it with that folder as its working directory)."""
    wanted = os.stat(storage)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            here = os.stat(entry / "cwd")
        except OSError:
            continue
        if any(Path(os.fsdecode(a)).name == "secantusd-py" for a in args[:2]) and \
                (here.st_dev, here.st_ino) == (wanted.st_dev, wanted.st_ino):
            found.append(int(entry.name))
    return found


@local_servers
def test_a_moved_project_never_runs_two_mongo_servers_on_its_data(top: Path) -> None:
    project = mongo_project(top, "m1")
    first = run(project, top, "--local", "initdb")
    assert first.returncode == 0, first.stderr
    [old_pid] = secantus_of(project / ".dbp" / "mongo")
    moved = top / "m1moved"
    project.rename(moved)
    storage = moved / ".dbp" / "mongo"
    assert secantus_of(storage) == [old_pid]  # still running, on the moved files
    shown = run(moved, top, "local", "status")
    assert shown.returncode == 0, shown.stderr
    assert (f"\nmongo  running  {storage} (started as {project / '.dbp' / 'mongo'}, before the project moved; local "
            "stop, local delete or the next start stops it)\n") in shown.stdout, shown.stdout  # status sees it
    again = run(moved, top, "--local", "status", "--exit-code")
    assert again.returncode in (0, 3), again.stderr  # initialized: the same database
    servers = secantus_of(storage)
    assert len(servers) == 1 and old_pid not in servers, servers  # the old one stopped, one new one
    assert run(moved, top, "local", "start").returncode == 0
    assert secantus_of(storage) == servers
    # moved again: local stop stops the server that still runs from the old place
    moved.rename(top / "m1again")
    moved = top / "m1again"
    stopped = run(moved, top, "local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "stopped: mongo\n"
    assert not any(alive_pid(pid) for pid in servers)
    # and again, then deleted: delete stops it too
    assert run(moved, top, "local", "start").returncode == 0
    servers = secantus_of(moved / ".dbp" / "mongo")
    moved.rename(top / "m1last")
    moved = top / "m1last"
    deleted = run(moved, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not (moved / ".dbp").exists()
    assert not any(alive_pid(pid) for pid in servers)


def alive_pid(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


BUSY = ("dbp: error: another dbp command is using the local servers in {root} (it holds .use); nothing was changed: "
        "run this again once it is done")


@local_servers
def test_local_stop_refuses_while_a_local_command_runs(top: Path) -> None:
    with slow_local_migrate(top) as (project, _slow):
        server = postgres_of(top / "pgroot")
        busy = run(project, top, "local", "stop")
        assert busy.returncode == 75, busy.stderr
        assert busy.stderr.strip() == BUSY.format(root=project / ".dbp") and busy.stdout == ""
        assert postgres_of(top / "pgroot") == server
    stopped = run(project, top, "local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "stopped: sql\n" and not postgres_of(top / "pgroot")


HOLDER = """
import sys
import dbp
with dbp.connect(engine="sql", local=True) as conn:
    conn.ping()
    print("open", flush=True)
    sys.stdin.readline()
print("closed", flush=True)
sys.stdin.readline()
"""


@local_servers
def test_a_local_connection_keeps_stop_and_delete_away_until_it_is_closed(top: Path) -> None:
    project = sql_project(top, "p1")
    env = clean_env(DBP_LOCAL_PG_ROOT=str(top / "pgroot"))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=project, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "open\n"
        for command in (["local", "stop"], ["local", "delete", "--yes"]):
            busy = run(project, top, *command)
            assert busy.returncode == 75, (command, busy.stderr)
            assert busy.stderr.strip() == BUSY.format(root=project / ".dbp"), busy.stderr
        assert postgres_of(top / "pgroot")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "closed\n"  # closed: the process still runs, the servers are free
        stopped = run(project, top, "local", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == "stopped: sql\n"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    deleted = run(project, top, "local", "delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr


@pytest.fixture
def unprivileged() -> Iterator[tuple[str, ...]]:
    """A command prefix that runs as uid 1000 (files of this root appear as its own), every command in one user
    namespace (a server started by one is seen by the next): PostgreSQL's data is then in the project, and
    moves with it."""
    unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
    if unshare is None or nsenter is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare(1) and nsenter(1)")
    holder = subprocess.Popen([unshare, "--user", "--map-user=1000", "--map-group=1000", "sleep", "infinity"])
    try:
        prefix = (nsenter, "--user", f"--target={holder.pid}", "--preserve-credentials")
        deadline = time.monotonic() + 10
        while subprocess.run([*prefix, "id", "-u"], capture_output=True, text=True).stdout.strip() != "1000":
            if holder.poll() is not None or time.monotonic() > deadline:
                pytest.skip("user namespaces are not available")
            time.sleep(0.05)
        yield prefix
    finally:
        holder.kill()
        holder.wait()


@local_servers
def test_a_moved_project_restarts_its_running_postgresql_as_a_normal_user(top: Path,
                                                                         unprivileged: tuple[str, ...]) -> None:
    me = unprivileged
    assert run(top, top, "init-project", "--engine", "sql", "p1", prefix=me).returncode == 0
    project = top / "p1"
    first = run(project, top, "--local", "initdb", prefix=me)
    assert first.returncode == 0, first.stderr
    old = postgres_of(project / ".dbp")
    assert old
    moved = top / "p1moved"
    project.rename(moved)
    data = moved / ".dbp" / "pg"
    shown = run(moved, top, "local", "status", prefix=me)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(
        f"sql    running  {data} (started as {project / '.dbp' / 'pg'}, before the project moved; local stop, local "
        "delete or the next start stops it)\n"), shown.stdout
    # the server still runs on the moved data (its pid file keeps a second one away), but its socket's path
    # is gone: it is restarted, on the same database
    again = run(moved, top, "--local", "status", "--exit-code", prefix=me)
    assert again.returncode in (0, 3), again.stderr
    assert f"dbp: local sql server: postgresql://postgres@/dbp?host={data}&port=5432\n" in again.stderr, again.stderr
    assert "it was started as" in again.stderr  # (a warning says why it restarted)
    assert postgres_of(project / ".dbp") == [] and postgres_of(moved / ".dbp")
    assert not any(alive_pid(int(pid)) for pid in old)
    deleted = run(moved, top, "local", "delete", "--yes", prefix=me)
    assert deleted.returncode == 0, deleted.stderr
    assert postgres_of(moved / ".dbp") == [] and not (moved / ".dbp").exists()
