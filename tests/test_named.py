"""Named queries and pipelines: the bundled ALeRCE ones on both engines, project folders, writes, errors, faults."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dbp
from dbp import ConfigError, FilterError, QueryError, ServerUnavailable
from dbp.mongo.connection import MongoConnection
from dbp.mongo.pipeline import PipelineSource
from dbp.mongo.query import MongoQuery
from dbp.mongo.settings import MongoSettings
from dbp.named import parse_pipeline, parse_sql
from dbp.sql import admin as sql_admin
from dbp.sql.connection import SQLConnection
from dbp.sql.query import SQLQuery
from dbp.sql.settings import SQLSettings
from dbp.sql.source import SQLSource

from .named_data import load_mongo, load_sql, make_objects, oracle

LC_COLUMNS = ["oid", "candid", "mjd", "fid", "detected", "magpsf", "sigmapsf", "diffmaglim", "isdiffpos", "ra", "dec"]


def _detection(candid: int, oid: str, mjd: float, fid: int, mag: float) -> dict[str, Any]:
    return {"candid": candid, "oid": oid, "mjd": mjd, "fid": fid, "pid": 1.0, "diffmaglim": 20.5, "isdiffpos": 1,
            "ra": 10.0 + candid / 1000, "dec": -5.0, "magpsf": mag, "sigmapsf": 0.1, "corrected": False,
            "dubious": False, "has_stamp": True, "step_id_corr": "s"}


@pytest.fixture
def curves(sql_db: SQLConnection, mongo_db: MongoConnection) -> tuple[SQLConnection, MongoConnection]:
    """Two objects' detections and non-detections, alike on both engines."""
    load_sql(sql_db, [])
    sql_db.query("object").bulk_insert([{"oid": "ZTFa"}, {"oid": "ZTFb"}])
    dets = [_detection(1, "ZTFa", 59000.5, 1, 18.0), _detection(2, "ZTFa", 59001.5, 2, 18.5),
            _detection(3, "ZTFb", 59000.5, 1, 19.0), _detection(4, "ZTFa", 59001.5, 1, 18.2)]
    nondets = [{"oid": "ZTFa", "fid": 1, "mjd": 58990.0, "diffmaglim": 19.5},
               {"oid": "ZTFa", "fid": 2, "mjd": 58990.0, "diffmaglim": 19.7},
               {"oid": "ZTFb", "fid": 1, "mjd": 58991.0, "diffmaglim": 19.1}]
    sql_db.query("detection").bulk_insert(dets)
    sql_db.query("non_detection").bulk_insert(nondets)
    mongo_db.collection("detection").insert_many([
        {"_id": d["candid"], "oid": d["oid"], "aid": "AL" + d["oid"], "mjd": d["mjd"], "fid": d["fid"],
         "mag": d["magpsf"], "e_mag": d["sigmapsf"], "isdiffpos": 1, "ra": d["ra"], "dec": d["dec"],
         "extra_fields": {"diffmaglim": d["diffmaglim"]}} for d in dets])
    mongo_db.collection("non_detection").insert_many([{"aid": "AL" + n["oid"], **n} for n in nondets])
    return sql_db, mongo_db


def test_the_light_curve_is_the_same_on_both_engines(curves: tuple[SQLConnection, MongoConnection]) -> None:
    results = []
    for db in curves:
        source = db.query("light_curve", {"oid": "ZTFa"})
        rows = source.find_all(sort=[("mjd", 1)], paginate=False)
        assert not isinstance(rows, (dbp.pagination.Pagination, dbp.pagination.KeysetPage))
        rows = list(rows)
        assert [list(r) for r in rows] == [LC_COLUMNS] * 5
        assert [(r["mjd"], r["fid"], r["detected"], r["candid"]) for r in rows] == [
            (58990.0, 1, False, None), (58990.0, 2, False, None), (59000.5, 1, True, 1), (59001.5, 2, True, 2),
            (59001.5, 1, True, 4)]  # then by the key: candid, fid, mjd
        assert rows[2]["magpsf"] == 18.0 and rows[0]["magpsf"] is None and rows[0]["diffmaglim"] == 19.5
        detections = source.paginate({"detected": True}, sort=[("candid", -1)])
        assert [r["candid"] for r in detections.items] == [4, 2, 1] and detections.total == 3
        assert source.count({"detected": False}) == 2
        results.append(rows)
    assert results[0] == results[1]


