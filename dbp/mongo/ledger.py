"""The Mongo migration ledger (``_dbp_migrations``) and dbp's marker (``_dbp``)."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from pymongo.database import Database

from dbp._version import __version__

__all__ = ["LEDGER", "MARKER", "MigrationFile", "migration_files", "record_baseline"]

LEDGER = "_dbp_migrations"
#: Holds dbp's marker documents: ``database`` (from create_db) and ``schema`` (from initdb).
MARKER = "_dbp"
MIGRATION_NAME = re.compile(r"^(\d+)_\w+\.py$")


@dataclass(frozen=True)
class MigrationFile:
    id: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migration_files(root: Path) -> list[MigrationFile]:
    """Numbered ``NNNN_name.py`` files in ``root``, in order."""
    found = [p for p in root.iterdir() if MIGRATION_NAME.match(p.name)] if root.is_dir() else []
    return sorted((MigrationFile(p.stem, p) for p in found), key=lambda m: (int(m.id.split("_")[0]), m.id))


def is_dbp_collection(name: str) -> bool:
    return name.startswith("_dbp") or name.startswith("system.")


def record_baseline(db: Database[Any], files: list[MigrationFile], how: str) -> None:
    """Record ``files`` as applied without running them, and mark the database as dbp's."""
    now = datetime.now(timezone.utc)
    host = socket.gethostname()
    for migration in files:
        db[LEDGER].update_one(
            {"_id": migration.id},
            {"$setOnInsert": {
                "status": "baseline", "checksum": migration.checksum, "applied_at": now,
                "duration_s": 0.0, "dbp_version": __version__, "host": host,
            }},
            upsert=True,
        )
    db[MARKER].update_one(
        {"_id": "schema"},
        {"$setOnInsert": {"how": how, "initialized_at": now, "dbp_version": __version__}},
        upsert=True,
    )


def read_marker(db: Database[Any]) -> Optional[dict[str, Any]]:
    marker: Optional[dict[str, Any]] = db[MARKER].find_one({"_id": "schema"})
    return marker


def last_applied(db: Database[Any]) -> Optional[str]:
    ids = [d["_id"] for d in db[LEDGER].find({"status": {"$in": ["applied", "baseline"]}}, {"_id": 1})]
    if not ids:
        return None
    return str(max(ids, key=lambda i: (int(str(i).split("_")[0]), str(i))))
