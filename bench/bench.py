"""dbp against the raw drivers, measured in the same run on the same servers.

    python bench/bench.py                 # default sizes: a few minutes on 2 cores
    python bench/bench.py --full          # 100,000 rows, 1,000,000 objects, page 1,000, 2,000 calls
    python bench/bench.py --rows 5000 --objects 20000 --calls 200 --engine sql

It starts its own local servers in a fresh temporary folder (``--local-dir``
to choose one), and always stops them and removes the data it wrote, also
when interrupted (Ctrl-C, SIGTERM). Every figure is a ratio against its
baseline from this run, never an absolute target; SQLAlchemy (the path
db-plugins takes) is measured when installed (``pip install -e '.[bench]'``).
Targets are printed beside the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dbp  # noqa: E402
from dbp.admin import initdb  # noqa: E402
from dbp.errors import DbpError  # noqa: E402
from dbp.local import LocalServers  # noqa: E402
from dbp.mongo.connection import MongoConnection  # noqa: E402
from dbp.mongo.documents import detection_document  # noqa: E402
from dbp.sql.connection import SQLConnection  # noqa: E402

RESULTS: list[tuple[str, str, float, str]] = []


def report(what: str, against: str, ratio: float, target: str) -> None:
    RESULTS.append((what, against, ratio, target))
    print(f"  {what:<44} vs {against:<34} {ratio:6.2f}x   target {target}", flush=True)


def best(fn: Callable[[], Any], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed runs (the least disturbed by the machine)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def detections(n: int, objects: int) -> list[dict[str, Any]]:
    rng = random.Random(42)
    rows = []
    for i in range(n):
        rows.append({
            "candid": 1_000_000_000 + i, "oid": f"ZTF{(i % objects):010d}", "mjd": 59000 + rng.random() * 1000,
            "fid": 1 + i % 2, "pid": rng.random() * 1e9, "diffmaglim": 20 + rng.random(), "isdiffpos": 1,
            "nid": i % 1000, "ra": rng.random() * 360, "dec": rng.random() * 180 - 90, "magpsf": 18 + rng.random(),
            "sigmapsf": rng.random() / 10, "magap": None, "sigmagap": None, "distnr": rng.random(),
            "rb": rng.random(), "rbversion": "t17", "drb": rng.random(), "drbversion": "d06", "magapbig": None,
            "sigmagapbig": None, "rfid": 100 + i % 50, "magpsf_corr": None, "sigmapsf_corr": None,
            "sigmapsf_corr_ext": None, "corrected": False, "dubious": False, "parent_candid": None,
            "has_stamp": True, "step_id_corr": "bench",
        })
    return rows


# -- PostgreSQL ------------------------------------------------------------------------------


def bench_sql_bulk(db: SQLConnection, rows: list[dict[str, Any]], objects: int) -> None:
    print(f"bulk insert of {len(rows):,} detection rows (PostgreSQL)")
    db.query("object").bulk_insert([{"oid": f"ZTF{i:010d}"} for i in range(objects)])
    columns = list(rows[0])
    conn = db._conn  # the same session for every contender
    assert conn is not None
    q = db.query("detection")

    def truncate() -> None:
        db.execute("TRUNCATE detection CASCADE")

    def raw_copy() -> None:
        with conn.cursor() as cur, cur.copy(f"COPY detection ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row.values()))

    def raw_executemany() -> None:
        marks = ", ".join(["%s"] * len(columns))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO detection ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                            [tuple(r.values()) for r in rows])

    def timed(fn: Callable[[], Any]) -> float:
        def run() -> None:
            truncate()
            with conn.transaction():
                fn()
        return best(run)

    copy_time = timed(raw_copy)
    print(f"  raw COPY: {len(rows) / copy_time:,.0f} rows/s")
    for mode in ("error", "ignore", "update"):
        ours = timed(lambda mode=mode: q.bulk_insert(rows, on_conflict=mode))  # type: ignore[misc]
        report(f"bulk_insert(on_conflict={mode!r}) throughput", "raw psycopg COPY", copy_time / ours,
               ">= 0.8" if mode == "error" else "(shown)")
    merge_times = []  # every row is there already: the COPY-into-a-temporary-table and merge path
    for _ in range(3):
        truncate()
        with conn.transaction():
            raw_copy()
        start = time.perf_counter()
        q.bulk_insert(rows, on_conflict="ignore")
        merge_times.append(time.perf_counter() - start)
    report("bulk_insert('ignore'), every row a duplicate", "raw psycopg COPY", copy_time / min(merge_times),
           "(shown)")
    many = timed(raw_executemany)
    report("psycopg executemany throughput", "raw psycopg COPY", copy_time / many, "(shown)")
    try:
        import sqlalchemy as sa
        from sqlalchemy.dialects.postgresql import insert
    except ImportError:
        print("  (SQLAlchemy not installed: pip install -e '.[bench]' to compare with db-plugins' path)")
    else:
        from dbp.sql.ledger import yoyo_url

        engine = sa.create_engine(yoyo_url(db.settings))
        table = sa.Table("detection", sa.MetaData(), autoload_with=engine)

        def alchemy() -> None:
            with engine.begin() as sa_conn:
                sa_conn.execute(insert(table).on_conflict_do_nothing(), rows)

        def run_alchemy() -> None:
            truncate()
            alchemy()

        report("SQLAlchemy insert().on_conflict_do_nothing()", "raw psycopg COPY",
               copy_time / best(run_alchemy), "(shown)")
        engine.dispose()
    truncate()


def per_call(raw: Callable[[int], Any], ours: Callable[[int], Any], calls: int, rounds: int = 7) -> float:
    """Median over rounds of ours/raw time per call; the two alternate call by call, so drift hits both."""
    clock = time.perf_counter
    ratios = []
    for _ in range(rounds):
        raw_time = our_time = 0.0
        for i in range(calls):
            start = clock()
            raw(i)
            middle = clock()
            ours(i)
            end = clock()
            raw_time += middle - start
            our_time += end - middle
        ratios.append(our_time / raw_time)
    return statistics.median(ratios)


def bench_sql_calls(db: SQLConnection, calls: int) -> None:
    print(f"per call, {calls:,} calls x 7 rounds (PostgreSQL)")
    conn = db._conn
    assert conn is not None
    oids = [f"ZTF{i:010d}" for i in range(min(calls, 1000))]
    q = db.query("object")
    q.bulk_insert([{"oid": o} for o in oids])

    def raw_find(i: int) -> Any:
        return conn.execute("SELECT * FROM object WHERE oid = %s LIMIT 1", (oids[i % len(oids)],)).fetchone()

    report("find_one", "psycopg SELECT ... LIMIT 1", per_call(raw_find, lambda i: db.query("object").find_one(
        {"oid": oids[i % len(oids)]}), calls), "<= 1.15")

    def raw_get_or_create(i: int) -> Any:
        oid = oids[i % len(oids)]
        row = conn.execute("INSERT INTO object (oid, ndet) VALUES (%s, %s) ON CONFLICT (oid) DO NOTHING RETURNING *",
                           (oid, 1)).fetchone()
        if row is None:
            row = conn.execute("SELECT * FROM object WHERE oid = %s LIMIT 1", (oid,)).fetchone()
        return row

    report("get_or_create (existing row)", "psycopg INSERT ON CONFLICT + SELECT",
           per_call(raw_get_or_create, lambda i: db.query("object").get_or_create({"oid": oids[i % len(oids)]},
                                                                                   ndet=1), calls), "<= 1.15")


def bench_sql_paginate(db: SQLConnection, objects: int, page: int, per_page: int) -> None:
    print(f"paginate page {page:,} ({per_page} per page) over {objects:,} objects (PostgreSQL)")
    db.execute("TRUNCATE object CASCADE")
    db.execute("INSERT INTO object (oid, ndet) SELECT 'ZTF' || lpad(g::text, 10, '0'), g %% 100 "
               "FROM generate_series(1, %s) AS g", (objects,))
    db.execute("ANALYZE object")
    _paginate(db.query("object"), page, per_page)


def _paginate(q: Any, page: int, per_page: int, repeat: int = 5) -> None:
    first = best(lambda: q.paginate({}, page=1, per_page=per_page, count=False), repeat)
    offset = best(lambda: q.paginate({}, page=page, per_page=per_page, count=False), repeat)
    # A token holds the position, not the page size: one big keyset page lands exactly before page `page`.
    token = q.paginate({}, per_page=(page - 1) * per_page, keyset=True).next_token
    keyset = best(lambda: q.paginate({}, per_page=per_page, after=token), repeat)
    check = q.paginate({}, per_page=per_page, after=token).items
    assert check == q.paginate({}, page=page, per_page=per_page, count=False).items, "keyset != offset page"
    report(f"keyset page {page:,}", "page 1", keyset / first, "<= 3")
    report(f"offset page {page:,}", "page 1", offset / first, "(shown)")


# -- MongoDB ---------------------------------------------------------------------------------


def bench_mongo(db: MongoConnection, rows: list[dict[str, Any]], calls: int, objects: int, page: int,
                per_page: int) -> None:
    print(f"bulk insert of {len(rows):,} detections (MongoDB)")
    docs = [detection_document(r) for r in rows]  # candid as _id, survey fields under extra_fields
    indexes = db.collection("detection").index_information()

    def fresh() -> Any:
        """An empty collection with detection's indexes (drop, not delete_many: no tombstones)."""
        coll = db.collection("detection")
        coll.drop()
        for name, info in indexes.items():
            if name != "_id_":
                coll.create_index(info["key"], name=name)
        return coll

    def raw() -> float:
        coll, copies = fresh(), [dict(d) for d in docs]
        start = time.perf_counter()
        coll.insert_many(copies, ordered=False)
        return time.perf_counter() - start

    def ours() -> float:
        fresh()
        start = time.perf_counter()
        db.query("detection").bulk_insert(docs)  # copies the dicts itself, inside the timing
        return time.perf_counter() - start

    raw_times, our_times = [], []
    for _ in range(3):  # interleaved, so that both see the same server state
        raw_times.append(raw())
        our_times.append(ours())
    print(f"  raw insert_many: {len(docs) / min(raw_times):,.0f} docs/s")
    report("bulk_insert throughput", "raw insert_many(ordered=False)", min(raw_times) / min(our_times), ">= 0.9")
    fresh()

    print(f"per call, {calls:,} calls x 7 rounds (MongoDB)")
    objects_coll = db.collection("object")
    ids = [f"AL{i:010d}" for i in range(min(calls, 1000))]
    objects_coll.insert_many([{"_id": i, "ndet": 1} for i in ids])
    report("find_one", "pymongo find_one", per_call(
        lambda i: objects_coll.find_one({"_id": ids[i % len(ids)]}),
        lambda i: db.query("object").find_one({"_id": ids[i % len(ids)]}), calls), "<= 1.15")
    from pymongo import ReturnDocument

    report("get_or_create (existing document)", "pymongo find_one_and_update upsert", per_call(
        lambda i: objects_coll.find_one_and_update({"_id": ids[i % len(ids)]}, {"$setOnInsert": {"ndet": 1}},
                                                   upsert=True, return_document=ReturnDocument.AFTER),
        lambda i: db.query("object").get_or_create({"_id": ids[i % len(ids)]}, ndet=1), calls), "<= 1.15")

    print(f"paginate page {page:,} ({per_page} per page) over {objects:,} objects (MongoDB)")
    objects_coll.delete_many({})
    batch = 100_000
    for start in range(0, objects, batch):
        objects_coll.insert_many([{"_id": f"AL{i:010d}", "ndet": i % 100}
                                  for i in range(start, min(objects, start + batch))], ordered=False)
    _paginate(db.query("object"), page, per_page, repeat=3)


