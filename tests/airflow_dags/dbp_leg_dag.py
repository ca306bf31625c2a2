"""Tasks for tests/test_airflow.py: two migrate tasks to run at once, and one that prints a password."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from urllib.parse import quote

from airflow.sdk import dag, task

from dbp.airflow import DbpHook, DbpMigrateOperator

CONN = os.environ.get("DBP_LEG_CONN", "af_race")
SCHEMA_DIR = os.environ.get("DBP_LEG_SCHEMA_DIR", "")


@dag(dag_id="dbp_leg", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def dbp_leg() -> None:
    DbpMigrateOperator(task_id="migrate_a", conn_id=CONN, schema_dir=SCHEMA_DIR, lock_timeout=120)
    DbpMigrateOperator(task_id="migrate_b", conn_id=CONN, schema_dir=SCHEMA_DIR, lock_timeout=120)

    @task
    def careless() -> None:
        """Prints the password the way careless task code might; Airflow's masker must hide it.

        (Airflow 3.3's ``airflow tasks test`` masks printed and structlog output, not stdlib
        ``logging`` records; ``airflow dags test`` masks none of them: it is run with ``tasks test``.)
        """
        hook = DbpHook(CONN, settings={"SCHEMA_DIR": SCHEMA_DIR})
        settings = hook.get_settings()
        password = dict(settings.params)["password"]  # type: ignore[attr-defined]
        print(f"careless print: password={password}")
        print(f"careless print: encoded={quote(password, safe='')}")  # only dbp registers this form
        with hook.get_conn() as db:
            print(f"careless: connected as {db.execute('SELECT current_user AS u').fetchone()}")

    careless()


dbp_leg()


@dag(dag_id="dbp_leg_logs", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def dbp_leg_logs() -> None:
    """Run by a scheduler, as in production: the supervisor masks the task's every output."""

    @task
    def careless_everywhere() -> None:
        hook = DbpHook(CONN, settings={"SCHEMA_DIR": SCHEMA_DIR})
        password = dict(hook.get_settings().params)["password"]  # type: ignore[attr-defined]
        print(f"careless print: password={password}")
        print(f"careless print: encoded={quote(password, safe='')}")
        logging.getLogger("careless").warning("careless log: %s", password)
        with hook.get_conn() as db:
            print(f"careless: connected as {db.execute('SELECT current_user AS u').fetchone()}")

    careless_everywhere()


dbp_leg_logs()