def test_limit_values_agree_and_are_empty_without_objects(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    load_sql(sql_db, [])
    for db in (sql_db, mongo_db):
        assert db.query("limit_values").find_one() is None
        assert db.query("limit_values").count() == 0
    objects = make_objects(30, 7)
    sql_db.query("object").bulk_insert([{k: o[k] for k in ("oid", "ndet", "firstmjd")} for o in objects])
    load_mongo(mongo_db, objects, 7)
    ndet = [o["ndet"] for o in objects if o["ndet"] is not None]
    mjd = [o["firstmjd"] for o in objects if o["firstmjd"] is not None]
    want = {"min_ndet": min(ndet), "max_ndet": max(ndet), "min_firstmjd": min(mjd), "max_firstmjd": max(mjd)}
    assert sql_db.query("limit_values").find_one() == want
    assert mongo_db.query("limit_values").find_one() == want


def test_sources_are_read_only_and_name_their_parameters(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    load_sql(sql_db, [])
    for db in (sql_db, mongo_db):
        with pytest.raises(FilterError, match=r"object_list: missing parameter\(s\) ranking \(it takes: classifier, "
                                              r"ranking; optional: version\)"):
            db.query("object_list", {"classifier": "lc"})
        with pytest.raises(FilterError, match=r"unexpected parameter\(s\) 'rank'"):
            db.query("object_list", {"classifier": "lc", "ranking": 1, "rank": 2})
        with pytest.raises(FilterError, match=r"missing parameter\(s\) classifier, ranking"):
            db.query("object_list")
        with pytest.raises(FilterError, match="a dict, not list"):
            db.query("object_list", [("classifier", "lc")])  # type: ignore[arg-type]
        source = db.query("object_list", {"classifier": "lc", "ranking": None})
        calls = [("update", ({}, {"ndet": 1})), ("delete", ({},)), ("bulk_insert", ([{"oid": "x"}],)),
                 ("bulk_update", ([{"oid": "x"}], [{"ndet": 1}])), ("upsert", ({"oid": "x"}, {"ndet": 1})),
                 ("get_or_create", ({"oid": "x"},))]
        for method, args in calls:
            with pytest.raises(FilterError, match=f"{method} on object_list: a named query is read-only"):
                getattr(source, method)(*args)
        with pytest.raises(FilterError, match=r"no (column|field) 'nope'"):
            source.paginate({"nope": 1})
        with pytest.raises(FilterError, match=r"no (column|field) 'nope'"):
            source.find_one(sort=[("nope", 1)])
        with pytest.raises(FilterError, match=r"no (column|field) 'nope'"):
            source.find_one(projection=["oid", "nope"])
        with pytest.raises(FilterError, match="needs a key"):
            db.query("limit_values").paginate(keyset=True)
        with pytest.raises(FilterError, match="takes no parameters"):
            db.query("object", {"x": 1})
    assert isinstance(sql_db.query("object"), SQLQuery) and not isinstance(sql_db.query("object"), SQLSource)
    assert isinstance(mongo_db.query("object"), MongoQuery)
    assert isinstance(mongo_db.query("light_curve", {"oid": "x"}), PipelineSource)
    with pytest.raises(FilterError, match="no table 'no_such_thing'"):
        sql_db.query("no_such_thing")


def test_a_keyset_token_belongs_to_its_parameters(sql_db: SQLConnection) -> None:
    load_sql(sql_db, make_objects(20, 3))
    first = sql_db.query("object_list", {"classifier": "lc_classifier", "ranking": 1}).paginate(per_page=3,
                                                                                              keyset=True)
    assert first.next_token  # type: ignore[union-attr]
    other = sql_db.query("object_list", {"classifier": "lc_classifier", "ranking": 1})
    assert other.paginate(per_page=3, after=first.next_token).items  # type: ignore[union-attr]
    with pytest.raises(FilterError, match="belongs to another query"):
        sql_db.query("light_curve", {"oid": "x"}).paginate(per_page=3, after=first.next_token)  # type: ignore
    with pytest.raises(FilterError, match="belongs to another query"):  # other parameters: other rows
        sql_db.query("object_list", {"classifier": "lc_classifier", "ranking": None}).paginate(
            per_page=3, after=first.next_token)  # type: ignore[union-attr]


# -- a project's own queries -----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
            ) -> Iterator[tuple[Path, SQLConnection, MongoConnection]]:
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "add_object.sql").write_text("INSERT INTO object (oid, ndet) VALUES (%(oid)s, %(ndet)s)\n")
    (folder / "add_object_returning.sql").write_text(
        "-- Adds one object and returns it.\nINSERT INTO object (oid, ndet) VALUES (%(oid)s, %(ndet)s) "
        "RETURNING oid, ndet;\n-- end\n")
    (folder / "bump.sql").write_text("UPDATE object SET ndet = ndet + %(by)s WHERE ndet >= %(at_least)s")
    (folder / "forget.sql").write_text("DELETE FROM object WHERE oid LIKE 'tmp%%'")
    (folder / "broken.sql").write_text("SELECT nope FROM object")
    (folder / "typed.sql").write_text("-- key: oid\nSELECT oid, ndet FROM object WHERE ndet >= %(n)s::integer")
    (folder / "limit_values.sql").write_text("SELECT 1 AS project_wins")
    (folder / "faceted.json").write_text(json.dumps({
        "collection": "object", "columns": ["small", "tag"],
        "pipeline": [{"$facet": {"small": [{"$match": {"ndet": {"$lt": {"$param": "n"}}}}, {"$count": "n"}]}},
                     {"$unwind": "$small"}, {"$project": {"small": "$small.n", "tag": {"$param": "n"}}}]}))
    (folder / "tagged.json").write_text(json.dumps({
        "collection": "object", "columns": ["oid", "tag", "ndet"], "key": ["oid"],
        "pipeline": [{"$match": {"ndet": {"$gte": {"$param": "n"}}}},
                     {"$project": {"_id": 0, "oid": "$_id", "ndet": 1, "tag": {"$param": "tag"}}}]}))
    sql = SQLConnection(settings=dataclasses.replace(sql_settings, queries_dir=folder)).connect()
    mongo = MongoConnection(settings=dataclasses.replace(mongo_settings, queries_dir=folder)).connect()
    sql_admin.initdb(sql)
    try:
        yield folder, sql, mongo
    finally:
        sql.close()
        mongo.close()


