"""Operations the CLI offers, as plain functions that scripts can call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dbp.config import Config
from dbp.engines import ENGINES
from dbp.errors import ConfigError, DbpError, OperationError
from dbp.migrations import EngineStatus

__all__ = [
    "EngineCheck",
    "InitReport",
    "check",
    "configured_engines",
    "dropdb",
    "initdb",
    "make_migrations",
    "migrate",
    "rollback",
    "status",
]


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
    """Connect to each engine and report whether it answers (or why not: down, refused, misconfigured)."""
    results = []
    for engine in engines:
        settings = config.settings(engine)
        connection = ENGINES[engine].connection_class()(settings=settings)
        try:
            with connection:
                seconds = connection.ping()
                detail = f"{connection.server_version()}, {seconds * 1000:.1f} ms"
        except DbpError as exc:  # reported per engine, so that one engine's failure hides no other's row
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
            reports.append(spec.module("admin").initdb(db, adopt=adopt))
    return reports


def dropdb(config: Config, engines: Sequence[str], *, force: bool = False) -> list[str]:
    """Drop each engine's database; refuse one dbp did not initialize unless ``force``."""
    done = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=config.settings(engine))
        done.append(spec.module("admin").dropdb(db, force=force))
    return done


def status(config: Config, engines: Sequence[str]) -> list[EngineStatus]:
    """Every migration's state (applied, pending, failed, changed, out-of-order, missing) per engine."""
    out = []
    for engine in engines:
        spec = ENGINES[engine]
        with spec.connection_class()(settings=config.settings(engine)) as db:
            out.append(spec.module("migrations").status(db))
    return out


def migrate(config: Config, engines: Sequence[str], **options: Any) -> dict[str, list[str]]:
    """Apply pending migrations, SQL first; return the ids applied (planned, with ``dry_run``) per engine.

    Options: ``to``, ``dry_run``, ``allow_changed``, ``allow_out_of_order``,
    ``lock_timeout``, ``progress``, and ``lease_seconds`` / ``break_lock`` (MongoDB's lease;
    PostgreSQL's advisory lock needs neither: the server frees it when a run dies).
    """
    to = options.pop("to", None)
    if to is not None:
        engines = _engines_with(config, engines, to)
    done = {}
    for engine in engines:
        spec = ENGINES[engine]
        with spec.connection_class()(settings=config.settings(engine)) as db:
            done[engine] = spec.module("migrations").migrate(db, to=to, **options)
    return done


def rollback(
    config: Config, engine: str, *, steps: Optional[int] = None, to: Optional[str] = None, **options: Any
) -> list[str]:
    """Roll back one engine's last ``steps`` migrations, or every one applied after ``to``."""
    spec = ENGINES[engine]
    with spec.connection_class()(settings=config.settings(engine)) as db:
        result: list[str] = spec.module("migrations").rollback(db, steps=steps, to=to, **options)
    return result


def make_migrations(config: Config, engines: Sequence[str], name: str, *, empty: bool = False) -> list[Path]:
    """Write the next migration of each engine from the schema's difference; [] where nothing differs."""
    written: list[Path] = []
    for engine in engines:
        spec = ENGINES[engine]
        with spec.connection_class()(settings=config.settings(engine)) as db:
            written += spec.module("migrations").make_migration(db, name, empty=empty)
    return written


def _engines_with(config: Config, engines: Sequence[str], migration_id: str) -> list[str]:
    """The engines among ``engines`` that have a migration ``migration_id``."""
    found = [
        engine for engine, result in zip(engines, status(config, engines))
        if any(m.id == migration_id for m in result.migrations)
    ]
    if not found:
        raise OperationError(f"no migration {migration_id!r} in {', '.join(engines)}")
    return found
