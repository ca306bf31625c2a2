"""A newcomer's path, part 2 (issue 21): the project found from any subfolder, local data one can see and
remove, and a command line that says what it takes.

Every command runs as a user runs it: ``python -m dbp`` in a subprocess. Only one test starts servers.
"""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbp.config import find_project, find_settings, load_config
from dbp.local import LocalServers

from .conftest import ROOT, server_root

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="files of another user need root")
needs_local = pytest.mark.skipif(not (Path(sys.executable).parent / "secantusd-py").exists(), reason="needs dbp[local]")


def tree(*folders: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``folders`` with its kind and mode (file contents aside: dbp writes none it keeps)."""
    found = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            info = os.lstat(path)
            kind = "link" if stat.S_ISLNK(info.st_mode) else "dir" if stat.S_ISDIR(info.st_mode) else "file"
            found[str(path)] = (kind, stat.S_IMODE(info.st_mode))
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


# -- the project root, found from a subfolder -----------------------------------------------------------


def test_the_nearest_dbp_toml_is_the_project_from_any_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = tmp_path / "outer"
    project = outer / "proj"
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    (outer / "dbp.toml").write_text('[DB_CONFIG.SQL]\nURL = "postgresql://u@outer/x"\n')
    (project / "dbp.toml").write_text('[DB_CONFIG.SQL]\nURL = "postgresql://u@h/x"\nSCHEMA_DIR = "sql"\n')
    (deep / "settings.py").write_text("DB_CONFIG = {}\n")  # a settings.py below a project does not win over it
    assert find_project(deep) == project  # the nearest, not the outermost
    assert find_settings(None, cwd=deep, environ={}) == project / "dbp.toml"
    assert find_settings(None, cwd=project, environ={}) == project / "dbp.toml"
    (project / "dbp.toml").rename(project / "moved.toml")
    assert find_project(deep) == outer
    (project / "moved.toml").rename(project / "dbp.toml")
    # explicit names win
    assert find_settings(None, cwd=deep, environ={"DBP_SETTINGS": str(outer / "dbp.toml")}) == outer / "dbp.toml"
    assert find_settings(outer / "dbp.toml", cwd=deep, environ={}) == outer / "dbp.toml"
    # relative paths stay relative to the settings file, not to the folder one runs in
    monkeypatch.chdir(deep)
    for key in [k for k in os.environ if k.startswith("DBP_")]:
        monkeypatch.delenv(key)
    config = load_config()
    assert config.source == project / "dbp.toml"
    assert config["SQL"]["SCHEMA_DIR"] == str(project / "sql")
    # with no dbp.toml anywhere above, ./settings.py as before
    lone = server_root("dbp-test-lone-")
    try:
        (lone / "settings.py").write_text("DB_CONFIG = {}\n")
        assert find_project(lone) is None
        assert find_settings(None, cwd=lone, environ={}) == lone / "settings.py"
    finally:
        shutil.rmtree(lone)


def test_verbose_names_the_project_and_the_local_folder_is_the_projects(run_dbp: Any, tmp_path: Path) -> None:
    assert run_dbp("init-project", "proj").returncode == 0
    sub = tmp_path / "proj" / "sql" / "schema"
    shown = run_dbp("-v", "status", cwd=sub)
    assert f"dbp: project {tmp_path / 'proj'} " in shown.stderr, shown.stderr
    status = run_dbp("local", "status", cwd=sub)
    assert status.returncode == 0, status.stderr
    assert f"local data in {tmp_path / 'proj' / '.dbp'} (none yet)" in status.stdout
    assert not (sub / ".dbp").exists() and not (tmp_path / "proj" / ".dbp").exists()  # status makes nothing
    stopped = run_dbp("local", "stop", cwd=sub)
    assert stopped.returncode == 0 and "nothing was running" in stopped.stdout
    assert not (tmp_path / "proj" / ".dbp").exists()  # nor does a stop with nothing to stop
    nowhere = run_dbp("-v", "status")
    assert f"no dbp.toml in {tmp_path} or any folder above it" in nowhere.stderr
    assert nowhere.returncode == 78 and "no settings found" in nowhere.stderr  # today's message


@as_root
def test_the_walk_ignores_another_users_dbp_toml_and_folders(tmp_path: Path) -> None:
    top = server_root("dbp-test-walk-")
    try:
        planted = top / "dbp.toml"
        planted.write_text('[DB_CONFIG.SQL]\nURL = "postgresql://evil@h/x"\n')
        os.chown(planted, NOBODY, NOBODY)
        mine = top / "mine"
        mine.mkdir()
        assert find_project(mine) is None  # someone else's file above: never read by surprise
        assert find_project(top) == top  # in the folder one runs in, it is what one asked for
        planted.unlink()
        theirs = top / "theirs"
        (theirs / "inner").mkdir(parents=True)
        (top / "dbp.toml").write_text("")
        os.chown(theirs, NOBODY, NOBODY)
        assert find_project(theirs / "inner") is None  # the walk does not climb out of another user's folder
    finally:
        shutil.rmtree(top)


# -- .gitignore --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [
    (None, ".dbp/\n"),
    ("", ".dbp/\n"),
    ("*.pyc\n", "*.pyc\n.dbp/\n"),
    ("*.pyc", "*.pyc\n.dbp/\n"),  # no newline at its end
    ("build/\n/.dbp\n", "build/\n/.dbp\n"),  # already ignored: left alone
    (".dbp/\n", ".dbp/\n"),
])
def test_init_project_adds_dbp_to_gitignore_once(run_dbp: Any, tmp_path: Path, before: str, after: str) -> None:
    ignore = tmp_path / ".gitignore"
    if before is not None:
        ignore.write_text(before)
    made = run_dbp("init-project")
    assert made.returncode == 0, made.stderr
    assert ignore.read_text() == after
    assert (f"wrote {ignore}" in made.stdout) == (before != after)


def test_init_project_never_writes_through_a_gitignore_link(run_dbp: Any, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".gitignore").symlink_to(victim)
    refused = run_dbp("init-project", "proj")
    assert refused.returncode == 1
    assert "is not a plain file" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in project.iterdir()) == [".gitignore"]  # nothing written


# -- the command line --------------------------------------------------------------------------------


def test_no_arguments_lists_the_commands(run_dbp: Any) -> None:
    shown = run_dbp()
    assert shown.returncode == 2  # a usage error, as argparse gives for a missing command
    for command in ("check-config", "initdb", "migrate", "status", "init-project", "local"):
        assert command in shown.stderr
    assert "usage: dbp" in shown.stderr and shown.stdout == ""


@pytest.mark.parametrize(("command", "present", "absent"), [
    ("init-project", ["--engine", "-v"], ["--settings", "--local", "--lock-timeout", "--sql-dir", "--yes"]),
    ("local", ["--settings", "--engine", "--yes", "delete"], ["--local", "--lock-timeout", "--sql-dir"]),
    ("check-config", ["--settings", "--local"], ["--lock-timeout", "--sql-dir", "--yes"]),
    ("initdb", ["--adopt", "--sql-dir"], ["--lock-timeout", "--yes"]),
    ("dropdb", ["--yes", "--force"], ["--lock-timeout", "--sql-dir"]),
    ("status", ["--exit-code", "--sql-dir"], ["--lock-timeout", "--yes"]),
    ("migrate", ["--lock-timeout", "--sql-dir"], ["--yes"]),
    ("rollback", ["--lock-timeout", "--steps"], ["--yes", "--dry-run"]),
    ("make_migrations", ["--empty", "--sql-dir"], ["--lock-timeout", "--yes"]),
])
def test_each_commands_help_shows_only_its_options(run_dbp: Any, command: str, present: list[str],
                                                   absent: list[str]) -> None:
    import re

    shown = run_dbp(command, "--help")
    assert shown.returncode == 0, shown.stderr
    usage = shown.stdout.split("\n\n", 1)[0]  # the usage lines name every option the command takes
    listed = set(re.findall(r"(?m)^ {2}(-[\w-]+)", shown.stdout)) | set(re.findall(r"^ {2}-\w, (--[\w-]+)",
                                                                                   shown.stdout, re.M))
    for option in present:
        assert option in usage, (command, option)
    for option in absent:
        assert not re.search(rf"{option}\b", usage) and option not in listed, (command, option)


def test_a_common_option_before_a_command_that_does_not_take_it_is_refused(run_dbp: Any, tmp_path: Path) -> None:
    refused = run_dbp("--local", "init-project")
    assert refused.returncode == 2 and "init-project does not take --local" in refused.stderr
    assert not (tmp_path / "dbp.toml").exists()
    assert run_dbp("--settings", "x.toml", "init-project").returncode == 2
    assert run_dbp("local", "status", "--yes").returncode == 2


def test_a_python_settings_file_missing_an_environment_variable_names_it(run_dbp: Any, tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text(
        'import os\n\nDB_CONFIG = {"SQL": {"URL": os.environ["ALERCE_DB_URL"]}}\n')
    shown = run_dbp("check-config")
    assert shown.returncode == 78
    line = shown.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith(f"dbp: error: {tmp_path / 'settings.py'}: line 3 reads environment variable "
                           "ALERCE_DB_URL"), line
    assert "not set" in line


@pytest.mark.parametrize(("code", "kind", "line"), [
    ('x = {"a": 1}["hunter2-secret"]\n', "KeyError", 1),  # a dict's KeyError may name a value: not repeated
    ('import os\nraise ValueError(os.environ["SECRET_FOR_TEST"])\n', "ValueError", 2),
    ("\n\nx = 1 / 0\n", "ZeroDivisionError", 3),
])
def test_other_failures_of_a_python_settings_file_name_the_file_line_and_type_only(
    run_dbp: Any, tmp_path: Path, code: str, kind: str, line: int
) -> None:
    (tmp_path / "settings.py").write_text(code)
    shown = run_dbp("check-config", env={"SECRET_FOR_TEST": "hunter2-secret"})
    assert shown.returncode == 78
    assert shown.stderr.strip() == f"dbp: error: {tmp_path / 'settings.py'}: settings file raised {kind} at line {line}"
    assert "hunter2" not in shown.stderr + shown.stdout


def test_dbp_airflow_without_airflow_names_the_extra(tmp_path: Path) -> None:
    # A child where `import airflow` fails, as where it is not installed (sys.modules[name] = None blocks it).
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['airflow'] = None\n")
    code = (
        "import dbp\n"
        "try:\n"
        "    from dbp.airflow import DbpHook\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, isinstance(exc, dbp.DbpError), isinstance(exc, dbp.ConfigError))\n"
        "    print(exc)\n"
        "from dbp.airflow import get_provider_info\n"  # what needs no Airflow still works
        "print(get_provider_info()['name'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=clean_env(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"))
    assert done.returncode == 0, done.stderr
    kind, message, name = done.stdout.splitlines()
    assert kind == "ExtraMissing True True"
    assert "pip install 'alerce-dbp[airflow]'" in message and "DbpHook" in message
    assert name == "dbp"


def test_the_airflow_extra_installs_the_providers_the_readme_needs() -> None:
    text = (ROOT / "setup.cfg").read_text()
    extra = text.split("\nairflow =\n", 1)[1].split("\n\n", 1)[0]
    for package in ("apache-airflow", "apache-airflow-providers-postgres", "apache-airflow-providers-mongo"):
        assert package in extra
    assert "'.[airflow]'" in (ROOT / ".ci" / "airflow-leg").read_text()  # CI installs it as a user does


# -- local delete without servers: refusals -------------------------------------------------------------


@pytest.fixture
def project() -> Iterator[Path]:
    """A project folder (outside pytest's tmp tree, see server_root) with a dbp.toml and a subfolder."""
    top = server_root("dbp-test-newcomer2-")
    (top / "proj" / "sub").mkdir(parents=True)
    (top / "proj" / "dbp.toml").write_text("")
    try:
        yield top / "proj"
    finally:
        shutil.rmtree(top, ignore_errors=True)  # (no test using it starts a server)


def dbp_in(folder: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dbp", *args], cwd=folder, env=clean_env(**kw.pop("env", {})),
                          capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def a_stopped_folder(project: Path) -> Path:
    """``PROJECT/.dbp`` as dbp leaves it after servers ran and stopped (no server needed): marker, lock, files."""
    root = project / ".dbp"
    LocalServers(root).stop()  # makes the folder with its marker and lock
    (root / "mongo").mkdir(mode=0o700)
    (root / "mongo" / "data.sqlite").write_bytes(b"x")
    (root / "mongo.log").write_text("log\n")
    for path in (root / "mongo.log", root / "mongo" / "data.sqlite"):
        path.chmod(0o600)
    return root


def test_local_delete_asks_only_on_a_terminal(project: Path) -> None:
    root = a_stopped_folder(project)
    before = tree(project)
    refused = dbp_in(project / "sub", "local", "delete", stdin=subprocess.DEVNULL)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("dbp: error: local delete removes the local servers' data for good; "
                                      "add --yes to confirm (it asks only on a terminal)")
    assert tree(project) == before

    def on_a_terminal(answer: bytes) -> tuple[int, str]:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "dbp", "local", "delete"], cwd=project / "sub",
                                env=clean_env(), stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        os.write(leader, answer)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            out += chunk
        os.close(leader)
        return proc.wait(60), out.decode(errors="replace")

    code, out = on_a_terminal(b"n\n")
    assert code == 1 and f"delete all their data in {root}?" in out and "nothing deleted" in out, out
    assert tree(project) == before
    code, out = on_a_terminal(b"y\n")
    assert code == 0 and f"removed {root}" in out, out
    assert not root.exists()
    for args in (["--yes"], []):  # nothing to ask about, even off a terminal
        again = dbp_in(project, "local", "delete", *args, stdin=subprocess.DEVNULL)
        assert again.returncode == 0 and again.stdout.strip() == f"nothing to delete: no local data in {root}"


def test_local_delete_waits_for_no_one_and_removes_nothing_while_another_command_holds_the_lock(
    project: Path
) -> None:
    root = a_stopped_folder(project)
    before = tree(project)
    with open(root / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a start or stop under way does
        busy = dbp_in(project, "local", "delete", "--yes", timeout=30)
    assert busy.returncode == 75, busy.stderr
    assert busy.stderr.strip() == (f"dbp: error: another dbp command is using the local servers in {root} (it holds "
                                   ".lock); nothing was changed: run this again once it is done")
    assert tree(project) == before


def test_local_delete_refuses_a_folder_dbp_did_not_make(project: Path) -> None:
    root = project / ".dbp"
    root.mkdir(mode=0o700)
    (root / "mine.txt").write_text("mine\n")
    before = tree(project)
    refused = dbp_in(project / "sub", "local", "delete", "--yes")
    assert refused.returncode == 78
    assert "it is not a dbp local folder" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert tree(project) == before


@as_root
@pytest.mark.parametrize("case", ["link of nobody", "folder of nobody", "pg link elsewhere"])
def test_local_delete_refuses_what_start_refuses(project: Path, case: str) -> None:
    victim = project.parent / "victim"
    victim.mkdir(mode=0o700)
    (victim / "precious").write_text("precious\n")
    (victim / ".dbp-local").write_text("")  # even a folder with dbp's marker, if reached through a planted link
    root = project / ".dbp"
    if case == "link of nobody":
        root.symlink_to(victim)
        os.lchown(root, NOBODY, NOBODY)
        expected = f"refusing {root}: it is a symbolic link of uid {NOBODY}, not yours; remove it"
    elif case == "folder of nobody":
        a_stopped_folder(project)
        for path in [root, *root.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
        expected = f"refusing {root}: it belongs to uid {NOBODY}, not to you (uid 0); remove it or chown it"
    else:
        a_stopped_folder(project)
        (root / "pg").symlink_to(victim)
        expected = f"refusing {root}/pg: it links to {victim}, not to a folder of dbp's; remove it"
    before = tree(project.parent)
    for command in (["local", "delete", "--yes"], ["local", "start", "--engine", "mongo"]):
        refused = dbp_in(project / "sub", *command, timeout=60)
        assert refused.returncode == 78, (command, refused.stderr)
        assert refused.stderr.strip() == f"dbp: error: {expected}", (command, refused.stderr)
        assert tree(project.parent) == before


# -- local servers, started once --------------------------------------------------------------------------


def running(*folders: Path) -> list[str]:
    """The local servers (PostgreSQL's processes, secantusd-py) running on data in ``folders``."""
    found = []
    for process in ("secantusd-py", "postgres"):
        for folder in folders:
            listed = subprocess.run(["pgrep", "-f", f"{process}.*{folder}"], capture_output=True, text=True)
            found += listed.stdout.split()
    return found


@pytest.mark.slow
@needs_local
@pytest.mark.own_servers
def test_one_set_of_servers_from_any_subfolder_and_delete_removes_every_byte(tmp_path: Path) -> None:
    top = server_root("dbp-test-newcomer2-run-")
    top.chmod(0o711)  # as root, the server's own user must traverse it to reach its data folder
    pg_base = top / "pgroot"  # as root, PostgreSQL's data lives outside the project: here, not /var/lib/dbp
    pg_base.mkdir(mode=0o711)
    env = {"DBP_LOCAL_PG_ROOT": str(pg_base)}
    project = top / "proj"
    try:
        made = dbp_in(top, "init-project", "proj")
        assert made.returncode == 0, made.stderr
        first, second = project / "notebooks", project / "sql" / "schema"
        first.mkdir()
        before = tree(project, pg_base)

        done = dbp_in(first, "--local", "initdb", env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"local data in {project / '.dbp'} " in done.stderr
        assert not (first / ".dbp").exists()
        again = dbp_in(second, "--local", "status", "--exit-code", env=env, timeout=300)
        assert again.returncode == 3, again.stderr + again.stdout  # initialized; cone indexes pending
        elsewhere = dbp_in(tmp_path, "--local", "--settings", str(project / "dbp.toml"), "check-config", env=env)
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert not (tmp_path / ".dbp").exists()
        assert sorted(p.name for p in project.rglob(".dbp")) == [".dbp"]  # one folder: one set of servers

        shown = dbp_in(second, "local", "status", env=env)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert [line.split()[:2] for line in lines if line[:1] != " "][:2] == [["sql", "running"],
                                                                              ["mongo", "running"]], shown.stdout
        assert shown.stdout.count("database  dbp") == 2
        for path in (project / ".dbp" / "mongo", project / ".dbp" / "mongo.secret", project / ".dbp" / "mongo.log",
                     project / ".dbp" / "pg.log"):
            assert f" {path}\n" in shown.stdout, (path, shown.stdout)
        if os.geteuid() == 0:
            pg_data = next(line for line in lines if line.strip().startswith("data") and str(pg_base) in line)
            assert pg_data.endswith("/pg (outside the project)"), pg_data
        assert (project / ".dbp" / "mongo.secret").read_text().strip() not in shown.stdout

        deleted = dbp_in(first, "local", "delete", "--yes", env=env, timeout=120)
        assert deleted.returncode == 0, deleted.stderr
        assert f"removed {project / '.dbp'}" in deleted.stdout
        assert tree(project, pg_base) == before  # every byte it made, in the project and outside it
        assert running(project, pg_base) == []
        nothing = dbp_in(first, "local", "delete", "--yes", env=env)
        assert nothing.returncode == 0 and "nothing to delete" in nothing.stdout

        # .dbp removed by hand while the servers run: delete still stops them and removes what is left
        assert dbp_in(first, "--local", "check-config", env=env, timeout=300).returncode == 0
        shutil.rmtree(project / ".dbp")
        if os.geteuid() == 0:  # PostgreSQL's data outlives it, outside the project: status shows it
            shown = dbp_in(first, "local", "status", env=env)
            assert f" {pg_base}/" in shown.stdout and not (project / ".dbp").exists(), shown.stdout
        lost = dbp_in(first, "local", "delete", "--yes", env=env, timeout=120)
        assert lost.returncode == 0, lost.stderr
        assert tree(project, pg_base) == before
        assert running(project, pg_base) == []
    finally:
        LocalServers(project / ".dbp").delete() if (project / ".dbp").exists() else None
        shutil.rmtree(top, ignore_errors=True)