def test_named_writes_return_counts_or_rows_and_join_transactions(
        project: tuple[Path, SQLConnection, MongoConnection]) -> None:
    _, db, mongo = project
    assert db.run("add_object", {"oid": "tmp1", "ndet": 1}) == 1
    assert db.run("add_object_returning", {"oid": "tmp2", "ndet": 5}) == [{"oid": "tmp2", "ndet": 5}]
    assert db.run("bump", {"by": 10, "at_least": 2}) == 1
    assert db.query("typed", {"n": 0}).find_all(sort=[("oid", 1)], paginate=False) is not None
    assert list(db.query("typed", {"n": 0}).find_all(sort=[("oid", 1)], paginate=False)) == [
        {"oid": "tmp1", "ndet": 1}, {"oid": "tmp2", "ndet": 15}]
    with pytest.raises(RuntimeError), db.transaction():
        db.run("add_object", {"oid": "tmp3", "ndet": 3})
        assert db.query("typed", {"n": 0}).count() == 3  # the transaction sees its own write
        raise RuntimeError("roll back")
    assert db.query("typed", {"n": 0}).count() == 2
    with db.transaction():
        db.run("add_object", {"oid": "tmp4", "ndet": 4})
    assert db.run("forget") == 3
    assert db.query("limit_values").find_one() == {"project_wins": 1}  # the project's file wins over dbp's
    with pytest.raises(FilterError, match=r"add_object is a named write \(INSERT\)"):
        db.query("add_object", {"oid": "x", "ndet": 1})
    with pytest.raises(FilterError, match=r"add_object: missing parameter\(s\) ndet"):
        db.run("add_object", {"oid": "x"})
    with pytest.raises(FilterError, match="no named query 'nothing'; named queries: add_object"):
        db.run("nothing")
    with pytest.raises(FilterError, match=r"named writes are \.sql statements"):
        mongo.run("add_object", {"oid": "x", "ndet": 1})


