"""A small, deterministic ZTF + LSST data set for the multi-survey schema set, and a database built with it.

ZTF objects (sid 0), LSST DIA objects (sid 1), one LSST solar-system object (sid
2), and one oid that ZTF and LSST both use (with different positions, detections
sharing a measurement_id, and probabilities from each survey's classifier), so that
a join forgetting ``sid`` shows. Positions cluster near (150, 2), across ra 0/360
and near the north pole. REAL columns hold values a float4 stores exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dbp
from dbp.admin import initdb
from dbp.config import resolve_config
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .conftest import sql_section, unique_name

SHARED = 3000
#: classifier rows added to the two seeded ones (1: stamp_classifier_rubin 2.0.1, 2: stamp_classifier_2025_beta
#: 2.1.1): two more versions of the rubin classifier, "2.0.10" (greatest as text) and "10.0" (least).
CLASSIFIERS = [
    {"classifier_id": 3, "classifier_name": "stamp_classifier_rubin", "classifier_version": "2.0.10", "tid": 1},
    {"classifier_id": 4, "classifier_name": "stamp_classifier_rubin", "classifier_version": "10.0", "tid": 1},
]
TAXONOMY = [
    *({"class_id": 11 + i, "class_name": name, "order": i, "classifier_id": 3}
      for i, name in enumerate(["SN", "AGN", "VS", "asteroid", "bogus"])),
    {"class_id": 16, "class_name": "SN", "order": 0, "classifier_id": 4},
    {"class_id": 17, "class_name": "AGN", "order": 1, "classifier_id": 4},
]
#: Each classifier's classes (class_id: name), the seeded ones included; 99 is a class no taxonomy row names.
CLASSES = {1: {0: "SN", 1: "AGN", 2: "VS", 3: "asteroid", 4: "bogus"},
           2: {5: "SN", 6: "AGN", 7: "VS", 8: "asteroid", 9: "bogus", 10: "satellite"},
           3: {11: "SN", 12: "AGN", 13: "VS", 14: "asteroid", 15: "bogus"},
           4: {16: "SN", 17: "AGN"}}
CLASSIFIER = {1: ("stamp_classifier_rubin", "2.0.1"), 2: ("stamp_classifier_2025_beta", "2.1.1"),
              3: ("stamp_classifier_rubin", "2.0.10"), 4: ("stamp_classifier_rubin", "10.0")}


def _position(rng: random.Random, i: int) -> tuple[float, float]:
    """Most objects within a minute of (150, 2); a few across ra 0/360, near the pole, or far away."""
    kind = i % 7
    if kind == 5:
        return (rng.choice([359.9995, 359.99995, 0.00002, 0.0004]) + rng.uniform(-1e-5, 1e-5)) % 360.0, \
            -30.0 + rng.uniform(-2e-3, 2e-3)
    if kind == 6:
        return rng.uniform(0, 360), 89.999 + rng.uniform(-5e-4, 9e-4)
    if i % 11 == 10:
        return rng.uniform(0, 360), rng.uniform(-80, 80)
    return 150.0 + rng.uniform(-0.015, 0.015), 2.0 + rng.uniform(-0.015, 0.015)


def make_data(seed: int = 20261207) -> dict[str, list[dict[str, Any]]]:
    """The rows of each table, by table name (load them in this order)."""
    rng = random.Random(seed)
    objects: list[dict[str, Any]] = []
    ztf_objects: list[dict[str, Any]] = []
    lsst_objects: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    ztf_detections: list[dict[str, Any]] = []
    lsst_detections: list[dict[str, Any]] = []
    probabilities: list[dict[str, Any]] = []
    keys = [(1001 + i, 0) for i in range(14)] + [(2001 + i, 1) for i in range(14)]
    keys += [(SHARED, 0), (SHARED, 1), (4000, 2)]
    for i, (oid, sid) in enumerate(keys):
        ra, dec = _position(rng, i)
        n_det = 1 + i % 4
        first = 60000.0 + rng.randrange(0, 400) / 8
        mids = [oid * 100 + k for k in range(n_det)]
        if oid == SHARED:  # both surveys' detections share measurement_id 777
            mids = [777, 778] if sid == 0 else [777, 779, 780]
            n_det = len(mids)
        objects.append({
            "oid": oid, "tid": 0 if sid == 0 else 1, "sid": sid, "meanra": ra, "meandec": dec,
            "sigmara": rng.choice([None, 0.1, 0.25]), "sigmadec": rng.choice([None, 0.1, 0.25]),
            "firstmjd": first, "lastmjd": first + 2.5 * (n_det - 1), "deltamjd": 2.5 * (n_det - 1), "n_det": n_det,
            "n_forced": i % 3, "n_non_det": i % 5,
        })
        if sid == 0:
            ztf_objects.append({"oid": oid, "corrected": i % 2 == 0, "stellar": [None, True, False][i % 3],
                                "ndethist": n_det + 3, "ncovhist": n_det + 9, "mjdstarthist": first - 10.0,
                                "mjdendhist": first + 20.0})
        elif sid == 1:
            lsst_objects.append({"oid": oid, "validityStartMjdTai": first, "ra": ra, "dec": dec,
                                 "nDiaSources": n_det, "firstDiaSourceMjdTai": first,
                                 "g_psfFluxMean": 1000.0 + i * 8})
        for k, mid in enumerate(mids):
            band = 1 + (k + i) % (2 if sid == 0 else 6)
            detections.append({"oid": oid, "sid": sid, "measurement_id": mid, "mjd": first + 2.5 * k,
                               "ra": ra + k * 1e-5, "dec": dec - k * 1e-5, "band": band if k != 1 else None})
            if sid == 0 and not (oid == 1003 and k == 0):  # one ZTF detection lacks its ztf_detection row
                ztf_detections.append({
                    "oid": oid, "sid": sid, "measurement_id": mid, "pid": mid * 10, "diffmaglim": 20.5,
                    "isdiffpos": 1 if k % 2 == 0 else -1, "magpsf": 17.0 + (i + k) / 8, "sigmapsf": 0.125,
                    "magpsf_corr": None if k % 2 else 16.5 + k / 4, "sigmapsf_corr": None if k % 2 else 0.25,
                    "sigmapsf_corr_ext": None if k % 2 else 0.375, "rb": 0.5 + k / 16, "drb": 0.75,
                    "corrected": k % 2 == 0, "dubious": k == 2, "parent_candid": None if k else mid - 1,
                    "has_stamp": k == 0, "nid": 1000 + k, "rbversion": "t17", "drbversion": "d6_m7"})
            elif sid == 1:
                lsst_detections.append({
                    "oid": oid, "sid": sid, "measurement_id": mid, "visit": 7000 + mid, "detector": mid % 189,
                    "x": 100.5 + k, "y": 200.25 + k, "timeProcessedMjdTai": first + 2.5 * k + 0.125,
                    "psfFlux": 1500.0 + 64 * k, "psfFluxErr": 12.5, "scienceFlux": None if k == 1 else 9000.0 + k,
                    "scienceFluxErr": 4.0, "snr": 20.0 + k, "reliability": 0.875, "extendedness": 0.0625 * k,
                    "isNegative": k == 2, "isDipole": False, "pixelFlags": k == 1, "has_stamp": k != 1,
                    "diaObjectId": oid, "ssObjectId": None})
        # probabilities: each survey's classifier(s); some objects have none
        if sid == 2 or i % 9 == 4:
            continue
        ids = [2] if sid == 0 else [1] + ([3] if i % 3 == 0 else []) + ([4] if i % 4 == 1 else [])
        for cid in ids:
            classes = list(CLASSES[cid])
            if cid == 1 and i % 5 == 2:
                classes.append(99)  # a class no taxonomy row names: class_name NULL
            values = sorted((rng.randrange(1, 64) / 64 for _ in classes), reverse=True)
            for rank, (class_id, value) in enumerate(zip(rng.sample(classes, len(classes)), values), 1):
                probabilities.append({
                    "oid": oid, "sid": sid, "classifier_id": cid,
                    "classifier_version": int(CLASSIFIER[cid][1].replace(".", "")), "class_id": class_id,
                    "probability": value, "ranking": None if (cid == 4 and rank == 2) else rank,
                    "lastmjd": first + 1.0})
    return {"classifier": CLASSIFIERS, "taxonomy": TAXONOMY, "object": objects, "ztf_object": ztf_objects,
            "lsst_dia_object": lsst_objects, "detection": detections, "ztf_detection": ztf_detections,
            "lsst_detection": lsst_detections, "probability": probabilities}


def multisurvey_config(server_url: str, database: str) -> Any:
    """The settings (a Config) of ``database`` on the test server, naming the multisurvey set."""
    base = resolve_config({"SQL": {"URL": server_url}}, environ={}).settings("sql")
    assert isinstance(base, SQLSettings)
    section = sql_section(base.with_database(database))
    return resolve_config({"SQL": {**section, "SCHEMA_SET": "multisurvey"}}, environ={})


@contextmanager
def multisurvey_database(server_url: str, data: dict[str, list[dict[str, Any]]] | None = None
                         ) -> Iterator[Any]:
    """A fresh database built by ``initdb`` from the multisurvey set, loaded with ``data``; dropped after."""
    config = multisurvey_config(server_url, unique_name("dbp_ms"))
    initdb(config, ["sql"])
    try:
        if data:
            with dbp.connect(config, engine="sql") as db:
                for table, rows in data.items():
                    db.query(table).bulk_insert(rows, on_conflict="error")
        yield config
    finally:
        settings = config.settings("sql")
        assert isinstance(settings, SQLSettings)
        SQLConnection(settings=settings).drop_db()
