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


def _pipeline_folder(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    import json
    folder = tmp_path / "queries"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(doc))
    return folder


def _pair(sql_db: SQLConnection, mongo_db: MongoConnection, tmp_path: Path,
          pts: list[dict[str, Any]]) -> tuple[Any, Any]:
    folder = _pipeline_folder(tmp_path, "pts_q", {"collection": "pts", "columns": ["id", "ra", "dec"], "key": ["id"],
                                                  "position": ["ra", "dec"],
                                                  "pipeline": [{"$project": {"_id": 0, "id": 1, "ra": 1, "dec": 1}}]})
    mongo = MongoConnection(settings=dataclasses.replace(mongo_db.settings, queries_dir=folder)).connect()
    mongo.collection("pts").insert_many([{k: v for k, v in p.items() if v is not None} for p in pts])
    sql_db.execute_raw("CREATE TABLE pts (id int, ra float8, dec float8)")
    for p in pts:
        sql_db.execute_raw("INSERT INTO pts VALUES (%s, %s, %s)", [p["id"], p.get("ra"), p.get("dec")])
    return sql_db.sql("-- position: ra, dec\n-- key: id\nSELECT id, ra, dec FROM pts"), mongo.query("pts_q")


# -- named queries and inline SQL ----------------------------------------------------------------


def test_inline_sql_one_statement_ending_in_semicolon_and_comment_is_refused(sql_db: SQLConnection) -> None:
    """COSMETIC: one statement followed by `;` and a comment on the same line (or a second stray `;`) is refused
    with a server syntax error: parse_sql strips one trailing `;` only when nothing follows it on its line."""
    for text in ("SELECT 1 AS a; -- the end", "SELECT 1 AS a;\n;\n"):
        assert list(sql_db.sql(text).find_all(paginate=False)) == [{"a": 1}], text


def test_inline_sql_string_with_a_line_starting_with_dashes_is_cut(sql_db: SQLConnection) -> None:
    """COSMETIC: parse_sql pops trailing lines that start with `--` as comments, without knowing it is inside a
    string literal: a valid one-statement text becomes an unterminated string (QueryError)."""
    text = "SELECT 'first line\n-- second line' AS a"
    assert list(sql_db.sql(text).find_all(paginate=False)) == [{"a": "first line\n-- second line"}]


def test_key_header_cannot_name_an_output_column_holding_a_percent(sql_db: SQLConnection) -> None:
    """COSMETIC: headers are read after %-placeholders are rewritten, so a column `k%` can be named in a header
    neither as `k%` (a lone %) nor as `k%%` (then not an output column)."""
    rows = sql_db.sql('-- key: k%%\nSELECT 1 AS "k%%"').find_all(paginate=False)
    assert list(rows) == [{"k%": 1}]


def test_keyless_source_with_a_json_array_column_cannot_be_read(sql_db: SQLConnection) -> None:
    """WRONG RESULT (valid query refused): without `-- key:`, every read orders by every output column whose type
    is not in _UNSORTABLE (json, xml, point, ...), a fixed list of names: json[] (array_agg of json, as a light
    curve per object), point[], xid, jsonpath, aclitem[] and domains over json have no ordering either, so even a
    plain find_all is a QueryError ("could not identify an ordering operator for type json[]")."""
    text = ("SELECT o.oid, array_agg(json_build_object('mjd', o.mjd)) AS detections "
            "FROM (VALUES ('A', 1.0), ('A', 2.0)) AS o(oid, mjd) GROUP BY o.oid")
    rows = list(sql_db.sql(text).find_all(paginate=False))
    assert [r["oid"] for r in rows] == ["A"]


# -- the bundled object_list: engines must agree -------------------------------------------------


@pytest.mark.parametrize(("params", "message"), [
    ({"classifier": "lc", "ranking": 1, "version": 1}, "parameter version is text, not int 1"),
    ({"classifier": "lc", "ranking": "1"}, "parameter ranking is integer, not str '1'"),
    ({"classifier": "lc", "ranking": 1.5}, "parameter ranking is integer, not float 1.5"),
    ({"classifier": "lc", "ranking": True}, "parameter ranking is integer, not bool True"),
    ({"classifier": 7, "ranking": 1}, "parameter classifier is text, not int 7"),
])
def test_object_list_wrongly_typed_param_is_refused_on_both_engines(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                                    params: dict[str, Any], message: str) -> None:
    """WRONG RESULT (engine difference): version=1 pinned version "1" on PostgreSQL (`%(version)s::text` casts)
    while MongoDB's `$eq` compared 1 with "1" (a row of NULLs); ranking="1", 1.5 or True likewise. The contract
    (changed from "both engines agree" to the brief's preferred refusal): object_list declares its parameters'
    types (`-- params:` / "params") and a wrongly-typed value is a FilterError on both engines, before any read."""
    from dbp.errors import FilterError

    objs = [_obj("A", probabilities=[_prob("1"), _prob("2", "AGN")])]
    load_sql(sql_db, objs)
    load_mongo(mongo_db, objs)
    for db in (sql_db, mongo_db):
        with pytest.raises(FilterError, match=f"^object_list: {message}$".replace("(", r"\(").replace(".", r"\.")):
            db.query("object_list", params).find_all(paginate=False)
    for db in (sql_db, mongo_db):  # the right types, and None (NULL), still read
        rows = db.query("object_list", {"classifier": "lc", "ranking": None, "version": "1"}).find_all(
            paginate=False)
        assert [(r["oid"], r["class_name"]) for r in rows] == [("A", "SN")]


