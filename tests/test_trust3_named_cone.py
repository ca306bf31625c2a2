"""Issue 20: internal names never collide with user columns (crossmatch, $distance), and cones on named queries."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings


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
