"""Mongo migrations: numbered Python files with ``up(db)`` and optionally ``down(db)``.

The ledger (``_dbp_migrations``) records, per migration, its status
(``applied``, ``baseline``, ``failed`` or ``running``), the content checksum,
when and where it ran and how long it took. Runs hold the lease lock of
:mod:`dbp.mongo.lock`. MongoDB cannot roll back ``up(db)`` half-way: a
migration that fails or is killed may have done part of its work, and the next
run retries it, so write migrations that can run twice.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import logging
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from pymongo.database import Database

from dbp._bundled import bundled, require_writable
from dbp._version import __version__
from dbp.errors import OperationError
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
from dbp.mongo.connection import MongoConnection
from dbp.mongo.ledger import LEDGER, migration_files, read_marker
from dbp.mongo.lock import DEFAULT_LEASE_SECONDS, Lease, break_lock, held_by_live_process, holder
from dbp.mongo.schema import CollectionSpec, IndexSpec, MongoSchema, index_differences
from dbp.mongo.settings import MongoSettings

__all__ = ["check_files", "draft_migration", "make_migration", "migrate", "rollback", "status"]

log = logging.getLogger("dbp.mongo")


def describe(path: Path) -> tuple[str, bool]:
    """The module docstring's first line, and whether ``down`` is defined; nothing is executed."""
    try:
        source = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationFailed(
            f"mongo: migration file {path} is not UTF-8: byte {exc.start} (0x{exc.object[exc.start]:02x}) "
            "cannot be decoded; save it as UTF-8"
        ) from None
    try:
        tree = ast.parse(source, str(path))
    except SyntaxError as exc:
        raise MigrationFailed(f"mongo: migration {path.stem} has a syntax error at line {exc.lineno}") from None
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    has_down = any(isinstance(n, ast.FunctionDef) and n.name == "down" for n in tree.body)
    return (doc[0] if doc else ""), has_down


def load_files(root: Path) -> tuple[dict[str, Path], list[MigrationFile]]:
    paths: dict[str, Path] = {}
    infos = []
    for f in migration_files(root):
        description, has_down = describe(f.path)
        paths[f.id] = f.path
        infos.append(MigrationFile(f.id, description, f.checksum, has_down))
    return paths, infos


def _files(conn: MongoConnection) -> tuple[dict[str, Path], list[MigrationFile], dict[str, MigrationFile]]:
    paths, infos = load_files(MongoSchema.load(conn.settings.schema_dir).root)
    return paths, infos, {i.id: i for i in infos}


def read_ledger(db: Database[Any]) -> dict[str, LedgerEntry]:
    return {
        str(d["_id"]): LedgerEntry(str(d["_id"]), d.get("status", "applied"), d.get("checksum"),
                                   d.get("applied_at"), d.get("error"))
        for d in db[LEDGER].find()
    }


def status(conn: MongoConnection) -> EngineStatus:
    schema_root = MongoSchema.load(conn.settings.schema_dir).root
    _, infos = load_files(schema_root)
    initialized = read_marker(conn.database) is not None
    live = holder(conn.database) is not None
    return EngineStatus("mongo", conn.address, reconcile(infos, read_ledger(conn.database), live_run=live),
                        initialized=initialized)


def _require_initialized(conn: MongoConnection) -> None:
    if read_marker(conn.database) is None:
        raise OperationError(f"mongo: {conn.address} is not initialized; run initdb first")


@contextmanager
def _locked(
    conn: MongoConnection, lock_timeout: float, lease_seconds: float, breaking: bool, force: bool = False
) -> Iterator[Lease]:
    if breaking:
        held = holder(conn.database)
        if held is not None and not force:
            who = f"host {held.get('host', '?')}, pid {held.get('pid', '?')}"
            if held_by_live_process(held):
                raise OperationError(
                    f"mongo: refusing --break-lock: the run holding the migration lock on {conn.address} ({who}) "
                    "is alive on this host; wait for it, or stop it (--force breaks the lock anyway)"
                )
            if held.get("host") != socket.gethostname():
                raise OperationError(
                    f"mongo: refusing --break-lock: the migration lock on {conn.address} is held by {who} until "
                    f"{held.get('expires_at')}, on another host, where dbp cannot tell whether that run is alive; "
                    "make sure it is dead, then add --force"
                )
        if break_lock(conn.database):
            log.warning("mongo: broke the migration lock on %s", conn.address)
    with Lease(conn.database, timeout=lock_timeout, lease_seconds=lease_seconds) as lease:
        yield lease


