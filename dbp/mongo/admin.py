"""``initdb`` and ``dropdb`` for MongoDB.

MongoDB has no transactional DDL, so ``initdb`` compensates instead: if
creating a collection or index fails, the collections this run created are
dropped again, and nothing is recorded in the ledger.
"""

from __future__ import annotations

import time

from pymongo import IndexModel
from pymongo.errors import CollectionInvalid, PyMongoError

from dbp.admin import InitReport
from dbp.errors import OperationError
from dbp.mongo.connection import MongoConnection, reason
from dbp.mongo.ledger import (
    MigrationFile,
    is_dbp_collection,
    last_applied,
    migration_files,
    read_marker,
    record_baseline,
)
from dbp.mongo.lock import Lease
from dbp.mongo.schema import MongoSchema, index_differences

__all__ = ["drop_refusal", "dropdb", "initdb", "initdb_refusal"]


def initdb(db: MongoConnection, *, adopt: bool = False, lock_timeout: float = 60.0) -> InitReport:
    schema = MongoSchema.load(db.settings.schema_dir)
    files = migration_files(schema.root)
    start = time.perf_counter()
    database = db.database
    try:
        with Lease(database, timeout=lock_timeout):
            return _initdb_locked(db, schema, files, adopt, start)
    except PyMongoError as exc:
        raise OperationError(f"initdb failed on {db.address}: {reason(exc)}") from None


def _initdb_locked(
    db: MongoConnection, schema: MongoSchema, files: list[MigrationFile], adopt: bool, start: float
) -> InitReport:
    database = db.database
    counts = {"collections": len(schema.collections), "indexes": schema.index_count}
    marker = read_marker(database)
    if marker is not None:
        version = last_applied(database) or "baseline (no migration applied)"
        how = f"{marker.get('how', 'initialized')} by dbp {marker.get('dbp_version', '?')}"
        return InitReport("mongo", db.address, "already initialized", counts, [],
                          f"{version} ({how})", time.perf_counter() - start)
    existing = sorted(n for n in database.list_collection_names() if not is_dbp_collection(n))
    if existing and not adopt:
        raise OperationError(_refusal(db, existing))
    if existing:
        differences = [
            line
            for spec in schema.collections
            for line in index_differences(
                spec, database[spec.name].index_information() if spec.name in existing else None
            )
        ]
        if differences:
            raise OperationError(
                f"cannot adopt {db.address}: its indexes differ from the declared ones "
                f"({_declared_in(db)}) in {len(differences)} way(s): " + "; ".join(differences),
                details=differences,
            )
        outcome = "adopted"
    else:
        _create(db, schema)
        outcome = "created"
    record_baseline(database, files, outcome)
    ids = [f.id for f in files]
    return InitReport("mongo", db.address, outcome, counts, ids,
                      ids[-1] if ids else "baseline (no migration applied)", time.perf_counter() - start)


def initdb_refusal(db: MongoConnection, *, adopt: bool = False) -> str:
    """Why ``initdb`` would refuse this database before changing anything ("" if it would not)."""
    try:
        if adopt or read_marker(db.database) is not None:
            return ""
        existing = sorted(n for n in db.database.list_collection_names() if not is_dbp_collection(n))
    except PyMongoError as exc:
        raise OperationError(f"cannot read {db.address}: {reason(exc)}") from None
    return _refusal(db, existing) if existing else ""


def _refusal(db: MongoConnection, existing: list[str]) -> str:
    return (f"{db.address} already has {len(existing)} collection(s) ({', '.join(existing[:5])}) but no dbp "
            "ledger; run initdb --adopt to take it over if it matches the declared indexes")


def _create(db: MongoConnection, schema: MongoSchema) -> None:
    database = db.database
    created: list[str] = []
    try:
        for spec in schema.collections:
            try:
                database.create_collection(spec.name)
                created.append(spec.name)
            except CollectionInvalid:
                pass  # it exists already
            if spec.indexes:
                database[spec.name].create_indexes([IndexModel(**i.model_args()) for i in spec.indexes])
    except PyMongoError as exc:
        for name in created:
            database.drop_collection(name)
        raise OperationError(
            f"initdb failed on {db.address} at collection {spec.name}: {reason(exc)}; "
            f"dropped the {len(created)} collection(s) it had created"
        ) from None


def drop_refusal(db: MongoConnection, force: bool = False) -> str:
    """Why ``dropdb`` must not drop this database ("" if it may)."""
    if force:
        return ""
    with db:
        try:
            exists = db.settings.database in db.client.list_database_names()
            initialized = read_marker(db.database) is not None
        except PyMongoError as exc:
            raise OperationError(f"cannot read {db.address}: {reason(exc)}") from None
    if exists and not initialized:
        return f"refusing to drop mongo {db.address}: dbp did not initialize it (use --force to drop it anyway)"
    return ""


def dropdb(db: MongoConnection, *, force: bool = False) -> str:
    refusal = drop_refusal(db, force)
    if refusal:
        raise OperationError(refusal)
    with db:
        existed = db.drop_db()
    return f"mongo: dropped {db.address}" if existed else f"mongo: {db.address} does not exist; nothing dropped"


def _declared_in(db: MongoConnection) -> str:
    """Where the declared indexes come from, as a user can change them (never a path inside dbp)."""
    if db.settings.schema_dir is not None:
        return f"{db.settings.schema_dir / 'collections.toml'}; change the indexes or that file"
    return ("dbp's bundled ALeRCE schema, as SCHEMA_DIR is not set; change the indexes, or run "
            "dbp init-project and edit collections.toml in the folder it makes")