# -- start-up ---------------------------------------------------------------------------------


def bench_startup() -> None:
    print("start-up (median of 7 runs, a fresh interpreter each)")

    def run(*args: str) -> float:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    bare = run("-c", "pass")
    imported = run("-c", "import dbp")
    helped = run("-m", "dbp", "--help")
    print(f"  python itself: {bare * 1000:.0f} ms")
    RESULTS.append(("import dbp", "python -c pass", imported * 1000, "<= 150 ms (absolute)"))
    print(f"  {'import dbp':<44} {imported * 1000:6.0f} ms  ({(imported - bare) * 1000:.0f} ms over bare python)"
          "   target <= 150 ms")
    RESULTS.append(("python -m dbp --help", "", helped * 1000, "<= 300 ms (absolute)"))
    print(f"  {'python -m dbp --help':<44} {helped * 1000:6.0f} ms   target <= 300 ms")


#: Sizes: the defaults finish in a few minutes on 2 cores; --full is the published run.
SIZES = {"rows": 20_000, "objects": 100_000, "page": 100, "calls": 500}
FULL_SIZES = {"rows": 100_000, "objects": 1_000_000, "page": 1000, "calls": 2000}


class Stopped(SystemExit):
    """A termination signal arrived: unwind, so that the servers are stopped and the data removed."""


