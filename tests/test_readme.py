"""The README's Python examples run as written, against the test servers.

Every ```python block runs, in a fresh namespace, in a folder whose ``dbp.toml``
names a fresh database on each engine (initialized with the ALeRCE schema). A
block that says ``or engine="mongo"`` runs once more with ``engine="sql"``
replaced by ``engine="mongo"``. An expression followed by comment lines that
show a value (``# {'a': 1}``) must print as that value. A block that cannot run
here opts out with ``<!-- readme-test: skip: REASON -->`` on the line before it.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbp.admin import initdb
from dbp.config import resolve_config
from dbp.mongo.settings import MongoSettings
from dbp.sql.settings import SQLSettings

from .conftest import ROOT, sql_section

README = ROOT / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(\S.*?)\s*-->")
BOTH = 'or engine="mongo"'
#: Comment lines that show a value, as the document-shape examples do.
SHOWN = re.compile(r"#\s?([\[{('\"0-9-]|True|False|None)")
#: Variables the examples read from the environment (secrets in settings examples).
EXAMPLE_ENV = {"ALERCE_PG_PASSWORD": "example-pg-secret", "ALERCE_MONGO_PASSWORD": "example-mongo-secret"}


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    skip: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def python_blocks(text: str) -> list[Block]:
    """Every ```python block, with the line it starts on and its opt-out reason, if any."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip().lower() in ("```python", "```py"):
            start = i + 1
            end = next((j for j in range(start, len(lines)) if lines[j].strip().startswith("```")), len(lines))
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found = SKIP.search(before)
            blocks.append(Block(start + 1, "\n".join(lines[start:end]) + "\n", found.group(1) if found else ""))
            i = end
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_extraction_finds_the_examples() -> None:
    text = "x\n```python\na = 1\n```\n<!-- readme-test: skip: needs Airflow -->\n```python\nimport airflow\n```\n"
    found = python_blocks(text)
    assert [(b.line, b.code, b.skip) for b in found] == [(3, "a = 1\n", ""), (7, "import airflow\n", "needs Airflow")]
    assert len(BLOCKS) >= 6
    assert sum(1 for b in BLOCKS if b.skip) <= 2, "only blocks that cannot run here may opt out"
    assert sum(1 for b in BLOCKS if BOTH in b.code) >= 2


@pytest.fixture
def example_project(
    tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A folder with a dbp.toml naming fresh, initialized databases; the working directory during the test."""
    settings = tmp_path / "dbp.toml"
    settings.write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo_settings.host}"\nDATABASE = "{mongo_settings.database}"\n'
    )
    initdb(resolve_config(settings, environ={}), ["sql", "mongo"])
    for key in [k for k in os.environ if k.startswith(("DBP_", "AIRFLOW_CONN_"))]:
        monkeypatch.delenv(key)
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_block(code: str, name: str) -> dict[str, Any]:
    """Run ``code`` statement by statement; check each shown value against the expression before it."""
    tree = ast.parse(code, name)
    lines = code.splitlines()
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    for statement in tree.body:
        module = ast.Module(body=[statement], type_ignores=[])
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), name, "eval"), namespace)
            shown = _shown_after(lines, statement.end_lineno or statement.lineno)
            if shown is not None:
                assert repr(value) == shown, f"{name}, line {statement.lineno}: shows {shown}, gives {value!r}"
        else:
            exec(compile(module, name, "exec"), namespace)
    return namespace


def _shown_after(lines: list[str], last: int) -> str | None:
    shown = []
    for line in lines[last:]:
        stripped = line.strip()
        if not stripped.startswith("#") or (not shown and not SHOWN.match(stripped)):
            break
        shown.append(stripped[1:].strip())
    return " ".join(shown) if shown else None


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_readme_example_runs(block: Block, example_project: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    namespace = run_block(block.code, block.name)
    if "DB_CONFIG" in namespace:  # a settings example: dbp must accept it
        resolve_config(namespace["DB_CONFIG"])
    if BOTH in block.code:
        assert 'engine="sql"' in block.code, f"{block.name} says {BOTH} but has no engine=\"sql\" to replace"
        run_block(block.code.replace('engine="sql"', 'engine="mongo"'), f"{block.name} (mongo)")
