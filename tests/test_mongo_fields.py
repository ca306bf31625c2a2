"""A misspelled field on a collection that declares its fields is a FilterError listing the valid ones."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from dbp import ConfigError, FilterError
from dbp.mongo import documents
from dbp.mongo.connection import MongoConnection
from dbp.mongo.schema import MongoSchema
from dbp.mongo.settings import MongoSettings


@pytest.fixture
def objects(mongo_db: MongoConnection) -> Any:
    """ALeRCE's object collection (declared in the bundled collections.toml), with two documents."""
    query = mongo_db.query("object")
    query.bulk_insert([
        {"_id": "AL1", "oid": ["ZTF1"], "ndet": 3, "features": {"rf": {"score": 0.5}}, "probabilities": []},
        {"_id": "AL2", "oid": ["ZTF2"], "ndet": 7, "features": {}},
    ])
    return query


def refused(match: str = "ndte") -> Any:
    return pytest.raises(FilterError, match=rf"object has no field '{match}'.*declared fields are _id, .*ndet")


def test_reads_refuse_unknown_fields(objects: Any) -> None:
    with refused():
        objects.find_one({"ndte": 3})
    with refused():
        objects.find_all({"$or": [{"ndet": 1}, {"$not": {"ndte": {"$gt": 2}}}]})
    with refused():
        objects.count({"ndte": {"$exists": True}})
    with refused():
        objects.check_exists({"ndte": 1})
    with refused():
        objects.find_one({}, sort=[("ndte", -1)])
    with refused():
        objects.find_one({}, projection=["_id", "ndte"])
    with refused():
        objects.paginate({"ndet": {"$gt": 0}}, sort=[("ndte", 1)], keyset=True)
    with refused():
        list(objects.find_all({"ndte": 1}, paginate=False))
    with refused("oids"):
        objects.paginate({"oids": "ZTF1"}, per_page=1)


def test_writes_refuse_unknown_fields_and_write_nothing(objects: Any, mongo_db: MongoConnection) -> None:
    before = list(mongo_db.collection("object").find({}, sort=[("_id", 1)]))
    with refused():
        objects.bulk_insert([{"_id": "AL3", "ndet": 1}, {"_id": "AL4", "ndte": 1}])
    with refused():
        objects.update({"_id": "AL1"}, {"ndte": 4})
    with refused():
        objects.update({"ndte": 3}, {"ndet": 4})
    with refused():
        objects.get_or_create({"_id": "AL5"}, ndte=1)
    with refused():
        objects.upsert({"_id": "AL1"}, {"ndte": 1})
    with refused():
        objects.delete({"ndte": 3})
    with refused():
        objects.bulk_update([{"_id": "AL1"}], [{"ndte": 1}])
    with refused("aid"):
        objects.bulk_update([{"_id": "AL1", "aid": "AL1"}], [{"ndet": 1}], filter_fields=["aid"])
    assert list(mongo_db.collection("object").find({}, sort=[("_id", 1)])) == before


def test_paths_inside_declared_fields_are_free(objects: Any) -> None:
    assert [d["_id"] for d in objects.find_all({"features.rf.score": {"$gt": 0.1}}, paginate=False)] == ["AL1"]
    assert objects.find_one({"_id": "AL1"}, projection=["features.rf"]) is not None
    assert objects.update({"_id": "AL2"}, {"features.lc.period": 2.5}) == 1
    assert objects.find_one({"features.lc.period": 2.5}, projection=["_id"]) == {"_id": "AL2"}
    assert objects.bulk_update([{"_id": "AL2"}], [{"features.lc.amplitude": 0.3}]) == 1
    with pytest.raises(FilterError, match=r"'features\.\.x' is not a field name or dotted path"):
        objects.update({"_id": "AL2"}, {"features..x": 1})  # the update language refuses it first
    with refused("features.x"):  # an inserted key is a name: MongoDB would store a field called "features.x"
        objects.bulk_insert([{"_id": "AL7", "features.x": 1}])
    assert objects.count({"probabilities.classifier_name": "lc"}) == 0
    with refused("featurez.rf"):
        objects.find_one({"featurez.rf": 1})
    row, created = objects.get_or_create({"_id": "AL9"}, ndet=1, meanra=10.0, xmatch=[])
    assert created and row["ndet"] == 1