def _module(migration_id: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"dbp_mongo_migration_{migration_id}", path)
    if spec is None or spec.loader is None:
        raise MigrationFailed(f"mongo: cannot load migration {migration_id} from {path}")
    module = importlib.util.module_from_spec(spec)
    error = None
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any error in user code, sys.exit() included
        error = user_code_error(exc)
    if error is not None:  # outside the handler: no __context__ keeps user code's exception
        raise MigrationFailed(f"mongo: migration {migration_id} cannot be loaded: {error}")
    return module


#: What a migration's ``up``/``down`` may raise and dbp records as a failure; only Ctrl-C goes through.
USER_CODE_ERRORS = (Exception, SystemExit)


def _function(module: ModuleType, migration_id: str, name: str) -> Callable[[Database[Any]], Any]:
    func = getattr(module, name, None)
    if func is None:
        raise MigrationFailed(f"mongo: migration {migration_id} defines no {name}(db)")
    if not callable(func):
        raise MigrationFailed(f"mongo: migration {migration_id}: {name} is a {type(func).__name__}, "
                              f"not a function {name}(db)")
    try:
        inspect.signature(func).bind(None)
    except TypeError:
        raise MigrationFailed(f"mongo: migration {migration_id}: {name} cannot be called as {name}(db); "
                              f"define it as def {name}(db): ...") from None
    except ValueError:
        pass  # no signature to check (a builtin): calling it will tell
    return func  # type: ignore[no-any-return]


def _loaded(migration_id: str, path: Path, name: str) -> Callable[[Database[Any]], Any]:
    """``name`` (``up`` or ``down``) of a migration, its module imported and checked (``down`` too if given).

    Cached by file content: ``migrate`` loads every migration while planning, and
    each module's code runs once.
    """
    key = (str(path.absolute()), hashlib.sha256(path.read_bytes()).hexdigest())
    module = _MODULES.get(key)
    if module is None:
        module = _module(migration_id, path)
        for other in ("up", "down"):
            if other != name and getattr(module, other, None) is not None:
                _function(module, migration_id, other)
        _MODULES[key] = module
    return _function(module, migration_id, name)


_MODULES: dict[tuple[str, str], ModuleType] = {}


def _load_all(ids: Sequence[str], paths: Mapping[str, Path], name: str) -> dict[str, Callable[[Database[Any]], Any]]:
    """Every migration's ``name`` function, each module imported and checked before any runs."""
    return {migration_id: _loaded(migration_id, paths[migration_id], name) for migration_id in ids}


def migrate(
    conn: MongoConnection,
    *,
    to: Optional[str] = None,
    dry_run: bool = False,
    allow_changed: bool = False,
    allow_out_of_order: bool = False,
    allow_missing: bool = False,
    lock_timeout: float = 60.0,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    break_lock: bool = False,
    force: bool = False,
    progress: Optional[Progress] = None,
) -> list[str]:
    progress = progress or Progress()
    paths, infos, info_by_id = _files(conn)
    db = conn.database
    _require_initialized(conn)
    allowed = {"allow_changed": allow_changed, "allow_out_of_order": allow_out_of_order,
               "allow_missing": allow_missing}
    if dry_run:
        ids = plan("mongo", reconcile(infos, read_ledger(db)), to=to, **allowed)
        _load_all(ids, paths, "up")  # a module that cannot be imported, or has no up(db), fails the plan
        if not ids:
            progress.note("mongo: nothing to apply")
        for migration_id in ids:
            description = info_by_id[migration_id].description
            progress.note(f"mongo: would apply {migration_id}" + (f": {description}" if description else ""))
            progress.note(f"    up(db) from {paths[migration_id]}")
        return ids
    with _locked(conn, lock_timeout, lease_seconds, break_lock, force) as lease:
        statuses = reconcile(infos, read_ledger(db))
        ids = plan("mongo", statuses, to=to, **allowed)
        ups = _load_all(ids, paths, "up")  # every module imported and checked before the first runs
        if allow_changed:
            for s in statuses:
                if s.state == "changed":
                    db[LEDGER].update_one({"_id": s.id}, {"$set": {"checksum": info_by_id[s.id].checksum}})
                    log.warning("mongo: accepted the edited migration %s", s.id)
        progress.start("mongo", len(ids))
        for index, migration_id in enumerate(ids, 1):
            if lease.lost.is_set():
                raise OperationError("mongo: lost the migration lock (it expired or was broken); stopping")
            progress.step(index, migration_id)
            seconds = _apply_one(db, migration_id, ups[migration_id], info_by_id[migration_id])
            progress.done(index, migration_id, seconds)
    return ids


