"""Document shapes, checked as functions and by what a real server stores."""

from __future__ import annotations

import pytest
from pymongo.errors import DuplicateKeyError

from dbp.mongo import admin as mongo_admin
from dbp.mongo.connection import MongoConnection
from dbp.mongo.documents import (
    detection_document,
    forced_photometry_document,
    non_detection_document,
    object_document,
    taxonomy_document,
)


def test_object_shape() -> None:
    doc = object_document({"aid": "AL24abc", "oid": ["ZTF24a"], "meanra": 10.5, "meandec": -33.0})
    assert doc["_id"] == "AL24abc"
    assert "aid" not in doc
    assert doc["loc"] == {"type": "Point", "coordinates": [10.5 - 180, -33.0]}
    assert doc["magstats"] == [] and doc["probabilities"] == [] and doc["xmatch"] == []
    assert doc["features"] == {}
    other = object_document({"aid": "AL2"})
    other["magstats"].append(1)
    assert object_document({"aid": "AL3"})["magstats"] == []  # defaults are not shared
    with pytest.raises(ValueError, match="unknown object field"):
        object_document({"aid": "AL4", "colour": "red"})
    with pytest.raises(ValueError, match="needs aid"):
        object_document({"meanra": 1.0})


@pytest.mark.parametrize("shape", [detection_document, forced_photometry_document])
def test_detection_shape(shape: object) -> None:
    doc = shape({"candid": 123, "aid": "AL1", "mag": 18.2, "rb": 0.9, "drb": 0.8})  # type: ignore[operator]
    assert doc["_id"] == 123
    assert "candid" not in doc and "candid" not in doc["extra_fields"]
    assert doc["extra_fields"] == {"rb": 0.9, "drb": 0.8}
    assert doc["mag"] == 18.2


def test_non_detection_and_taxonomy_shapes() -> None:
    doc = non_detection_document({"aid": "AL1", "fid": 1, "mjd": 60000.5, "diffmaglim": 20.1, "field": 7})
    assert "_id" not in doc
    assert doc["extra_fields"] == {"field": 7}
    assert non_detection_document({"candid": 9, "aid": "AL1", "fid": 1, "mjd": 1.0})["_id"] == 9
    assert taxonomy_document({"classifier_name": "lc", "classifier_version": "1", "classes": ("SN", "AGN")})[
        "classes"] == ["SN", "AGN"]


def test_shaped_objects_are_found_by_the_radec_index(mongo_db: MongoConnection) -> None:
    mongo_admin.initdb(mongo_db)
    objects = mongo_db.collection("object")
    objects.insert_many([
        object_document({"aid": "near", "meanra": 180.0, "meandec": 0.0}),
        object_document({"aid": "far", "meanra": 10.0, "meandec": 60.0}),
    ])
    box = {"$geoWithin": {"$centerSphere": [[0.0, 0.0], 0.01]}}
    assert [d["_id"] for d in objects.find({"loc": box})] == ["near"]
    nd = mongo_db.collection("non_detection")
    nd.insert_one(non_detection_document({"aid": "AL1", "fid": 1, "mjd": 1.0}))
    with pytest.raises(DuplicateKeyError):
        nd.insert_one(non_detection_document({"aid": "AL1", "fid": 1, "mjd": 1.0}))