def test_hostile_field_names_are_refused(objects: Any) -> None:
    for name in ("$where", "ndet\x00", "", ".ndet", "ndet.", "__proto__", "nDet"):
        with pytest.raises(FilterError):
            objects.find_one({name: 1})
        with pytest.raises(FilterError):
            objects.bulk_insert([{"_id": "X", name: 1}])
    assert objects.count({"_id": "X"}) == 0


def test_undeclared_collections_stay_free_form(mongo_db: MongoConnection) -> None:
    stars = mongo_db.query("star")
    assert stars.bulk_insert([{"_id": 1, "anything": 2, "nested": {"x": 1}}]) == 1
    assert stars.find_one({"whatever": None}, sort=[("made_up", 1)]) == {"_id": 1, "anything": 2, "nested": {"x": 1}}
    assert mongo_db.query("_dbp").count({"how": {"$exists": False}}) >= 0


def test_a_project_declares_its_own_fields(tmp_path: Path, mongo_settings: MongoSettings) -> None:
    declaration = tmp_path / "collections.toml"
    declaration.write_text('[[collection]]\nname = "planet"\nfields = ["name"]\n'
                           'indexes = [{ name = "name", keys = [["name", 1]], unique = true }]\n')
    settings = MongoSettings(mongo_settings.host, mongo_settings.database, mongo_settings.options, tmp_path)
    with MongoConnection(settings=settings) as db:
        planets = db.query("planet")
        planets.bulk_insert([{"name": "Mars"}])
        with pytest.raises(FilterError, match=r"planet has no field 'mass'.*declared fields are _id, name$"):
            planets.update({"name": "Mars"}, {"mass": 0.107})
        assert db.query("object").bulk_insert([{"_id": "x", "ndte": 1}]) == 1  # not declared in this project
    stamp = declaration.stat().st_mtime_ns
    declaration.write_text(declaration.read_text().replace('fields = ["name"]', 'fields = ["name", "mass"]'))
    while declaration.stat().st_mtime_ns == stamp:  # a file system with coarse times
        time.sleep(0.01)
        os.utime(declaration)
    with MongoConnection(settings=settings) as db:
        assert db.query("planet").update({"name": "Mars"}, {"mass": 0.107}) == 1


@pytest.mark.parametrize(("fields", "message"), [
    ('"a.b"', "'a.b' is not a top-level field name"),
    ('"$a"', "is not a top-level field name"),
    ('"a", "a"', "names a field twice"),
    ("1", "must be a list of field names"),
    ('"other"', "index name: 'name' is not a declared field"),
])
def test_bad_field_declarations_are_config_errors(tmp_path: Path, fields: str, message: str) -> None:
    (tmp_path / "collections.toml").write_text(
        f'[[collection]]\nname = "planet"\nfields = [{fields}]\nindexes = [{{ name = "name", keys = [["name", 1]] }}]\n'
        if fields != "1" else '[[collection]]\nname = "planet"\nfields = 1\n'
    )
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace(".", r"\.")):
        MongoSchema.load(tmp_path)


def test_declared_fields_match_the_document_shapes() -> None:
    schema = MongoSchema.load()
    declared = {c.name: c.fields for c in schema.collections}
    assert all(fields is not None for fields in declared.values())
    assert declared["object"] == set(documents.OBJECT_FIELDS)
    assert declared["detection"] == {*documents.DETECTION_FIELDS, "extra_fields"}
    assert declared["forced_photometry"] == declared["detection"]
    assert declared["non_detection"] == {*documents.NON_DETECTION_FIELDS, "extra_fields"}
    assert declared["taxonomy"] == set(documents.TAXONOMY_FIELDS)
    shaped = documents.detection_document({"candid": 1, "aid": "A", "mag": 18.0, "rb": 0.9, "magpsf": 18.1})
    assert set(shaped) <= declared["detection"]
    for spec in schema.collections:  # every index is on a declared field
        assert all(key.split(".")[0] in declared[spec.name] for index in spec.indexes for key, _ in index.keys)
