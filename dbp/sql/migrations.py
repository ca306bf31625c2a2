"""SQL migrations: yoyo's files and ledger, applied by dbp under an advisory lock.

Each transactional migration runs in one transaction together with its ledger
rows (yoyo's ``_yoyo_migration`` / ``_yoyo_log`` and dbp's
``_dbp_migrations``, which adds the content checksum): it is applied and
recorded, or neither. A ``-- transactional: false`` migration runs in
autocommit, as ``CREATE INDEX CONCURRENTLY`` needs, and is recorded right
after.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dbp._bundled import require_writable
from dbp._version import __version__
from dbp.errors import LockTimeout, OperationError
from dbp.migrations import (
    Draft,
    EngineStatus,
    LedgerEntry,
    MigrationFailed,
    MigrationFile,
    Progress,
    description,
    folders_locked,
    interrupted,
    next_number,
    order_key,
    plan,
    reconcile,
    rollback_targets,
    slug,
    user_code_error,
    write_files,
)
from dbp.sql.catalog import Catalog, diff, read_catalog
from dbp.sql.cone_run import declarations
from dbp.sql.connection import SQLConnection, open_connection
from dbp.sql.ddl import migration_ddl, refused
from dbp.sql.errors import cause, elide_literals
from dbp.sql.ledger import (
    LEDGER_DDL,
    LEDGER_TABLE,
    MIGRATION_TABLE,
    advisory_key,
    ensure_yoyo_tables,
    read_state,
    yoyo_backend,
)
from dbp.sql.schema import SchemaFiles, not_utf8
from dbp.sql.settings import SQLSettings
from dbp.sqltext import read_script, transaction_control

__all__ = ["check_files", "draft_migration", "make_migration", "migrate", "rollback", "status"]

log = logging.getLogger("dbp.sql")


class _ElideLiterals(logging.Filter):
    """yoyo logs each statement it runs (debug): with string literals elided, as a password may be one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                elide_literals(a.decode("ascii", "replace") if isinstance(a, bytes) else a)
                if isinstance(a, (str, bytes)) else a
                for a in record.args
            )
        return True


logging.getLogger("yoyo.migrations").addFilter(_ElideLiterals())


