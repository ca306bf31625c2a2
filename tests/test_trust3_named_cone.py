"""Issue 20: internal names never collide with user columns (crossmatch, $distance), and cones on named queries."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbp import ConfigError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.pagination import Pagination
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from tests.hyp import examples


def lon(ra: float) -> float:
    """The GeoJSON longitude of ``ra`` with ra_offset -180 (as tests/test_cone.py)."""
    value = ra % 360.0 - 180.0
    return value if value < 180.0 else -180.0

#: Column names dbp has used internally, and names close to them.
HOSTILE = ["_dbp_i", "_dbp_distance", "i", "l", "c", "s", "dlo", "dhi", "a1", "b1", "a2", "b2", "p", "m", "t", "q",
           "distance", "_dbp_distance_1", "_dbp_i_1", "n"]

TABLE = ("CREATE TABLE src (id integer PRIMARY KEY, ra double precision, dec double precision, "
         + ", ".join(f'"{c}" double precision' for c in HOSTILE) + ")")

#: (id, ra, dec): 14 degrees apart, then a pair 1 arcmin apart.
POINTS = [(1, 10.0, 10.0), (2, 10.0, 24.0), (3, 200.0, -30.0), (4, 200.0 + 1 / 60 / math.cos(math.radians(30)), -30.0)]


NAMED_SQL = """-- Sources with a tag, positions renamed.
-- key: id
-- position: pra, pdec
SELECT id, ra AS pra, dec AS pdec, "_dbp_i" AS tag, %(label)s::text AS label FROM src WHERE id >= %(least)s
"""


NAMED_PIPELINE: dict[str, Any] = {
    "collection": "src", "columns": ["id", "pra", "pdec", "tag", "label"], "key": ["id"], "position": ["pra", "pdec"],
    "pipeline": [{"$match": {"_id": {"$gte": {"$param": "least"}}}},
                 {"$project": {"_id": 0, "id": "$_id", "pra": "$ra", "pdec": "$dec", "tag": "$_dbp_i",
                               "label": {"$param": "label"}}}]}


class Engines:
    def __init__(self, sql: SQLConnection, mongo: MongoConnection, folder: Path) -> None:
        self.sql, self.mongo, self.folder = sql, mongo, folder

    def load(self) -> None:
        rows = []
        for i, ra, dec in POINTS:
            # every hostile column holds a value that would be read as a position's index or a distance
            rows.append({"id": i, "ra": ra, "dec": dec, **{c: float(len(POINTS) - i) for c in HOSTILE}})
        self.sql.query("src").bulk_insert(rows)
        self.mongo.collection("src").insert_many([
            {"_id": r["id"], "loc": {"type": "Point", "coordinates": [lon(r["ra"]), r["dec"]]}, "ra": r["ra"],
             "dec": r["dec"], **{c: r[c] for c in HOSTILE}} for r in rows])


@pytest.fixture
def engines(sql_settings: SQLSettings, mongo_settings: MongoSettings, tmp_path: Path) -> Iterator[Engines]:
    sql_dir, mongo_dir, queries = tmp_path / "sql", tmp_path / "mongo", tmp_path / "queries"
    for d in (sql_dir, mongo_dir, queries):
        d.mkdir()
    (sql_dir / "positions.toml").write_text('[src]\nra = "ra"\ndec = "dec"\n[lone]\nra = "ra"\ndec = "dec"\n')
    (mongo_dir / "collections.toml").write_text(
        '[[collection]]\nname = "src"\nposition = { point = "loc", ra_offset = -180 }\n'
        'indexes = [{ name = "loc", keys = [["loc", "2dsphere"]] }]\n')
    (queries / "tagged.sql").write_text(NAMED_SQL)
    (queries / "tagged.json").write_text(json.dumps(NAMED_PIPELINE))
    (queries / "plain.sql").write_text("SELECT id, ra, dec FROM src")
    (queries / "wrong.sql").write_text("-- position: ra, nope\nSELECT id, ra, dec FROM src")
    (queries / "three.sql").write_text("-- position: ra, dec, id\nSELECT id, ra, dec FROM src")
    with SQLConnection(settings=dataclasses.replace(sql_settings, schema_dir=sql_dir, queries_dir=queries)) as sql, \
            MongoConnection(settings=dataclasses.replace(mongo_settings, schema_dir=mongo_dir,
                                                         queries_dir=queries)) as mongo:
        sql.execute(TABLE)
        mongo.collection("src").create_index([("loc", "2dsphere")], name="loc")
        engines = Engines(sql, mongo, queries)
        engines.load()
        yield engines


@pytest.fixture(params=["sql", "mongo"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _key(engine: str) -> str:
    return "id" if engine == "sql" else "_id"


# -- item 10: internal names never collide ------------------------------------------------------------------


@pytest.mark.parametrize("nearest", [True, False])
def test_crossmatch_with_user_columns_named_like_dbps_own(engines: Engines, engine: str, nearest: bool) -> None:
    q = engines.sql.query("src") if engine == "sql" else engines.mongo.query("src")
    positions = [("far", 10.0, 24.0), ("near", 10.0, 10.0), ("none", 100.0, 0.0), ("pair", 200.0, -30.0)]
    found = q.crossmatch(positions, 120.0, nearest=nearest)
    got = [(m.id, m.row[_key(engine)], round(m.distance, 6)) for m in found]
    want = [("far", 2, 0.0), ("near", 1, 0.0), ("pair", 3, 0.0)] + ([] if nearest else [("pair", 4, 60.0)])
    assert got == want
    for m in found:  # the row is the table's, every hostile column intact
        assert {c: m.row[c] for c in HOSTILE} == {c: float(len(POINTS) - m.row[_key(engine)]) for c in HOSTILE}


def test_a_lone_dbp_i_column_does_not_move_matches(engines: Engines) -> None:
    """The issue's case: a table with its own _dbp_i had a row 14 degrees away at distance 0."""
    db = engines.sql
    db.execute("CREATE TABLE lone (id integer PRIMARY KEY, ra double precision, dec double precision, "
               "_dbp_i integer)")
    db.query("lone").bulk_insert([{"id": 1, "ra": 10.0, "dec": 10.0, "_dbp_i": 1},
                                  {"id": 2, "ra": 10.0, "dec": 24.0, "_dbp_i": 0}])
    found = db.query("lone").crossmatch([("a", 10.0, 10.0), ("b", 10.0, 24.0)], 5.0)
    assert [(m.id, m.row, m.distance) for m in found] == [
        ("a", {"id": 1, "ra": 10.0, "dec": 10.0, "_dbp_i": 1}, 0.0),
        ("b", {"id": 2, "ra": 10.0, "dec": 24.0, "_dbp_i": 0}, 0.0)]


