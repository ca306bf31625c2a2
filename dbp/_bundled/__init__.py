"""The schema folders shipped with dbp.

In a wheel, top-level ``sql/`` and ``mongo_migrations/`` are installed here;
in a checkout they are read from the repository root.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["bundled"]

_HERE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The bundled folder ``name`` (``"sql"`` or ``"mongo_migrations"``)."""
    for candidate in (_HERE / name, _HERE.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dbp's bundled {name}/ folder is missing from this installation")
