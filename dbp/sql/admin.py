"""``initdb`` and ``dropdb`` for PostgreSQL.

``initdb`` runs in one transaction on yoyo's own connection: the schema files,
yoyo's ledger tables, the baseline (every migration that exists, recorded as
applied) and dbp's marker commit together or not at all. A transaction-scoped
advisory lock, the same one ``migrate`` takes, keeps concurrent runs apart.
"""

from __future__ import annotations

import time

from dbp.admin import InitReport
from dbp.errors import OperationError
from dbp.sql.catalog import diff, read_catalog
from dbp.sql.connection import SQLConnection
from dbp.sql.ledger import (
    LedgerState,
    advisory_key,
    ensure_yoyo_tables,
    format_marker,
    mark_applied,
    read_state,
    write_marker,
    yoyo_backend,
)
from dbp.sql.migrations import after_initdb, load_migrations, record_baseline
from dbp.sql.schema import SchemaFiles

__all__ = ["drop_refusal", "dropdb", "initdb", "initdb_refusal"]


def initdb(db: SQLConnection, *, adopt: bool = False) -> InitReport:
    files = SchemaFiles.for_settings(db.settings.schema_dir)
    files.statements  # noqa: B018 - read and split every file before touching the database
    migrations, infos = load_migrations(files)
    later = {m.id for m in migrations if after_initdb(m.path)}  # dbp's own additions: for migrate to apply
    infos = [i for i in infos if i.id not in later]
    ids = [m.id for m in migrations if m.id not in later]
    start = time.perf_counter()
    with yoyo_backend(db.settings) as backend:
        conn = backend.connection
        with backend.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(db.settings.database),))
            state = read_state(conn)
            if state.initialized:
                assert state.marker is not None
                catalog = read_catalog(conn)
                return InitReport(
                    "sql", db.address, "already initialized",
                    {"tables": len(catalog.tables), "indexes": catalog.index_count}, [],
                    f"{state.version} ({format_marker(state.marker)})", time.perf_counter() - start,
                )
            refusal = _refusal(db, state, adopt)
            if refusal:
                raise OperationError(refusal)
            if state.user_tables:
                differences = diff(read_catalog(conn), files.scratch_catalog(conn))
                if differences:
                    raise OperationError(
                        f"cannot adopt {db.address}: it differs from the schema files "
                        f"({_schema_files(db)}) in {len(differences)} way(s): " + "; ".join(differences),
                        details=differences,
                    )
                outcome = "adopted"
            else:
                files.apply(conn)
                outcome = "created"
            ensure_yoyo_tables(backend)
            mark_applied(backend, ids, migrations)
            record_baseline(conn, infos)
            write_marker(conn, outcome, str(files.root), files.checksum())
            catalog = read_catalog(conn)
    return InitReport(
        "sql", db.address, outcome, {"tables": len(catalog.tables), "indexes": catalog.index_count},
        ids, ids[-1] if ids else "baseline (no migration applied)", time.perf_counter() - start,
    )


def initdb_refusal(db: SQLConnection, *, adopt: bool = False) -> str:
    """Why ``initdb`` would refuse this (existing) database before changing anything ("" if it would not)."""
    with db.connection() as conn:
        return _refusal(db, read_state(conn), adopt)


def _refusal(db: SQLConnection, state: LedgerState, adopt: bool) -> str:
    if state.initialized or not state.user_tables or adopt:
        return ""
    shown = ", ".join(state.user_tables[:5]) + (", ..." if len(state.user_tables) > 5 else "")
    return (f"{db.address} already has {len(state.user_tables)} table(s) ({shown}) but no dbp ledger; run "
            "initdb --adopt to take it over if it matches the schema files")


def drop_refusal(db: SQLConnection, force: bool = False) -> str:
    """Why ``dropdb`` must not drop this database ("" if it may)."""
    if force or not db.database_exists():
        return ""
    with db, db.connection() as conn:
        state = read_state(conn)
    if not state.initialized:
        return f"refusing to drop sql {db.address}: dbp did not initialize it (use --force to drop it anyway)"
    return ""


def dropdb(db: SQLConnection, *, force: bool = False) -> str:
    if not db.database_exists():
        return f"sql: {db.address} does not exist; nothing dropped"
    refusal = drop_refusal(db, force)
    if refusal:
        raise OperationError(refusal)
    db.drop_db()
    return f"sql: dropped {db.address}"


def _schema_files(db: SQLConnection) -> str:
    """Where the schema files are, as a user can change them (never a path inside dbp)."""
    if db.settings.schema_dir is not None:
        return f"{db.settings.schema_dir}; change the database or those files"
    return ("dbp's bundled ALeRCE schema, as SCHEMA_DIR is not set; change the database, or run "
            "dbp init-project and edit the .sql files in the folder it makes")