def test_server_errors_are_query_errors_naming_the_query(project: tuple[Path, SQLConnection, Any]) -> None:
    _, db, _ = project
    with pytest.raises(QueryError, match=r"query broken failed: column \"nope\" does not exist \(SQLSTATE 42703\)"
                       ) as caught:
        db.query("broken")
    assert caught.value.query == "broken" and caught.value.sqlstate == "42703"
    with pytest.raises(QueryError) as caught:
        db.query("typed", {"n": "many"}).count()
    assert caught.value.sqlstate == "22P02" and caught.value.query == "typed"
    db.run("add_object", {"oid": "dup", "ndet": 1})
    with pytest.raises(QueryError, match="duplicate key") as caught:
        db.run("add_object", {"oid": "dup", "ndet": 1})
    assert caught.value.sqlstate == "23505" and caught.value.query == "add_object"
    with pytest.raises(QueryError) as caught:
        db.execute("SELECT nope FROM object")
    assert caught.value.sqlstate == "42703" and caught.value.query is None
    with pytest.raises(QueryError, match="query inline SQL failed"):
        db.sql("SELECT * FROM no_such_table").count()


def test_pipeline_parameters_are_values_never_operators_or_paths(
        project: tuple[Path, SQLConnection, MongoConnection]) -> None:
    _, _, mongo = project
    mongo.collection("object").insert_many([{"_id": "a", "ndet": 1}, {"_id": "b", "ndet": 5}])
    rows = mongo.query("tagged", {"n": 2, "tag": "$_id"}).paginate().items
    assert rows == [{"oid": "b", "tag": "$_id", "ndet": 5}]  # a string, not the field path it looks like
    assert mongo.query("tagged", {"n": "$ndet", "tag": None}).count() == 0  # compared as a string
    with pytest.raises(FilterError, match="parameter n is a dict"):
        mongo.query("tagged", {"n": {"$gte": -1}, "tag": 1})
    with pytest.raises(FilterError, match="parameter n is NaN"):
        mongo.query("tagged", {"n": float("nan"), "tag": 1})
    assert mongo.query("tagged", {"n": 0, "tag": [1, "$x"]}).find_one() == {"oid": "a", "tag": [1, "$x"], "ndet": 1}
    assert mongo.query("faceted", {"n": 2}).find_one() == {"small": 1, "tag": 2}  # $facet's stages: a $match