@contextmanager
def migration_lock(db: SQLConnection, timeout: float) -> Iterator[None]:
    """Hold the advisory lock of schema changes for the run; the server frees it if we die."""
    conn = open_connection(db.settings)
    key = advisory_key(db.settings.database)
    deadline = time.monotonic() + timeout
    delay = 0.05
    waiting = False
    try:
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,)).fetchone()
            if row is not None and row["ok"]:
                break
            if not waiting:
                waiting = True
                log.warning("sql: another dbp run holds the migration lock on %s; waiting up to %g s",
                            db.address, timeout)
            if time.monotonic() >= deadline:
                holder = conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (key,),
                ).fetchone()
                who = f" (server pid {holder['pid']})" if holder else ""
                raise LockTimeout(
                    f"sql: another dbp run{who} holds the migration lock on {db.address}; "
                    f"waited {timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        yield
    finally:
        conn.close()  # closing the session releases the lock


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_migrations(files: SchemaFiles) -> tuple[list[Any], list[MigrationFile]]:
    """yoyo's migration objects and dbp's view of them, in order."""
    from yoyo import read_migrations

    if not files.migrations_dir.is_dir():
        return [], []
    for path in sorted(files.migrations_dir.iterdir()):
        if path.suffix in (".sql", ".py") and path.is_file():
            try:
                path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise OperationError(f"sql: migration file {path} is not UTF-8: {not_utf8(exc)}") from None
    migrations = sorted(read_migrations(str(files.migrations_dir)), key=lambda m: order_key(m.id))
    infos = []
    for m in migrations:
        path = Path(m.path)
        if m.is_raw_sql():
            has_rollback = path.with_name(path.name[: -len(".sql")] + ".rollback.sql").exists()
            description = _leading_comment(path)
        else:
            has_rollback = True  # a Python migration declares its rollbacks per step
            description = ""
        infos.append(MigrationFile(m.id, description, checksum(path), has_rollback))
    return migrations, infos


#: A header line marking a migration that initdb neither runs nor records: ``dbp migrate`` applies it.
AFTER_INITDB = "-- dbp: after-initdb"


def after_initdb(path: Any) -> bool:
    """Whether the migration at ``path`` adds what the schema files lack (dbp's own indexes)."""
    path = Path(path)
    if path.suffix != ".sql":
        return False
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            return False
        if " ".join(stripped.split()) == AFTER_INITDB:
            return True
    return False


def _leading_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            return ""
        text = stripped.lstrip("-").strip()
        if text and ":" not in text.split()[0]:  # skip yoyo directives such as "depends:"
            return text
    return ""


def _files(db: SQLConnection) -> tuple[list[MigrationFile], dict[str, Any], dict[str, MigrationFile]]:
    """dbp's view of the migrations, and yoyo's objects and dbp's views by id."""
    migrations, infos = load_migrations(SchemaFiles.for_settings(db.settings.schema_dir))
    return infos, {m.id: m for m in migrations}, {i.id: i for i in infos}


def read_ledger(conn: psycopg.Connection[Any]) -> dict[str, LedgerEntry]:
    state = read_state(conn)
    ledger: dict[str, LedgerEntry] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        extra: dict[str, dict[str, Any]] = {}
        if state.has_ledger_table:
            for row in cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(LEDGER_TABLE))):
                extra[row["migration_id"]] = row
        if state.has_yoyo_tables:
            query = sql.SQL("SELECT migration_id, applied_at_utc FROM {}").format(sql.Identifier(MIGRATION_TABLE))
            for row in cur.execute(query):
                info = extra.get(row["migration_id"], {})
                recorded = "baseline" if info.get("status") == "baseline" else "applied"
                ledger[row["migration_id"]] = LedgerEntry(
                    row["migration_id"], recorded, info.get("checksum"), row["applied_at_utc"]
                )
    for migration_id, row in extra.items():
        if migration_id not in ledger and row["status"] == "failed":
            # elided again on reading: errors recorded by older versions kept the literals
            error = elide_literals(row["error"]) if row["error"] else row["error"]
            ledger[migration_id] = LedgerEntry(migration_id, "failed", None, row["applied_at"], error)
    return ledger


def status(db: SQLConnection) -> EngineStatus:
    files = SchemaFiles.for_settings(db.settings.schema_dir)
    _, infos = load_migrations(files)
    with db.connection() as conn:
        ledger = read_ledger(conn)
        initialized = read_state(conn).initialized
    return EngineStatus("sql", db.address, reconcile(infos, ledger), initialized=initialized)


def _require_initialized(conn: psycopg.Connection[Any], address: str) -> None:
    if not read_state(conn).initialized:
        raise OperationError(f"sql: {address} is not initialized; run initdb first")


def migrate(
    db: SQLConnection,
    *,
    to: Optional[str] = None,
    dry_run: bool = False,
    allow_changed: bool = False,
    allow_out_of_order: bool = False,
    allow_missing: bool = False,
    lock_timeout: float = 60.0,
    progress: Optional[Progress] = None,
    **_: Any,
) -> list[str]:
    """Apply pending migrations in order; return the ids applied (or, with ``dry_run``, planned)."""
    progress = progress or Progress()
    infos, by_id, info_by_id = _files(db)
    allowed = {"allow_changed": allow_changed, "allow_out_of_order": allow_out_of_order,
               "allow_missing": allow_missing}
    if dry_run:
        with db.connection() as conn:
            _require_initialized(conn, db.address)
            ids = plan("sql", reconcile(infos, read_ledger(conn)), to=to, **allowed)
        _check_statements([by_id[i] for i in ids], "apply")
        _print_plan(progress, [by_id[i] for i in ids], info_by_id)
        return ids
    with migration_lock(db, lock_timeout), yoyo_backend(db.settings) as backend:
        conn = backend.connection
        _require_initialized(conn, db.address)
        statuses = reconcile(infos, read_ledger(conn))
        ids = plan("sql", statuses, to=to, **allowed)
        _check_statements([by_id[i] for i in ids], "apply")  # every one, before the first runs
        with backend.transaction():
            ensure_yoyo_tables(backend)
            conn.execute(LEDGER_DDL)
            if allow_changed:
                for s in statuses:
                    if s.state == "changed":
                        _record(conn, info_by_id[s.id], "applied", 0.0)
                        log.warning("sql: accepted the edited migration %s", s.id)
        progress.start("sql", len(ids))
        for index, migration_id in enumerate(ids, 1):
            progress.step(index, migration_id)
            seconds = _apply_one(backend, by_id[migration_id], info_by_id[migration_id])
            progress.done(index, migration_id, seconds)
    return ids


