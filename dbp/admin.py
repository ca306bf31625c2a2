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


_SINGULAR = {"tables": "table", "indexes": "index", "collections": "collection"}


@dataclass(frozen=True)
class InitReport:
    """What ``initdb`` did on one engine."""

    engine: str
    #: ``host:port/database``
    address: str
    #: ``created``, ``adopted`` or ``already initialized``
    outcome: str
    #: What exists now, e.g. ``{"tables": 17, "indexes": 27}``.
    counts: dict[str, int]
    #: Migrations recorded as applied by this run (the baseline).
    baseline: list[str]
    #: The last applied migration, or a note that there is none.
    version: str
    seconds: float

    def describe(self) -> str:
        counts = ", ".join(f"{n} {_SINGULAR.get(what, what) if n == 1 else what}" for what, n in self.counts.items())
        if self.outcome == "already initialized":
            return f"{self.engine}: {self.address} already initialized at {self.version}; nothing changed"
        marked = f"; {len(self.baseline)} migration(s) recorded as applied" if self.baseline else ""
        return (
            f"{self.engine}: {self.outcome} {counts} in {self.address} "
            f"({self.seconds:.2f} s){marked}; version {self.version}"
        )


def initdb(config: Config, engines: Sequence[str], *, adopt: bool = False) -> list[InitReport]:
    """Create each engine's schema (or, with ``adopt``, take over an identical existing one)."""
    reports = []
    for engine in engines:
        spec = ENGINES[engine]
        with spec.connection_class()(settings=config.settings(engine)) as db:
            reports.append(spec.admin_module().initdb(db, adopt=adopt))
    return reports


def dropdb(config: Config, engines: Sequence[str], *, force: bool = False) -> list[str]:
    """Drop each engine's database; refuse one dbp did not initialize unless ``force``."""
    done = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=config.settings(engine))
        done.append(spec.admin_module().dropdb(db, force=force))
    return done
