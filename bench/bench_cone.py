"""Cone search and crossmatch, measured in one run on the same data.

    python bench/bench_cone.py                      # 1,000,000 objects, 10,000 positions, local PostgreSQL 18
    python bench/bench_cone.py --sql-url postgresql://postgres@127.0.0.1:5432/postgres   # a server with q3c too
    python bench/bench_cone.py --objects 20000 --positions 200 --mongo-objects 5000      # tiny

Prints ratios only, each against its baseline from this run: a 2 arcsec cone
(dbp's ``find_all``) against a full-scan distance filter over the same table
(raw psycopg), crossmatch of N positions against N single cones, and, where
the server has q3c, the portable path against q3c. On Mongo (SecantusDB, a
smaller collection) the cone against a full-scan ``$expr`` distance filter.
A database made on ``--sql-url`` is dropped at the end; local servers and
their data are removed, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dbp  # noqa: E402
from dbp.config import resolve_config  # noqa: E402
from dbp.filters import parse  # noqa: E402
from dbp.local import LocalServers  # noqa: E402
from dbp.mongo import cone as mongo_cone  # noqa: E402
from dbp.mongo.connection import MongoConnection  # noqa: E402
from dbp.sky import Cone  # noqa: E402
from dbp.sql import cone as sql_cone  # noqa: E402
from dbp.sql import cone_run as sql_cone_run  # noqa: E402
from dbp.sql.connection import SQLConnection  # noqa: E402
from dbp.sql.query import SQLQuery  # noqa: E402

RADIUS = 2.0


def report(what: str, against: str, ratio: float, target: str) -> None:
    print(f"  {what:<46} vs {against:<40} {ratio:9.1f}x   target {target}", flush=True)


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sky(n: int, seed: int) -> list[tuple[int, float, float]]:
    rng = random.Random(seed)
    return [(i, rng.uniform(0.0, 360.0), math.degrees(math.asin(rng.uniform(-1.0, 1.0)))) for i in range(n)]


def near(objects: list[tuple[int, float, float]], n: int, seed: int) -> list[tuple[Any, float, float]]:
    """Positions within a few arcseconds of random objects (most have a match)."""
    rng = random.Random(seed)
    out: list[tuple[Any, float, float]] = []
    for k in range(n):
        _, ra, dec = rng.choice(objects)
        dec2 = max(-90.0, min(90.0, dec + rng.uniform(-1.5, 1.5) / 3600))
        out.append((k, (ra + rng.uniform(-1.5, 1.5) / 3600 / max(0.01, math.cos(math.radians(dec)))) % 360.0, dec2))
    return out


def cone_rows(q: Any, ra: float, dec: float) -> list[Any]:
    """A cone search as an API serves one: a page of up to 1,000 rows, one statement."""
    page = q.paginate({"$cone": {"ra": ra, "dec": dec, "radius": RADIUS}}, per_page=1000, count=False)
    return list(page.items)


def scans(plan: str) -> str:
    """The plan's scan nodes, repeated ones counted."""
    found: dict[str, int] = {}
    for line in plan.splitlines():
        if "Scan" in line:
            node = line.strip().lstrip("-> ").split("  (")[0]
            found[node] = found.get(node, 0) + 1
    return " / ".join(f"{n} x {node}" if n > 1 else node for node, n in found.items())


def folders(root: Path) -> tuple[Path, Path]:
    sql_dir, mongo_dir = root / "sql", root / "mongo"
    sql_dir.mkdir(parents=True)
    (sql_dir / "positions.toml").write_text('[obj]\nra = "ra"\ndec = "dec"\n')
    mongo_dir.mkdir()
    (mongo_dir / "collections.toml").write_text(
        '[[collection]]\nname = "obj"\nposition = { point = "loc", ra_offset = -180 }\n')
    return sql_dir, mongo_dir


