"""The distribution is ``alerce-dbp`` (the index's ``dbp`` is someone else's); import and command stay ``dbp``."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

DIST = "alerce-dbp"
#: Where install hints can appear: the package's messages, the docs, CI and the benchmark.
HINT_FILES = [*sorted((ROOT / "dbp").rglob("*.py")), ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
              ROOT / "man" / "dbp.1",
              ROOT / ".ci" / "run", *sorted((ROOT / "bench").glob("*.py")), ROOT / "setup.cfg"]


def install_commands(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in ``text`` (quotes removed; a line's rest, to a shell operator)."""
    found = []
    for match in re.finditer(r"pip install ([^\n`\"#)]*)", text):
        rest = re.split(r"&&|\|\||;|\|", match.group(1))[0]
        try:
            found.append(shlex.split(rest))
        except ValueError:  # an unbalanced quote: the hint is inside a Python string; keep the raw words
            found.append([w.strip("'\"") for w in rest.split()])
    return found


def test_install_commands_parser_sees_a_wrong_hint() -> None:
    assert install_commands("run: pip install 'dbp[local]' && x") == [["dbp[local]"]]
    assert install_commands("`pip install dbp`") == [["dbp"]]
    assert install_commands(".venv/bin/pip install -q . pytest") == [["-q", ".", "pytest"]]


def test_every_install_hint_names_alerce_dbp() -> None:
    wrong = []
    right = 0
    for path in HINT_FILES:
        for args in install_commands(path.read_text(encoding="utf-8")):
            for arg in args:
                name = re.split(r"[\[<>=!~ ]", arg, maxsplit=1)[0].lower()
                if name in ("dbp", "dbp-"):
                    wrong.append(f"{path.relative_to(ROOT)}: pip install {' '.join(args)}")
                elif name == DIST:
                    right += 1
    assert not wrong, "install hints naming the wrong distribution:\n" + "\n".join(wrong)
    assert right >= 6  # the documentation's, and the two hints in messages below


