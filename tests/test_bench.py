"""bench/bench.py with tiny sizes: it measures everything, then stops its servers and removes its data,
also when SIGTERM or SIGINT stops it half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbp.local import LocalServers

from .conftest import ROOT, alive, server_root

pytestmark = pytest.mark.slow

TINY = ["--rows", "300", "--objects", "3000", "--page", "5", "--per-page", "10", "--calls", "20"]
#: Big enough that a signal sent after the first measurement lands mid-run.
SMALL = ["--rows", "5000", "--objects", "50000", "--page", "50", "--per-page", "10", "--calls", "200"]
MEASURED = [
    "bulk_insert(on_conflict='error') throughput", "bulk_insert(on_conflict='ignore') throughput",
    "bulk_insert(on_conflict='update') throughput", "bulk_insert('ignore'), every row a duplicate",
    "psycopg executemany throughput", "find_one", "get_or_create (existing row)", "keyset page 5", "offset page 5",
    "bulk_insert throughput", "get_or_create (existing document)", "import dbp", "python -m dbp --help",
]


class Bench:
    """The bench as a child process, its output collected line by line."""

    def __init__(self, root: Path, sizes: list[str]) -> None:
        self.root = root
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bench.py"), *sizes, "--local-dir", str(root)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None or self.reader.is_alive(), f"bench ended early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.output}"
            time.sleep(0.1)

    def server_pids(self) -> dict[str, int]:
        pg = int((self.root / "pg" / "postmaster.pid").read_text().splitlines()[0])
        mongo = int(json.loads((self.root / "mongo.json").read_text())["pid"])
        return {"sql": pg, "mongo": mongo}

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def processes_naming(root: Path) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(root).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def assert_cleaned_up(bench: Bench, pids: dict[str, int]) -> None:
    assert not any(alive(pid) for pid in pids.values()), (pids, bench.output)
    assert not bench.root.exists(), bench.output
    assert processes_naming(bench.root) == []
    assert f"bench: stopped sql, mongo server(s); removed {bench.root}" in bench.output


@pytest.fixture
def bench_root() -> Iterator[Path]:
    parent = server_root("dbp-test-bench-")
    yield parent / "data"  # the bench creates it, so it removes it
    for pid in processes_naming(parent):  # only if a test failed half-way
        os.kill(pid, signal.SIGKILL)
    import shutil

    if (parent / "data").exists():  # kept by the bench (it existed before): its data outside it too, as root
        LocalServers(parent / "data").delete()
    shutil.rmtree(parent, ignore_errors=True)


def test_bench_measures_everything_then_stops_and_removes_its_data(bench_root: Path) -> None:
    bench = Bench(bench_root, TINY)
    bench.wait_for("bulk insert of 300 detection rows")
    pids = bench.server_pids()
    assert all(alive(pid) for pid in pids.values())
    assert bench.finish() == 0, bench.output
    for what in MEASURED:
        assert any(line.strip().startswith(what) for line in bench.lines), (what, bench.output)
    assert_cleaned_up(bench, pids)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_signal_mid_run_stops_the_servers_and_removes_the_data(bench_root: Path, signum: int, code: int) -> None:
    bench = Bench(bench_root, SMALL)
    bench.wait_for("bulk insert of 5,000 detection rows")
    pids = bench.server_pids()
    time.sleep(0.5)  # inside a measurement
    bench.proc.send_signal(signum)
    assert bench.finish(timeout=120) == code, bench.output
    assert "bench: terminated" in bench.output or "bench: interrupted" in bench.output
    assert "python -m dbp --help" not in bench.output  # it really stopped half-way
    assert_cleaned_up(bench, pids)


def test_an_existing_local_dir_is_kept_but_its_servers_stopped(bench_root: Path) -> None:
    LocalServers(bench_root).stop()  # a dbp local folder already (dbp refuses to take over any other folder)
    (bench_root / "mine.txt").write_text("not the bench's\n")
    bench = Bench(bench_root, [*TINY, "--engine", "sql"])
    bench.wait_for("bulk insert of 300 detection rows")
    pid = int((bench_root / "pg" / "postmaster.pid").read_text().splitlines()[0])
    assert bench.finish() == 0, bench.output
    assert not alive(pid)
    assert (bench_root / "mine.txt").read_text() == "not the bench's\n"
    assert f"bench: stopped sql server(s); kept {bench_root}" in bench.output


def test_the_queries_bench_measures_every_figure_at_a_tiny_size(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    root = tmp_path / "servers"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_queries.py"), "--objects", "2000", "--mongo-objects", "150",
         "--deep-page", "10", "--per-page", "10", "--calls", "2", "--local-dir", str(root)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for what in ("paginate(object_list), page 3 + total", "keyset page 10 (by the key)", "offset page 10",
                 "keyset page 10 (by ndet, many ties)", "paginate(object_list) pipeline, page 3",
                 "pipeline keyset page"):
        assert any(line.strip().startswith(what) for line in done.stdout.splitlines()), (what, done.stdout)
    assert "target <= 1.1x" in done.stdout and "target <= 3x" in done.stdout
    assert "bench: stopped sql, mongo server(s)" in done.stdout
    assert processes_naming(root) == []  # its servers are stopped
    LocalServers(root).delete()  # the folder was given: kept, with its data outside it (as root, PostgreSQL's)


def test_the_cone_bench_runs_tiny(bench_root: Path) -> None:
    """bench/bench_cone.py at tiny sizes: every ratio printed, its servers stopped, its folder removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_cone.py"), "--objects", "3000", "--positions", "50",
         "--cones", "10", "--mongo-objects", "500", "--local-dir", str(bench_root)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for what in ('2" cone, portable path', "crossmatch of 50, portable path", "portable plan: Index Scan",
                 '2" cone (500 documents)'):
        assert what in done.stdout, (what, done.stdout)
    assert not bench_root.exists()
    assert processes_naming(bench_root) == []


NIGHT = ["--rows", "3000", "--per-object", "10", "--batch", "1000", "--repeat", "2", "--lookups", "20"]


def test_the_night_bench_runs_tiny(bench_root: Path) -> None:
    """bench/bench_night.py at a tiny size: every ratio and the lookup's plan printed, its servers deleted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_night.py"), *NIGHT, "--local-dir",
                           str(bench_root)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for what in ("bulk_insert(on_conflict='error'), detections", "bulk_insert(on_conflict='update'), objects",
                 "the whole night", "INSERT ... VALUES (1,000 rows) ON CONFLICT", "prepared (psycopg default)",
                 "never prepared", "partitions of object read for one oid: 1 of 8", "the bundled detections query"):
        assert what in done.stdout, (what, done.stdout)
    assert done.stdout.count("target >= 0.9") == 3
    assert f"bench: servers deleted; removed {bench_root}" in done.stdout
    assert not bench_root.exists()
    assert processes_naming(bench_root) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_the_night_bench_stopped_mid_run_deletes_its_servers(bench_root: Path, signum: int, code: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bench_night.py"), "--rows", "200000",
                             "--local-dir", str(bench_root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the night's first round has begun: its servers run
        lines.append(line)
        if line.startswith("one night:"):
            break
    pid = int((bench_root / "servers" / "pg" / "postmaster.pid").read_text().splitlines()[0])
    time.sleep(1.0)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    output = "".join(lines) + out
    assert proc.returncode == code, output
    assert "round 1:" not in output and "bench: servers deleted" in output  # it stopped half-way, then cleaned up
    assert not alive(pid) and not bench_root.exists() and processes_naming(bench_root) == []
