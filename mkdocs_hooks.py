"""MkDocs hooks for dbp's documentation.

A ```python no-run fence (a block tests/test_docs.py does not run) renders as Python, and
the Sphinx roles in docstrings (``:class:`Pagination```) render as their code alone, and a
``\\|`` in a table cell (GitHub's way to write a ``|`` in a cell's code) renders as ``|``.
"""

from __future__ import annotations

import re
from typing import Any

NO_RUN = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*(python|py)[ \t]+no-run[ \t]*$", re.MULTILINE | re.IGNORECASE)
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj):(<code>)")
CELL = re.compile(r"<td>.*?</td>", re.DOTALL)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return NO_RUN.sub(r"\1\2\3", markdown)


def on_page_content(html: str, **kwargs: Any) -> str:
    html = ROLE.sub(r"\1", html)
    return CELL.sub(lambda cell: cell.group(0).replace("\\|", "|"), html)
