"""Project-local servers: only dbp's own files are ever changed or removed; status reads safely; folder names
are printed with their control characters escaped (adversary findings on dbp.local)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dbp.errors import ConfigError
from dbp.local import LocalServers

MARKER = ".dbp-local"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _project(tmp_path: Path) -> Path:
    """A folder of the user's that is not dbp's: a script, a data file, a folder named like dbp's."""
    root = tmp_path / "project"
    root.mkdir(mode=0o755)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "notes.txt").write_text("mine\n")
    (root / "mongo").mkdir()
    (root / "mongo" / "keep").write_text("mine\n")
    return root


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): mode(p) for p in [root, *root.rglob("*")]}


def test_delete_refuses_a_folder_without_dbps_marker(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = _snapshot(root)
    with pytest.raises(ConfigError, match=rf"^refusing to delete {root}: it is not a dbp local folder "
                                          rf"\(it has no {MARKER}\); remove what you no longer need in it yourself$"):
        LocalServers(root).delete()
    assert _snapshot(root) == before


def test_start_refuses_a_folder_that_is_not_dbps_before_changing_anything(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = _snapshot(root)
    expected = (rf"^refusing {root}: it is not a dbp local folder \(it has no {MARKER}, and holds 'notes.txt' and "
                r"more\); set DBP_LOCAL_DIR to a new or empty folder$")
    with pytest.raises(ConfigError, match=expected):
        LocalServers(root).start(["sql"])
    assert _snapshot(root) == before  # no .lock, no marker, no mode changed


def test_delete_removes_only_dbps_entries(tmp_path: Path) -> None:
    root = tmp_path / ".dbp"
    servers = LocalServers(root)
    servers.stop()  # makes the folder, with its marker
    assert (root / MARKER).is_file() and mode(root / MARKER) == 0o600
    (root / "pg.log").write_text("log\n")
    (root / "mongo").mkdir(mode=0o700)
    (root / "mine.txt").write_text("kept\n")  # the user's, put there later
    servers.delete()
    assert sorted(p.name for p in root.iterdir()) == ["mine.txt"]
    (root / "mine.txt").unlink()
    servers.stop()
    servers.delete()
    assert not root.exists()


def test_only_dbps_files_are_made_private(tmp_path: Path) -> None:
    root = tmp_path / ".dbp"
    servers = LocalServers(root)
    servers.stop()
    (root / "mongo.json").write_text("{}")
    (root / "mongo.json").chmod(0o644)  # as an older dbp left it
    (root / "mine.sh").write_text("#!/bin/sh\n")
    (root / "mine.sh").chmod(0o755)
    servers.stop()
    assert mode(root / "mongo.json") == 0o600 and mode(root / "mine.sh") == 0o755


def test_status_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "none" / ".dbp"
    states = LocalServers(root).status()
    assert [s.running for s in states] == [False, False]
    assert not root.parent.exists()


def _status(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBP_LOCAL_DIR": str(root)}
    try:
        return subprocess.run([sys.executable, "-m", "dbp", "local", "status"], env=env, timeout=30,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("dbp local status blocked")


def test_status_refuses_a_fifo_for_postmaster_pid_in_ones_own_folder(tmp_path: Path) -> None:
    root = tmp_path / ".dbp"
    LocalServers(root).stop()
    (root / "pg").mkdir(mode=0o700)
    os.mkfifo(root / "pg" / "postmaster.pid", 0o600)
    done = _status(root)
    assert done.returncode != 0
    assert f"refusing {root}/pg/postmaster.pid: it is neither a file nor a folder; remove it" in done.stderr


def test_status_prints_a_folder_name_with_its_control_characters_escaped(tmp_path: Path) -> None:
    root = tmp_path / "a\nb\x1b[31m" / ".dbp"
    done = _status(root)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout, done.stdout
    # one line per engine, its details indented, the folder last: the name's newline split none of them
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == ["sql", "mongo", "local"], done.stdout
    assert "a\\nb\\x1b[31m" in next(line for line in lines if "pg.log" in line)  # (as root the data is elsewhere)


def test_a_link_in_the_mongo_data_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    root = tmp_path / ".dbp"
    (root / "mongo").mkdir(parents=True, mode=0o700)
    (root / "mongo" / "data.sqlite").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match=r"data.sqlite: it is a symbolic link; remove it$"):
        LocalServers(root).start(["mongo"])
    assert sorted(p.name for p in root.iterdir()) == ["mongo"]  # no .lock, no marker
