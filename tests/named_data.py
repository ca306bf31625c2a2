"""Random ALeRCE objects with 0-5 probabilities each, loaded alike into both engines, and a brute-force oracle
for the bundled object_list query."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from functools import cmp_to_key
from typing import Any, Optional

from dbp.mongo.connection import MongoConnection
from dbp.sql import admin as sql_admin
from dbp.sql.connection import SQLConnection

CLASSIFIERS = ("lc_classifier", "stamp_classifier")
CLASSES = ("SN", "AGN", "VS", "asteroid", "bogus", "QSO")
VERSIONS = ("1.0", "2.0")
OBJECT_FIELDS = ("ndet", "firstmjd", "lastmjd", "meanra", "meandec", "sigmara", "sigmadec", "corrected", "stellar")
PROB_FIELDS = ("classifier_name", "classifier_version", "class_name", "probability", "ranking")
COLUMNS = ("oid", *OBJECT_FIELDS, *PROB_FIELDS)
KEY = ("oid", "classifier_version", "class_name")


def make_objects(n: int, seed: int) -> list[dict[str, Any]]:
    """Objects whose ndet, firstmjd and probabilities repeat a lot (ties) and are often NULL."""
    rng = random.Random(seed)
    objects = []
    for i in range(n):
        obj: dict[str, Any] = {"oid": f"ZTF{rng.choice(['18', '19', '20'])}{i:06d}{rng.choice('abc')}"}
        obj["ndet"] = rng.choice([None, 1, 2, 2, 3, 5, 8, 13])
        obj["firstmjd"] = rng.choice([None, 59000.5, 59000.5, 59001.25, 59010.0, 59100.75])
        obj["lastmjd"] = None if obj["firstmjd"] is None else obj["firstmjd"] + rng.choice([0.0, 1.5, 30.0])
        obj["meanra"] = rng.choice([None, round(rng.uniform(0, 360), 3)])
        obj["meandec"] = rng.choice([None, round(rng.uniform(-90, 90), 3)])
        obj["sigmara"] = rng.choice([None, 0.1])
        obj["sigmadec"] = rng.choice([None, 0.2])
        obj["corrected"] = rng.choice([None, True, False])
        obj["stellar"] = rng.choice([None, False])
        probs = []
        chosen = set()
        for _ in range(rng.randint(0, 5)):
            ident = (rng.choice(CLASSIFIERS), rng.choice(VERSIONS), rng.choice(CLASSES))
            if ident in chosen:
                continue
            chosen.add(ident)
            probs.append({"classifier_name": ident[0], "classifier_version": ident[1], "class_name": ident[2],
                          "probability": rng.choice([0.1, 0.25, 0.5, 0.5, 0.75, 0.9]),
                          "ranking": rng.randint(1, 3)})
        obj["probabilities"] = probs
        objects.append(obj)
    return objects


def load_sql(db: SQLConnection, objects: Sequence[Mapping[str, Any]]) -> None:
    sql_admin.initdb(db)
    db.query("object").bulk_insert([{k: o[k] for k in ("oid", *OBJECT_FIELDS)} for o in objects])
    db.query("probability").bulk_insert([{"oid": o["oid"], **p} for o in objects for p in o["probabilities"]])


def load_mongo(db: MongoConnection, objects: Sequence[Mapping[str, Any]], seed: int = 0) -> None:
    """As ALeRCE stores them: probabilities inside the object; a NULL either missing or null, at random."""
    rng = random.Random(seed)
    docs = []
    for o in objects:
        doc: dict[str, Any] = {"_id": o["oid"], "oid": [o["oid"]]}
        for k in OBJECT_FIELDS:
            if o[k] is not None or rng.random() < 0.5:
                doc[k] = o[k]
        if o["probabilities"] or rng.random() < 0.5:
            doc["probabilities"] = list(o["probabilities"])
        docs.append(doc)
    if docs:
        db.collection("object").insert_many(docs)


def _matches(value: Any, cond: Any) -> bool:
    if not isinstance(cond, Mapping):
        return value == cond if cond is not None else value is None
    for op, arg in cond.items():
        if op == "$in" and value not in arg:
            return False
        if op == "$regex" and (value is None or not value.startswith(arg.lstrip("^"))):
            return False
        if op in ("$gt", "$gte", "$lt", "$lte"):
            if value is None:
                return False
            if not {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]:
                return False
        if op == "$ne" and value == arg:
            return False
    return True


def oracle_rows(objects: Sequence[Mapping[str, Any]], classifier: Optional[str], ranking: Optional[int]
                ) -> list[dict[str, Any]]:
    rows = []
    for o in objects:
        base = {"oid": o["oid"], **{k: o[k] for k in OBJECT_FIELDS}}
        # object_list's default version: the object's greatest version of the classifier, as text
        version = max((p["classifier_version"] for p in o["probabilities"] if p["classifier_name"] == classifier),
                      default=None)
        probs = [p for p in o["probabilities"]
                 if p["classifier_name"] == classifier and p["classifier_version"] == version
                 and (ranking is None or p["ranking"] == ranking)]
        if not probs:
            rows.append({**base, **dict.fromkeys(PROB_FIELDS)})
        rows += [{**base, **p} for p in probs]
    return rows


def _compare(a: Any, b: Any) -> int:
    if a is None or b is None:
        return (a is not None) - (b is not None)  # NULL sorts first ascending
    return int((a > b) - (a < b))


def oracle(objects: Sequence[Mapping[str, Any]], classifier: Optional[str], ranking: Optional[int],
           filter_by: Mapping[str, Any], sort: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """The rows of object_list for ``filter_by``, in ``sort`` order completed by the key, brute force."""
    rows = [r for r in oracle_rows(objects, classifier, ranking)
            if all(_matches(r[f], c) for f, c in filter_by.items())]
    order = list(sort) + [(k, 1) for k in KEY if k not in {f for f, _ in sort}]

    def cmp(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        for field, direction in order:
            c = _compare(a[field], b[field]) * direction
            if c:
                return c
        return 0

    return sorted(rows, key=cmp_to_key(cmp))


FILTERS: list[dict[str, Any]] = [
    {},
    {"class_name": "SN"},
    {"probability": {"$gte": 0.5}},
    {"class_name": "AGN", "probability": {"$gt": 0.2}},
    {"ndet": {"$gte": 2, "$lte": 8}},
    {"firstmjd": {"$gte": 59000.5, "$lt": 59010.0}},
    {"oid": {"$regex": "^ZTF19"}},
]


def oid_filter(objects: Sequence[Mapping[str, Any]], rng: random.Random) -> dict[str, Any]:
    return {"oid": {"$in": [o["oid"] for o in rng.sample(list(objects), min(5, len(objects)))] + ["ZTFnone"]}}


SORTS: list[list[tuple[str, int]]] = [
    [], [("probability", -1)], [("ndet", 1)], [("firstmjd", -1), ("ndet", 1)], [("class_name", 1)],
    [("oid", -1)], [("probability", 1), ("firstmjd", -1)],
]
