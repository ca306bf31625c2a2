"""A lease lock in MongoDB, for schema changes that must not run twice at once.

The lease is one document in ``_dbp_locks``, taken with an atomic
``find_one_and_update`` and kept alive by a heartbeat thread. A crashed
holder stops renewing it, so it expires after ``lease_seconds``;
:func:`break_lock` removes it at once. Expiry compares the clients' UTC
clocks, so keep them in step (NTP) and the lease well above their skew.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Optional

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from dbp.errors import LockTimeout
from dbp.local import alive, start_time

__all__ = ["DEFAULT_LEASE_SECONDS", "Lease", "break_lock"]

log = logging.getLogger("dbp.mongo")

LOCKS = "_dbp_locks"
LOCK_ID = "migrate"
DEFAULT_LEASE_SECONDS = 30.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Lease:
    """``with Lease(db, timeout=60):`` holds the migration lock, waiting up to ``timeout`` seconds."""

    def __init__(
        self, db: Database[Any], *, timeout: float = 60.0, lease_seconds: float = DEFAULT_LEASE_SECONDS,
        name: str = LOCK_ID, what: str = "the Mongo migration lock",
        advice: str = "use --break-lock if that run is dead",
    ) -> None:
        self.collection: Collection[Any] = db[LOCKS]
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.name = name
        #: For messages: what the lock is, and what to do when waiting for it timed out.
        self.what, self.advice = what, advice
        self.owner = uuid.uuid4().hex
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        waited = False
        while True:
            now = _now()
            try:
                taken = self.collection.find_one_and_update(
                    {"_id": self.name, "$or": [{"expires_at": {"$lt": now}}, {"owner": self.owner}]},
                    {"$set": {
                        "owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                        "started": start_time(os.getpid()),
                        "acquired_at": now, "expires_at": now + timedelta(seconds=self.lease_seconds),
                    }},
                    upsert=True,
                )
                del taken
                break
            except DuplicateKeyError:  # held by someone else, not expired
                if not waited:
                    waited = True
                    held = self.collection.find_one({"_id": self.name}) or {}
                    log.warning(
                        "another dbp run (host %s, pid %s) holds %s until %s; waiting up to %g s",
                        held.get("host", "?"), held.get("pid", "?"), self.what, _stamp(held.get("expires_at")),
                        self.timeout)
            if time.monotonic() >= deadline:
                holder = self.collection.find_one({"_id": self.name}) or {}
                raise LockTimeout(
                    f"another dbp run (host {holder.get('host', '?')}, pid {holder.get('pid', '?')}) holds "
                    f"{self.what} until {_stamp(holder.get('expires_at'))}; waited {self.timeout:g} s "
                    f"({self.advice})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="dbp-lease", daemon=True)
        self._thread.start()
        log.debug("took %s (lease %s)", self.what, self.owner)

    def _heartbeat(self) -> None:
        interval = self.lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                result = self.collection.update_one(
                    {"_id": self.name, "owner": self.owner},
                    {"$set": {"expires_at": _now() + timedelta(seconds=self.lease_seconds)}},
                )
            except Exception:  # noqa: BLE001 - a failed renewal is retried, then the lease may lapse
                log.warning("could not renew the lease on %s; retrying", self.what)
                continue
            if result.matched_count == 0:
                log.error("the lease on %s was taken over (expired or broken)", self.what)
                self.lost.set()
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.collection.delete_one({"_id": self.name, "owner": self.owner})

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.release()


def holder(db: Database[Any], name: str = LOCK_ID) -> Optional[dict[str, Any]]:
    """The lease document if someone holds the lock now (not expired), else None."""
    found: Optional[dict[str, Any]] = db[LOCKS].find_one({"_id": name, "expires_at": {"$gte": _now()}})
    return found


def held_by_live_process(lease: dict[str, Any]) -> bool:
    """True if the lease's holder runs on this host and its process (pid and start time) is alive."""
    pid = lease.get("pid")
    if lease.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if not alive(pid):
        return False
    started = lease.get("started")
    return started is None or start_time(pid) == started


def break_lock(db: Database[Any], name: str = LOCK_ID) -> bool:
    """Remove the lease whoever holds it; True if there was one."""
    return db[LOCKS].delete_one({"_id": name}).deleted_count > 0


def _stamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "?"
