"""Build ``man/dbp.1`` from the CLI's argparse parser with argparse-manpage.

``python -m dbp.manpage`` rewrites the page; a test fails when it is stale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from dbp._version import __version__

__all__ = ["render", "write"]

MANPAGE = Path(__file__).resolve().parent.parent / "man" / "dbp.1"


def render() -> str:
    """The man page text; independent of the terminal and of the day it is built."""
    from argparse_manpage.manpage import Manpage

    from dbp.cli import get_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps help text to the terminal width
    try:
        page = Manpage(get_parser())
        page.source = f"alerce-dbp {__version__}"
        page.manual = "dbp manual"
        page.date = ""
        page.description = "schemas, migrations and connections for PostgreSQL and MongoDB"
        return _protect_dots(str(page))
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


_MACROS = frozenset({"TH", "SH", "SS", "TP", "B", "I", "BR", "IR", "RB", "RI", "PP", "LP", "P", "IP", "HP",
                     "RS", "RE", "br", "sp", "nf", "fi", "UR", "UE", "MT", "ME", "ad", "na", "in", "ti"})


def _protect_dots(text: str) -> str:
    """Help text wrapped so that a line starts with a dot (``./dbp.toml``) would read as a roff request."""
    out = []
    for line in text.splitlines():
        if line.startswith((".", "'")) and line[1:].split(" ", 1)[0] not in _MACROS:
            line = "\\&" + line
        out.append(line)
    return "\n".join(out) + "\n"


def write(path: Path = MANPAGE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


def main(argv: Optional[list[str]] = None) -> None:
    """``python -m dbp.manpage [FILE]``: write the man page (default: the checkout's)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dbp.manpage", description="Write dbp's man page.")
    parser.add_argument("file", nargs="?", type=Path, default=MANPAGE, help=f"where to write it (default: {MANPAGE})")
    print(f"wrote {write(parser.parse_args(argv).file)}")


if __name__ == "__main__":
    main()
