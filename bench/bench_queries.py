"""Named queries against hand-written statements on the raw drivers, measured in the same run.

    python bench/bench_queries.py                          # 1,000,000 objects (SQL), 2,000 (Mongo)
    python bench/bench_queries.py --objects 20000 --deep-page 100

Each object gets 0-5 probabilities. Figures:

- ``paginate`` of the bundled ``object_list`` (the alerts API object list) against
  the same statements written by hand and run through raw psycopg (target <= 1.1x);
- keyset page ``--deep-page`` against keyset page 1 (target <= 3x);
- the pipeline's ``paginate`` against the same stages run through raw pymongo, and
  its deep keyset page against its first (reported, no target: the local
  MongoDB-compatible server scans the collection for every aggregation).

The script starts its own local servers in a temporary folder (``--local-dir`` to
choose one) and removes them at the end; it prints the figures and never fails on them.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from psycopg import sql  # noqa: E402

import dbp  # noqa: E402
from dbp.local import LocalServers  # noqa: E402
from dbp.mongo.connection import MongoConnection  # noqa: E402
from dbp.mongo.pipeline import PipelineSource  # noqa: E402
from dbp.sql import admin as sql_admin  # noqa: E402
from dbp.sql.connection import SQLConnection  # noqa: E402

CLASSES = ("SN", "AGN", "VS", "asteroid", "bogus")
PARAMS = {"classifier": "lc_classifier", "ranking": 1}
FILTER = {"class_name": "SN", "probability": {"$gte": 0.5}, "ndet": {"$gte": 2}}
SORT = [("probability", -1)]

#: The statements paginate runs, as one would write them by hand (same rows, same order).
COLUMNS = """
SELECT o.oid, o.ndet, o.firstmjd, o.lastmjd, o.meanra, o.meandec, o.sigmara, o.sigmadec, o.corrected, o.stellar,
       p.classifier_name, p.classifier_version, p.class_name, p.probability, p.ranking"""
JOIN = """
FROM object AS o
LEFT JOIN probability AS p ON p.oid = o.oid AND p.classifier_name = %s AND p.ranking = %s
     AND p.classifier_version = (SELECT max(v.classifier_version COLLATE "C") FROM probability AS v
                                 WHERE v.oid = o.oid AND v.classifier_name = p.classifier_name)
WHERE p.class_name = %s AND p.probability >= %s AND o.ndet >= %s
"""
RAW_PAGE = sql.SQL(COLUMNS + JOIN + """ORDER BY p.probability DESC NULLS LAST, o.oid,
         p.classifier_version COLLATE "C" NULLS FIRST, p.class_name COLLATE "C" NULLS FIRST
LIMIT %s OFFSET %s""")
RAW_COUNT = sql.SQL("SELECT count(*) AS n FROM (SELECT 1 {} LIMIT %s) AS matched").format(sql.SQL(JOIN))
#: A light request: a few objects by oid, no total (dbp's own time shows most here).
FEW_JOIN = """
FROM object AS o
LEFT JOIN probability AS p ON p.oid = o.oid AND p.classifier_name = %s AND p.ranking = %s
     AND p.classifier_version = (SELECT max(v.classifier_version COLLATE "C") FROM probability AS v
                                 WHERE v.oid = o.oid AND v.classifier_name = p.classifier_name)
