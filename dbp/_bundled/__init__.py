"""The schema folders shipped with dbp.

In a wheel, top-level ``sql/`` and ``mongo_migrations/`` are installed here;
in a checkout they are read from the repository root. Installed, they are
read-only: :func:`require_writable` refuses to write into them (or anywhere in
site-packages), and ``dbp init-project`` copies them into a project instead.
"""

from __future__ import annotations

import site
import sysconfig
from pathlib import Path
from typing import Optional

from dbp.errors import ConfigError

__all__ = ["bundled", "installed_location", "require_writable"]

_HERE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The bundled folder ``name`` (``"sql"`` or ``"mongo_migrations"``)."""
    for candidate in (_HERE / name, _HERE.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dbp's bundled {name}/ folder is missing from this installation")


def _install_roots() -> list[Path]:
    roots = {_HERE}  # installed: dbp's bundled folders; in a checkout this folder holds no schema
    for key in ("purelib", "platlib"):
        roots.add(Path(sysconfig.get_paths()[key]))
    try:
        roots.update(Path(p) for p in site.getsitepackages())
    except AttributeError:  # pragma: no cover - some virtualenv builds lack it
        pass
    if site.ENABLE_USER_SITE and site.USER_SITE:
        roots.add(Path(site.USER_SITE))
    return [r.resolve() for r in roots]


def installed_location(folder: Path) -> Optional[Path]:
    """The installed-packages folder that ``folder`` lies in, or None if it is a project's own."""
    target = Path(folder).resolve()
    for root in _install_roots():
        if target == root or root in target.parents:
            return root
    return None


def require_writable(folder: Path) -> None:
    """Refuse to write into ``folder`` if it belongs to an installed package (dbp's bundled schema)."""
    root = installed_location(folder)
    if root is not None:
        raise ConfigError(
            f"{folder} is part of an installed package ({root}); dbp's bundled schema is read-only: "
            "run `dbp init-project` to copy it into your project (it writes dbp.toml with SCHEMA_DIR), "
            "or point SCHEMA_DIR / --sql-dir / --mongo-dir at your own folder"
        )
