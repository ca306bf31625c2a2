"""Operations the CLI offers, as plain functions that scripts can call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from dbp.config import Config
from dbp.engines import ENGINES
from dbp.errors import ConfigError, DbpError

__all__ = ["EngineCheck", "check", "configured_engines"]


@dataclass(frozen=True)
class EngineCheck:
    engine: str
    url: str
    reachable: bool
    detail: str
    error: Optional[DbpError] = None


def configured_engines(config: Config, engine: str = "all") -> list[str]:
    """The engines to act on: ``engine`` itself, or with ``"all"`` every configured one."""
    if engine != "all":
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}, all")
        return [engine]
    found = [name for name, spec in ENGINES.items() if spec.section in config]
    if not found:
        raise ConfigError("DB_CONFIG has no SQL or MONGO section")
    return found


def check(config: Config, engines: Sequence[str]) -> list[EngineCheck]:
    """Connect to each engine and report whether it answers; config errors still raise."""
    results = []
    for engine in engines:
        settings = config.settings(engine)
        connection = ENGINES[engine].connection_class()(settings=settings)
        try:
            with connection:
                seconds = connection.ping()
                detail = f"{connection.server_version()}, {seconds * 1000:.1f} ms"
        except ConfigError:
            raise
        except DbpError as exc:
            results.append(EngineCheck(engine, settings.masked_url(), False, str(exc), exc))
            continue
        results.append(EngineCheck(engine, settings.masked_url(), True, detail))
    return results