def test_inline_sql_is_a_source_too(project: tuple[Path, SQLConnection, Any]) -> None:
    _, db, _ = project
    for i in range(5):
        db.run("add_object", {"oid": f"o{i}", "ndet": i % 2})
    source = db.sql("-- key: oid\nSELECT oid, ndet, ndet * 10 AS tens FROM object WHERE ndet >= %(n)s", {"n": 0})
    page = source.paginate({"tens": 10}, sort=[("oid", -1)], per_page=1)
    assert page.total == 2 and page.items == [{"oid": "o3", "ndet": 1, "tens": 10}]
    walk = source.paginate(per_page=2, keyset=True)
    seen = list(walk.items)
    while walk.has_next:  # type: ignore[union-attr]
        walk = walk.next()
        seen += walk.items
    assert [r["oid"] for r in seen] == ["o0", "o1", "o2", "o3", "o4"]
    assert db.sql("SELECT 100 %% 7 AS r").find_one() == {"r": 2}
    with pytest.raises(FilterError, match="a lone %"):
        db.sql("SELECT 100 % 7")
    with pytest.raises(FilterError, match="non-empty string"):
        db.sql("")


def test_a_project_query_may_not_shadow_a_table_but_a_bundled_one_yields(
        project: tuple[Path, SQLConnection, MongoConnection]) -> None:
    folder, db, mongo = project
    (folder / "object.sql").write_text("SELECT 1 AS one")
    (folder / "object.json").write_text(json.dumps({"collection": "x", "columns": ["a"], "pipeline": []}))
    fresh = SQLConnection(settings=db.settings).connect()
    fresh_mongo = MongoConnection(settings=mongo.settings).connect()
    try:
        with pytest.raises(ConfigError, match="object is both a table and a named query"):
            fresh.query("object")
        fresh_mongo.collection("object").insert_one({"_id": 1})
        with pytest.raises(ConfigError, match="object is both a collection and a named pipeline"):
            fresh_mongo.query("object")
        fresh.execute("CREATE TABLE light_curve (id int PRIMARY KEY)")
        assert isinstance(fresh.query("light_curve"), SQLQuery)
        assert not isinstance(fresh.query("light_curve"), SQLSource)
    finally:
        fresh.close()
        fresh_mongo.close()


def test_queries_dir_in_a_settings_file_is_relative_to_it(tmp_path: Path, sql_settings: SQLSettings) -> None:
    from dbp.config import load_config

    from .conftest import sql_section

    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "answer.sql").write_text("SELECT 42 AS answer")
    path = tmp_path / "dbp.toml"
    section = sql_section(sql_settings)
    path.write_text(f'[DB_CONFIG.SQL]\nURL = "{section["URL"]}"\nQUERIES_DIR = "q"\n')
    settings = load_config(path, environ={}).settings("sql")
    assert settings.queries_dir == tmp_path / "q"  # type: ignore[attr-defined]
    with SQLConnection(path) as db:
        assert db.query("answer").find_one() == {"answer": 42}
    with SQLConnection({"SQL": {**section, "QUERIES_DIR": str(tmp_path / "missing")}}) as db, \
            pytest.raises(ConfigError, match="is not a folder"):
        db.query("answer")