def bench_sql(db: SQLConnection, objects: int, positions: int, cones: int) -> None:
    data = sky(objects, 1)
    db.execute("CREATE TABLE obj (id bigint PRIMARY KEY, ra double precision, dec double precision)")
    start = time.perf_counter()
    db.query("obj").bulk_insert([{"id": i, "ra": ra, "dec": dec} for i, ra, dec in data])
    db.execute("CREATE INDEX obj_dec_ra ON obj (dec, ra)")
    q3c = db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'q3c'").fetchone() is not None
    if q3c:
        db.execute("CREATE EXTENSION IF NOT EXISTS q3c")
        db.execute("CREATE INDEX obj_q3c ON obj (q3c_ang2ipix(ra, dec))")
    db.execute("ANALYZE obj")
    print(f"sql: {objects:,} objects loaded and indexed in {time.perf_counter() - start:.1f} s; "
          f"q3c {'present' if q3c else 'absent: the portable path only'}")
    centres = [(ra, dec) for _, ra, dec in near(data, cones, 2)]
    # the baseline: a full scan computing each row's distance, through psycopg
    portable = SQLQuery(db, "obj")
    portable.cone_path = "portable"
    distance_sql = sql_cone._distance(portable._q("ra"), portable._q("dec"), sql_cone._P, sql_cone._P, sql_cone._P)
    from psycopg import sql

    full = sql.SQL("SELECT * FROM obj WHERE {} <= %s").format(distance_sql)
    with db.connection() as conn:
        full_text = full.as_string(conn)

    def full_scan(ra: float, dec: float) -> list[Any]:
        lam, c, s = Cone(ra, dec, RADIUS).trig
        return db.execute_raw(full_text, [lam, c, s, lam, s, c, lam, RADIUS]).fetchall()

    n_scans = max(2, min(5, cones // 20))
    full_time = statistics.median(timed(lambda ra=ra, dec=dec: full_scan(ra, dec)) for ra, dec in centres[:n_scans])
    paths = {"portable": portable}
    if q3c:
        paths["q3c"] = SQLQuery(db, "obj")
        paths["q3c"].cone_path = "q3c"
    cone_time: dict[str, float] = {}
    for name, q in paths.items():
        for ra, dec in centres[:5]:  # warm up; the rows must equal the full scan's
            got = sorted(r["id"] for r in cone_rows(q, ra, dec))
            assert got == sorted(r["id"] for r in full_scan(ra, dec)), (name, ra, dec)

        def cones_run(q: SQLQuery = q) -> None:
            for ra, dec in centres:
                cone_rows(q, ra, dec)

        cone_time[name] = min(timed(cones_run) for _ in range(3)) / len(centres)
        report(f"{RADIUS:g}\" cone, {name} path ({objects:,} objects)", "a full-scan distance filter (psycopg)",
               full_time / cone_time[name], ">= 100x")
    targets = near(data, positions, 3)
    match_time: dict[str, float] = {}
    for name, q in paths.items():
        match_time[name] = min(timed(lambda q=q: q.crossmatch(targets, RADIUS)) for _ in range(2))

        def singles(q: SQLQuery = q) -> None:
            for _, ra, dec in targets:
                q.find_one({"$cone": {"ra": ra, "dec": dec, "radius": RADIUS}}, sort=[("$distance", 1)])

        single_time = timed(singles)
        report(f"crossmatch of {positions:,}, {name} path", f"{positions:,} single cones (find_one)",
               single_time / match_time[name], "reported")
    if q3c:
        report("q3c cone", "the portable path's cone (slowdown)", cone_time["portable"] / cone_time["q3c"], "<= 3x")
        report("q3c crossmatch", "the portable path's crossmatch (slowdown)",
               match_time["portable"] / match_time["q3c"], "<= 3x")
        plan = sql_cone_run.explain(paths["q3c"], *paths["q3c"]._statement(
            "select", parse({"$cone": {"ra": 10.0, "dec": 10.0, "radius": RADIUS}})))
        print("  q3c plan:", scans(plan))
    plan = sql_cone_run.explain(portable, *portable._statement(
        "select", parse({"$cone": {"ra": 10.0, "dec": 10.0, "radius": RADIUS}})))
    print("  portable plan:", scans(plan))


def bench_mongo(mongo: MongoConnection, objects: int, cones: int) -> None:
    data = sky(objects, 1)
    collection = mongo.collection("obj")
    collection.create_index([("loc", "2dsphere")], name="loc")
    q = mongo.query("obj")
    q.bulk_insert([{"_id": i, "loc": {"type": "Point", "coordinates": [(ra + 180.0) % 360.0 - 180.0, dec]}}
                   for i, ra, dec in data])
    centres = [(ra, dec) for _, ra, dec in near(data, cones, 2)]

    def full_scan(ra: float, dec: float) -> list[Any]:
        assert q.position is not None
        expression = mongo_cone.distance_expression(Cone(ra, dec, RADIUS), q.position)
        return list(collection.find({"$expr": {"$lte": [expression, RADIUS]}}))

    full_time = statistics.median(timed(lambda ra=ra, dec=dec: full_scan(ra, dec)) for ra, dec in centres[:2])

    def cones_run() -> None:
        for ra, dec in centres:
            cone_rows(q, ra, dec)

    cone_time = timed(cones_run) / len(centres)
    print(f"mongo: {objects:,} documents")
    report(f"{RADIUS:g}\" cone ({objects:,} documents)", "a full-scan $expr distance filter (pymongo)",
           full_time / cone_time, "reported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--cones", type=int, default=200, help="single cones timed per path")
    parser.add_argument("--mongo-objects", type=int, default=50_000, help="0: no Mongo measurement")
    parser.add_argument("--sql-url", help="a PostgreSQL server to use (a database is made and dropped on it)")
    parser.add_argument("--local-dir", help="where local servers live (default: a fresh temporary folder)")
    args = parser.parse_args()
    root = Path(args.local_dir) if args.local_dir else Path(tempfile.mkdtemp(prefix="dbp-bench-cone-"))
    owned = not root.exists() or not any(root.iterdir())
    root.mkdir(parents=True, exist_ok=True)
    sql_dir, mongo_dir = folders(Path(tempfile.mkdtemp(prefix="dbp-bench-cone-schema-")))
    servers = LocalServers(root / "servers")
    engines = (["sql"] if not args.sql_url else []) + (["mongo"] if args.mongo_objects else [])

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # even if started with SIGINT ignored (a background job)
    sql_db = None
    try:
        config = servers.config(engines, database="bench") if engines else None
        print(f"dbp {dbp.__version__}, Python {sys.version.split()[0]}\n")
        if args.sql_url:
            base = resolve_config({"SQL": {"URL": args.sql_url}}, environ={}).settings("sql")
            settings = base.with_database(f"dbp_bench_cone_{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]
        else:
            assert config is not None
            settings = SQLConnection(config).settings
        sql_db = SQLConnection(settings=dataclasses.replace(settings, schema_dir=sql_dir))
        sql_db.create_db()
        with sql_db:
            bench_sql(sql_db, args.objects, args.positions, args.cones)
        if args.mongo_objects:
            assert config is not None
            mongo_settings = MongoConnection(config).settings
            with MongoConnection(settings=dataclasses.replace(mongo_settings, schema_dir=mongo_dir)) as mongo:
                bench_mongo(mongo, args.mongo_objects, max(5, args.cones // 10))
    except KeyboardInterrupt:
        print("bench: interrupted; stopping", file=sys.stderr)
        sys.exit(130)
    finally:
        if args.sql_url and sql_db is not None:
            sql_db.close()
            sql_db.drop_db()
        servers.stop()
        shutil.rmtree(sql_dir.parent, ignore_errors=True)
        if owned:
            servers.delete()  # also the data kept outside root (as root, PostgreSQL's)
            shutil.rmtree(root, ignore_errors=True)
        print("bench: done; servers stopped", flush=True)


if __name__ == "__main__":
    main()
