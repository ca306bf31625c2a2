"""MkDocs hooks for dbp's documentation.

A ```python no-run fence (a block tests/test_docs.py does not run) renders as Python, and
the Sphinx roles in docstrings (``:class:`Pagination```) render as their code alone.
"""

from __future__ import annotations

import re
from typing import Any

NO_RUN = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*(python|py)[ \t]+no-run[ \t]*$", re.MULTILINE | re.IGNORECASE)
ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj):(<code>)")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return NO_RUN.sub(r"\1\2\3", markdown)


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub(r"\1", html)
