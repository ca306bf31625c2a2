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
HINT_FILES = [*sorted((ROOT / "dbp").rglob("*.py")), ROOT / "README.md", ROOT / "man" / "dbp.1",
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
    assert right >= 6  # the README's four, and the two hints in messages below


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
