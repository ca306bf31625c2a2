"""Issue 20, item 14 (second line): every dbp read on MongoDB carries a server-side ``maxTimeMS``.

``DB_CONFIG.MONGO.MAX_TIME_MS`` (default 60000; 0 or None: no limit) bounds
each find, count, aggregate and named pipeline on the server; a read stopped
by it is a one-line :class:`QueryError` naming the limit and the setting.
SecantusDB enforces ``maxTimeMS`` cooperatively (it polls the clock between
documents), so a scan of many documents under a 1 ms limit really is stopped
by the server: these tests see the server's own ``MaxTimeMSExpired``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbp import ConfigError, QueryError
from dbp.config import resolve_config
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings

N = 5_000
NOTHING = {"v": {"$regex": "^zzz"}}  # matches no document: every read scans them all


@pytest.fixture
def filled(mongo_settings: MongoSettings, tmp_path: Path) -> MongoSettings:
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "scan.json").write_text(json.dumps({
        "collection": "things", "columns": ["v"], "key": ["v"],
        "pipeline": [{"$match": {"v": {"$regex": "^zzz"}}}, {"$project": {"_id": 0, "v": 1}}]}))
    settings = dataclasses.replace(mongo_settings, queries_dir=folder)
    with MongoConnection(settings=settings) as db:
        db.collection("things").insert_many([{"_id": i, "v": f"value {i:06d}"} for i in range(N)])
    return settings


READS: dict[str, Callable[[MongoConnection], Any]] = {
    "find_one": lambda db: db.query("things").find_one(NOTHING),
    "find_all": lambda db: list(db.query("things").find_all(NOTHING, paginate=False)),
    "find_all-page": lambda db: db.query("things").find_all(NOTHING, sort=[("v", 1)]),
    "stream": lambda db: list(db.query("things").find_all(NOTHING, paginate=False, batch_size=100)),
    "count": lambda db: db.query("things").count(NOTHING),
    "pipeline-find": lambda db: db.query("scan", {}).find_one(),
    "pipeline-all": lambda db: list(db.query("scan", {}).find_all(paginate=False)),
    "pipeline-count": lambda db: db.query("scan", {}).count(),
    "frame": lambda db: db.query("things").frame(NOTHING),
}


@pytest.mark.parametrize("read", list(READS))
def test_every_read_stops_at_the_limit_with_a_clear_error(filled: MongoSettings, read: str) -> None:
    with MongoConnection(settings=dataclasses.replace(filled, max_time_ms=1)) as db, \
            pytest.raises(QueryError) as info:
        READS[read](db)
    message = str(info.value)
    assert "1 ms" in message and "MAX_TIME_MS" in message and "\n" not in message
    assert info.value.__cause__ is None


@pytest.mark.parametrize("limit", [None, 0, 60_000])
def test_without_a_tight_limit_the_reads_finish(filled: MongoSettings, limit: Any) -> None:
    settings = resolve_config({"MONGO": {"HOST": "h", "DATABASE": "d", "MAX_TIME_MS": limit}},
                              environ={}).settings("mongo")
    assert isinstance(settings, MongoSettings)
    assert settings.max_time_ms == (limit or None)
    with MongoConnection(settings=dataclasses.replace(filled, max_time_ms=settings.max_time_ms)) as db:
        for read in ("find_one", "count", "pipeline-count"):
            assert READS[read](db) in (None, 0)


def test_the_setting_defaults_to_a_minute_and_is_checked() -> None:
    settings = resolve_config({"MONGO": {"HOST": "h", "DATABASE": "d"}}, environ={}).settings("mongo")
    assert settings.max_time_ms == 60_000  # type: ignore[attr-defined]
    assert "maxTimeMs" not in settings.options and "maxtimems" not in {  # type: ignore[attr-defined]
        k.lower() for k in settings.options}  # type: ignore[attr-defined]
    for bad in (-1, "soon", 1.5, True):
        with pytest.raises(ConfigError, match=r"DB_CONFIG.MONGO.MAX_TIME_MS must be a whole number of "
                                              r"milliseconds \(0: no limit\)"):
            resolve_config({"MONGO": {"HOST": "h", "DATABASE": "d", "MAX_TIME_MS": bad}}, environ={})
