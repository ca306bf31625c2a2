"""dbp in Airflow tasks: :class:`DbpHook`, :class:`DbpMigrateOperator` and the provider entry point.

Needs the ``airflow`` extra (``pip install 'alerce-dbp[airflow]'``). ``import dbp``
never imports this package, and importing this package loads Airflow only
when the hook or the operator is first used; without Airflow, that use raises
:class:`dbp.errors.ExtraMissing` (a ConfigError and an ImportError) naming the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dbp._version import __version__
from dbp.errors import ExtraMissing

if TYPE_CHECKING:
    from dbp.airflow.hook import DbpHook
    from dbp.airflow.operators import DbpMigrateOperator

__all__ = ["DbpHook", "DbpMigrateOperator", "get_provider_info"]

_LAZY = {"DbpHook": "dbp.airflow.hook", "DbpMigrateOperator": "dbp.airflow.operators"}
ENTRY_POINT = "dbp.airflow:get_provider_info"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dbp.airflow' has no attribute {name!r}")
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        if missing != "airflow" and not missing.startswith("airflow."):
            raise
        raise ExtraMissing(
            f"dbp.airflow.{name} needs Apache Airflow 3, which is not installed here ({missing} cannot be imported): "
            "pip install 'alerce-dbp[airflow]'", name=missing,
        ) from None
    value = getattr(loaded, name)
    globals()[name] = value
    return value


def _distribution() -> str:
    """The installed distribution that declares the entry point (its name changes: ``dbp``, ``alerce-dbp``)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="apache_airflow_provider"):
        if ep.value.replace(" ", "") == ENTRY_POINT and ep.dist is not None:
            return str(ep.dist.name).lower().replace("_", "-").replace(".", "-")
    return "alerce-dbp"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": _distribution(),
        "name": "dbp",
        "description": "dbp: PostgreSQL and MongoDB through one query contract; a hook and a migrate operator.",
        "versions": [__version__],
        "connection-types": [
            {"connection-type": "dbp", "hook-class-name": "dbp.airflow.hook.DbpHook", "hook-name": "dbp"},
        ],
    }