WHERE o.oid = ANY(%s)
ORDER BY o.oid, p.classifier_version COLLATE "C" NULLS FIRST, p.class_name COLLATE "C" NULLS FIRST
LIMIT %s"""
RAW_FEW = sql.SQL(COLUMNS + FEW_JOIN)


def pair(ours: Callable[[], Any], theirs: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """The median of ``repeat`` timed runs of each, interleaved (so that a busy machine slows both alike)."""
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, kept in ((ours, times[0]), (theirs, times[1])):
            gc.collect()
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def line(what: str, against: str, timings: tuple[float, float], target: float = 0.0) -> None:
    ours, theirs = timings
    ratio = ours / theirs
    verdict = f"target <= {target:g}x  {'ok' if ratio <= target else 'OVER'}" if target else "(reported)"
    print(f"  {what:<40} {ours * 1000:9.2f} ms  vs {against:<30} {theirs * 1000:9.2f} ms  "
          f"{ratio:5.2f}x  {verdict}", flush=True)


def objects(n: int, seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    rows, probs = [], []
    for i in range(n):
        oid = f"ZTF{rng.choice('0123456789')}{i:09d}"
        rows.append((oid, rng.randint(1, 50), 59000 + rng.randint(0, 999) / 4, None, rng.uniform(0, 360),
                     rng.uniform(-90, 90), 0.1, 0.1, False, False))
        classes = rng.sample(CLASSES, rng.randint(0, 5))
        for rank, name in enumerate(classes, 1):
            probs.append((oid, name, "lc_classifier", "1.0", round(rng.random(), 2), rank))
    return rows, probs


def load_sql(db: SQLConnection, n: int) -> None:
    rows, probs = objects(n, 1)
    sql_admin.initdb(db)
    with db.connection() as conn, conn.cursor() as cur:
        with cur.copy("COPY object (oid, ndet, firstmjd, lastmjd, meanra, meandec, sigmara, sigmadec, corrected, "
                      "stellar) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        with cur.copy("COPY probability (oid, class_name, classifier_name, classifier_version, probability, "
                      "ranking) FROM STDIN") as copy:
            for prob in probs:
                copy.write_row(prob)
        cur.execute("ANALYZE object")
        cur.execute("ANALYZE probability")
    print(f"PostgreSQL: {len(rows):,} objects, {len(probs):,} probabilities", flush=True)


def load_mongo(db: MongoConnection, n: int) -> None:
    rows, probs = objects(n, 2)
    by_oid: dict[str, list[dict[str, Any]]] = {}
    for oid, name, classifier, version, probability, ranking in probs:
        by_oid.setdefault(oid, []).append({"class_name": name, "classifier_name": classifier,
                                           "classifier_version": version, "probability": probability,
                                           "ranking": ranking})
    fields = ("ndet", "firstmjd", "lastmjd", "meanra", "meandec", "sigmara", "sigmadec", "corrected", "stellar")
    docs = [{"_id": r[0], "oid": [r[0]], **dict(zip(fields, r[1:])), "probabilities": by_oid.get(r[0], [])}
            for r in rows]
    db.collection("object").insert_many(docs)
    print(f"MongoDB: {len(docs):,} objects, {len(probs):,} probabilities", flush=True)


def walk_to(source: Any, page: int, per_page: int, sort: Any = None) -> tuple[str, int]:
    """The token of keyset page ``page`` (or of the last page, if there are fewer), and its number."""
    current = source.paginate(per_page=per_page, sort=sort, keyset=True)
    token, number = None, 1
    while number < page and current.has_next:
        token, number = current.next_token, number + 1
        current = current.next()
    assert token is not None, "too few rows for a second page"
    return token, number


def bench_sql(config: Any, args: argparse.Namespace) -> None:
    with SQLConnection(config) as db:
        load_sql(db, args.objects)
        source = db.query("object_list", PARAMS)
        with db.connection() as conn:
            raw = conn

            def raw_paginate() -> tuple[list[Any], int]:
                values = [PARAMS["classifier"], PARAMS["ranking"], "SN", 0.5, 2]
                items = raw.execute(RAW_PAGE, [*values, args.per_page, 2 * args.per_page]).fetchall()
                total = raw.execute(RAW_COUNT, [*values, 50000]).fetchone()
                return items, total["n"] if total else 0

            def dbp_paginate() -> Any:
                return db.query("object_list", PARAMS).paginate(FILTER, page=3, per_page=args.per_page, sort=SORT)

            ours = dbp_paginate()
            items, total = raw_paginate()
            assert (ours.items, ours.total) == (items, total), "dbp and the hand-written SQL differ"
            print(f"  (page 3 of {total:,} matching rows, {args.per_page} a page)")
            line("paginate(object_list), page 3 + total", "hand-written SQL, raw psycopg",
                 pair(dbp_paginate, raw_paginate, args.calls), 1.1)

            few = [row["oid"] for row in source.paginate(per_page=5, count=False).items]

            def raw_few() -> list[Any]:
                return raw.execute(RAW_FEW, [PARAMS["classifier"], PARAMS["ranking"], few, 21]).fetchall()

            def dbp_few() -> Any:
                return db.query("object_list", PARAMS).paginate({"oid": {"$in": few}}, per_page=20, count=False)

            assert dbp_few().items == raw_few()[:20], "dbp and the hand-written SQL differ"
            line("paginate(object_list), 5 oids, no total", "hand-written SQL, raw psycopg",
                 pair(dbp_few, raw_few, args.calls), 1.1)

        token, number = walk_to(source, args.deep_page, args.per_page)

        def first() -> Any:
            return db.query("object_list", PARAMS).paginate(per_page=args.per_page, keyset=True)

        def deep() -> Any:
            return db.query("object_list", PARAMS).paginate(per_page=args.per_page, after=token)

        line(f"keyset page {number:,} (by the key)", "keyset page 1", pair(deep, first, args.calls), 3.0)
        line(f"offset page {number:,} (by the key)", "keyset page 1",
             pair(lambda: source.paginate(page=number, per_page=args.per_page, count=False), first, args.calls))
        # ndet has 50 values and no (ndet, oid) index: each page sorts a 20,000-row tie group, so walk 50 pages
        by_ndet, number = walk_to(source, min(args.deep_page, 50), args.per_page, [("ndet", 1)])
        line(f"keyset page {number:,} (by ndet, many ties)", "keyset page 1", pair(
            lambda: source.paginate(per_page=args.per_page, sort=[("ndet", 1)], after=by_ndet),
            lambda: source.paginate(per_page=args.per_page, sort=[("ndet", 1)], keyset=True), args.calls))


def bench_mongo(config: Any, args: argparse.Namespace) -> None:
    with MongoConnection(config) as db:
        load_mongo(db, args.mongo_objects)
        source = db.query("object_list", PARAMS)
        assert isinstance(source, PipelineSource)
        stages = source.stages
        collection = db.collection("object")
        match = {"class_name": "SN", "probability": {"$gte": 0.5}, "ndet": {"$gte": 2}}
        order = {"probability": -1, "oid": 1, "classifier_version": 1, "class_name": 1}

        def raw_paginate() -> tuple[list[Any], int]:
            items = list(collection.aggregate([*stages, {"$match": match}, {"$sort": order},
                                               {"$skip": 2 * args.per_page}, {"$limit": args.per_page}]))
            counted = list(collection.aggregate([*stages, {"$match": match}, {"$limit": 50000}, {"$count": "n"}]))
            return items, counted[0]["n"] if counted else 0

        def dbp_paginate() -> Any:
            return db.query("object_list", PARAMS).paginate(FILTER, page=3, per_page=args.per_page, sort=SORT)

        line("paginate(object_list) pipeline, page 3", "the same stages, raw pymongo",
             pair(dbp_paginate, raw_paginate, args.calls))
        token, number = walk_to(source, args.deep_page, args.per_page)
        line(f"pipeline keyset page {number:,}", "pipeline keyset page 1", pair(
            lambda: source.paginate(per_page=args.per_page, after=token),
            lambda: source.paginate(per_page=args.per_page, keyset=True), args.calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects in PostgreSQL (1,000,000)")
    parser.add_argument("--mongo-objects", type=int, default=2000, help="objects in MongoDB (2,000)")
    parser.add_argument("--deep-page", type=int, default=1000, help="the deep keyset page (1,000)")
    parser.add_argument("--per-page", type=int, default=20)
    parser.add_argument("--calls", type=int, default=15, help="timed calls per figure (the median is kept)")
    parser.add_argument("--engine", choices=["sql", "mongo", "both"], default="both")
    parser.add_argument("--local-dir", default=None, help="where the local servers keep their data")
    args = parser.parse_args()
    root = Path(args.local_dir) if args.local_dir else Path(tempfile.mkdtemp(prefix="dbp-bench-queries-"))
    servers = LocalServers(root)
    engines = ["sql", "mongo"] if args.engine == "both" else [args.engine]
    print(f"dbp {dbp.__version__}, Python {sys.version.split()[0]}", flush=True)
    try:
        config = servers.config(engines, database="bench_queries")
        if "sql" in engines:
            SQLConnection(config).drop_db()
            SQLConnection(config).create_db()
            bench_sql(config, args)
        if "mongo" in engines:
            MongoConnection(config).drop_db()
            bench_mongo(config, args)
    finally:
        if args.local_dir:
            servers.stop()
        else:
            servers.delete()
        print(f"bench: stopped {', '.join(engines)} server(s)", flush=True)


if __name__ == "__main__":
    main()