def _stop(signum: int, frame: Optional[FrameType]) -> None:
    raise Stopped(128 + signum)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="the large sizes: 100,000 rows, 1,000,000 objects, page 1,000, 2,000 calls")
    parser.add_argument("--rows", type=int, help=f"detections for bulk_insert ({SIZES['rows']:,})")
    parser.add_argument("--objects", type=int, help=f"objects for paginate ({SIZES['objects']:,})")
    parser.add_argument("--page", type=int, help=f"the deep page ({SIZES['page']:,})")
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--calls", type=int, help=f"calls per round for per-call ratios ({SIZES['calls']:,})")
    parser.add_argument("--engine", choices=["sql", "mongo", "all"], default="all")
    parser.add_argument("--local-dir", default=None,
                        help="where the local servers keep their data (default: a new temporary folder); "
                        "removed afterwards if the bench created it")
    args = parser.parse_args(argv)
    for name, value in (FULL_SIZES if args.full else SIZES).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    root = Path(args.local_dir).resolve() if args.local_dir else Path(tempfile.mkdtemp(prefix="dbp-bench-"))
    owned = args.local_dir is None or not root.exists()
    servers = LocalServers(root)
    try:
        run(args, servers)
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print("\nbench: terminated", file=sys.stderr)
        return int(stop.code or 1)
    finally:
        cleanup(servers, root, owned)
    return 0


