"""The project-local servers, started and stopped as real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dbp.local import LocalServers

from .conftest import ROOT, alive, server_root

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DBP_TEST_SQL_URL") and os.environ.get("DBP_TEST_MONGO_URL")),
    reason="the suite runs against external servers",
)


@pytest.mark.slow
def test_local_mode_starts_shares_and_stops(run_dbp: Any, tmp_path: Path) -> None:
    root = server_root("dbp-test-local-") / "proj-data"
    env = {"DBP_LOCAL_DIR": str(root)}
    # two commands at once share one pair of servers
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dbp", "--local", "check-config"], cwd=tmp_path,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    try:
        for proc, (out, err) in zip(procs, outputs):
            assert proc.returncode == 0, err
            assert "reachable" in out
            assert f"local data in {root}" in err
        mongo_lines = {line.split()[1] for out, _ in outputs for line in out.splitlines() if line.startswith("mongo")}
        assert len(mongo_lines) == 1  # the same server (same port) for both

        status = run_dbp("local", "status", env=env)
        assert status.returncode == 0
        assert status.stdout.count("running") == 2
        pids = {state.engine: state.pid for state in LocalServers(root).status()}
        assert pids["sql"] is not None and pids["mongo"] is not None
    finally:
        stopped = run_dbp("local", "stop", env=env)
    assert stopped.returncode == 0
    assert "sql" in stopped.stdout and "mongo" in stopped.stdout
    assert not alive(pids["sql"]) and not alive(pids["mongo"])
    assert run_dbp("local", "status", env=env).stdout.count("stopped") == 2
    # data survives a restart
    again = run_dbp("--local", "check-config", "--engine", "sql", env=env)
    assert again.returncode == 0, again.stderr
    run_dbp("local", "stop", env=env)
    LocalServers(root).delete()  # also the data kept outside root (as root, PostgreSQL's)
    shutil.rmtree(root.parent, ignore_errors=True)
