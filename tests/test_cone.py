"""$cone, $distance and crossmatch on both engines, against a brute-force oracle (math only).

The oracle measures distances with unit vectors (atan2(|a x b|, a . b)), not with
the library's formula. Points cluster around centres that test the edges: ra
near 0 and 360 (Mongo's antimeridian, since its longitude is ra - 180), ra 180
(GeoJSON's usual antimeridian), dec +-89.99, at radii from 0.1 arcsec to 10 deg.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbp.errors import FilterError
from dbp.filters import parse
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sky import Cone, arcsec_to_degrees, arcsec_to_radians, box, separation
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from tests.hyp import examples

# -- the oracle ---------------------------------------------------------------------------------


def unit(ra: float, dec: float) -> tuple[float, float, float]:
    r, d = math.radians(ra), math.radians(dec)
    return math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)


def oracle_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Arcseconds between two positions, from unit vectors."""
    a, b = unit(ra1, dec1), unit(ra2, dec2)
    cross = (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    return math.degrees(math.atan2(math.sqrt(sum(c * c for c in cross)), dot)) * 3600.0


def oracle(points: list[tuple[int, float, float]], ra: float, dec: float, radius: float) -> dict[int, float]:
    out = {}
    for i, pra, pdec in points:
        d = oracle_distance(ra, dec, pra, pdec)
        if d <= radius:
            out[i] = d
    return out


def offset(ra: float, dec: float, distance: float, bearing: float) -> tuple[float, float]:
    """The position ``distance`` arcseconds from (ra, dec) towards ``bearing`` (radians)."""
    d = math.radians(distance / 3600.0)
    p1, l1 = math.radians(dec), math.radians(ra)
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(l2) % 360.0, math.degrees(p2)


CENTRES = [(0.00001, 10.0), (359.99999, -20.0), (180.0, 45.0), (10.68, 41.27), (123.4, 89.99), (300.0, -89.99),
           (0.0, 0.0)]
RADII = [0.1, 1.0, 2.0, 60.0, 3600.0, 36000.0]


def dataset(seed: int = 14, background: int = 1500, near: int = 12) -> list[tuple[int, float, float]]:
    rng = random.Random(seed)
    points = []
    for _ in range(background):  # uniform on the sphere
        points.append((rng.uniform(0.0, 360.0), math.degrees(math.asin(rng.uniform(-1.0, 1.0)))))
    for ra, dec in CENTRES:
        for radius in RADII:
            for _ in range(near):  # around the boundary of each cone, and well inside it
                distance = radius * rng.choice([rng.uniform(0.0, 1.0), rng.uniform(0.98, 1.02)])
                points.append(offset(ra, dec, distance, rng.uniform(0.0, 2 * math.pi)))
    return [(i, ra % 360.0, dec) for i, (ra, dec) in enumerate(points)]


# -- the engines, with positions declared by the user's schema folders --------------------------------

TABLE = """CREATE TABLE src (id integer PRIMARY KEY, ra double precision, dec double precision,
                             mag double precision, name text);
CREATE INDEX src_dec_ra ON src (dec, ra);"""


def lon(ra: float) -> float:
    value = (ra - 180.0 + 180.0) % 360.0 - 180.0
    return value if value < 180.0 else -180.0


class Sky:
    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.sql, self.mongo = sql, mongo
        self.q = {"sql": sql.query("src"), "mongo": mongo.query("src")}

    def load(self, points: list[tuple[int, float, float]]) -> None:
        rows = [{"id": i, "ra": ra, "dec": dec, "mag": float(i % 20), "name": f"s{i}"} for i, ra, dec in points]
        self.q["sql"].bulk_insert(rows)
        self.q["mongo"].bulk_insert([{"_id": r["id"], "loc": {"type": "Point", "coordinates": [lon(r["ra"]), r["dec"]]},
                                      "mag": r["mag"], "name": r["name"]} for r in rows])

    @staticmethod
    def key(engine: str) -> str:
        return "id" if engine == "sql" else "_id"


def schema_folders(root: Path) -> tuple[Path, Path]:
    sql_dir, mongo_dir = root / "sql", root / "mongo"
    (sql_dir / "schema").mkdir(parents=True)
    (sql_dir / "schema" / "01.sql").write_text(TABLE)
    (sql_dir / "positions.toml").write_text('[src]\nra = "ra"\ndec = "dec"\n')
    mongo_dir.mkdir()
    (mongo_dir / "collections.toml").write_text(
        '[[collection]]\nname = "src"\nposition = { point = "loc", ra_offset = -180 }\n'
        'indexes = [{ name = "loc", keys = [["loc", "2dsphere"]] }]\n')
    return sql_dir, mongo_dir


@pytest.fixture
def sky(sql_settings: SQLSettings, mongo_settings: MongoSettings, tmp_path: Path) -> Iterator[Sky]:
    sql_dir, mongo_dir = schema_folders(tmp_path)
    with SQLConnection(settings=dataclasses.replace(sql_settings, schema_dir=sql_dir)) as sql, \
            MongoConnection(settings=dataclasses.replace(mongo_settings, schema_dir=mongo_dir)) as mongo:
        sql.execute(TABLE)
        mongo.collection("src").create_index([("loc", "2dsphere")], name="loc")
        yield Sky(sql, mongo)


@pytest.fixture(scope="module")
def points() -> list[tuple[int, float, float]]:
    return dataset()


@pytest.fixture
def loaded(sky: Sky, points: list[tuple[int, float, float]]) -> Sky:
    sky.load(points)
    return sky


@pytest.fixture(params=["sql", "mongo"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def cone(ra: float, dec: float, radius: float) -> dict[str, Any]:
    return {"$cone": {"ra": ra, "dec": dec, "radius": radius}}


# -- every path equals the oracle ---------------------------------------------------------------------


def check_all_cones(q: Any, key: str, points: list[tuple[int, float, float]]) -> int:
    """Every centre at every radius: the same rows as the oracle, distances within 1 mas, nearest first."""
    checked = 0
    for ra, dec in CENTRES:
        for radius in RADII:
            want = oracle(points, ra, dec, radius)
            rows = q.find_all(cone(ra, dec, radius), sort=[("$distance", 1)], projection=[key, "$distance"],
                              paginate=False)
            got = {r[key]: r["distance"] for r in rows}
            assert set(got) == set(want), (ra, dec, radius, set(got) ^ set(want))
            assert all(abs(got[i] - want[i]) < 1e-3 for i in want), (ra, dec, radius)
            distances = [r["distance"] for r in q.find_all(cone(ra, dec, radius), sort=[("$distance", 1)],
                                                           projection=["$distance"], paginate=False)]
            assert distances == sorted(distances)
            assert q.count(cone(ra, dec, radius)) == len(want)
            checked += len(want)
    return checked


@pytest.mark.slow
def test_every_cone_equals_the_oracle(loaded: Sky, engine: str, points: list[tuple[int, float, float]]) -> None:
    checked = check_all_cones(loaded.q[engine], loaded.key(engine), points)
    assert checked > 500  # the clusters put rows in every cone


def test_cone_combines_with_other_operators(loaded: Sky, engine: str, points: list[tuple[int, float, float]]) -> None:
    q, key = loaded.q[engine], loaded.key(engine)
    mags = {i: float(i % 20) for i, _, _ in points}
    inside = oracle(points, 10.68, 41.27, 3600.0)
    got = {r[key] for r in q.find_all({**cone(10.68, 41.27, 3600.0), "mag": {"$lt": 5}}, paginate=False)}
    assert got == {i for i in inside if mags[i] < 5}
    either = {r[key] for r in q.find_all({"$or": [cone(10.68, 41.27, 60.0), cone(0.0, 0.0, 60.0)]}, paginate=False)}
    assert either == set(oracle(points, 10.68, 41.27, 60.0)) | set(oracle(points, 0.0, 0.0, 60.0))
    outside = q.count({"$not": cone(10.68, 41.27, 3600.0)})
    assert outside == len(points) - len(inside)
    sorted_by_mag = q.find_all(cone(10.68, 41.27, 3600.0), sort=[("mag", -1), ("$distance", 1)],
                               projection=[key, "mag", "$distance"], paginate=False)
    pairs = [(r["mag"], r["distance"]) for r in sorted_by_mag]
    assert pairs == sorted(pairs, key=lambda p: (-p[0], p[1]))
    page = q.paginate(cone(10.68, 41.27, 3600.0), page=2, per_page=3, sort=[("$distance", 1)],
                      projection=[key, "$distance"])
    ranked = sorted(inside.items(), key=lambda kv: kv[1])
    assert [r[key] for r in page.items] == [i for i, _ in ranked[3:6]]
    assert page.total == len(inside)
    keyset = q.paginate(cone(10.68, 41.27, 3600.0), per_page=7, sort=[("mag", 1)], keyset=True)
    seen = [r[key] for r in keyset.items]
    while keyset.has_next:
        keyset = q.paginate(cone(10.68, 41.27, 3600.0), per_page=7, sort=[("mag", 1)], after=keyset.next_token)
        seen += [r[key] for r in keyset.items]
    assert sorted(seen) == sorted(inside) and len(seen) == len(set(seen))
    first = q.find_one(cone(10.68, 41.27, 3600.0), sort=[("$distance", 1)], projection=[key, "$distance"])
    assert first is not None and first[key] == ranked[0][0]
    assert q.update(cone(0.0, 0.0, 60.0), {"mag": 99.0}) == len(oracle(points, 0.0, 0.0, 60.0))
    assert q.count({"mag": 99.0}) == len(oracle(points, 0.0, 0.0, 60.0))
    assert q.delete(cone(0.0, 0.0, 2.0)) == len(oracle(points, 0.0, 0.0, 2.0))
    assert q.count(cone(0.0, 0.0, 60.0)) == len(oracle(points, 0.0, 0.0, 60.0)) - len(oracle(points, 0.0, 0.0, 2.0))


def test_rows_without_a_position_never_match(sky: Sky, engine: str) -> None:
    q, key = sky.q[engine], sky.key(engine)
    q.bulk_insert([{key: 1, "name": "nowhere"}])
    assert q.count(cone(10.0, 10.0, 36000.0)) == 0
    assert q.count({"$not": cone(10.0, 10.0, 36000.0)}) == 1


# -- hostile input --------------------------------------------------------------------------------------

BAD_CONES: list[Any] = [
    {"ra": float("nan"), "dec": 0, "radius": 1}, {"ra": 0, "dec": float("inf"), "radius": 1},
    {"ra": 0, "dec": 90.5, "radius": 1}, {"ra": -1, "dec": 0, "radius": 1}, {"ra": 360.5, "dec": 0, "radius": 1},
    {"ra": 0, "dec": 0, "radius": -1}, {"ra": 0, "dec": 0, "radius": 0}, {"ra": 0, "dec": 0, "radius": 1e12},
    {"ra": True, "dec": 0, "radius": 1}, {"ra": "10", "dec": 0, "radius": 1}, {"ra": 0, "dec": 0},
    {"ra": 0, "dec": 0, "radius": 1, "unit": "deg"}, [0, 0, 1], "cone", None,
    {"ra": 0, "dec": 0, "radius": float("-inf")}, {"ra": None, "dec": 0, "radius": 1},
]


@pytest.mark.parametrize("spec", BAD_CONES)
def test_hostile_cones_are_refused(sky: Sky, engine: str, spec: Any) -> None:
    with pytest.raises(FilterError):
        sky.q[engine].find_one({"$cone": spec})


def test_distance_needs_one_cone_and_no_keyset(sky: Sky, engine: str) -> None:
    q = sky.q[engine]
    with pytest.raises(FilterError, match="exactly one"):
        q.find_one({"mag": 1}, sort=[("$distance", 1)])
    with pytest.raises(FilterError, match="exactly one"):
        q.find_one({"$or": [cone(1, 1, 1), cone(2, 2, 2)]}, projection=["$distance"])
    with pytest.raises(FilterError, match="keyset"):
        q.paginate(cone(1, 1, 1), sort=[("$distance", 1)], keyset=True)
    with pytest.raises(FilterError, match="array elements"):
        q.find_one({"tags": {"$elemMatch": cone(1, 1, 1)}})
    with pytest.raises(FilterError, match="twice"):
        q.find_one(cone(1, 1, 1), sort=[("$distance", 1), ("$distance", -1)])


def test_undeclared_positions_are_a_clear_error(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    sql_db.execute("CREATE TABLE plain (id int PRIMARY KEY)")
    with pytest.raises(FilterError, match="declares no position"):
        sql_db.query("plain").find_one(cone(1, 1, 1))
    with pytest.raises(FilterError, match="declares no position"):
        mongo_db.query("plain").find_one(cone(1, 1, 1))


@settings(max_examples=examples(200), deadline=None)
@given(st.dictionaries(st.sampled_from(["ra", "dec", "radius", "x"]),
                       st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=3), st.none()),
                       max_size=4))
def test_parse_cone_refuses_or_accepts_cleanly(spec: dict[str, Any]) -> None:
    """Anything is either a valid Cone or a FilterError (never another exception)."""
    try:
        node = parse({"$cone": spec})
    except FilterError:
        return
    assert isinstance(node, Cone)
    assert 0 <= node.ra < 360 and -90 <= node.dec <= 90 and 0 < node.radius <= 90 * 3600


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ra=st.floats(0, 360), dec=st.floats(-90, 90), radius=st.floats(0.01, 90 * 3600),
       extra=st.sampled_from([{}, {"mag": {"$gt": 3}}, {"name": {"$regex": "^s1"}}]))
@example(ra=0.5, dec=90.0, radius=0.015625, extra={})
def test_built_sql_runs_for_any_cone(sky: Sky, ra: float, dec: float, radius: float, extra: dict[str, Any]) -> None:
    """Whatever the cone, the statement built is valid and the box holds every row the cone holds."""
    q = sky.q["sql"]
    q.count({**cone(ra, dec, radius), **extra})
    q.find_one({**cone(ra, dec, radius), **extra}, sort=[("$distance", -1)], projection=["id", "$distance"])
    centre = Cone(ra % 360.0, dec, radius)
    bounds = box(centre)
    rng = random.Random(int(ra * 1000) ^ int(dec * 1000))
    for _ in range(50):
        pra, pdec = offset(centre.ra, dec, radius * rng.uniform(0, 0.999999), rng.uniform(0, 2 * math.pi))
        if oracle_distance(centre.ra, dec, pra, pdec) > radius:
            continue  # offset() rounds outside a tiny cone at a pole (it was 0.01567" for 0.015625")
        assert bounds.dec_min <= pdec <= bounds.dec_max
        assert not bounds.ra_ranges or any(lo <= pra <= hi for lo, hi in bounds.ra_ranges)


# -- units ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arcsec", "degrees"), [(1.0, 1 / 3600), (60.0, 1 / 60), (3600.0, 1.0)])
def test_units_in_one_place(sky: Sky, engine: str, arcsec: float, degrees: float) -> None:
    """1 arcsec, 1 arcmin, 1 degree: the conversions, and rows just inside / just outside on each engine."""
    assert arcsec_to_degrees(arcsec) == pytest.approx(degrees, rel=1e-15)
    assert arcsec_to_radians(arcsec) == pytest.approx(math.radians(degrees), rel=1e-15)
    assert separation(100.0, 10.0, 100.0, 10.0 + degrees) == pytest.approx(arcsec, rel=1e-9)
    q, key = sky.q[engine], sky.key(engine)
    rows = [(1, *offset(100.0, 10.0, arcsec * 0.999, 1.0)), (2, *offset(100.0, 10.0, arcsec * 1.001, 2.0))]
    sky.load(rows)
    assert [r[key] for r in q.find_all(cone(100.0, 10.0, arcsec), paginate=False)] == [1]


# -- crossmatch ------------------------------------------------------------------------------------------


def oracle_nearest(points: list[tuple[int, float, float]], positions: list[tuple[Any, float, float]],
                   radius: float) -> dict[Any, tuple[int, float]]:
    out = {}
    for pid, ra, dec in positions:
        found = oracle(points, ra, dec, radius)
        if found:
            best = min(found.items(), key=lambda kv: (kv[1], kv[0]))
            out[pid] = best
    return out


def crossmatch_positions(points: list[tuple[int, float, float]], n: int, seed: int) -> list[tuple[Any, float, float]]:
    rng = random.Random(seed)
    out: list[tuple[Any, float, float]] = []
    for k in range(n):
        _, ra, dec = rng.choice(points)
        out.append((f"p{k}", *offset(ra, dec, rng.uniform(0, 3.0), rng.uniform(0, 2 * math.pi))))
    return out


@pytest.mark.slow
def test_crossmatch_equals_the_oracle(loaded: Sky, engine: str, points: list[tuple[int, float, float]]) -> None:
    q, key = loaded.q[engine], loaded.key(engine)
    positions = [*crossmatch_positions(points, 400, 7), ("nowhere", 1.0, 1.0), ("pole", 10.0, 90.0)]
    want = oracle_nearest(points, positions, 2.0)
    matches = q.crossmatch(positions, 2.0, batch_size=150)
    assert {m.id: m.row[key] for m in matches} == {p: i for p, (i, _) in want.items()}
    assert all(abs(m.distance - want[m.id][1]) < 1e-3 for m in matches)
    assert [m.id for m in matches] == [p[0] for p in positions if p[0] in want]  # in the positions' order
    every = q.crossmatch(positions[:50], 60.0, nearest=False)
    for pid, ra, dec in positions[:50]:
        found = oracle(points, ra, dec, 60.0)
        mine = [(m.row[key], m.distance) for m in every if m.id == pid]
        assert {i for i, _ in mine} == set(found)
        assert [d for _, d in mine] == sorted(d for _, d in mine)
    bright = q.crossmatch(positions, 60.0, filter_by={"mag": {"$lt": 3}})
    assert all(m.row["mag"] < 3 for m in bright)


@pytest.mark.parametrize("bad", [[("a", 1.0)], [("a", 400.0, 0.0)], "abc", [("a", 0.0, float("nan"))], 5])
def test_crossmatch_refuses_bad_positions(sky: Sky, engine: str, bad: Any) -> None:
    with pytest.raises(FilterError):
        sky.q[engine].crossmatch(bad, 2.0)
    with pytest.raises(FilterError):
        sky.q[engine].crossmatch([("a", 1.0, 1.0)], -2.0)


# -- the bundled ALeRCE schema ------------------------------------------------------------------------------


def test_alerce_object_positions(sql_db: SQLConnection, mongo_db: MongoConnection) -> None:
    """object.meanra/meandec in SQL, loc (ra - 180) in Mongo, with the bundled declarations."""
    from dbp.mongo.documents import object_document
    from dbp.sql.admin import initdb

    initdb(sql_db)
    objects = [{"oid": f"ZTF{i}", "meanra": ra, "meandec": dec, "ndethist": 1, "ncovhist": 1, "mjdstarthist": 1.0,
                "mjdendhist": 1.0, "corrected": False, "stellar": False, "ndet": 1, "firstmjd": 1.0, "lastmjd": 1.0,
                "step_id_corr": "x"} for i, (ra, dec) in enumerate([(10.68, 41.27), (10.6805, 41.2701), (359.9999, 0.0),
                                                                    (0.0001, 0.0)])]
    sql_db.query("object").bulk_insert(objects)
    mongo_db.query("object").bulk_insert([object_document({"aid": o["oid"], "meanra": o["meanra"],
                                                           "meandec": o["meandec"]}) for o in objects])
    for q, key in ((sql_db.query("object"), "oid"), (mongo_db.query("object"), "_id")):
        near = q.find_all(cone(10.68, 41.27, 2.0), sort=[("$distance", 1)], projection=[key, "$distance"],
                          paginate=False)
        assert [r[key] for r in near] == ["ZTF0", "ZTF1"]
        across = {r[key] for r in q.find_all(cone(0.0, 0.0, 1.0), paginate=False)}
        assert across == {"ZTF2", "ZTF3"}  # across ra 0/360 (Mongo's antimeridian)


# -- q3c and the portable path: the same rows, both on an index ------------------------------------------


def skip_without_q3c(db: SQLConnection) -> None:
    """Skip unless q3c can be created here; CI's q3c leg (DBP_TEST_REQUIRE_Q3C=1) fails instead."""
    if db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'q3c'").fetchone() is None:
        if os.environ.get("DBP_TEST_REQUIRE_Q3C"):
            pytest.fail("DBP_TEST_REQUIRE_Q3C is set but this PostgreSQL has no q3c extension")
        pytest.skip("q3c is not installed on this PostgreSQL (CI installs postgresql-15-q3c on the system server)")


def explain_cone(q: Any, filter_by: dict[str, Any]) -> str:
    from dbp.sql import cone_run

    text, params = q._statement("select", parse(filter_by))
    return cone_run.explain(q, text, params)


def test_portable_path_uses_an_index(loaded: Sky) -> None:
    q = loaded.q["sql"]
    q.cone_path = "portable"
    loaded.sql.execute("ANALYZE src")
    for ra, dec in CENTRES:
        plan = explain_cone(q, cone(ra, dec, 2.0))
        assert "src_dec_ra" in plan and "Seq Scan" not in plan, plan
    from dbp.sql import cone_run

    text, params = cone_run.statement(q, [(1, 10.0, 10.0), (2, 359.9999, 0.0)], 2.0, True, parse(None))
    plan = cone_run.explain(q, text, params)
    assert "src_dec_ra" in plan and "Seq Scan on src" not in plan, plan


@pytest.fixture
def q3c(sky: Sky) -> Sky:
    skip_without_q3c(sky.sql)
    sky.sql.execute("CREATE EXTENSION IF NOT EXISTS q3c")
    sky.sql.execute("CREATE INDEX src_q3c ON src (q3c_ang2ipix(ra, dec))")
    return sky


def test_q3c_and_portable_paths_equal_the_oracle(q3c: Sky, points: list[tuple[int, float, float]]) -> None:
    q3c.load(points)
    q3c.sql.execute("ANALYZE src")
    q = q3c.sql.query("src")
    from dbp.sql import cone_run

    assert cone_run.path(q) == "q3c"
    for radius in (2.0, 60.0, 3600.0):  # q3c_join for every cone (q3c 2.0's q3c_radial_query misses rows)
        text, params = q._statement("select", parse(cone(10.68, 41.27, radius)))
        assert "q3c_join(" in text and "q3c_radial_query" not in text, text
        plan = cone_run.explain(q, text, params)
        assert "q3c_ang2ipix" in plan and "src_q3c" in plan and "Seq Scan" not in plan, plan
    check_all_cones(q, "id", points)
    from dbp.sql.query import SQLQuery

    portable = SQLQuery(q3c.sql, "src")  # db.query() gives one shared object per table
    portable.cone_path = "portable"
    for ra, dec in CENTRES:
        for radius in RADII:
            found = [list(query.find_all(cone(ra, dec, radius), sort=[("$distance", 1)],
                                         projection=["id", "$distance"], paginate=False)) for query in (q, portable)]
            assert found[0] == found[1]
    positions = crossmatch_positions(points, 300, 3)
    want = oracle_nearest(points, positions, 2.0)
    both = [[(m.id, m.row["id"], m.distance) for m in query.crossmatch(positions, 2.0)] for query in (q, portable)]
    assert both[0] == both[1]
    assert {p: i for p, i, _ in both[0]} == {p: i for p, (i, _) in want.items()}
    text, params = cone_run.statement(q, positions[:5], 2.0, True, parse(None))
    plan = cone_run.explain(q, text, params)
    assert "src_q3c" in plan and "Seq Scan on src" not in plan, plan


# -- the index migration -----------------------------------------------------------------------------------


def indexes(db: SQLConnection) -> set[str]:
    return {r["indexname"] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


@pytest.mark.parametrize("with_q3c", [False, True])
def test_the_index_migration_comes_after_initdb(sql_db: SQLConnection, with_q3c: bool) -> None:
    """initdb makes the ALeRCE catalog only; migrate adds the cone indexes (q3c ones only where q3c exists)."""
    from dbp.sql.admin import initdb
    from dbp.sql.migrations import migrate, rollback, status

    if with_q3c:
        skip_without_q3c(sql_db)
        sql_db.execute("CREATE EXTENSION q3c")
    report = initdb(sql_db)
    assert report.baseline == []  # nothing recorded as applied: the migration really runs later
    before = indexes(sql_db)
    assert "ix_object_meandec" in before and "ix_object_meandec_meanra" not in before
    assert [s.state for s in status(sql_db).migrations] == ["pending"]
    assert migrate(sql_db) == ["0001_cone_search_indexes"]
    added = indexes(sql_db) - before
    cone_indexes = {"ix_object_meandec_meanra", "ix_detection_dec_ra"}
    assert added == (cone_indexes | {"ix_object_q3c", "ix_detection_q3c"} if with_q3c else cone_indexes)
    sql_db.catalog(refresh=True)
    assert sql_cone_path(sql_db, "object") == ("q3c" if with_q3c else "portable")
    assert rollback(sql_db, steps=1) == ["0001_cone_search_indexes"]
    assert indexes(sql_db) == before


def sql_cone_path(db: SQLConnection, table: str) -> str:
    from dbp.sql import cone_run
    from dbp.sql.query import SQLQuery

    return cone_run.path(SQLQuery(db, table))


@pytest.mark.slow
def test_crossmatch_of_10000_positions_against_100000_objects(sky: Sky) -> None:
    """SQL (portable, and q3c where installed): every position's nearest match equals the oracle's.

    (On Mongo the same test runs at 400 positions: SecantusDB scans the collection for an $or of
    $geoWithin, see README.)
    """
    import bisect

    rng = random.Random(100)
    objects = [(i, rng.uniform(0.0, 360.0), math.degrees(math.asin(rng.uniform(-1.0, 1.0)))) for i in range(100_000)]
    sky.q["sql"].bulk_insert([{"id": i, "ra": ra, "dec": dec} for i, ra, dec in objects])
    sky.sql.execute("ANALYZE src")
    positions = crossmatch_positions(objects, 10_000, 5)
    by_dec = sorted(objects, key=lambda o: o[2])
    decs = [o[2] for o in by_dec]
    reach = 2.0 / 3600 + 1e-9
    want = {}
    for pid, ra, dec in positions:  # exact distances to every object in the dec band (|ddec| <= distance)
        band = by_dec[bisect.bisect_left(decs, dec - reach):bisect.bisect_right(decs, dec + reach)]
        found = [(oracle_distance(ra, dec, ora, odec), i) for i, ora, odec in band]
        found = [f for f in found if f[0] <= 2.0]
        if found:
            want[pid] = min(found)
    assert len(want) > 5000
    queries = [sky.q["sql"]]
    if sky.sql.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'q3c'").fetchone() is not None:
        from dbp.sql.query import SQLQuery

        sky.sql.execute("CREATE EXTENSION IF NOT EXISTS q3c")
        sky.sql.execute("CREATE INDEX src_q3c ON src (q3c_ang2ipix(ra, dec))")
        queries.append(SQLQuery(sky.sql, "src"))
        queries[-1].cone_path = "q3c"
    for q in queries:  # the portable path, and q3c where this server has it
        matches = q.crossmatch(positions, 2.0)
        assert {m.id: m.row["id"] for m in matches} == {p: i for p, (_, i) in want.items()}
        assert max(abs(m.distance - want[m.id][0]) for m in matches) < 1e-3


# -- concurrent and faulted ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_cones_and_crossmatches(loaded: Sky, engine: str, points: list[tuple[int, float, float]]) -> None:
    """Threads sharing one connection object (one session each) get the oracle's rows."""
    from concurrent.futures import ThreadPoolExecutor

    q, key = loaded.q[engine], loaded.key(engine)

    def one(k: int) -> bool:
        ra, dec = CENTRES[k % len(CENTRES)]
        radius = RADII[k % len(RADII)]
        got = {r[key] for r in q.find_all(cone(ra, dec, radius), paginate=False)}
        positions = crossmatch_positions(points, 8, k)
        matched = {m.id: m.row[key] for m in q.crossmatch(positions, 2.0)}
        return got == set(oracle(points, ra, dec, radius)) and matched == {
            p: i for p, (i, _) in oracle_nearest(points, positions, 2.0).items()}

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(one, range(8)))


def test_faults_are_clear_errors(sky: Sky, tmp_path: Path) -> None:
    from dbp.errors import ConfigError, DbpError
    from dbp.sql.query import SQLQuery

    forced = SQLQuery(sky.sql, "src")
    forced.cone_path = "q3c"
    if sky.sql.execute("SELECT 1 FROM pg_extension WHERE extname = 'q3c'").fetchone() is None:
        for radius in (1, 3600):
            with pytest.raises(DbpError, match="no q3c extension"):
                forced.find_one(cone(1, 1, radius))
    forced.cone_path = "fast"
    with pytest.raises(FilterError, match="cone_path"):
        forced.find_one(cone(1, 1, 1))
    positions = Path(sky.sql.settings.schema_dir or "") / "positions.toml"
    positions.write_text('[src]\nra = "ra"\ndec = "declination"\n')
    with pytest.raises(FilterError, match="declination"):
        SQLQuery(sky.sql, "src").find_one(cone(1, 1, 1))
    positions.write_text('[src]\nra = "ra"\n')
    with pytest.raises(ConfigError, match=r"positions\.toml"):
        SQLQuery(sky.sql, "src").find_one(cone(1, 1, 1))
    positions.write_text("[src\n")
    with pytest.raises(ConfigError, match=r"positions\.toml"):
        SQLQuery(sky.sql, "src").find_one(cone(1, 1, 1))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(positions=st.lists(st.tuples(st.one_of(st.integers(), st.text(max_size=5)), st.floats(0, 360),
                                    st.floats(-90, 90)), max_size=30),
       radius=st.floats(0.01, 90 * 3600), nearest=st.booleans(),
       extra=st.sampled_from([None, {"mag": {"$gt": 3}}, {"$or": [{"name": "s1"}, {"mag": None}]}]))
def test_built_crossmatch_runs_for_any_batch(sky: Sky, positions: list[tuple[Any, float, float]], radius: float,
                                             nearest: bool, extra: Any) -> None:
    """Whatever the batch, the statement runs and every match is within the radius, as the oracle measures it."""
    q = sky.q["sql"]
    if q.count() == 0:
        sky.load([(i, ra, dec) for i, ra, dec in dataset(seed=3, background=300, near=0)])
    rows = {r["id"]: r for r in q.find_all(paginate=False)}
    positions = [((k, pid), ra, dec) for k, (pid, ra, dec) in enumerate(positions)]  # ids may repeat: made unique
    by_id = {p[0]: p for p in positions}
    for match in q.crossmatch(positions, radius, nearest=nearest, filter_by=extra):
        position = by_id[match.id]
        row = rows[match.row["id"]]
        assert abs(oracle_distance(position[1] % 360, position[2], row["ra"], row["dec"]) - match.distance) < 1e-3
        assert match.distance <= radius


@pytest.mark.parametrize("position", ['"loc"', '{ point = "" }', '{ point = "loc", ra_offset = "x" }',
                                      '{ point = "loc", ra_offset = true }', '{ point = "nowhere" }',
                                      '{ point = "loc", unit = "deg" }'])
def test_bad_mongo_position_declarations(tmp_path: Path, position: str) -> None:
    from dbp.errors import ConfigError
    from dbp.mongo.schema import MongoSchema

    (tmp_path / "collections.toml").write_text(
        f'[[collection]]\nname = "src"\nfields = ["loc"]\nposition = {position}\n')
    with pytest.raises(ConfigError, match="position"):
        MongoSchema.load(tmp_path)


def test_the_bundled_declarations() -> None:
    from dbp.mongo.schema import MongoSchema

    spec = MongoSchema.load().collection("object")
    assert spec is not None and spec.position == ("loc", -180.0)
    from dbp._bundled import bundled
    from dbp.sql.cone_run import declarations as _declarations

    found = _declarations(bundled("sql/ztf"))
    assert (found["object"].ra, found["object"].dec) == ("meanra", "meandec")
    assert (found["detection"].ra, found["detection"].dec) == ("ra", "dec")


def test_mongo_cone_reads_use_the_2dsphere_index(loaded: Sky) -> None:
    """The aggregation's first $match is on the 2dsphere index (SecantusDB and mongod both say IXSCAN)."""
    import json

    from dbp.mongo import cone_run as mongo_cone_run

    q = loaded.q["mongo"]
    for filter_by in (cone(10.68, 41.27, 2.0), {**cone(0.0, 0.0, 60.0), "mag": {"$lt": 3}}):
        plan = json.dumps(mongo_cone_run.explain(q, parse(filter_by)), default=str)
        assert "IXSCAN" in plan and "2dsphere" in plan and "COLLSCAN" not in plan, plan[:2000]