def _apply_one(db: Database[Any], migration_id: str, up: Callable[[Database[Any]], Any], info: MigrationFile
               ) -> float:
    start = time.perf_counter()
    host = socket.gethostname()
    db[LEDGER].update_one(
        {"_id": migration_id},
        {"$set": {"status": "running", "started_at": datetime.now(timezone.utc), "host": host}},
        upsert=True,
    )
    error = None
    try:
        up(db)
    except USER_CODE_ERRORS as exc:  # recorded, then reported
        error = user_code_error(exc)
    if error is not None:  # outside the handler: no __context__ keeps user code's exception
        db[LEDGER].update_one(
            {"_id": migration_id},
            {"$set": {"status": "failed", "error": error, "applied_at": datetime.now(timezone.utc)}},
        )
        raise MigrationFailed(f"mongo: migration {migration_id} failed: {error}")
    seconds = time.perf_counter() - start
    db[LEDGER].update_one(
        {"_id": migration_id},
        {"$set": {
            "status": "applied", "checksum": info.checksum, "applied_at": datetime.now(timezone.utc),
            "duration_s": seconds, "dbp_version": __version__, "host": host,
        }, "$unset": {"error": "", "started_at": ""}},
    )
    return seconds


def rollback(
    conn: MongoConnection,
    *,
    steps: Optional[int] = None,
    to: Optional[str] = None,
    lock_timeout: float = 60.0,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    break_lock: bool = False,
    force: bool = False,
    progress: Optional[Progress] = None,
) -> list[str]:
    progress = progress or Progress()
    paths, _, info_by_id = _files(conn)
    db = conn.database
    with _locked(conn, lock_timeout, lease_seconds, break_lock, force):
        ledger = read_ledger(db)
        applied = sorted((i for i, e in ledger.items() if e.status in ("applied", "baseline")), key=order_key)
        baseline = {i for i, e in ledger.items() if e.status == "baseline"}
        targets = rollback_targets("mongo", applied, steps, to, baseline)
        for migration_id in targets:
            if migration_id not in info_by_id:
                raise OperationError(f"mongo: cannot roll back {migration_id}: the migration file is gone")
            if not info_by_id[migration_id].has_rollback:
                raise OperationError(
                    f"mongo: migration {migration_id} defines no down(db); nothing was rolled back"
                )
        downs = _load_all(targets, paths, "down")  # every module imported and checked before the first runs
        progress.start("mongo", len(targets))
        for index, migration_id in enumerate(targets, 1):
            progress.step(index, migration_id, "rolling back")
            start = time.perf_counter()
            down = downs[migration_id]
            error = None
            try:
                down(db)
            except USER_CODE_ERRORS as exc:
                error = user_code_error(exc)
            if error is not None:
                raise MigrationFailed(f"mongo: rollback of {migration_id} failed: {error}")
            db[LEDGER].delete_one({"_id": migration_id})
            progress.done(index, migration_id, time.perf_counter() - start, "rolled back")
    return targets


# -- make_migrations ---------------------------------------------------------------------------


def _create_index(collection: str, index: IndexSpec) -> str:
    options = "".join(f", {k}={v!r}" for k, v in index.options.items())
    return f"db[{collection!r}].create_index({list(index.keys)!r}, name={index.name!r}{options})"


