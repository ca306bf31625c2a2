"""The write paths against the raw drivers, measured in the same run on the same servers.

    python bench/bench_writes.py                 # 100,000 rows, 8 concurrent writers
    python bench/bench_writes.py --rows 20000 --writers 4 --engine sql

Prints ratios only (dbp's throughput over the raw driver's, best of three, the
runs taking turns): ``bulk_insert`` on a wide (detection-like, 14 columns) and a
narrow (5 columns) table against psycopg's own text COPY of the same tuples and
its binary COPY with ``set_types``, the merge path, and the
throughput of concurrent writers on overlapping keys beside a single writer's.
The servers and their data live in a temporary folder removed at the end,
also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import random
import shutil
import signal
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
from dbp.sql.connection import SQLConnection  # noqa: E402

WIDE = """
CREATE TABLE wide (candid bigint PRIMARY KEY, oid varchar NOT NULL, mjd double precision, fid integer,
    ra double precision, dec double precision, magpsf double precision, sigmapsf double precision,
    isdiffpos integer, rb double precision, rbversion varchar, corrected boolean, dubious boolean,
    has_stamp boolean);
CREATE TABLE narrow (id bigint PRIMARY KEY, oid varchar, fid integer, mag double precision, ok boolean);
"""


def wide_rows(n: int, offset: int = 0, tag: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(42 + offset)
    return [{
        "candid": offset + i, "oid": f"ZTF{(offset + i) % 5000:010d}", "mjd": 59000 + rng.random() * 1000,
        "fid": 1 + i % 2, "ra": rng.random() * 360, "dec": rng.random() * 180 - 90, "magpsf": 18 + rng.random(),
        "sigmapsf": rng.random() / 10, "isdiffpos": 1, "rb": float(tag), "rbversion": f"w{tag}",
        "corrected": False, "dubious": i % 7 == 0, "has_stamp": True,
    } for i in range(n)]


def narrow_rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "oid": f"ZTF{i:010d}", "fid": 1 + i % 2, "mag": 18.0 + i % 100 / 100, "ok": True}
            for i in range(n)]


def best(fn: Callable[[], Any], setup: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        setup()
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(what: str, against: str, ratio: float, target: str) -> None:
    print(f"  {what:<52} vs {against:<30} {ratio:6.2f}x   target {target}", flush=True)


def interleaved(runs: dict[str, Callable[[], Any]], setup: Callable[[], Any], repeat: int = 3) -> dict[str, float]:
    """Each run's best time of ``repeat``, the runs taking turns (so that a busy moment hits them alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            setup()
            gc.collect()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(found) for name, found in times.items()}


def bench_sql(db: SQLConnection, n: int) -> None:
    conn = db._conn
    assert conn is not None
    db.execute(WIDE)
    db.catalog(refresh=True)
    for table, rows, target in (("wide", wide_rows(n), ">= 0.9"), ("narrow", narrow_rows(n), ">= 0.85")):
        names = list(rows[0])
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        types = {r["attname"]: r["type"] for r in conn.execute(
            "SELECT attname, format_type(atttypid, NULL) AS type FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()}
        q = db.query(table)

        def truncate(table: str = table) -> None:
            db.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))

        def raw_copy(table: str = table, rows: list[dict[str, Any]] = rows, columns: sql.Composable = columns,
                     binary: bool = False, kinds: list[str] = [types[name] for name in names]) -> None:  # noqa: B006
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN{}").format(
                    sql.Identifier(table), columns, sql.SQL(" (FORMAT BINARY)" if binary else ""))) as copy:
                if binary:
                    copy.set_types(kinds)
                for row in rows:
                    copy.write_row(tuple(row.values()))

        print(f"bulk_insert of {n:,} rows into {table} ({len(rows[0])} columns), PostgreSQL")
        runs: dict[str, Callable[[], Any]] = {"text": raw_copy,
                                              "binary": lambda raw_copy=raw_copy: raw_copy(binary=True)}
        for mode in ("error", "ignore", "update"):
            runs[mode] = lambda mode=mode, q=q, rows=rows: q.bulk_insert(rows, on_conflict=mode)
        best_of = interleaved(runs, truncate)
        print(f"  raw text COPY: {n / best_of['text']:,.0f} rows/s; raw binary COPY (set_types): "
              f"{n / best_of['binary']:,.0f} rows/s")
        for mode in ("error", "ignore", "update"):
            report(f"bulk_insert(on_conflict={mode!r})", "raw psycopg text COPY", best_of["text"] / best_of[mode],
                   target)
            report(f"bulk_insert(on_conflict={mode!r})", "raw binary COPY (set_types)",
                   best_of["binary"] / best_of[mode], ">= 0.9")
        merge = best(lambda q=q, rows=rows: q.bulk_insert(rows, on_conflict="update"), lambda: None)
        report("bulk_insert('update'), every row exists (merge)", "raw psycopg text COPY", best_of["text"] / merge,
               "(shown)")
        truncate()


