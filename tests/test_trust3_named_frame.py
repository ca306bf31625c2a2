"""Issue 20, item 25: object_list pins one classifier version; an empty frame() keeps its columns."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from dbp import ConfigError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.named import parse_pipeline, parse_sql
from dbp.sql.connection import SQLConnection

from .named_data import OBJECT_FIELDS, load_mongo, load_sql

pd = pytest.importorskip("pandas")

COLUMNS = ["oid", *OBJECT_FIELDS, "classifier_name", "classifier_version", "class_name", "probability", "ranking"]


def _object(oid: str, probabilities: list[dict[str, Any]]) -> dict[str, Any]:
    return {"oid": oid, **dict.fromkeys(OBJECT_FIELDS), "ndet": 3, "probabilities": probabilities}


def _p(version: str, class_name: str, probability: float, ranking: int, classifier: str = "lc_classifier"
       ) -> dict[str, Any]:
    return {"classifier_name": classifier, "classifier_version": version, "class_name": class_name,
            "probability": probability, "ranking": ranking}


OBJECTS = [
    _object("ZTFtwo", [_p("1.0", "SN", 0.9, 1), _p("1.0", "AGN", 0.1, 2), _p("2.0", "AGN", 0.8, 1),
                       _p("2.0", "SN", 0.2, 2), _p("10.0", "SN", 0.7, 1, "stamp_classifier")]),
    _object("ZTFold", [_p("1.0", "SN", 0.6, 1)]),
    _object("ZTFnone", []),
]


@pytest.fixture
def both(sql_db: SQLConnection, mongo_db: MongoConnection) -> list[Any]:
    load_sql(sql_db, OBJECTS)
    load_mongo(mongo_db, OBJECTS)
    return [sql_db, mongo_db]


def _rows(db: Any, params: dict[str, Any], filter_by: Any = None) -> list[tuple[Any, ...]]:
    rows = db.query("object_list", params).find_all(filter_by, sort=[("oid", 1), ("class_name", 1)], paginate=False)
    return [(r["oid"], r["classifier_version"], r["class_name"], r["ranking"]) for r in rows]


def test_object_list_lists_each_object_once_per_class(both: list[Any]) -> None:
    for db in both:
        # without a version: each object's greatest version of the classifier (its newest classification)
        assert _rows(db, {"classifier": "lc_classifier", "ranking": 1}) == [
            ("ZTFnone", None, None, None), ("ZTFold", "1.0", "SN", 1), ("ZTFtwo", "2.0", "AGN", 1)], db
        assert _rows(db, {"classifier": "lc_classifier", "ranking": None, "version": None}) == [
            ("ZTFnone", None, None, None), ("ZTFold", "1.0", "SN", 1), ("ZTFtwo", "2.0", "AGN", 1),
            ("ZTFtwo", "2.0", "SN", 2)], db
        assert _rows(db, {"classifier": "lc_classifier", "ranking": 1, "version": "1.0"}) == [
            ("ZTFnone", None, None, None), ("ZTFold", "1.0", "SN", 1), ("ZTFtwo", "1.0", "SN", 1)], db
        assert _rows(db, {"classifier": "lc_classifier", "ranking": 1, "version": "2.0"}) == [
            ("ZTFnone", None, None, None), ("ZTFold", None, None, None), ("ZTFtwo", "2.0", "AGN", 1)], db
        # one row per object per class: the key identifies a row
        sn = db.query("object_list", {"classifier": "lc_classifier", "ranking": None})
        assert sn.count({"class_name": "SN"}) == 2 and sn.count() == 4
        # "10.0" < "2.0" in code-point order, the same on both engines; versions compare as text
        assert _rows(db, {"classifier": "stamp_classifier", "ranking": 1}, {"oid": "ZTFtwo"}) == [
            ("ZTFtwo", "10.0", "SN", 1)]


def test_optional_parameters_are_declared_and_checked() -> None:
    statement = parse_sql("q", "-- optional: v\nSELECT %(a)s AS a, %(v)s AS v", "q.sql")
    assert statement.bind({"a": 1}) == [1, None] and statement.bind({"a": 1, "v": 2}) == [1, 2]
    with pytest.raises(FilterError, match=r"^q: missing parameter\(s\) a \(it takes: a; optional: v\)$"):
        statement.bind({})
    with pytest.raises(ConfigError, match=r"^q\.sql: -- optional: names w, which is not a parameter \(a, v\)$"):
        parse_sql("q", "-- optional: w\nSELECT %(a)s AS a, %(v)s AS v", "q.sql")
    pipeline = parse_pipeline("p", '{"collection": "c", "columns": ["a"], "optional": ["v"], "pipeline": '
                                   '[{"$match": {"a": {"$param": "v"}}}]}', "p.json")
    assert pipeline.bind(None) == [{"$match": {"a": None}}]
    with pytest.raises(ConfigError, match=r"^p\.json: optional names w, which is not a parameter \(v\)$"):
        parse_pipeline("p", '{"collection": "c", "columns": ["a"], "optional": ["w"], "pipeline": '
                            '[{"$match": {"a": {"$param": "v"}}}]}', "p.json")


# -- empty frames keep their columns ------------------------------------------------------------------------


def test_an_empty_frame_of_a_named_query_has_its_columns(both: list[Any]) -> None:
    for db in both:
        source = db.query("object_list", {"classifier": "lc_classifier", "ranking": 1})
        empty = source.frame({"oid": "nothing"})
        assert list(empty.columns) == COLUMNS and len(empty) == 0, db
        assert empty.oid.tolist() == []
        full = source.frame({"oid": "ZTFold"})
        assert list(full.columns) == COLUMNS and full.oid.tolist() == ["ZTFold"]
        assert list(source.frame({"oid": "nothing"}, projection=["class_name", "oid"]).columns) == ["class_name",
                                                                                                     "oid"]


def test_an_empty_frame_of_a_table_has_its_columns(sql_db: SQLConnection, tmp_path: Path,
                                                   mongo_settings: MongoSettings) -> None:
    load_sql(sql_db, [])
    empty = sql_db.query("detection").frame({"candid": -1})
    want = [c.name for c in sql_db.query("detection").table.columns]
    assert list(empty.columns) == want and "candid" in want
    assert empty.candid.tolist() == []
    folder = tmp_path / "mongo"
    folder.mkdir()
    (folder / "collections.toml").write_text('[[collection]]\nname = "detection"\nfields = ["oid", "candid", "mjd"]\n'
                                             '[[collection]]\nname = "free"\n')
    with MongoConnection(settings=dataclasses.replace(mongo_settings, schema_dir=folder)) as mongo:
        declared = mongo.query("detection").frame({"candid": -1})
        assert list(declared.columns) == ["_id", "candid", "mjd", "oid"] and declared.candid.tolist() == []
        assert list(mongo.query("free").frame({"candid": -1}).columns) == []  # free-form: nothing to go by
        assert list(mongo.query("free").frame({"candid": -1}, projection=["candid"]).columns) == ["candid"]
        mongo.query("detection").bulk_insert([{"_id": 1, "oid": "a"}])
        assert mongo.query("detection").frame().to_dict("records") == [{"_id": 1, "oid": "a"}]