def test_object_list_takes_no_cone(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    """MISSING FEATURE / REFUSAL: the bundled object_list is the alerts API's GET /objects, which filters by
    ra, dec and radius; it has meanra/meandec but no `-- position:` line (nor "position" in the .json), so
    `$cone`/crossmatch on it are a FilterError on both engines."""
    objs = [_obj("A", meanra=10.0, meandec=0.0), _obj("B", meanra=50.0, meandec=0.0)]
    load_sql(sql_db, objs)
    load_mongo(mongo_db, objs)
    for db in (sql_db, mongo_db):
        rows = db.query("object_list", {"classifier": "lc", "ranking": 1}).find_all(
            {"$cone": {"ra": 10.0, "dec": 0.0, "radius": 5.0}}, paginate=False)
        assert [r["oid"] for r in rows] == ["A"]


# -- pipelines ------------------------------------------------------------------------------------


def test_pipeline_param_as_sample_size_is_refused(mongo_db: MongoConnection, tmp_path: Path) -> None:
    """WRONG RESULT: a parameter in a stage's numeric argument that is not an expression ($sample.size; also
    $bucketAuto.buckets, $shift.by) goes in as {"$literal": n}, which the server refuses (OperationError). Only
    a whole stage body ($limit, $skip) gets the bare value."""
    folder = _pipeline_folder(tmp_path, "some", {"collection": "c", "columns": ["a"], "pipeline": [
        {"$sample": {"size": {"$param": "n"}}}, {"$project": {"_id": 0, "a": 1}}]})
    mongo = MongoConnection(settings=dataclasses.replace(mongo_db.settings, queries_dir=folder)).connect()
    mongo.collection("c").insert_many([{"a": 1}, {"a": 2}, {"a": 3}])
    assert len(list(mongo.query("some", {"n": 2}).find_all(paginate=False))) == 2


def test_pipeline_param_in_a_query_outside_match_goes_in_as_literal() -> None:
    """WRONG RESULT: README: "in a $match the value goes in as it is; in an expression as {"$literal": value}".
    But $graphLookup.restrictSearchWithMatch and $geoNear.query are queries too, and _fill treats everything
    outside $match as an expression: {"a": {"$literal": 1}} there is an unknown operator to MongoDB (or, on an
    engine that reads it as a document, matches nothing)."""
    import json

    from dbp.named import parse_pipeline

    named = parse_pipeline("g", json.dumps({"collection": "c", "columns": ["a"], "pipeline": [
        {"$graphLookup": {"from": "c", "startWith": "$a", "connectFromField": "a", "connectToField": "a",
                          "as": "g", "restrictSearchWithMatch": {"a": {"$param": "n"}}}},
        {"$geoNear": {"near": [0, 0], "distanceField": "d", "query": {"a": {"$param": "n"}}}}]}), "g.json")
    graph, near = named.bind({"n": 1})
    assert graph["$graphLookup"]["restrictSearchWithMatch"] == {"a": 1}
    assert near["$geoNear"]["query"] == {"a": 1}


def test_pipeline_cone_fails_whole_find_on_one_array_position(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                             tmp_path: Path) -> None:
    """WRONG RESULT: one document whose ra is an array ([10.0]) makes every $cone find/count on the pipeline an
    OperationError ($degreesToRadians on an array: the ra box matches array elements), while crossmatch on the
    same source skips that row as having no position. A row without a usable position should just not match."""
    _, m = _pair(sql_db, mongo_db, tmp_path, [{"id": 1, "ra": 10.0, "dec": 0.0}])
    m.db.collection("pts").insert_one({"id": 2, "ra": [10.0], "dec": 0.0})
    assert [x.row["id"] for x in m.crossmatch([("x", 10.0, 0.0)], 2.0, nearest=False)] == [1]
    assert [r["id"] for r in m.find_all({"$cone": {"ra": 10.0, "dec": 0.0, "radius": 2.0}}, paginate=False)] == [1]


def test_crossmatch_all_matches_on_a_table_whose_key_holds_a_percent(sql_db: SQLConnection, sql_settings: Any,
                                                                    tmp_path: Path) -> None:
    """WRONG RESULT (valid request refused): crossmatch(nearest=False) orders by `m.{key}` built with a bare
    sql.Identifier, without the %-escaping every other column reference gets (_q), so a primary key column
    named `k%s` is read by psycopg as one more placeholder ("14 placeholders but 13 parameters")."""
    from dbp.sql.connection import SQLConnection as Conn

    folder = tmp_path / "schema"
    folder.mkdir()
    (folder / "positions.toml").write_text('[pk_pct]\nra = "ra"\ndec = "dec"\n')
    sql_db.execute_raw('CREATE TABLE pk_pct ("k%s" int PRIMARY KEY, ra float8, dec float8)')
    sql_db.execute_raw("INSERT INTO pk_pct VALUES (1, 10.0, 0.0), (2, 10.0, 0.0)")
    db = Conn(settings=dataclasses.replace(sql_settings, schema_dir=folder)).connect()
    try:
        assert [m.row["k%s"] for m in db.query("pk_pct").crossmatch([("x", 10.0, 0.0)], 1.0, nearest=False)] == [1, 2]
    finally:
        db.close()


def test_keyless_named_source_crossmatch_ties_differ_between_engines(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                                    tmp_path: Path) -> None:
    """WRONG RESULT (engine difference): on a source without `-- key:`, SQL crossmatch orders ties by `_key()`
    (empty: ORDER BY 1 only), so nearest=True picks an arbitrary row (here id 3) where MongoDB, and SQL's own
    find_all sorted by $distance, break ties by every column (id 1)."""
    folder = _pipeline_folder(tmp_path, "pts_nk", {"collection": "pts", "columns": ["id", "ra", "dec"],
                                                   "position": ["ra", "dec"],
                                                   "pipeline": [{"$project": {"_id": 0, "id": 1, "ra": 1, "dec": 1}}]})
    mongo = MongoConnection(settings=dataclasses.replace(mongo_db.settings, queries_dir=folder)).connect()
    pts = [{"id": 3, "ra": 10.0, "dec": 0.0}, {"id": 1, "ra": 10.0, "dec": 0.0}, {"id": 2, "ra": 10.0, "dec": 0.0}]
    mongo.collection("pts").insert_many([dict(p) for p in pts])
    sql_db.execute_raw("CREATE TABLE pts (id int, ra float8, dec float8)")
    for p in pts:
        sql_db.execute_raw("INSERT INTO pts VALUES (%s, %s, %s)", [p["id"], p["ra"], p["dec"]])
    got = []
    for src in (sql_db.sql("-- position: ra, dec\nSELECT id, ra, dec FROM pts"), mongo.query("pts_nk")):
        got.append(([x.row["id"] for x in src.crossmatch([("x", 10.0, 0.0)], 1.0, nearest=True)],
                    [x.row["id"] for x in src.crossmatch([("x", 10.0, 0.0)], 1.0, nearest=False)]))
    assert got[0] == got[1]


# -- project-local servers -----------------------------------------------------------------------


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


def test_local_status_of_a_planted_folder_hangs_on_a_fifo(tmp_path: Path) -> None:
    """``python -m dbp local status`` on a .dbp folder another user planted must refuse it (as start does), not
    read its files: SQL status reads pg/postmaster.pid with a plain read_text(), so a planted FIFO there blocks
    the command for ever."""
    import os
    import subprocess
    import sys

    root = tmp_path / ".dbp"
    (root / "pg").mkdir(parents=True)
    os.mkfifo(root / "pg" / "postmaster.pid")
    for path in (root / "pg" / "postmaster.pid", root / "pg", root):
        os.chown(path, 65534, 65534)
    code = ("import sys\nfrom dbp.local import LocalServers\nfrom dbp.errors import DbpError\n"
            f"try:\n    LocalServers({str(root)!r}).status()\nexcept DbpError:\n    sys.exit(3)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], timeout=20, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail("status() blocked on a FIFO planted in another user's .dbp folder")
    assert done.returncode == 3, done.stderr.decode()[-500:]


@pytest.mark.slow
def test_local_parallel_commands_race_make_private_into_a_raw_error(tmp_path: Path) -> None:
    """RAW EXCEPTION: LocalServers._locked runs make_private(root) BEFORE taking .lock, so it lists and lstat()s /
    chmod()s the folder's entries while a parallel command that holds the lock writes its state with
    private_file (a temp file renamed over mongo.json): the entry vanishes between iterdir() and lstat() and the
    second command dies with FileNotFoundError. Here a thread plays the parallel start's private_file calls."""
    import threading
    import time

    from dbp.local import LocalServers, private_file

    root = tmp_path / ".dbp"
    servers = LocalServers(root)
    servers.stop()
    done = threading.Event()

    def parallel_start_writing_state() -> None:
        while not done.is_set():
            private_file(root / "mongo.json", "{}")

    thread = threading.Thread(target=parallel_start_writing_state)
    thread.start()
    raw: list[BaseException] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not raw:
            try:
                servers.stop()
            except DbpError:
                pass
            except Exception as exc:  # noqa: BLE001 - the finding
                raw.append(exc)
    finally:
        done.set()
        thread.join()
    assert not raw, f"{type(raw[0]).__name__}: {raw[0]}"
