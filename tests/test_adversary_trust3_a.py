"""Adversarial repros (adv1): each test states the contract and fails on the code it was written against."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from dbp.errors import DbpError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

from .named_data import load_mongo, load_sql


def _obj(oid: str, **kw: Any) -> dict[str, Any]:
    base = {"oid": oid, "ndet": 1, "firstmjd": 59000.0, "lastmjd": 59000.0, "meanra": 10.0, "meandec": 0.0,
            "sigmara": 0.1, "sigmadec": 0.1, "corrected": False, "stellar": False, "probabilities": []}
    base.update(kw)
    return base


def _prob(version: str, cls: str = "SN", ranking: int = 1) -> dict[str, Any]:
    return {"classifier_name": "lc", "classifier_version": version, "class_name": cls, "probability": 0.9,
            "ranking": ranking}


# ---- probes ----

def test_p_inline_trailing_comment_after_semicolon(sql_db: SQLConnection) -> None:
    assert list(sql_db.sql("SELECT 1 AS a; -- the end").find_all(paginate=False)) == [{"a": 1}]


def test_p_object_list_numeric_version_param(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    objs = [_obj("A", probabilities=[_prob("1"), _prob("2", "AGN")])]
    load_sql(sql_db, objs)
    load_mongo(mongo_db, objs)
    got = []
    for db in (sql_db, mongo_db):
        rows = db.query("object_list", {"classifier": "lc", "ranking": 1, "version": 1}).find_all(paginate=False)
        got.append([(r["oid"], r["class_name"]) for r in rows])
    assert got[0] == got[1]


def test_p_object_list_string_ranking_param(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    objs = [_obj("A", probabilities=[_prob("1"), _prob("1", "AGN", 2)])]
    load_sql(sql_db, objs)
    load_mongo(mongo_db, objs)
    got = []
    for db in (sql_db, mongo_db):
        rows = db.query("object_list", {"classifier": "lc", "ranking": "1"}).find_all(paginate=False)
        got.append([(r["oid"], r["class_name"]) for r in rows])
    assert got[0] == got[1]


def test_p_frame_empty_projection_distance(sql_db: SQLConnection) -> None:
    src = sql_db.sql("-- position: ra, dec\nSELECT 1 AS id, 10.0::float8 AS ra, 0.0::float8 AS dec")
    f = src.frame({"$cone": {"ra": 200.0, "dec": 0.0, "radius": 1.0}})
    assert list(f.columns) == ["id", "ra", "dec"]
    f2 = src.frame({"id": 5})
    assert list(f2.columns) == ["id", "ra", "dec"]


def test_p_frame_empty_pipeline(mongo_db: MongoConnection) -> None:
    load_mongo(mongo_db, [])
    f = mongo_db.query("object_list", {"classifier": "lc", "ranking": 1}).frame()
    assert len(f.columns) == 15


def test_p_sql_cone_ra_negative_named_vs_mongo(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    objs = [_obj("A", meanra=359.99999), _obj("B", meanra=0.00001), _obj("C", meanra=-0.00001),
            _obj("D", meanra=360.0)]
    load_sql(sql_db, objs)
    load_mongo(mongo_db, objs)
    got = []
    for db in (sql_db, mongo_db):
        q = db.query("object")
        rows = q.find_all({"$cone": {"ra": 0.0, "dec": 0.0, "radius": 1.0}}, paginate=False)
        got.append(sorted(r.get("oid") if isinstance(r.get("oid"), str) else r["_id"] for r in rows))
    assert got[0] == got[1]


def _pipeline_folder(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    import json
    folder = tmp_path / "queries"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(doc))
    return folder


def test_p_distance_column_collides(sql_db: SQLConnection) -> None:
    src = sql_db.sql("-- position: ra, dec\nSELECT 1 AS id, 10.0::float8 AS ra, 0.0::float8 AS dec, 'far'::text AS distance")
    rows = list(src.find_all({"$cone": {"ra": 10.0, "dec": 0.0, "radius": 5.0}},
                             projection=["distance", "$distance"], paginate=False))
    assert rows and "far" in list(rows[0].values())


def test_p_crossmatch_key_with_percent(sql_db: SQLConnection) -> None:
    src = sql_db.sql('-- position: ra, dec\n-- key: "k%s"\nSELECT 1 AS "k%s", 10.0::float8 AS ra, 0.0::float8 AS dec')
    m = src.crossmatch([("a", 10.0, 0.0)], 5.0, nearest=False)
    assert len(m) == 1


def test_p_crossmatch_key_with_percent2(sql_db: SQLConnection) -> None:
    src = sql_db.sql('-- position: ra, dec\n-- key: k%%s\nSELECT 1 AS "k%%s", 10.0::float8 AS ra, 0.0::float8 AS dec')
    m = src.crossmatch([("a", 10.0, 0.0)], 5.0, nearest=False)
    assert len(m) == 1


def test_p_position_text_column(sql_db: SQLConnection, mongo_db: MongoConnection, tmp_path: Path) -> None:
    src = sql_db.sql("-- position: ra, dec\nSELECT 1 AS id, 'x'::text AS ra, 0.0::float8 AS dec")
    try:
        src.find_all({"$cone": {"ra": 10.0, "dec": 0.0, "radius": 5.0}}, paginate=False)
    except DbpError:
        pass


def test_p_named_crossmatch_wrap_engines(sql_db: SQLConnection, mongo_db: MongoConnection, tmp_path: Path) -> None:
    folder = _pipeline_folder(tmp_path, "pts_q", {"collection": "pts", "columns": ["id", "ra", "dec"], "key": ["id"],
                                                "position": ["ra", "dec"],
                                                "pipeline": [{"$project": {"_id": 0, "id": 1, "ra": 1, "dec": 1}}]})
    mongo = MongoConnection(settings=dataclasses.replace(mongo_db.settings, queries_dir=folder)).connect()
    pts = [{"id": 1, "ra": -0.00001, "dec": 0.0}, {"id": 2, "ra": 360.00001, "dec": 0.0}, {"id": 3, "ra": 0.0, "dec": 0.0}]
    mongo.collection("pts").insert_many([dict(p) for p in pts])
    sql_db.execute_raw("CREATE TABLE pts (id int, ra float8, dec float8)")
    sql_db.query("pts").bulk_insert(pts) if False else None
    for p in pts:
        sql_db.execute_raw("INSERT INTO pts VALUES (%s, %s, %s)", [p["id"], p["ra"], p["dec"]])
    s = sql_db.sql("-- position: ra, dec\n-- key: id\nSELECT id, ra, dec FROM pts")
    a = sorted(m.row["id"] if hasattr(m, "row") else m for m in s.crossmatch([("x", 0.0, 0.0)], 1.0, nearest=False))
    b = sorted(m.row["id"] if hasattr(m, "row") else m for m in mongo.query("pts_q").crossmatch([("x", 0.0, 0.0)], 1.0, nearest=False))
    c = sorted(r["id"] for r in s.find_all({"$cone": {"ra": 0.0, "dec": 0.0, "radius": 1.0}}, paginate=False))
    d = sorted(r["id"] for r in mongo.query("pts_q").find_all({"$cone": {"ra": 0.0, "dec": 0.0, "radius": 1.0}}, paginate=False))
    assert a == b == c == d


def test_p_mongo_sql_and_run(mongo_db: MongoConnection) -> None:
    for call in (lambda: mongo_db.sql("SELECT 1"), lambda: mongo_db.run("nothing", {})):
        try:
            call()
        except DbpError:
            pass


def test_p_pipeline_big_int_param(mongo_db: MongoConnection) -> None:
    for v in (2**70, -(2**64), "a\x00b"):
        try:
            list(mongo_db.query("object_list", {"classifier": v, "ranking": 1}).find_all(paginate=False))
        except DbpError:
            pass


def test_p_sql_big_int_param(sql_db: SQLConnection) -> None:
    load_sql(sql_db, [])
    for v in (2**70, "a\x00b", float("nan")):
        try:
            list(sql_db.query("object_list", {"classifier": "lc", "ranking": v}).find_all(paginate=False))
        except DbpError:
            pass


def test_p_table_frame_empty(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    load_sql(sql_db, [])
    f = sql_db.query("object").frame({"oid": "none"})
    assert "oid" in list(f.columns)
    f = sql_db.query("object").frame({"$cone": {"ra": 1.0, "dec": 1.0, "radius": 1.0}}, sort=[("$distance", 1)])
    assert "oid" in list(f.columns)


def test_p_object_list_version_order_astral(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    objs = [_obj("A", probabilities=[_prob("v\uffff", "SN"), _prob("v\U0001F600", "AGN")]),
            _obj("B", probabilities=[_prob("v\u00e9", "SN"), _prob("vz", "AGN")]),
            _obj("C", probabilities=[_prob("V", "SN"), _prob("v", "AGN")])]
    load_sql(sql_db, objs)
    load_mongo(mongo_db, objs)
    got = []
    for db in (sql_db, mongo_db):
        rows = db.query("object_list", {"classifier": "lc", "ranking": None}).find_all(sort=[("oid", 1)], paginate=False)
        got.append([(r["oid"], r["classifier_version"]) for r in rows])
    assert got[0] == got[1]


def test_p_mongo_run(mongo_db: MongoConnection) -> None:
    try:
        mongo_db.run("nothing", {})
    except DbpError:
        pass


def test_local_refusal_changes_nothing_before_refusing(tmp_path: Path) -> None:
    """A data folder with a file another user planted is refused before anything is changed: here the folder's
    mode is already chmod-ed 0700 (and any earlier file 0600) by make_private before the planted entry is seen."""
    import os
    import stat

    from dbp.errors import ConfigError
    from dbp.local import LocalServers

    root = tmp_path / "data"
    root.mkdir()
    os.chmod(root, 0o755)
    planted = root / "planted"
    planted.write_text("x")
    os.chown(planted, 65534, 65534)
    before = stat.S_IMODE(os.stat(root).st_mode)
    with pytest.raises(ConfigError, match="uid 65534"):
        LocalServers(root).start(["sql"])
    assert stat.S_IMODE(os.stat(root).st_mode) == before


def test_local_existing_folder_files_lose_their_modes(tmp_path: Path) -> None:
    """DBP_LOCAL_DIR naming an existing folder that is not dbp's (here: one with a script and a planted file,
    so that nothing starts) must not have its files chmod-ed: make_private makes every plain file in it 0600
    (the script loses its execute bit) before it refuses the folder."""
    import os
    import stat

    from dbp.errors import ConfigError
    from dbp.local import LocalServers

    root = tmp_path / "project"
    root.mkdir()
    os.chmod(root, 0o755)
    scripts = []
    for n in range(20):
        script = root / f"run{n}.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        os.chmod(script, 0o755)
        scripts.append(script)
    planted = root / "zz_planted"
    planted.write_text("x")
    os.chown(planted, 65534, 65534)
    with pytest.raises(ConfigError):
        LocalServers(root).start(["sql"])
    assert all(stat.S_IMODE(os.stat(s).st_mode) == 0o755 for s in scripts)