def test_distance_with_user_columns_named_like_dbps_own(engines: Engines, engine: str) -> None:
    q = engines.sql.query("src") if engine == "sql" else engines.mongo.query("src")
    cone = {"$cone": {"ra": 200.0, "dec": -30.0, "radius": 120.0}}
    rows = list(q.find_all(cone, sort=[("$distance", -1)], paginate=False))
    assert [r[_key(engine)] for r in rows] == [4, 3]
    assert all(r[c] == float(len(POINTS) - r[_key(engine)]) for r in rows for c in HOSTILE)
    projected = list(q.find_all(cone, sort=[("$distance", 1)], projection=[_key(engine), "_dbp_distance",
                                                                           "$distance"], paginate=False))
    assert [(r[_key(engine)], r["_dbp_distance"], round(r["distance"], 6)) for r in projected] == [
        (3, 1.0, 0.0), (4, 0.0, 60.0)]


# -- item 21: cones on named queries ------------------------------------------------------------------------




def test_cone_distance_and_crossmatch_on_a_named_query(engines: Engines, engine: str) -> None:
    db: Any = engines.sql if engine == "sql" else engines.mongo
    source = db.query("tagged", {"label": "x", "least": 2})
    cone = {"$cone": {"ra": 200.0, "dec": -30.0, "radius": 120.0}}
    assert source.count(cone) == 2
    assert [r["id"] for r in source.find_all(cone, sort=[("$distance", -1)], paginate=False)] == [4, 3]
    rows = list(source.find_all({**cone, "tag": {"$lt": 1.0}}, sort=[("$distance", 1)],
                                projection=["id", "label", "$distance"], paginate=False))
    assert [(r["id"], r["label"], round(r["distance"], 6)) for r in rows] == [(4, "x", 60.0)]
    streamed = list(source.find_all(cone, sort=[("$distance", 1)], projection=["id", "$distance"], paginate=False,
                                    batch_size=1))
    assert [r["id"] for r in streamed] == [3, 4]
    page = source.paginate(cone, sort=[("$distance", 1)], per_page=1, page=2, projection=["id", "$distance"])
    assert isinstance(page, Pagination) and [r["id"] for r in page.items] == [4] and page.total == 2
    assert source.find_one(cone, sort=[("$distance", 1)]) == {"id": 3, "pra": 200.0, "pdec": -30.0, "tag": 1.0,
                                                              "label": "x"}
    found = source.crossmatch([("a", 10.0, 24.0), ("b", 10.0, 10.0), ("c", 200.0, -30.0)], 120.0, nearest=False)
    assert [(m.id, m.row["id"], round(m.distance, 6)) for m in found] == [("a", 2, 0.0), ("c", 3, 0.0),
                                                                         ("c", 4, 60.0)]
    assert found[0].row == {"id": 2, "pra": 10.0, "pdec": 24.0, "tag": 2.0, "label": "x"}
    assert db.query("tagged", {"label": "x", "least": 4}).count(cone) == 1
    assert db.query("tagged", {"label": "x", "least": 2}).count({"$not": cone}) == 1
    either = {"$or": [cone, {"$cone": {"ra": 10.0, "dec": 24.0, "radius": 1.0}}]}
    assert [r["id"] for r in db.query("tagged", {"label": "x", "least": 1}).find_all(either, paginate=False)] == [
        2, 3, 4]
    assert db.query("tagged", {"label": "x", "least": 1}).crossmatch([("pole", 0.0, 90.0)], 3600.0) == []
    if engine == "sql":
        forced = db.query("tagged", {"label": "x", "least": 2})
        forced.cone_path = "portable"
        assert forced.count(cone) == 2