def _check_statements(migrations: Sequence[Any], direction: str) -> None:
    """Refuse a transactional migration with COMMIT, BEGIN, ... in it: it would end dbp's transaction half-way."""
    from yoyo.exceptions import BadMigration

    for migration in migrations:
        error = None
        try:
            migration.load()
        except BadMigration as exc:
            error = str(exc)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a Python migration's own code, sys.exit() included
            error = user_code_error(exc)
        if error is not None:  # outside the handler: no __context__ keeps user code's exception
            raise MigrationFailed(f"sql: migration {migration.id} cannot be loaded: {error}")
        if not migration.use_transactions or not migration.is_raw_sql():
            continue
        path = Path(migration.path)
        if direction == "rollback":
            path = path.with_name(path.name[: -len(".sql")] + ".rollback.sql")
        if not path.exists():
            continue
        for statement in read_script(path):
            command = transaction_control(statement)
            if command:
                raise MigrationFailed(
                    f"sql: {path.name}:{statement.line}: {command} is not allowed in a transactional migration: "
                    "dbp runs it in one transaction with its ledger rows; remove it (or make the migration "
                    "'-- transactional: false'); nothing was run"
                )


def _print_plan(progress: Progress, migrations: Sequence[Any], infos: dict[str, MigrationFile]) -> None:
    if not migrations:
        progress.note("sql: nothing to apply")
    for m in migrations:
        m.load()
        progress.note(f"sql: would apply {m.id}" + (f": {infos[m.id].description}" if infos[m.id].description
                                                   else ""))
        for statement in _statements(m, "apply"):
            progress.note("    " + " ".join(statement.split()))


def _statements(migration: Any, direction: str) -> list[str]:
    out = []
    for step in migration.steps or []:
        inner = getattr(step, "step", step)
        for part in getattr(inner, "steps", [inner]):
            part = getattr(part, "step", part)
            text = getattr(part, f"_{direction}", None)
            out.append(text if isinstance(text, str) else f"(Python step {getattr(part, 'id', '?')})")
    return out


def _run_steps(backend: Any, migration: Any, direction: str) -> None:
    steps = list(migration.steps or [])
    if direction == "rollback":
        steps.reverse()
    texts = _statements(migration, direction)
    if direction == "rollback":
        texts.reverse()
    done: list[Any] = []
    for step, text in zip(steps, texts):
        output = io.StringIO()
        failure = None
        try:
            with contextlib.redirect_stdout(output):  # yoyo prints the rows a SELECT returns
                getattr(step, direction)(backend)
        except psycopg.Error as exc:
            if not migration.use_transactions:
                _undo(backend, migration, done, direction)
            # string literals elided, in the cause too: a statement may hold a password ('CREATE ROLE ...')
            statement = elide_literals(" ".join(text[:10_000].split()))[:200]
            failure = MigrationFailed(f"sql: migration {migration.id} failed: {cause(exc)} in: {statement}")
        if failure is not None:  # outside the handler: no __context__ keeps the driver's error
            raise failure
        if output.getvalue():
            log.debug("sql: %s printed:\n%s", migration.id, output.getvalue())
        done.append(step)


def _undo(backend: Any, migration: Any, done: list[Any], direction: str) -> None:
    """After a non-transactional failure, undo the steps that ran (best effort, like yoyo)."""
    reverse = "rollback" if direction == "apply" else "apply"
    for step in reversed(done):
        try:
            getattr(step, reverse)(backend)
        except psycopg.Error as exc:  # keep the original error; this one is only logged
            log.error("sql: could not undo a step of %s: %s", migration.id, exc.diag.message_primary)


