"""Operations the CLI offers, as plain functions that scripts can call.

Each takes what :func:`dbp.connect` takes: a settings path, a ``DB_CONFIG`` dict
(or a single engine's section, when one engine is named), a loaded
:class:`~dbp.config.Config`, or ``None`` for the usual search.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from dbp.config import Config, ConfigSource, resolve_config
from dbp.engines import ENGINES, EngineSettings
from dbp.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseMissing,
    DbpError,
    OperationError,
    ServerUnavailable,
)
from dbp.migrations import Draft, EngineStatus, Progress, folders_locked, write_files

__all__ = [
    "Drift",
    "EngineCheck",
    "InitReport",
    "check",
    "check_exit_code",
    "configured_engines",
    "dropdb",
    "initdb",
    "make_migrations",
    "migrate",
    "rollback",
    "schema_drift",
    "skipped_engines",
    "status",
]

#: An EngineCheck's state for each kind of failure, most telling first.
_CHECK_STATES = ((ConfigError, "INVALID"), (AuthenticationFailed, "REFUSED"), (DatabaseMissing, "MISSING"),
                 (ServerUnavailable, "UNREACHABLE"))


@dataclass(frozen=True)
class EngineCheck:
    engine: str
    url: str
    reachable: bool
    detail: str
    error: Optional[DbpError] = None

    @property
    def state(self) -> str:
        """``reachable``, or ``INVALID`` (settings), ``REFUSED`` (credentials), ``MISSING`` (database),
        ``UNREACHABLE`` (server) or ``FAILED`` (anything else)."""
        if self.error is None:
            return "reachable"
        return next((name for kind, name in _CHECK_STATES if isinstance(self.error, kind)), "FAILED")


def check_exit_code(results: Sequence[EngineCheck]) -> int:
    """0 if every engine answered; else the exit code of the failure a retry cannot cure first.

    Order: configuration (78), credentials (77), missing database (66), other
    failures (1), unreachable server (69): 69 means a retry may help every failing engine.
    """
    errors = [r.error for r in results if r.error is not None]
    for kind, _ in (*_CHECK_STATES[:3], (DbpError, "")):
        for error in errors:
            if isinstance(error, kind) and not isinstance(error, ServerUnavailable):
                return error.exit_code
    return errors[0].exit_code if errors else 0


def _resolve(config: ConfigSource, engines: Sequence[str]) -> Config:
    """``config`` as a :class:`Config`; a lone section is read as the one engine's, if one is named.

    Only the sections of ``engines`` are checked: another engine's mistakes never stop them.
    """
    return resolve_config(config, engine=engines[0] if len(engines) == 1 else None, engines=engines)


def configured_engines(config: ConfigSource, engine: str = "all") -> list[str]:
    """The engines to act on: ``engine`` itself, or with ``"all"`` every configured one.

    A section that holds only ``SCHEMA_DIR`` (or nothing) does not configure its
    engine: ``"all"`` skips it (see :func:`skipped_engines`).
    """
    if engine != "all":
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}, all")
        return [engine]
    config = resolve_config(config)
    found = [name for name in ENGINES if config.configured(name)]
    if not found and config.unconfigured:
        raise ConfigError(
            "no engine is configured: " + "; ".join(config.unconfigured.values())
            + "; give a section its server's URL, set " + " or ".join(f"${s.url_env}" for s in ENGINES.values())
            + ", or use --local"
        )
    if not found:
        raise ConfigError("DB_CONFIG has no SQL or MONGO section")
    return found


def skipped_engines(config: Config) -> dict[str, str]:
    """The engines ``configured_engines(config, "all")`` skips, and why (one line each)."""
    return {
        name: f"{config.unconfigured[spec.section]}: {name} is not configured, skipped"
        for name, spec in ENGINES.items() if spec.section in config.unconfigured
    }


def check(config: ConfigSource, engines: Sequence[str]) -> list[EngineCheck]:
    """Connect to each engine and report whether it answers (or why not: misconfigured, down, refused, missing).

    One engine's failure, its settings' included, is its own row: it hides no other engine's.
    """
    config = resolve_config(config, engine=engines[0] if len(engines) == 1 else None, engines=())
    results = []
    for engine in engines:
        try:
            settings = config.settings(engine)
        except ConfigError as exc:
            results.append(EngineCheck(engine, f"DB_CONFIG.{ENGINES[engine].section}", False, str(exc), exc))
            continue
        connection = ENGINES[engine].connection_class()(settings=settings)
        try:
            with connection:
                seconds = connection.ping()
                connection.require_database()
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
    #: Migrations not applied yet (``dbp migrate`` applies them), e.g. dbp's own indexes.
    pending: tuple[str, ...] = ()

    def describe(self) -> str:
        counts = ", ".join(f"{n} {_SINGULAR.get(what, what) if n == 1 else what}" for what, n in self.counts.items())
        waiting = ""
        if self.pending:
            shown = ", ".join(self.pending[:5]) + (", ..." if len(self.pending) > 5 else "")
            waiting = f"; {len(self.pending)} migration(s) pending ({shown}): run dbp migrate"
        if self.outcome == "already initialized":
            return f"{self.engine}: {self.address} already initialized at {self.version}; nothing changed{waiting}"
        marked = f"; {len(self.baseline)} migration(s) recorded as applied" if self.baseline else ""
        database = f"created database {self.address.rsplit('/', 1)[-1]}; " if self.created_database else ""
        return (
            f"{self.engine}: {database}{self.outcome} {counts} in {self.address} "
            f"({self.seconds:.2f} s){marked}; version {self.version}{waiting}"
        )


def initdb(config: ConfigSource, engines: Sequence[str], *, adopt: bool = False) -> list[InitReport]:
    """Create each engine's schema (or, with ``adopt``, take over an identical existing one).

    A database that does not exist is created first, if the role may; otherwise
    :class:`~dbp.errors.DatabaseMissing` names the statement that creates it.
    """
    config = _resolve(config, engines)
    settings = _checked(config, engines)
    _initdb_preflight(settings, engines, adopt)
    reports = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=settings[engine])
        created = False
        try:
            db.connect()
        except DatabaseMissing as missing:
            _create_missing(db, missing)
            created = True
            db.connect()
        with db:
            report = spec.module("admin").initdb(db, adopt=adopt)
            pending = tuple(m.id for m in spec.module("migrations").status(db).migrations
                            if m.state in ("pending", "failed", "out-of-order"))
        reports.append(replace(report, created_database=created or report.created_database, pending=pending))
    return reports


def _initdb_preflight(settings: dict[str, EngineSettings], engines: Sequence[str], adopt: bool) -> None:
    """Before initdb creates anything anywhere: every server answers and accepts the credentials, and no
    database holds data without dbp's ledger (unless ``adopt``); a database that does not exist is fine."""
    refusals = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=settings[engine])
        try:
            db.connect()
        except DatabaseMissing:
            continue  # created by initdb (the server answered, and accepted the credentials)
        with db:
            refusal = spec.module("admin").initdb_refusal(db, adopt=adopt)
        if refusal:
            refusals.append(refusal)
    if refusals:
        raise OperationError("; ".join(refusals) + "; nothing was changed", details=refusals if len(refusals) > 1
                             else ())