def cleanup(servers: LocalServers, root: Path, owned: bool) -> None:
    """Stop the servers, and remove their data if this run created the folder; a second signal waits."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    try:
        stopped = servers.stop()
        for pid in _leftovers(root):  # a server interrupted while starting has no pid file yet
            _terminate(pid)
    finally:
        if owned:
            with contextlib.suppress(DbpError):
                servers.delete()  # also the data kept outside root (as root, PostgreSQL's)
            shutil.rmtree(root, ignore_errors=True)
    removed = f"; removed {root}" if owned else f"; kept {root} (it existed before)"
    print(f"bench: stopped {', '.join(stopped) or 'no'} server(s){removed}", file=sys.stderr, flush=True)


def _leftovers(root: Path) -> list[int]:
    """Processes whose command line names our data folder: servers this run started."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in command and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _terminate(pid: int) -> None:
    from dbp.local import wait_gone

    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        if wait_gone(pid, 10):
            return


def run(args: argparse.Namespace, servers: LocalServers) -> None:
    engines = ["sql", "mongo"] if args.engine == "all" else [args.engine]
    config = servers.config(engines, database="bench")
    print(f"dbp {dbp.__version__}, Python {sys.version.split()[0]}, servers under {servers.root}\n", flush=True)
    rows = detections(args.rows, max(1, args.rows // 20))
    if "sql" in engines:
        SQLConnection(config).drop_db()
        SQLConnection(config).create_db()
        initdb(config, ["sql"])
        with SQLConnection(config) as db:
            bench_sql_bulk(db, rows, max(1, args.rows // 20))
            bench_sql_calls(db, args.calls)
            bench_sql_paginate(db, args.objects, args.page, args.per_page)
    if "mongo" in engines:
        with MongoConnection(config) as mongo:
            mongo.drop_db()
        initdb(config, ["mongo"])
        with MongoConnection(config) as mongo:
            bench_mongo(mongo, rows, args.calls, args.objects, args.page, args.per_page)
    bench_startup()


if __name__ == "__main__":
    sys.exit(main())
