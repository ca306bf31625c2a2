"""Issue 20, items 16-17: no folder name reaches a shell; a ``.dbp`` someone else planted is refused.

Item 16 starts real servers in folders whose names a shell would run, as root
(the data folder outside the project, named by ``$DBP_LOCAL_PG_ROOT``) and as a
normal user (a user namespace maps this root to uid 1000, so the data lives in
the project folder), through the API and through ``python -m dbp --local``.
Item 17 plants files owned by ``nobody`` and symbolic links to a victim file,
and checks that dbp refuses them before touching anything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

import dbp
from dbp.errors import ConfigError
from dbp.local import LocalServers
from dbp.sql import local as sql_local

from .conftest import ROOT, server_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(sys.executable).parent / "secantusd-py").exists(), reason="needs dbp[local]"),
    pytest.mark.own_servers,
]

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership by another user needs root")
NOBODY = 65534
#: Every shell metacharacter that matters, a space, and a comma (libpq's host list separator).
HOSTILE = "sp ace&id>X&b;id>Y,$(id>Z)`id>W`'q\"d"
MARKERS = ("X", "Y", "Z", "W")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def markers(top: Path) -> list[Path]:
    return [p for p in top.rglob("*") if p.name in MARKERS]


@pytest.fixture
def top() -> Iterator[Path]:
    made = server_root("dbp-test-trust3-")
    yield made
    shutil.rmtree(made, ignore_errors=True)


# -- item 16: folder names never reach a shell ----------------------------------------------------


@as_root
@pytest.mark.parametrize("name", [HOSTILE, "a&id>X&b"])
def test_as_root_a_hostile_data_folder_runs_nothing(name: str, top: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top.chmod(0o711)  # the server's own user must traverse it to reach the data folder
    base = top / name / "pgroot"
    base.parent.mkdir(mode=0o711)
    monkeypatch.setenv(sql_local.ROOT_DATA_ENV, str(base))
    servers = LocalServers(top / name / "proj" / ".dbp")
    sockets: Optional[Path] = None
    try:
        url = servers.start(["sql"])["sql"]
        with dbp.connect({"SQL": sql_local.section(url, "postgres")}, engine="sql") as db:
            db.ping()
        assert str(base) in str(sql_local._data(servers.root).resolve())
        assert servers.stop() == ["sql"]
        assert servers.start(["sql"])["sql"] == url  # and it starts again over its data
        sockets = sql_local._socket_fallback(sql_local._data(servers.root).resolve())
        assert (sockets is not None) == ("," in name)  # libpq cannot take a socket folder with a comma
    finally:
        servers.delete()
    assert markers(top) == []
    assert sockets is None or not sockets.exists()  # removed with the data


def _unprivileged() -> list[str]:
    """A command prefix that runs as uid 1000 (files of this root appear as its own)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1)")
    probe = subprocess.run([unshare, "--user", "--map-user=1000", "--map-group=1000", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available")
    return [unshare, "--user", "--map-user=1000", "--map-group=1000"]


#: Runs each argument as a ``python -m dbp`` command line; prints [returncode, stdout, stderr] of each.
DRIVER = (
    "import json, subprocess, sys\n"
    "done = [subprocess.run([sys.executable, '-m', 'dbp', *a.split()], capture_output=True, text=True)"
    " for a in sys.argv[1:]]\n"
    "print(json.dumps([[d.returncode, d.stdout, d.stderr] for d in done]))\n"
)


def test_as_a_user_the_cli_works_in_a_hostile_project_folder(top: Path) -> None:
    import json

    prefix = _unprivileged()
    project = top / HOSTILE
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(top))
    # one user namespace for every command (a process cannot inspect one in a sibling namespace)
    commands = ["init-project .", "--local initdb", "--local check-config", "local stop"]
    ran = subprocess.run([*prefix, sys.executable, "-c", DRIVER, *commands], cwd=project, env=env,
                         capture_output=True, text=True, timeout=400)
    assert ran.returncode == 0, ran.stderr
    (made, done, checked, stopped) = json.loads(ran.stdout)
    assert made[0] == 0, made[2]
    assert done[0] == 0, done[2]
    assert checked[0] == 0, checked[2]
    assert checked[1].count("reachable") == 2, checked[1]
    assert stopped[0] == 0, stopped[2]
    assert "sql" in stopped[1] and "mongo" in stopped[1]
    assert (project / ".dbp" / "pg" / "PG_VERSION").is_file()  # the data is in the project folder
    assert markers(top) == []
    sockets = sql_local._socket_fallback(project / ".dbp" / "pg")  # the name has a comma: a socket folder of dbp's
    assert sockets is not None and sockets.is_dir()
    shutil.rmtree(sockets)


@as_root
def test_a_data_folder_with_a_newline_is_refused_clearly(top: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sql_local.ROOT_DATA_ENV, str(top / "new\nline"))
    servers = LocalServers(top / "proj" / ".dbp")
    with pytest.raises(ConfigError, match=r"^PostgreSQL cannot keep its data in .*new\\nline.* newline") as caught:
        servers.start(["sql"])
    assert "\n" not in str(caught.value)


# -- item 17: a .dbp made by another user ------------------------------------------------------


@pytest.fixture
def victim(top: Path) -> Path:
    path = top / "victim"
    path.write_text("precious\n")
    path.chmod(0o644)
    return path


def _nobody_folder(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    os.chown(root, NOBODY, NOBODY)


def _planted_secret(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    (root / "mongo.secret").write_text("chosen-by-the-attacker\n")
    os.chown(root / "mongo.secret", NOBODY, NOBODY)


def _symlink_in_mongo(root: Path, victim: Path) -> None:
    (root / "mongo").mkdir(parents=True, mode=0o700)
    (root / "mongo" / "data.sqlite").symlink_to(victim)


def _log_symlink(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    (root / "mongo.log").symlink_to(victim)


def _dbp_symlink(root: Path, victim: Path) -> None:
    os.symlink(victim.parent, root)
    os.lchown(root, NOBODY, NOBODY)


def _lock_symlink(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    (root / ".lock").symlink_to(victim)


def _pg_symlink(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    (root / "pg").symlink_to(victim.parent)


def _secret_readable(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    (root / "mongo.secret").write_text("x" * 32 + "\n")
    (root / "mongo.secret").chmod(0o644)


def _project_of_nobody(root: Path, victim: Path) -> None:
    os.chown(root.parent, NOBODY, NOBODY)  # nobody could swap .dbp for a link at any moment
    root.mkdir(mode=0o700)


def _fifo_log(root: Path, victim: Path) -> None:
    root.mkdir(mode=0o700)
    os.mkfifo(root / "mongo.log", 0o600)  # an open for writing would wait for a reader for ever


def _world_writable(root: Path, victim: Path) -> None:
    root.mkdir()
    root.chmod(0o777)


NOT_YOURS = r"it belongs to uid 65534, not to you \(uid 0\); remove it or chown it$"
PLANTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    # name: (plant(root, victim), the message expected)
    "folder of nobody": (_nobody_folder, r"^refusing {root}: " + NOT_YOURS),
    "secret of nobody": (_planted_secret, r"^refusing {root}/mongo.secret: " + NOT_YOURS),
    "symlink in mongo": (_symlink_in_mongo, r"^refusing {root}/mongo/data.sqlite: it is a symbolic link; remove it$"),
    "mongo.log symlink": (_log_symlink, r"^refusing {root}/mongo.log: it is a symbolic link; remove it$"),
    ".dbp symlink": (_dbp_symlink, r"^refusing {root}: it is a symbolic link of uid 65534, not yours; remove it$"),
    ".lock symlink": (_lock_symlink, r"^refusing {root}/.lock: it is a symbolic link; remove it$"),
    "pg symlink": (_pg_symlink, r"^refusing {root}/pg: it links to {top}, not to a folder of dbp's; remove it$"),
    "readable secret": (_secret_readable, r"^refusing {root}/mongo.secret: others can read or write it \(mode 644\); "
                                          r"chmod 600 it or remove it$"),
    "project of nobody": (_project_of_nobody, r"^refusing {root}: its folder {top}/proj belongs to uid 65534, "
                                              r"who could replace it; set DBP_LOCAL_DIR to a folder of yours$"),
    "mongo.log fifo": (_fifo_log, r"^refusing {root}/mongo.log: it is neither a file nor a folder; remove it$"),
    "world-writable folder": (_world_writable, r"^refusing {root}: others can write in it \(mode 777\); "
                                               r"chmod 700 it or remove it$"),
}


@as_root
@pytest.mark.parametrize("case", list(PLANTS))
def test_a_planted_dbp_folder_is_refused(case: str, top: Path, victim: Path) -> None:
    import re

    root = top / "proj" / ".dbp"
    root.parent.mkdir()
    plant, expected = PLANTS[case]
    plant(root, victim)
    for_victim = sorted(victim.parent.iterdir())
    servers = LocalServers(root)
    try:
        with pytest.raises(ConfigError) as caught:
            servers.start(["sql"] if case == "pg symlink" else ["mongo"])
        assert re.match(expected.format(root=re.escape(str(root)), top=re.escape(str(top))), str(caught.value)), \
            str(caught.value)
        for process in ("secantusd-py", "postgres"):  # nothing started
            found = subprocess.run(["pgrep", "-f", f"{process}.*{root}"], capture_output=True, text=True)
            assert found.stdout == "", (process, found.stdout)
    finally:
        with contextlib.suppress(Exception):
            servers.stop()
    assert victim.read_text() == "precious\n" and mode(victim) == 0o644 and victim.stat().st_uid == 0
    assert sorted(victim.parent.iterdir()) == for_victim
    assert mode(victim.parent) == 0o700 and victim.parent.stat().st_uid == 0  # mkdtemp's, unchanged
    if case == "secret of nobody":
        assert (root / "mongo.secret").read_text() == "chosen-by-the-attacker\n"
