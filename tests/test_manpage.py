"""man/dbp.1 is built from the parser and kept in step with it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dbp.cli import get_parser
from dbp.manpage import MANPAGE, render


def subcommands() -> list[str]:
    """Every subcommand's primary name (aliases aside)."""
    action = next(a for a in get_parser()._actions if a.dest == "command")
    return [choice.dest for choice in action._get_subactions()]


def test_man_page_is_not_stale() -> None:
    assert MANPAGE.read_text() == render(), "man/dbp.1 is stale: run python -m dbp.manpage"


@pytest.mark.skipif(shutil.which("man") is None, reason="no man(1) here")
def test_man_page_renders_and_lists_every_subcommand() -> None:
    shown = subprocess.run(["man", "-l", str(MANPAGE)], capture_output=True, text=True, timeout=60,
                           env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "MANPAGER": "cat", "PAGER": "cat"})
    assert shown.returncode == 0, shown.stderr
    names = subcommands()
    assert len(names) == 10
    for name in names:
        assert f"dbp {name}" in shown.stdout, name
    # a wrapped line starting with a dot survives
    assert "(here or in a folder above), ./settings.py" in " ".join(shown.stdout.split())
