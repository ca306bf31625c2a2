"""The documentation's Python examples run as written, against the test servers; its pages are all listed.

Every ```python block of ``README.md`` and ``docs/**/*.md`` runs, in a fresh namespace, in a
folder whose ``dbp.toml`` names a fresh database on each engine (initialized with the
ALeRCE schema); each block is one test, named by page and line. A block that says
``or engine="mongo"`` runs once more with ``engine="sql"`` replaced by ``engine="mongo"``.
An expression followed by comment lines that show a value (``# {'a': 1}``) must print as
that value. A block that cannot run here opts out with ``<!-- readme-test: skip: REASON -->``
on the line before it, or opens with ```python no-run. A page holding
``<!-- readme-test: schema-set: NAME -->`` runs its blocks on a SQL database built from that
bundled schema set (its ``dbp.toml`` says ``SCHEMA_SET = "NAME"``).

Also: ``mkdocs.yml`` lists every page of ``docs/`` (and only pages that exist), the README
stays short, and the README's Quick start, run in a fresh folder, prints the README's
sample output (ports, paths and timings aside).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbp.admin import initdb
from dbp.config import resolve_config
from dbp.mongo.settings import MongoSettings
from dbp.sql.settings import SQLSettings

from .conftest import ROOT, server_root, sql_section

README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: Every page whose Python blocks run: the README, then the documentation site's pages.
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(\S.*?)\s*-->")
SCHEMA_SET = re.compile(r"^<!--\s*readme-test:\s*schema-set:\s*(\w+)\s*-->$", re.MULTILINE)
FENCE = re.compile(r"^```\s*(python|py)(\s+no-run)?\s*$", re.IGNORECASE)
BOTH = 'or engine="mongo"'
#: Comment lines that show a value, as the document-shape examples do.
SHOWN = re.compile(r"#\s?([\[{('\"0-9-]|True|False|None)")
#: Variables the examples read from the environment (secrets in settings examples).
EXAMPLE_ENV = {"ALERCE_PG_PASSWORD": "example-pg-secret", "ALERCE_MONGO_PASSWORD": "example-mongo-secret"}
#: The README stays an entrance: what dbp is, the Quick start, the tests, links to the pages.
README_MAX_LINES = 260


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    skip: str
    #: The bundled schema set the page's blocks run on (None: the default, ztf).
    schema_set: str | None = None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def python_blocks(text: str, page: str = "README.md") -> list[Block]:
    """Every ```python block, with the line it starts on and its opt-out reason, if any."""
    blocks = []
    named = SCHEMA_SET.search(text)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i].strip())
        if opening:
            start = i + 1
            end = next((j for j in range(start, len(lines)) if lines[j].strip().startswith("```")), len(lines))
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found = SKIP.search(before)
            skip = found.group(1) if found else ("marked no-run" if opening.group(2) else "")
            blocks.append(Block(page, start + 1, "\n".join(lines[start:end]) + "\n", skip,
                                named.group(1) if named else None))
            i = end
        i += 1
    return blocks


BLOCKS = [block for path in PAGES
          for block in python_blocks(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())]