def _apply_one(backend: Any, migration: Any, info: MigrationFile) -> float:
    from yoyo.exceptions import BadMigration

    start = time.perf_counter()
    conn = backend.connection
    try:
        migration.load()
    except BadMigration as exc:
        raise MigrationFailed(f"sql: migration {migration.id} cannot be loaded: {exc}") from None
    try:
        if migration.use_transactions:
            with backend.transaction():
                _run_steps(backend, migration, "apply")
                _mark(backend, migration, info, time.perf_counter() - start)
        else:
            with backend.disable_transactions():
                _run_steps(backend, migration, "apply")
            with backend.transaction():
                _mark(backend, migration, info, time.perf_counter() - start)
    except MigrationFailed as exc:
        _record_failure(conn, migration.id, str(exc))
        raise
    return time.perf_counter() - start


def _mark(backend: Any, migration: Any, info: MigrationFile, seconds: float) -> None:
    backend.log_migration(migration, "apply")
    backend.mark_one(migration, log=False)
    _record(backend.connection, info, "applied", seconds)


def _record(conn: psycopg.Connection[Any], info: MigrationFile, status_: str, seconds: float) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (migration_id, status, checksum, duration_s, dbp_version, host) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (migration_id) DO UPDATE SET "
            "status = EXCLUDED.status, checksum = EXCLUDED.checksum, applied_at = now(), "
            "duration_s = EXCLUDED.duration_s, dbp_version = EXCLUDED.dbp_version, host = EXCLUDED.host, "
            "error = NULL"
        ).format(sql.Identifier(LEDGER_TABLE)),
        (info.id, status_, info.checksum, seconds, __version__, socket.gethostname()),
    )


def _record_failure(conn: psycopg.Connection[Any], migration_id: str, error: str) -> None:
    try:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (migration_id, status, error, dbp_version, host) VALUES (%s, 'failed', %s, %s, %s) "
                "ON CONFLICT (migration_id) DO UPDATE SET status = 'failed', error = EXCLUDED.error, "
                "applied_at = now()"
            ).format(sql.Identifier(LEDGER_TABLE)),
            (migration_id, error[:2000], __version__, socket.gethostname()),
        )
    except psycopg.Error as exc:
        log.error("sql: could not record the failure of %s: %s", migration_id, exc.diag.message_primary)


def record_baseline(conn: psycopg.Connection[Any], infos: Sequence[MigrationFile]) -> None:
    """Checksums of the migrations ``initdb`` marks as applied (in its transaction)."""
    conn.execute(LEDGER_DDL)
    for info in infos:
        _record(conn, info, "baseline", 0.0)


def applied_ids(conn: psycopg.Connection[Any]) -> list[str]:
    """Applied migrations, baselined ones included, in order."""
    ledger = read_ledger(conn)
    return sorted((i for i, e in ledger.items() if e.status in ("applied", "baseline")), key=order_key)


def rollback(
    db: SQLConnection,
    *,
    steps: Optional[int] = None,
    to: Optional[str] = None,
    lock_timeout: float = 60.0,
    progress: Optional[Progress] = None,
    **_: Any,
) -> list[str]:
    """Roll back the last ``steps`` migrations, or every one applied after ``to``; newest first."""
    progress = progress or Progress()
    _infos, by_id, info_by_id = _files(db)
    with migration_lock(db, lock_timeout), yoyo_backend(db.settings) as backend:
        conn = backend.connection
        ledger = read_ledger(conn)
        applied = applied_ids(conn)
        baseline = {i for i, e in ledger.items() if e.status == "baseline"}
        targets = rollback_targets("sql", applied, steps, to, baseline)
        missing = [i for i in targets if i not in by_id]
        if missing:
            raise OperationError(f"sql: cannot roll back {', '.join(missing)}: the migration file is gone")
        no_rollback = [i for i in targets if not info_by_id[i].has_rollback]
        if no_rollback:
            raise OperationError(
                f"sql: migration {no_rollback[0]} has no rollback ({no_rollback[0]}.rollback.sql); "
                "nothing was rolled back"
            )
        _check_statements([by_id[i] for i in targets], "rollback")
        progress.start("sql", len(targets))
        for index, migration_id in enumerate(targets, 1):
            migration = by_id[migration_id]
            migration.load()
            progress.step(index, migration_id, "rolling back")
            start = time.perf_counter()
            if migration.use_transactions:
                with backend.transaction():
                    _run_steps(backend, migration, "rollback")
                    _unmark(backend, migration)
            else:
                with backend.disable_transactions():
                    _run_steps(backend, migration, "rollback")
                with backend.transaction():
                    _unmark(backend, migration)
            progress.done(index, migration_id, time.perf_counter() - start, "rolled back")
    return targets


