"""``DbpHook``: a dbp connection from an Airflow connection, whatever backend stores it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import quote, quote_plus

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from dbp.airflow.mapping import engine_for, section_for
from dbp.config import Config, resolve_config
from dbp.connection import Connection
from dbp.engines import ENGINES, EngineSettings

__all__ = ["DbpHook", "mask"]


def mask(secret: str) -> None:
    """Have Airflow's log masker hide ``secret`` (and its URL-encoded forms) in task logs."""
    for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
        mask_secret(form)


class DbpHook(BaseHook):  # type: ignore[misc,unused-ignore]
    """A dbp connection to what Airflow connection ``conn_id`` names.

    The connection is read with ``BaseHook.get_connection``, so the metadata
    database, ``AIRFLOW_CONN_*`` variables and secrets backends all work. Its
    type picks the engine: ``postgres`` gives ``"sql"``, ``mongo`` gives
    ``"mongo"``; a connection of type ``dbp`` needs ``engine`` (or an ``engine``
    extra). ``database`` replaces the connection's schema field; ``settings``
    adds ``DB_CONFIG`` keys such as ``SCHEMA_DIR`` or ``POOL``.

    ``with DbpHook("alerce_pg").get_conn() as db:`` opens it and closes it.
    """

    conn_name_attr = "dbp_conn_id"
    default_conn_name = "dbp_default"
    conn_type = "dbp"
    hook_name = "dbp"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        engine: Optional[str] = None,
        *,
        database: Optional[str] = None,
        settings: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dbp_conn_id = conn_id
        self.engine = engine
        self.database = database
        self.settings = dict(settings or {})
        self._config: Optional[Config] = None

    def get_config(self) -> Config:
        """The ``DB_CONFIG`` (one section) the connection describes, checked by dbp; cached."""
        if self._config is None:
            conn = self.get_connection(self.dbp_conn_id)
            engine = engine_for(conn, self.engine)
            section = section_for(conn, engine, database=self.database, settings=self.settings)
            config = resolve_config({ENGINES[engine].section: section}, environ={})
            for secret in config.settings(engine).secrets():
                mask(secret)
            self.engine, self._config = engine, config
        return self._config

    def get_settings(self) -> EngineSettings:
        config = self.get_config()
        assert self.engine is not None
        return config.settings(self.engine)

    def get_conn(self) -> Connection[Any]:
        """A dbp connection, not yet open: use it in a ``with`` block (one per task)."""
        settings = self.get_settings()
        assert self.engine is not None
        return ENGINES[self.engine].connection_class()(settings=settings)

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: ping the server."""
        try:
            with self.get_conn() as db:
                seconds = db.ping()
                return True, f"{db.server_version()} at {db.address}, {seconds * 1000:.1f} ms"
        except Exception as exc:  # noqa: BLE001 - the UI shows any failure as text
            return False, str(exc)
