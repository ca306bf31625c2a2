"""dbp in an Airflow DAG: migrate, ingest detections, update their objects, report page by page.

The same tasks run on PostgreSQL and on MongoDB, through the same query
contract; each opens one dbp connection from an Airflow connection
(``DbpHook``) and closes it. Connections (any backend: metadata database,
``AIRFLOW_CONN_*``, Vault...):

- ``alerce_pg``: type ``postgres``; schema = the database; extras such as ``sslmode``;
- ``alerce_mongo``: type ``mongo``; schema = the database; extras such as ``authSource``, ``tls``.

Other ids: ``$DBP_EXAMPLE_SQL_CONN`` / ``$DBP_EXAMPLE_MONGO_CONN``. Run parameters:
``batch`` (which batch of the made-up alert stream), ``size`` (detections per batch),
``fail_once_marker`` (a path prefix: each ingest task fails once, after its insert,
leaving ``PREFIX.CONN_ID`` behind, to show that the retry stores nothing twice).

    airflow dags test dbp_example --conf '{"batch": 1}'
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from dbp.airflow import DbpHook, DbpMigrateOperator
from dbp.mongo.documents import detection_document

SQL_CONN = os.environ.get("DBP_EXAMPLE_SQL_CONN", "alerce_pg")
MONGO_CONN = os.environ.get("DBP_EXAMPLE_MONGO_CONN", "alerce_mongo")
PER_OBJECT = 4  # detections per object in a batch


def detections(batch: int, size: int, engine: str) -> list[dict[str, Any]]:
    """A batch of made-up ZTF detections; the same batch gives the same rows (and keys) every time."""
    rows = []
    for j in range(size):
        candid = batch * 10_000_000 + j
        row = {
            "candid": candid, "oid": f"ZTF26dbp{batch:04d}{j // PER_OBJECT:05d}", "mjd": 61000.0 + batch + j / 1000,
            "fid": 1 + j % 2, "pid": float(candid), "isdiffpos": 1, "ra": 150.0 + j / 3600, "dec": -30.0 + j / 3600,
            "magpsf": 18.0 + (j % 7) / 10, "sigmapsf": 0.05, "corrected": False, "dubious": False,
            "has_stamp": True, "step_id_corr": "dbp-example",
        }
        if engine == "mongo":  # ALeRCE's MongoDB shape: _id is the candid, other fields under extra_fields
            row = detection_document({**row, "aid": row["oid"]})
        rows.append(row)
    return rows


@dag(
    dag_id="dbp_example",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "batch": Param(1, type="integer", minimum=0),
        "size": Param(200, type="integer", minimum=1),
        "fail_once_marker": Param("", type="string"),
    },
    tags=["dbp", "example"],
)
def dbp_example() -> None:
    @task(retries=2, retry_delay=timedelta(seconds=1))
    def ingest(conn_id: str) -> dict[str, Any]:
        """Insert the batch; keys that exist are skipped, so a retry or a re-run stores nothing twice."""
        params = get_current_context()["params"]
        with DbpHook(conn_id).get_conn() as db:
            rows = detections(params["batch"], params["size"], db.engine)
            oids = sorted({r["oid"] for r in rows})
            objects = [{"oid": oid, **({"_id": oid} if db.engine == "mongo" else {})} for oid in oids]
            db.query("object").bulk_insert(objects, on_conflict="ignore")
            inserted = db.query("detection").bulk_insert(rows, on_conflict="ignore")
        print(f"{conn_id}: inserted {inserted} of {len(rows)} detections for {len(oids)} objects")
        if params["fail_once_marker"]:  # a demonstration of retries: fail once per connection, after the insert
            marker = Path(f"{params['fail_once_marker']}.{conn_id}")
            if not marker.exists():
                marker.touch()
                raise RuntimeError(f"{conn_id}: failing once on purpose, after the insert")
        return {"inserted": inserted, "oids": oids}

    @task
    def update_objects(conn_id: str, ingested: dict[str, Any]) -> int:
        """Recompute each object's summary from its stored detections, one bulk_update for all."""
        instances, attrs = [], []
        with DbpHook(conn_id).get_conn() as db:
            for oid in ingested["oids"]:
                dets = list(db.query("detection").find_all({"oid": oid}, paginate=False))
                instances.append({"oid": oid})
                attrs.append({
                    "ndet": len(dets),
                    "firstmjd": min(d["mjd"] for d in dets),
                    "lastmjd": max(d["mjd"] for d in dets),
                    "meanra": sum(d["ra"] for d in dets) / len(dets),
                    "meandec": sum(d["dec"] for d in dets) / len(dets),
                })
            updated = db.query("object").bulk_update(instances, attrs, filter_fields=["oid"])
        print(f"{conn_id}: updated {updated} objects")
        return updated

    @task
    def report(conn_id: str, ingested: dict[str, Any], updated: int) -> dict[str, Any]:
        """The batch's objects, newest first, 20 to a page."""
        pages = objects = detections_seen = 0
        with DbpHook(conn_id).get_conn() as db:
            page = db.query("object").paginate({"oid": {"$in": ingested["oids"]}}, per_page=20,
                                               sort=[("lastmjd", -1), ("oid", 1)])
            while True:
                pages += 1
                objects += len(page.items)
                detections_seen += sum(row["ndet"] for row in page.items)
                print(f"{conn_id}: page {page.page} of {page.pages}: "
                      + ", ".join(f"{row['oid']} ({row['ndet']})" for row in page.items))
                if not page.has_next:
                    break
                page = page.next()
        summary = {"objects": objects, "pages": pages, "detections": detections_seen, "total": page.total}
        print(f"{conn_id}: report {summary}")
        return summary

    for conn_id, suffix in ((SQL_CONN, "sql"), (MONGO_CONN, "mongo")):
        migrate = DbpMigrateOperator(task_id=f"migrate_{suffix}", conn_id=conn_id)
        ingested = ingest.override(task_id=f"ingest_{suffix}")(conn_id)
        updated = update_objects.override(task_id=f"update_objects_{suffix}")(conn_id, ingested)
        migrate >> ingested
        report.override(task_id=f"report_{suffix}")(conn_id, ingested, updated)


dbp_example()