def _unmark(backend: Any, migration: Any) -> None:
    backend.unmark_one(migration, log=False)
    backend.log_migration(migration, "rollback")
    backend.connection.execute(
        sql.SQL("DELETE FROM {} WHERE migration_id = %s").format(sql.Identifier(LEDGER_TABLE)), (migration.id,)
    )


def check_files(schema_dir: Optional[Path], *, writing: bool = False) -> None:
    """Read every schema file (if the folder has any) and migration file; raise ConfigError / OperationError.

    Nothing touches a database. A migration's statements are checked only when it is about to run.
    ``writing``: refuse a folder inside an installed package first.
    """
    files = SchemaFiles.for_settings(schema_dir)
    if writing:
        require_writable(files.migrations_dir)
    left = interrupted(files.migrations_dir, clean=writing)
    if left:
        raise OperationError(f"sql: {left[0]}")
    if files.schema_dir.is_dir():
        files.statements  # noqa: B018 - reading them checks UTF-8 and transaction control
    declarations(files.root)  # positions.toml, if there is one: its mistakes are found now, not at the first $cone
    load_migrations(files)


def make_migration(db: SQLConnection, name: str, *, empty: bool = False) -> list[Path]:
    """Write the next numbered migration and its rollback from the schema files' difference."""
    with folders_locked([migrations_folder(db.settings)]):
        return write_files(draft_migration(db, name, empty=empty).files)


def migrations_folder(settings: SQLSettings) -> Path:
    """The folder make_migrations writes into."""
    return SchemaFiles.for_settings(settings.schema_dir).migrations_dir


def draft_migration(db: SQLConnection, name: str, *, empty: bool = False, writing: bool = True) -> Draft:
    """The next numbered migration and its rollback, from the schema files' difference; nothing is written.

    ``writing``: refuse a folder inside an installed package (make_migrations would write there), and a
    change that needs a hand-written data migration (a partition key or bound); without it, such a change
    is in ``changes`` with no files.
    """
    files = SchemaFiles.for_settings(db.settings.schema_dir)
    if writing:
        require_writable(files.migrations_dir)
    _, infos = load_migrations(files)
    stem = f"{next_number([i.id for i in infos])}_{slug(name)}"
    if empty:
        up = down = ""
        summary: list[str] = []
    else:
        with db.transaction() as conn:
            _require_initialized(conn, db.address)
            pending = [s.id for s in reconcile(infos, read_ledger(conn)) if s.state != "applied"]
            if pending:
                raise OperationError(
                    f"sql: apply or resolve {', '.join(pending)} first (dbp migrate / status): "
                    "make_migrations compares the schema files with an up-to-date database"
                )
            live: Catalog = read_catalog(conn)
            # the schema files, and what after-initdb migrations add to them
            wanted = files.scratch_catalog(conn, [Path(m.path) for m in load_migrations(files)[0]
                                                  if after_initdb(m.path)])
        summary = diff(live, wanted)
        if not summary:
            return Draft("sql", [], [])
        error = refused(live, wanted)
        if error is not None:
            if writing:
                raise error
            return Draft("sql", summary, [])  # dbp check: the drift, which make_migrations would refuse
        up = migration_ddl(live, wanted)
        down = migration_ddl(wanted, live)
        if not up.strip():  # a difference no statement makes: never a migration that changes nothing
            raise OperationError(f"sql: make_migrations has no statement for: {summary[0]}; write that migration "
                                 "by hand (dbp make_migrations NAME --empty); nothing was written", details=summary)
    header = f"-- {description(name)}\n" + "".join(f"-- {description(line, 500)}\n" for line in summary)
    apply_path = files.migrations_dir / f"{stem}.sql"
    rollback_path = files.migrations_dir / f"{stem}.rollback.sql"
    return Draft("sql", summary, [(apply_path, header + "\n" + up),
                                  (rollback_path, f"-- rollback of {stem}\n\n" + down)])