def bench_sql_bulk_update(db: SQLConnection, n: int) -> None:
    """bulk_update with operators against the hand-written UPDATE ... FROM unnest(...) it compiles to."""
    conn = db._conn
    assert conn is not None
    n = min(n, 10_000)
    db.execute("TRUNCATE wide")
    q = db.query("wide")
    q.bulk_insert(wide_rows(n))
    keys = list(range(n))
    attrs = [{"$inc": {"fid": 1}, "$set": {"rb": 0.5, "rbversion": "x"}} for _ in keys]

    def raw() -> None:  # the arrays built from the same dicts, as a hand-written version would
        conn.execute("UPDATE wide AS t SET fid = COALESCE(t.fid, 0) + v.a, rb = v.b, rbversion = v.c "
                     "FROM unnest(%s::bigint[], %s::integer[], %s::double precision[], %s::varchar[]) "
                     "AS v(k, a, b, c) WHERE t.candid = v.k",
                     (keys, [a["$inc"]["fid"] for a in attrs], [a["$set"]["rb"] for a in attrs],
                      [a["$set"]["rbversion"] for a in attrs]))

    raw_time = best(raw, lambda: None)
    ours = best(lambda: q.bulk_update([{"candid": k} for k in keys], attrs), lambda: None)
    print(f"bulk_update of {n:,} rows with $inc and $set (PostgreSQL)")
    report("bulk_update with operators", "raw UPDATE ... FROM unnest", raw_time / ours, ">= 0.9")


def bench_mongo_bulk_update(db: MongoConnection, n: int) -> None:
    from pymongo import UpdateOne

    n = min(n, 10_000)
    coll = db.collection("wide")
    coll.delete_many({})
    coll.insert_many([{"_id": r.pop("candid"), **r} for r in wide_rows(n)])
    q = db.query("wide")
    attrs = [{"$inc": {"fid": 1}, "$set": {"rb": 0.5, "rbversion": "x"}} for _ in range(n)]

    def raw() -> None:
        coll.bulk_write([UpdateOne({"_id": k}, {"$inc": {"fid": 1}, "$set": {"rb": 0.5, "rbversion": "x"}})
                         for k in range(n)], ordered=False)

    raw_time = best(raw, lambda: None)
    ours = best(lambda: q.bulk_update([{"_id": k} for k in range(n)], attrs), lambda: None)
    print(f"bulk_update of {n:,} documents with $inc and $set (MongoDB)")
    report("bulk_update with operators", "pymongo bulk_write(UpdateOne)", raw_time / ours, ">= 0.9")


def _writer(args: tuple[str, dict[str, Any], int, int, str]) -> float:
    engine, section, writer, n, mode = args
    rows = wide_rows(n, offset=writer * n // 2, tag=writer)
    if engine == "mongo":
        rows = [{"_id": r.pop("candid"), **r} for r in rows]
    random.Random(writer).shuffle(rows)
    with dbp.connect({engine.upper(): section}, engine=engine) as db:
        q = db.query("wide")
        start = time.perf_counter()
        q.bulk_insert(rows, on_conflict=mode)
        return time.perf_counter() - start


def bench_concurrent(engine: str, section: dict[str, Any], writers: int, n: int, clear: Callable[[], Any]) -> None:
    per = max(1, n // writers)
    print(f"{writers} concurrent writers, {per:,} overlapping rows each ({engine})")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(writers) as pool:
        for mode in ("ignore", "update"):
            clear()
            start = time.perf_counter()
            pool.map(_writer, [(engine, section, 0, per * writers, mode)])
            single = time.perf_counter() - start
            clear()
            start = time.perf_counter()
            pool.map(_writer, [(engine, section, w, per, mode) for w in range(writers)])
            together = time.perf_counter() - start
            rows = per * writers
            print(f"  {mode}: one writer {rows / single:,.0f} rows/s; {writers} writers "
                  f"{rows / together:,.0f} rows/s in all ({single / together:.2f}x)", flush=True)


def bench_mongo(db: MongoConnection, n: int) -> None:
    rows = [{"_id": r.pop("candid"), **r} for r in wide_rows(n)]
    coll = db.collection("wide")
    q = db.query("wide")
    print(f"bulk_insert of {n:,} documents (MongoDB)")

    def clear() -> None:
        coll.delete_many({})

    raw = best(lambda: coll.insert_many([dict(r) for r in rows], ordered=False), clear)
    ours = best(lambda: q.bulk_insert(rows, on_conflict="ignore"), clear)
    report("bulk_insert(on_conflict='ignore')", "raw insert_many(ordered=False)", raw / ours, ">= 0.9")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--engine", choices=["sql", "mongo", "all"], default="all")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dbp-bench-writes-"))
    servers = LocalServers(root)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # even if started with SIGINT ignored (a background job)
    engines = ["sql", "mongo"] if args.engine == "all" else [args.engine]
    try:
        config = servers.config(engines, database="bench")
        print(f"dbp {dbp.__version__}, Python {sys.version.split()[0]}, servers under {root}\n")
        if "sql" in engines:
            SQLConnection(config).create_db()
            with SQLConnection(config) as db:
                bench_sql(db, args.rows)
                bench_sql_bulk_update(db, args.rows)
                db.execute(WIDE.split(";")[0].replace("CREATE TABLE wide", "CREATE TABLE IF NOT EXISTS wide"))
                params = db.settings.params
                section = {"URL": f"postgresql://{params['user']}@/{params['dbname']}?host={params['host']}"
                                  f"&port={params['port']}"}
                bench_concurrent("sql", section, args.writers, args.rows // 2,
                                 lambda: db.execute("TRUNCATE wide"))
        if "mongo" in engines:
            with MongoConnection(config) as mongo:
                bench_mongo(mongo, min(args.rows, 50_000))
                bench_mongo_bulk_update(mongo, args.rows)
                section = {"URL": mongo.settings.host, "DATABASE": mongo.settings.database}
                bench_concurrent("mongo", section, args.writers, min(args.rows, 50_000) // 2,
                                 lambda: mongo.collection("wide").delete_many({}))
    except KeyboardInterrupt:
        print("interrupted; stopping the servers", file=sys.stderr)
    finally:
        servers.delete()  # also the data kept outside root (as root, PostgreSQL's)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
