"""Operations the CLI offers, as plain functions that scripts can call.

Each takes what :func:`dbp.connect` takes: a settings path, a ``DB_CONFIG`` dict
(or a single engine's section, when one engine is named), a loaded
:class:`~dbp.config.Config`, or ``None`` for the usual search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from dbp.config import Config, ConfigSource, resolve_config
from dbp.engines import ENGINES
from dbp.errors import ConfigError, DatabaseMissing, DbpError, OperationError
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


def _resolve(config: ConfigSource, engines: Sequence[str]) -> Config:
    """``config`` as a :class:`Config`; a lone section is read as the one engine's, if one is named."""
    return resolve_config(config, engine=engines[0] if len(engines) == 1 else None)


def configured_engines(config: ConfigSource, engine: str = "all") -> list[str]:
    """The engines to act on: ``engine`` itself, or with ``"all"`` every configured one."""
    if engine != "all":
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}, all")
        return [engine]
    config = resolve_config(config)
    found = [name for name, spec in ENGINES.items() if spec.section in config]
    if not found:
        raise ConfigError("DB_CONFIG has no SQL or MONGO section")
    return found


def check(config: ConfigSource, engines: Sequence[str]) -> list[EngineCheck]:
    """Connect to each engine and report whether it answers (or why not: down, refused, misconfigured)."""
    config = _resolve(config, engines)
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
    #: True if initdb created the database itself first (it did not exist).
    created_database: bool = False

    def describe(self) -> str:
        counts = ", ".join(f"{n} {_SINGULAR.get(what, what) if n == 1 else what}" for what, n in self.counts.items())
        if self.outcome == "already initialized":
            return f"{self.engine}: {self.address} already initialized at {self.version}; nothing changed"
        marked = f"; {len(self.baseline)} migration(s) recorded as applied" if self.baseline else ""
        database = f"created database {self.address.rsplit('/', 1)[-1]}; " if self.created_database else ""
        return (
            f"{self.engine}: {database}{self.outcome} {counts} in {self.address} "
            f"({self.seconds:.2f} s){marked}; version {self.version}"
        )


def initdb(config: ConfigSource, engines: Sequence[str], *, adopt: bool = False) -> list[InitReport]:
    """Create each engine's schema (or, with ``adopt``, take over an identical existing one).

    A database that does not exist is created first, if the role may; otherwise
    :class:`~dbp.errors.DatabaseMissing` names the statement that creates it.
    """
    config = _resolve(config, engines)
    reports = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=config.settings(engine))
        created = False
        try:
            db.connect()
        except DatabaseMissing as missing:
            _create_missing(db, missing)
            created = True
            db.connect()
        with db:
            report = spec.module("admin").initdb(db, adopt=adopt)
        reports.append(replace(report, created_database=True) if created else report)
    return reports


def _create_missing(db: Any, missing: DatabaseMissing) -> None:
    try:
        db.create_db()
    except DbpError as exc:
        hint = f"; as a role that may create databases, run: {missing.create_sql}" if missing.create_sql else ""
        if missing.create_sql and missing.create_sql in str(exc):
            hint = ""
        raise DatabaseMissing(f"{db.address} does not exist and dbp could not create it: {exc}{hint}",
                              create_sql=missing.create_sql) from None


def dropdb(config: ConfigSource, engines: Sequence[str], *, force: bool = False) -> list[str]:
    """Drop each engine's database; refuse one dbp did not initialize unless ``force``.

    Every database is checked before any is dropped: one refusal drops nothing,
    and the error names each refused database.
    """
    config = _resolve(config, engines)
    refused = []
    for engine in engines:
        spec = ENGINES[engine]
        reason = spec.module("admin").drop_refusal(spec.connection_class()(settings=config.settings(engine)), force)
        if reason:
            refused.append(reason)
    if refused:
        raise OperationError("; ".join(refused) + "; nothing was dropped", details=refused if len(refused) > 1 else ())
    done = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=config.settings(engine))
        done.append(spec.module("admin").dropdb(db, force=True))
    return done


def status(config: ConfigSource, engines: Sequence[str]) -> list[EngineStatus]:
    """Every migration's state (applied, pending, failed, changed, out-of-order, missing) per engine."""
    config = _resolve(config, engines)
    out = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=config.settings(engine))
        try:
            db.connect()
        except DatabaseMissing:
            out.append(EngineStatus(engine, db.address, [], initialized=False,
                                    detail="the database does not exist; dbp initdb creates it"))
            continue
        with db:
            out.append(spec.module("migrations").status(db))
    return out


def migrate(config: ConfigSource, engines: Sequence[str], **options: Any) -> dict[str, list[str]]:
    """Apply pending migrations, SQL first; return the ids applied (planned, with ``dry_run``) per engine.

    Options: ``to``, ``dry_run``, ``allow_changed``, ``allow_out_of_order``,
    ``lock_timeout``, ``progress``, and ``lease_seconds`` / ``break_lock`` (MongoDB's lease;
    PostgreSQL's advisory lock needs neither: the server frees it when a run dies).
    """
    config = _resolve(config, engines)
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
    config: ConfigSource, engine: str, *, steps: Optional[int] = None, to: Optional[str] = None, **options: Any
) -> list[str]:
    """Roll back one engine's last ``steps`` migrations, or every one applied after ``to``."""
    config = _resolve(config, [engine])
    spec = ENGINES[engine]
    with spec.connection_class()(settings=config.settings(engine)) as db:
        result: list[str] = spec.module("migrations").rollback(db, steps=steps, to=to, **options)
    return result


def make_migrations(config: ConfigSource, engines: Sequence[str], name: str, *, empty: bool = False) -> list[Path]:
    """Write the next migration of each engine from the schema's difference; [] where nothing differs."""
    config = _resolve(config, engines)
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