def test_inline_sql_declares_its_position_the_same_way(engines: Engines) -> None:
    inline = engines.sql.sql("-- position: ra, dec\nSELECT id, ra, dec FROM src")
    assert inline.count({"$cone": {"ra": 10.0, "dec": 10.0, "radius": 1.0}}) == 1
    bare = engines.sql.sql("SELECT id, ra, dec FROM src")
    with pytest.raises(FilterError, match=r"^inline SQL declares no position for \$cone / crossmatch; add a line "
                                          r"'-- position: <ra column>, <dec column>' to the comments that open "
                                          r"the statement$"):
        bare.count({"$cone": {"ra": 10.0, "dec": 10.0, "radius": 1.0}})


def test_a_named_sql_query_without_a_position_is_refused_clearly(engines: Engines) -> None:
    source = engines.sql.query("plain")
    for call in (lambda: source.count({"$cone": {"ra": 1.0, "dec": 1.0, "radius": 1.0}}),
                 lambda: source.crossmatch([(1, 1.0, 1.0)], 1.0)):
        with pytest.raises(FilterError, match=r"^plain declares no position for \$cone / crossmatch; add a line "
                                              r"'-- position: <ra column>, <dec column>' to the comments that open "
                                              r".*plain\.sql$"):
            call()
    with pytest.raises(ConfigError, match=r"wrong\.sql: the -- position: line names nope, which is not an output "
                                          r"column \(id, ra, dec\)"):
        engines.sql.query("wrong")
    with pytest.raises(ConfigError, match=r"three\.sql: -- position: names two output columns, ra then dec"):
        engines.sql.query("three")