def _live_spec(name: str, info: Mapping[str, Any]) -> IndexSpec:
    skip = {"key", "v", "ns", "background", "2dsphereIndexVersion", "textIndexVersion"}
    keys = tuple((str(k), int(d) if isinstance(d, float) else d) for k, d in info["key"])
    return IndexSpec(name, keys, {k: v for k, v in info.items() if k not in skip})


def _operations(spec: CollectionSpec, live: Optional[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    up: list[str] = []
    down: list[str] = []
    if live is None:
        up.append(f"db.create_collection({spec.name!r})")
        up += [_create_index(spec.name, i) for i in spec.indexes]
        down.append(f"db.drop_collection({spec.name!r})")
        return up, down
    declared = {i.name: i for i in spec.indexes}
    for name, info in sorted(live.items()):
        if name == "_id_":
            continue
        want = declared.get(name)
        if want is None or not want.matches(info):
            up.append(f"db[{spec.name!r}].drop_index({name!r})")
            down.append(_create_index(spec.name, _live_spec(name, info)))
    for name, index in declared.items():
        if name not in live or not index.matches(live[name]):
            up.append(_create_index(spec.name, index))
            down.insert(0, f"db[{spec.name!r}].drop_index({name!r})")
    return up, down


def check_files(schema_dir: Optional[Path], *, writing: bool = False) -> None:
    """Read ``collections.toml`` and every migration file (nothing is executed); raise ConfigError / OperationError.

    ``writing``: refuse a folder inside an installed package first.
    """
    if writing:
        require_writable(schema_dir or bundled("mongo_migrations"))
    root = MongoSchema.load(schema_dir).root
    left = interrupted(root, clean=writing)
    if left:
        raise OperationError(f"mongo: {left[0]}")
    load_files(root)


def make_migration(conn: MongoConnection, name: str, *, empty: bool = False) -> list[Path]:
    """Write the next numbered migration from the difference of ``collections.toml`` and the live indexes."""
    with folders_locked([migrations_folder(conn.settings)]):
        return write_files(draft_migration(conn, name, empty=empty).files)


def migrations_folder(settings: MongoSettings) -> Path:
    """The folder make_migrations writes into."""
    return settings.schema_dir or bundled("mongo_migrations")


def draft_migration(conn: MongoConnection, name: str, *, empty: bool = False, writing: bool = True) -> Draft:
    """The next numbered migration, from ``collections.toml``'s difference; nothing is written.

    ``writing``: refuse a folder inside an installed package (make_migrations would write there).
    """
    if writing:
        require_writable(conn.settings.schema_dir or bundled("mongo_migrations"))
    schema = MongoSchema.load(conn.settings.schema_dir)
    _, infos = load_files(schema.root)
    up: list[str] = []
    down: list[str] = []
    summary: list[str] = []
    if not empty:
        _require_initialized(conn)
        unapplied = [s.id for s in reconcile(infos, read_ledger(conn.database)) if s.state != "applied"]
        if unapplied:
            raise OperationError(f"mongo: apply or resolve {', '.join(unapplied)} first (dbp migrate / status)")
        existing = set(conn.database.list_collection_names())
        for spec in schema.collections:
            live = conn.collection(spec.name).index_information() if spec.name in existing else None
            summary += index_differences(spec, live)
            ops_up, ops_down = _operations(spec, live)
            up += ops_up
            down = ops_down + down
        if not up:
            return Draft("mongo", [], [])
    path = schema.root / f"{next_number([i.id for i in infos])}_{slug(name)}.py"
    notes = "".join(f"\n- {description(line, 500)}" for line in summary)
    text = (  # the name only as description(): no quote, backslash or line break can end the docstring
        f'"""{description(name)}\n\nWritten by dbp make_migrations{":" if notes else "."}{notes}\n"""\n\n\n'
        + _function_text("up", up) + "\n\n" + _function_text("down", down)
    )
    return Draft("mongo", summary, [(path, text)])


def _function_text(name: str, lines: Sequence[str]) -> str:
    body = "".join(f"    {line}\n" for line in lines) or "    pass\n"
    return f"def {name}(db):\n{body}"