def _checked(config: Config, engines: Sequence[str], *, writing: bool = False) -> dict[str, EngineSettings]:
    """Every engine's settings, and every schema and migration file read, before any engine is touched.

    ``writing``: also refuse schema folders inside an installed package (make_migrations writes there).
    """
    settings = {engine: config.settings(engine) for engine in engines}
    for engine in engines:
        ENGINES[engine].module("migrations").check_files(settings[engine].schema_dir, writing=writing)
    return settings


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
    settings = _checked(config, engines)
    to = options.pop("to", None)
    if to is not None:
        engines = _engines_with(config, engines, to)
    if len(engines) > 1 and not options.get("dry_run"):
        # every engine's plan first (initialized, no edited or missing migration, statements readable):
        # a refusal on the last engine stops the run before the first engine applies anything
        quiet = {**options, "dry_run": True, "progress": Progress(io.StringIO(), tty=False)}
        for engine in engines:
            spec = ENGINES[engine]
            with spec.connection_class()(settings=settings[engine]) as db:
                spec.module("migrations").migrate(db, to=to, **quiet)
    done = {}
    for engine in engines:
        spec = ENGINES[engine]
        with spec.connection_class()(settings=settings[engine]) as db:
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
    """Write the next migration of each engine from the schema's difference; [] where nothing differs.

    Every engine's migration is worked out before the first file is written,
    and the files are written all or none (:func:`dbp.migrations.write_files`).
    """
    config = _resolve(config, engines)
    settings = _checked(config, engines, writing=True)
    drafts: list[Draft] = []
    folders = [ENGINES[e].module("migrations").migrations_folder(settings[e]) for e in engines]
    with folders_locked(folders):  # a concurrent run waits, then finds this run's files pending
        for engine in engines:
            spec = ENGINES[engine]
            with spec.connection_class()(settings=settings[engine]) as db:
                drafts.append(spec.module("migrations").draft_migration(db, name, empty=empty))
        return write_files([file for draft in drafts for file in draft.files])


@dataclass(frozen=True)
class Drift:
    """Whether one engine's schema files changed without a migration (``dbp check``)."""

    engine: str
    address: str
    #: ``clean``, ``drift`` (make_migrations would write a migration), ``behind`` (migrations not applied)
    #: or ``not initialized``: the last two cannot be compared.
    state: str
    #: What differs (``drift``), or why nothing could be compared.
    lines: list[str]


def schema_drift(config: ConfigSource, engines: Sequence[str]) -> list[Drift]:
    """Compare each engine's schema files with its up-to-date database, as make_migrations does; write nothing.

    The database must have every migration applied: a database behind its
    migrations, or never initialized, is reported as such, not compared.
    """
    config = _resolve(config, engines)
    settings = _checked(config, engines)
    out = []
    for engine in engines:
        spec = ENGINES[engine]
        db = spec.connection_class()(settings=settings[engine])
        try:
            db.connect()
        except DatabaseMissing:
            out.append(Drift(engine, db.address, "not initialized", ["the database does not exist; run dbp initdb"]))
            continue
        with db:
            state = spec.module("migrations").status(db)
            if not state.initialized:
                out.append(Drift(engine, db.address, "not initialized", ["run dbp initdb"]))
                continue
            behind = [m for m in state.migrations if m.state != "applied"]
            if behind:
                shown = ", ".join(f"{m.id} ({m.state})" for m in behind[:5]) + (", ..." if len(behind) > 5 else "")
                out.append(Drift(engine, db.address, "behind",
                                 [f"{len(behind)} migration(s) not in step with the database: {shown}; run dbp "
                                  "migrate (or resolve them: dbp status) first"]))
                continue
            draft = spec.module("migrations").draft_migration(db, "schema drift", writing=False)
        out.append(Drift(engine, db.address, "drift" if draft.changes else "clean", draft.changes))
    return out


def _engines_with(config: Config, engines: Sequence[str], migration_id: str) -> list[str]:
    """The engines among ``engines`` that have a migration ``migration_id``."""
    found = [
        engine for engine, result in zip(engines, status(config, engines))
        if any(m.id == migration_id for m in result.migrations)
    ]
    if not found:
        raise OperationError(f"no migration {migration_id!r} in {', '.join(engines)}")
    return found