@pytest.mark.parametrize(("text", "message"), [
    ("SELECT 1 WHERE 2 > %s", "parameters are %\\(name\\)s"),
    ("SELECT %(x)d", "parameters are %\\(name\\)s"),
    ("SELECT %(bad name)s", "parameters are %\\(name\\)s"),
    ("SELECT '50%'", "line 1: a lone %"),
    ("-- only a comment\n", "holds no statement"),
    ("DROP TABLE object", "not 'DROP'"),
    ("-- key:\nSELECT 1", "names no column"),
])
def test_a_malformed_sql_file_is_a_config_error_naming_it(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sql("q", text, "queries/q.sql")


@pytest.mark.parametrize(("data", "message"), [
    ([], "is a JSON object"),
    ({"collection": "o", "columns": ["a"], "pipeline": [], "extra": 1}, "unknown key"),
    ({"collection": "o", "columns": ["a"], "key": ["b"], "pipeline": []}, "not among the columns"),
    ({"collection": "o", "columns": ["a"], "pipeline": [{"$out": "x"}]}, r"read-only; \$out writes"),
    ({"collection": "o", "columns": ["a"], "pipeline": [{"$lookup": {"from": "x", "pipeline": [
        {"$merge": "y"}]}}]}, r"\$merge writes"),
    ({"collection": "o", "columns": ["a"], "pipeline": [{"$match": {"a": {"$param": "x", "y": 1}}}]}, "alone"),
    ({"collection": "o", "columns": ["a"], "pipeline": [{"$match": {"a": {"$param": 3}}}]}, "alone"),
    ({"collection": "$o", "columns": ["a"], "pipeline": []}, "collection is"),
    ({"collection": "o", "columns": "a", "pipeline": []}, "columns is a list"),
    ({"collection": "o", "columns": ["a"], "pipeline": [{"$match": {}, "$sort": {}}]}, "one key"),
])
def test_a_malformed_pipeline_file_is_a_config_error_naming_it(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_pipeline("p", json.dumps(data), "queries/p.json")
    assert "queries/p.json" in str(caught.value)


def test_a_header_naming_a_missing_column_or_a_repeated_column_is_refused(sql_db: SQLConnection) -> None:
    with pytest.raises(FilterError, match="the -- key: line names nope"):
        sql_db.sql("-- key: nope\nSELECT 1 AS a")
    with pytest.raises(FilterError, match=r"output column\(s\) a appear more than once"):
        sql_db.sql("SELECT 1 AS a, 2 AS a")


# -- faults and threads ------------------------------------------------------------------------------------------


def test_a_lost_session_is_server_unavailable_and_the_next_call_reconnects(sql_db: SQLConnection) -> None:
    load_sql(sql_db, make_objects(10, 1))
    params = {"classifier": "lc_classifier", "ranking": None}
    before = sql_db.query("object_list", params).paginate().items
    victim = sql_db.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]  # type: ignore[index]
    with SQLConnection(settings=sql_db.settings) as other:
        timer = threading.Timer(0.3, lambda: other.execute("SELECT pg_terminate_backend(%s)", (victim,)))
        timer.start()
        with pytest.raises(ServerUnavailable, match="terminating connection"):
            sql_db.sql("SELECT pg_sleep(5) AS slept").find_one()
        timer.join()
    assert sql_db.query("object_list", params).paginate().items == before


def test_threads_page_one_source_concurrently(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    objects = make_objects(40, 5)
    load_sql(sql_db, objects)
    load_mongo(mongo_db, objects, 5)
    expected = oracle(objects, "lc_classifier", None, {}, [("probability", -1)])
    failures: list[BaseException] = []

    def walk(db: Any) -> None:
        try:
            for _ in range(3):
                source = db.query("object_list", {"classifier": "lc_classifier", "ranking": None})
                page = source.paginate(sort=[("probability", -1)], per_page=8, keyset=True)
                seen = list(page.items)
                while page.has_next:
                    page = page.next()
                    seen += page.items
                assert seen == expected
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=walk, args=(db,)) for db in (sql_db, sql_db, sql_db, mongo_db, mongo_db)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[0]
    assert time.perf_counter() - start < 120


def test_feature_oids_are_distinct_per_version(sql_db: SQLConnection) -> None:
    load_sql(sql_db, [])
    sql_db.query("object").bulk_insert([{"oid": o} for o in ("ZTFa", "ZTFb", "ZTFc")])
    sql_db.query("feature_version").bulk_insert([{"version": "1"}, {"version": "2"}])
    sql_db.query("feature").bulk_insert([
        {"oid": oid, "name": name, "value": 1.0, "fid": fid, "version": version}
        for oid, version in (("ZTFa", "1"), ("ZTFb", "1"), ("ZTFc", "2")) for name in ("amp", "period")
        for fid in (1, 2)])
    source = sql_db.query("feature_oids", {"version": "1"})
    assert list(source.find_all(paginate=False)) == [{"oid": "ZTFa"}, {"oid": "ZTFb"}]
    assert source.count() == 2 and source.paginate(per_page=1, keyset=True).items == [{"oid": "ZTFa"}]
