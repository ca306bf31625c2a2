"""``DbpMigrateOperator``: bring a database's schema up to date from a DAG."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Optional, TextIO, cast

from airflow.sdk import BaseOperator

from dbp import admin
from dbp._version import __version__
from dbp.airflow.hook import DbpHook
from dbp.migrations import Progress

__all__ = ["DbpMigrateOperator"]


class _LogLines(io.TextIOBase):
    """A text stream whose lines go to a logger (dbp's progress reports write to streams)."""

    def __init__(self, log: Any) -> None:
        super().__init__()
        self._log = log
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self._log.info("%s", line)
        return len(text)

    def isatty(self) -> bool:
        return False


class DbpMigrateOperator(BaseOperator):  # type: ignore[misc,unused-ignore]
    """``initdb`` if the database is not initialized yet, then ``migrate`` under dbp's lock.

    Running it again changes nothing; two runs at once apply each migration
    once (the second waits for the lock, up to ``lock_timeout`` seconds, then
    finds nothing to do). The task log shows the plan and what was applied;
    the return value (XCom ``return_value``) is the document
    ``dbp status --format json`` prints, plus ``initdb`` (the outcome) and
    ``applied`` (the ids this run applied).
    """

    template_fields: Sequence[str] = ("conn_id", "database", "schema_dir", "to")
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        conn_id: str,
        engine: Optional[str] = None,
        database: Optional[str] = None,
        schema_dir: Optional[str] = None,
        to: Optional[str] = None,
        adopt: bool = False,
        allow_changed: bool = False,
        allow_out_of_order: bool = False,
        lock_timeout: float = 600.0,
        settings: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.engine = engine
        self.database = database
        self.schema_dir = schema_dir
        self.to = to
        self.adopt = adopt
        self.allow_changed = allow_changed
        self.allow_out_of_order = allow_out_of_order
        self.lock_timeout = lock_timeout
        self.settings = dict(settings or {})

    def execute(self, context: Any) -> dict[str, Any]:
        settings = dict(self.settings)
        if self.schema_dir:
            settings["SCHEMA_DIR"] = self.schema_dir
        hook = DbpHook(self.conn_id, self.engine, database=self.database, settings=settings)
        config = hook.get_config()
        assert hook.engine is not None
        engines = [hook.engine]
        log = self.log
        progress = Progress(cast(TextIO, _LogLines(log)), tty=False)
        options: dict[str, Any] = {
            "to": self.to, "allow_changed": self.allow_changed, "allow_out_of_order": self.allow_out_of_order,
            "progress": progress,
        }

        (report,) = admin.initdb(config, engines, adopt=self.adopt)
        log.info("%s", report.describe())
        planned = admin.migrate(config, engines, dry_run=True, **options)[hook.engine]
        log.info("plan: %d migration(s) pending%s", len(planned), f": {', '.join(planned)}" if planned else "")
        applied = admin.migrate(config, engines, lock_timeout=self.lock_timeout, **options)[hook.engine]
        others = [i for i in planned if i not in applied]
        log.info(
            "applied %d migration(s)%s%s", len(applied), f": {', '.join(applied)}" if applied else "",
            f"; another run applied {', '.join(others)} meanwhile" if others else "",
        )
        (state,) = admin.status(config, engines)
        document = {
            "dbp_version": __version__,
            "ok": not state.needs_attention,
            "engines": {state.engine: state.as_json()},
            "initdb": report.outcome,
            "applied": applied,
        }
        log.info("status: %s", {k: v for k, v in state.as_json()["counts"].items() if v})
        return document