def test_the_extraction_finds_the_examples() -> None:
    text = ("x\n```python\na = 1\n```\n<!-- readme-test: skip: needs Airflow -->\n```python\nimport airflow\n```\n"
            "```python no-run\nimport elsewhere\n```\n")
    found = python_blocks(text, "p.md")
    assert [(b.name, b.code, b.skip) for b in found] == [
        ("p.md:3", "a = 1\n", ""), ("p.md:7", "import airflow\n", "needs Airflow"),
        ("p.md:10", "import elsewhere\n", "marked no-run")]
    assert len(BLOCKS) >= 6
    assert {b.page for b in BLOCKS} >= {"docs/queries.md", "docs/updates.md", "docs/db-plugins.md"}
    assert sum(1 for b in BLOCKS if b.skip) <= max(4, len(BLOCKS) // 5), "only blocks that cannot run here may opt out"
    assert sum(1 for b in BLOCKS if BOTH in b.code) >= 2
    marked = python_blocks("# p\n<!-- readme-test: schema-set: multisurvey -->\n```python\na = 1\n```\n", "p.md")
    assert [b.schema_set for b in marked] == ["multisurvey"] and found[0].schema_set is None


@pytest.fixture
def example_project(
    tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Path:
    """A folder with a dbp.toml naming fresh, initialized databases; the working directory during the test."""
    settings = tmp_path / "dbp.toml"
    block = getattr(request.node, "callspec", None) and request.node.callspec.params.get("block")
    schema_set = f'SCHEMA_SET = "{block.schema_set}"\n' if isinstance(block, Block) and block.schema_set else ""
    settings.write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n{schema_set}'
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
def test_example_runs(block: Block, example_project: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    namespace = run_block(block.code, block.name)
    if "DB_CONFIG" in namespace:  # a settings example: dbp must accept it
        resolve_config(namespace["DB_CONFIG"])
    if BOTH in block.code:
        assert 'engine="sql"' in block.code, f"{block.name} says {BOTH} but has no engine=\"sql\" to replace"
        run_block(block.code.replace('engine="sql"', 'engine="mongo"'), f"{block.name} (mongo)")


# -- the site's pages --------------------------------------------------------------------------------


def nav_pages(text: str) -> list[str]:
    """The pages ``mkdocs.yml``'s ``nav`` names (read without YAML: each ``- Title: page.md`` line)."""
    nav = re.search(r"^nav:\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE)
    assert nav, "mkdocs.yml has no nav"
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", nav.group(1), re.MULTILINE)


def test_nav_parser_reads_titles_and_bare_pages() -> None:
    text = ("site_name: x\nnav:\n  - Home: index.md\n  - Part:\n      - a/b.md\n      - B c: a/c.md\n\n"
            "plugins:\n  - x.md\n")
    assert nav_pages(text) == ["index.md", "a/b.md", "a/c.md"]


def test_mkdocs_nav_lists_every_page_once_and_only_pages_that_exist() -> None:
    listed = nav_pages((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({p for p in listed if listed.count(p) > 1})}"
    assert sorted(set(listed) - set(pages)) == [], "mkdocs.yml lists pages that do not exist"
    assert sorted(set(pages) - set(listed)) == [], "pages missing from mkdocs.yml's nav"


def test_readme_is_short_and_its_links_to_the_pages_work() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, "the README is an entrance: move details to docs/"
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 10
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_pages_link_only_to_pages_that_exist() -> None:
    broken = []
    for path in DOCS.rglob("*.md"):
        for link in re.findall(r"\]\(([^)#\s:]+\.md)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if not (path.parent / link).is_file():
                broken.append(f"{path.relative_to(ROOT)}: {link}")
    assert broken == []



def test_the_readme_shows_the_test_command_ci_runs() -> None:
    """``.ci/run`` runs "the README's test command": the README shows exactly that line."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = re.search(r"^step \"the README's test command\"\n(.+?)(?: \|\| exit \$\?)?$", ci, re.MULTILINE)
    assert command, ".ci/run has no step running the README's test command"
    assert f"```sh\n{command.group(1)}\n```" in README.read_text(encoding="utf-8").split("## Tests", 1)[1]

# -- the Quick start, as a newcomer runs it ----------------------------------------------------------

#: What differs from run to run and machine to machine: timings, ports, absolute paths.
VARIABLE = [(re.compile(r"\d+\.\d+ s\b"), "T s"), (re.compile(r":\d{2,5}\b"), ":PORT"),
            (re.compile(r"port=\d+"), "port=PORT"), (re.compile(r"(?<=[\s=])/[^\s&'(),:]+"), "PATH")]


def normalised(line: str) -> str:
    for pattern, replacement in VARIABLE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def quick_start(text: str) -> tuple[list[list[str]], list[str]]:
    """The Quick start's dbp commands (arguments after ``-m dbp``), and the lines of its sample output.

    The section's first ``sh`` block holds the command; the first plain block after it, the output.
    """
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"```sh\n(.*?)\n```", section, re.DOTALL)
    assert command, "the Quick start has no sh block"
    runs = [part.split("-m dbp", 1)[1].split() for part in command.group(1).split("&&") if "-m dbp " in part]
    shown = re.search(r"```\n(.*?)\n```", section[command.end():], re.DOTALL)
    assert shown, "the Quick start shows no output"
    return runs, shown.group(1).splitlines()


def test_quick_start_parser() -> None:
    text = ("## Quick start\n\n```sh\npython3.11 -m venv .venv && .venv/bin/pip install -e '.[local]' && "
            ".venv/bin/python -m dbp --local initdb && .venv/bin/python -m dbp --local migrate\n```\n\n"
            "It prints:\n\n```\nsql: created 2 tables in /a/b:5432/x (0.05 s)\n```\n\n## Tests\n```\nno\n```\n")
    runs, shown = quick_start(text)
    assert runs == [["--local", "initdb"], ["--local", "migrate"]]
    assert [normalised(line) for line in shown] == ["sql: created 2 tables in PATH:PORT/x (T s)"]


def test_the_getting_started_page_shows_the_readmes_quick_start() -> None:
    assert quick_start((DOCS / "getting-started.md").read_text(encoding="utf-8")) == quick_start(
        README.read_text(encoding="utf-8"))


@pytest.mark.skipif(not (Path(sys.executable).parent / "secantusd-py").exists(), reason="needs dbp[local]")
@pytest.mark.own_servers
def test_the_quick_start_prints_what_the_readme_shows() -> None:
    """A first run in a fresh folder (as in a clone: no settings file, the bundled schema) prints the sample.

    stderr (the ``dbp:`` lines) and stdout are read as one stream, in the order a terminal shows them.
    """
    runs, shown = quick_start(README.read_text(encoding="utf-8"))
    top = server_root("dbp-test-quickstart-")
    top.chmod(0o755)  # as root, the local PostgreSQL's own user must reach its data folder
    project = top / "proj"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBP_", "AIRFLOW_CONN_"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", HOME=str(top))
    if os.geteuid() == 0:
        env["DBP_LOCAL_PG_ROOT"] = str(top / "pg")  # else /var/lib/dbp/<hash>, which outlives the test

    def dbp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dbp", *args], cwd=project, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)

    printed: list[str] = []
    try:
        for args in runs:
            done = dbp(*args)
            assert done.returncode == 0, done.stdout
            printed += done.stdout.splitlines()
    finally:
        dbp("local", "stop")
        shutil.rmtree(top, ignore_errors=True)
    assert [normalised(line) for line in printed] == [normalised(line) for line in shown], (
        "the README's Quick start output is not what a first run prints; printed:\n" + "\n".join(printed))


def test_no_run_blocks_render_as_python_on_the_site() -> None:
    """mkdocs_hooks.py makes a ```python no-run fence (Python-Markdown would not take it as one) ```python."""
    from mkdocs_hooks import on_page_content, on_page_markdown

    text = "a\n\n```python no-run\nimport x\n```\n\n  ```py  no-run\n  y\n  ```\n```python\nz\n```\n"
    assert on_page_markdown(text) == "a\n\n```python\nimport x\n```\n\n  ```py\n  y\n  ```\n```python\nz\n```\n"
    assert on_page_content("as :class:<code>Match</code> es, :meth:<code>paginate</code>") == (
        "as <code>Match</code> es, <code>paginate</code>")
    assert on_page_content("<td><code>a\\|b</code></td> <p>\\|</p>") == "<td><code>a|b</code></td> <p>\\|</p>"