def test_a_named_pipeline_without_a_position_is_refused_clearly(engines: Engines, tmp_path: Path) -> None:
    plain = {k: v for k, v in NAMED_PIPELINE.items() if k != "position"}
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "plain.json").write_text(json.dumps(plain))
    (folder / "odd.json").write_text(json.dumps({**plain, "position": ["pra", "nope"]}))
    settings = dataclasses.replace(engines.mongo.settings, queries_dir=folder)
    with MongoConnection(settings=settings) as mongo:
        source = mongo.query("plain", {"least": 0, "label": "x"})
        cone = {"$cone": {"ra": 1.0, "dec": 1.0, "radius": 1.0}}
        for call in (lambda: source.count(cone), lambda: list(source.find_all({"$not": cone}, paginate=False)),
                     lambda: source.find_one(cone, sort=[("$distance", 1)]),
                     lambda: source.crossmatch([(1, 1.0, 1.0)], 1.0)):
            with pytest.raises(FilterError, match=r'^plain declares no position for \$cone / crossmatch; add '
                                                  r'"position": \["<ra column>", "<dec column>"\] to .*plain\.json$'):
                call()
        with pytest.raises(ConfigError, match=r'odd\.json: position is \["ra column", "dec column"\], two of the '
                                              r'columns \(in degrees\)'):
            mongo.query("odd", {"least": 0, "label": "x"})


_NAMES = st.one_of(st.sampled_from([*HOSTILE, "doc", "ra_1", "id_1", "_dbp_distance_2"]),
                   st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1,
                           max_size=15))


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_NAMES, min_size=1, max_size=4, unique_by=lambda n: n.encode()[:63]))
def test_any_column_names_beside_a_position(engines: Engines, names: list[str]) -> None:
    """Whatever the other columns are called, crossmatch and $distance see the right rows, intact."""
    names = [n for n in names if n not in ("id", "ra", "dec", "pra", "pdec")]
    with engines.sql.connection() as conn:
        quoted = [sql.Identifier(n).as_string(conn).replace("%", "%%") for n in names]
    extra = "".join(f", id * 10 + {k} AS {q}" for k, q in enumerate(quoted))
    inline = engines.sql.sql(f"-- key: id\n-- position: ra, dec\nSELECT id, ra, dec{extra} FROM src")
    found = inline.crossmatch([("a", 10.0, 24.0), ("b", 200.0, -30.0)], 120.0, nearest=False)
    assert [(m.id, m.row["id"], round(m.distance, 6)) for m in found] == [("a", 2, 0.0), ("b", 3, 0.0), ("b", 4, 60.0)]
    assert all(m.row == {"id": m.row["id"], "ra": m.row["ra"], "dec": m.row["dec"],
                         **{n: m.row["id"] * 10 + k for k, n in enumerate(names)}} for m in found)
    cone = {"$cone": {"ra": 200.0, "dec": -30.0, "radius": 120.0}}
    rows = list(inline.find_all(cone, sort=[("$distance", -1)], paginate=False))
    assert [[r["id"], *(r[n] for n in names)] for r in rows] == [[i, *(i * 10 + k for k in range(len(names)))]
                                                                  for i in (4, 3)]
    fields = [n for n in names if not n.startswith("$") and "." not in n and n != "loc"]
    coll = engines.mongo.collection("src")
    coll.delete_many({})
    coll.insert_many([{"_id": i, "loc": {"type": "Point", "coordinates": [lon(ra), dec]},
                       **{n: i * 10 + k for k, n in enumerate(fields)}} for i, ra, dec in POINTS])
    docs = list(engines.mongo.query("src").find_all(cone, sort=[("$distance", -1)], paginate=False))
    assert docs == [{"_id": i, "loc": {"type": "Point", "coordinates": [lon(ra), dec]},
                     **{n: i * 10 + k for k, n in enumerate(fields)}} for i, ra, dec in (POINTS[3], POINTS[2])]
    # a field named "distance" cannot be projected beside $distance (which is returned under that name)
    shown = [n for n in fields if n != "distance"][:1]
    projected = list(engines.mongo.query("src").find_all(cone, sort=[("$distance", 1)],
                                                         projection=["_id", *shown, "$distance"], paginate=False))
    k = fields.index(shown[0]) if shown else 0
    assert [(r["_id"], *(r[n] for n in shown), round(r["distance"], 6)) for r in projected] == [
        (3, *(30 + k for _ in shown), 0.0), (4, *(40 + k for _ in shown), 60.0)]
