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

__all__ = ["bundled", "installed_location", "require_writable", "schema_set", "set_queries"]

_HERE = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """The bundled folder ``name`` (``"sql/ztf"``, ``"mongo_migrations"``)."""
    for candidate in (_HERE / name, _HERE.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dbp's bundled {name}/ folder is missing from this installation")


def schema_set(engine: str, name: Optional[str] = None, where: str = "SCHEMA_SET") -> Path:
    """The folder of ``engine``'s bundled schema set ``name`` (None: the engine's default set).

    ConfigError, naming ``where``, for a name that is not a set, or a set that this engine lacks.
    """
    from dbp.engines import ENGINES, schema_set_names

    spec = ENGINES[engine]
    if name is None:
        name = spec.default_set
    if not isinstance(name, str):
        raise ConfigError(f"{where} names a bundled schema set ({', '.join(schema_set_names())}), "
                          f"not a {type(name).__name__}")
    if name not in spec.schema_sets:
        others = [e.section for e in ENGINES.values() if name in e.schema_sets]
        if others:
            raise ConfigError(f"{where}: the {name!r} schema set is for {' and '.join(others)} only "
                              f"({spec.missing_set_reason or 'it has no ' + spec.name + ' schema'}); "
                              f"{spec.section}'s bundled sets: {', '.join(spec.schema_sets)}")
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ConfigError(f"{where}: unknown schema set {shown!r}; dbp bundles {', '.join(schema_set_names())}")
    return bundled(spec.schema_sets[name])


def set_queries(name: Optional[str]) -> Optional[Path]:
    """The bundled named queries of schema set ``name``: its own ``queries/`` folder, if it has one."""
    from dbp.engines import ENGINES

    for spec in ENGINES.values():
        if name is not None and name in spec.schema_sets:
            folder = bundled(spec.schema_sets[name]) / "queries"
            if folder.is_dir():
                return folder
    return None


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