def test_messages_name_the_distribution() -> None:
    from dbp.local import INSTALL_HINT

    assert "pip install 'alerce-dbp[local]'" in INSTALL_HINT
    source = (ROOT / "dbp" / "sql" / "connection.py").read_text()
    assert "pip install 'alerce-dbp[pool]'" in source


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a clean copy of the checkout (no stale build/ gets packaged)."""
    import shutil

    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", ".dbp", ".dbp-bench", "__pycache__", ".*_cache", ".hypothesis"))
    out = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_wheel_is_alerce_dbp_with_package_and_command_dbp(built_wheel: Path) -> None:
    assert built_wheel.name.startswith("alerce_dbp-"), built_wheel.name
    with zipfile.ZipFile(built_wheel) as wheel:
        names = wheel.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = wheel.read(metadata).decode()
        entry_points = wheel.read(metadata.replace("METADATA", "entry_points.txt")).decode()
    assert re.search(r"^Name: alerce-dbp$", meta, re.M), meta[:300]
    assert "dbp/__init__.py" in names
    assert not any(n.startswith("alerce") and not n.startswith("alerce_dbp-") for n in names)
    assert re.search(r"^dbp = dbp\.cli:main$", entry_points, re.M), entry_points
    assert "dbp/_bundled/sql/schema/001_object.sql" in names
    assert "dbp/_bundled/mongo_migrations/collections.toml" in names
    for query in ("object_list", "light_curve", "limit_values"):  # ALeRCE's named queries, SQL and pipeline
        assert f"dbp/queries/{query}.sql" in names and f"dbp/queries/{query}.json" in names
    assert "dbp/_bundled/sql/positions.toml" in names
    assert "dbp/_bundled/sql/migrations/0001_cone_search_indexes.sql" in names


# -- a newcomer's whole path, from the wheel ----------------------------------------------------------


def site_listing(site_packages: Path) -> dict[str, str]:
    """Every file under site-packages with its sha256 (symlinks by target)."""
    import hashlib
    import os

    listing = {}
    for path in sorted(site_packages.rglob("*")):
        key = str(path.relative_to(site_packages))
        if path.is_symlink():
            listing[key] = "-> " + os.readlink(path)
        elif path.is_file():
            listing[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            listing[key] = "dir"
    return listing


@pytest.mark.slow
def test_a_newcomers_path_from_the_wheel(built_wheel: Path, tmp_path: Path) -> None:
    """Fresh venv from the wheel; init-project; --local initdb, migrate; edit; make_migrations, migrate;
    status --exit-code 0; and nothing under site-packages changed."""
    import os
    import shutil

    from .conftest import server_root

    venv = server_root("dbp-test-venv-") / "venv"  # as root, the local PostgreSQL's own user must reach it
    venv.parent.chmod(0o755)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, str(built_wheel)], check=True, capture_output=True, timeout=600)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DBP_", "PYTHON", "VIRTUAL_ENV", "AIRFLOW_CONN_"))}
    local_dir = server_root("dbp-test-newcomer-") / "servers"
    env.update(PATH=f"{venv / 'bin'}:/usr/bin:/bin", DBP_LOCAL_DIR=str(local_dir))
    work = tmp_path / "elsewhere"
    work.mkdir()

    def dbp(*args: str, cwd: Path = work) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["dbp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    # without the local extra, --local names the package to install
    bare = dbp("--local", "check-config")
    assert bare.returncode == 78, bare.stderr
    assert "pip install 'alerce-dbp[local]'" in bare.stderr
    subprocess.run([*pip, f"{built_wheel}[local]"], check=True, capture_output=True, timeout=900)

    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    before = site_listing(site_packages)
    assert "dbp/_bundled/sql/schema/001_object.sql" in before
    try:
        # the bundled schema is read-only: make_migrations refuses and points at init-project
        bundled = dbp("--local", "make_migrations", "mine", "--empty", cwd=work)
        assert bundled.returncode == 78, bundled.stdout + bundled.stderr
        assert "installed package" in bundled.stderr and "dbp init-project" in bundled.stderr

        project = work / "myproject"
        made = dbp("init-project", "myproject")
        assert made.returncode == 0, made.stderr
        first = dbp("--local", "initdb", cwd=project)
        assert first.returncode == 0, first.stderr
        assert "created 17 tables, 27 indexes" in first.stdout
        assert "created 5 collections, 13 indexes" in first.stdout
        cone_indexes = dbp("--local", "migrate", cwd=project)  # dbp's cone search indexes: after initdb
        assert cone_indexes.returncode == 0 and "sql: 1 migration(s) applied" in cone_indexes.stdout, cone_indexes
        assert "dbp/_bundled/sql/positions.toml" in before

        step = project / "sql" / "schema" / "002_step.sql"
        step.write_text(step.read_text().replace("CREATE TABLE step (", "CREATE TABLE step (\n    owner varchar,", 1))
        declared = project / "mongo_migrations" / "collections.toml"
        declared.write_text(declared.read_text().replace(
            '{ name = "sid_1", keys = [["sid", 1]] },',
            '{ name = "sid_1", keys = [["sid", 1]] },\n    { name = "mjd", keys = [["mjd", -1]] },', 1))
        written = dbp("--local", "make_migrations", "add owner", cwd=project)
        assert written.returncode == 0, written.stderr
        assert sorted(p.name for p in project.rglob("000[12]_add_owner*")) == [
            "0001_add_owner.py", "0002_add_owner.rollback.sql", "0002_add_owner.sql"]
        assert dbp("--local", "status", "--exit-code", cwd=project).returncode == 3
        applied = dbp("--local", "migrate", cwd=project)
        assert applied.returncode == 0, applied.stderr
        assert "sql: 1 migration(s) applied" in applied.stdout and "mongo: 1 migration(s) applied" in applied.stdout
        final = dbp("--local", "status", "--exit-code", cwd=project)
        assert final.returncode == 0, final.stdout + final.stderr
    finally:
        dbp("local", "stop")
        shutil.rmtree(local_dir.parent, ignore_errors=True)
    after = site_listing(site_packages)
    shutil.rmtree(venv.parent, ignore_errors=True)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"site-packages changed: {changed[:20]}"
