"""One night of LSST ingestion on the multisurvey schema set, dbp against raw psycopg, in the same run.

    python bench/bench_night.py                 # 1,000,000 detections of 100,000 objects, 3 rounds
    python bench/bench_night.py --quick         # 20,000 detections, 2 rounds: a minute
    python bench/bench_night.py --rows 200000 --per-object 5 --known 0.8 --repeat 5

A night: ``--rows`` LSST-like detections (``detection`` and ``lsst_detection`` rows,
about ``--per-object`` per object) and their objects, upserted into the hash-partitioned
``object`` and ``lsst_dia_object``; ``--known`` of the objects exist before the night
(older values), the rest are new. dbp writes it with ``bulk_insert`` (``"error"`` for
detections, ``"update"`` for objects), in batches of ``--batch`` rows; raw psycopg
writes the same rows in the same batches with ``COPY`` (detections) and with ``COPY``
into a temporary table and a hand-written ``INSERT ... SELECT ... ON CONFLICT ... DO
UPDATE`` (objects). The two alternate (ABAB...), each from the same state (the tables
emptied, the known objects restored, a CHECKPOINT); each ratio is raw time over dbp
time (dbp's throughput as a fraction of raw's), the median over ``--repeat`` rounds,
with the best round beside it. Then one object's lookup by oid (its row and its
detections) on the partitioned ``object`` against an unpartitioned copy, with the plan
that shows one partition read.

The local servers live in a temporary folder (``--local-dir`` to choose one) that is
deleted at the end, also on Ctrl-C or SIGTERM. Only ratios are targets; the machine's
other work moves them.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

import dbp  # noqa: E402
from dbp.admin import initdb  # noqa: E402
from dbp.config import resolve_config  # noqa: E402
from dbp.local import LocalServers  # noqa: E402
from dbp.sql.connection import SQLConnection  # noqa: E402
from dbp.sql.local import section  # noqa: E402

FIRST_OID = 313_853_263_880_568_832  # diaObjectIds are large positive bigints
FIRST_SOURCE = 169_718_722_015_068_160
NIGHT = 61_000.0  # MJD of the night's start
BANDS = "ugrizy"
Rows = list[dict[str, Any]]


# -- the night's rows ------------------------------------------------------------------------------


def make_night(rows: int, per_object: int, known: float, seed: int = 61) -> dict[str, Any]:
    """The night's detections and objects, and the objects as they were before it (the known ones)."""
    rng = random.Random(seed)
    n_objects = max(1, rows // per_object)
    centres = [(rng.uniform(0, 360), rng.uniform(-75, 5)) for _ in range(n_objects)]
    detections: Rows = []
    lsst: Rows = []
    counts = [0] * n_objects
    for i in range(rows):
        k = i % n_objects if i < n_objects else rng.randrange(n_objects)  # every object seen at least once
        counts[k] += 1
        oid = FIRST_OID + k
        mid = FIRST_SOURCE + i
        ra, dec = centres[k]
        mjd = NIGHT + rng.random() * 0.4
        band = rng.randrange(1, 7)
        flux = rng.lognormvariate(7.5, 1.0) * (1 if rng.random() < 0.9 else -1)
        err = abs(flux) * rng.uniform(0.01, 0.2) + 20.0
        detections.append({"oid": oid, "sid": 1, "measurement_id": mid, "mjd": mjd,
                           "ra": ra + rng.gauss(0, 2e-5), "dec": dec + rng.gauss(0, 2e-5), "band": band})
        bad = rng.random() < 0.02
        lsst.append({
            "oid": oid, "sid": 1, "measurement_id": mid, "parentDiaSourceId": None,
            "visit": 2_026_120_700_000 + rng.randrange(2000), "detector": rng.randrange(189), "diaObjectId": oid,
            "ssObjectId": None, "raErr": rng.uniform(1e-6, 3e-5), "decErr": rng.uniform(1e-6, 3e-5),
            "ra_dec_Cov": rng.uniform(-1e-11, 1e-11), "x": rng.uniform(0, 4072), "xErr": rng.uniform(0.01, 0.5),
            "y": rng.uniform(0, 4000), "yErr": rng.uniform(0.01, 0.5), "centroid_flag": bad,
            "apFlux": flux * rng.uniform(0.9, 1.1), "apFluxErr": err * 1.2, "apFlux_flag": bad,
            "isNegative": flux < 0, "snr": abs(flux) / err, "psfFlux": flux, "psfFluxErr": err,
            "psfLnL": -rng.uniform(10, 500), "psfChi2": rng.uniform(50, 2000), "psfNdata": rng.randrange(100, 900),
            "psfFlux_flag": bad, "psfFlux_flag_edge": False, "scienceFlux": abs(flux) + rng.uniform(0, 5e4),
            "scienceFluxErr": err * 1.5, "templateFlux": rng.uniform(0, 5e4), "templateFluxErr": err,
            "ixx": rng.uniform(1, 9), "iyy": rng.uniform(1, 9), "ixy": rng.uniform(-1, 1),
            "extendedness": rng.random(), "reliability": rng.random(), "isDipole": rng.random() < 0.05,
            "dipoleFitAttempted": True, "timeProcessedMjdTai": mjd + 0.0007, "timeWithdrawnMjdTai": None,
            "bboxSize": rng.choice([15, 19, 23, 31]), "pixelFlags": bad, "pixelFlags_bad": False,
            "pixelFlags_cr": rng.random() < 0.01, "pixelFlags_edge": False, "pixelFlags_saturated": False,
            "pixelFlags_suspect": False, "glint_trail": False, "has_stamp": True,
        })
    objects: Rows = []
    dia: Rows = []
    before_objects: Rows = []
    before_dia: Rows = []
    for k, (ra, dec) in enumerate(centres):
        oid = FIRST_OID + k
        seen_before = rng.random() < known
        earlier = rng.randrange(0, 40) if seen_before else 0
        first = NIGHT - rng.uniform(1, 600) if seen_before else NIGHT + rng.random() * 0.4
        n = earlier + counts[k]
        obj = {"oid": oid, "tid": 1, "sid": 1, "meanra": ra, "meandec": dec, "sigmara": rng.uniform(1e-5, 1e-4),
               "sigmadec": rng.uniform(1e-5, 1e-4), "firstmjd": first, "lastmjd": NIGHT + 0.4,
               "deltamjd": NIGHT + 0.4 - first, "n_det": n, "n_forced": rng.randrange(0, 3 * n + 1), "n_non_det": 0}
        row = {"oid": oid, "validityStartMjdTai": NIGHT + 0.4, "ra": ra, "raErr": rng.uniform(1e-6, 2e-5),
               "dec": dec, "decErr": rng.uniform(1e-6, 2e-5), "ra_dec_Cov": rng.uniform(-1e-11, 1e-11),
               "firstDiaSourceMjdTai": first, "lastDiaSourceMjdTai": NIGHT + 0.4, "nDiaSources": n}
        for band in BANDS:
            mean = rng.lognormvariate(7.5, 1.0)
            row.update({f"{band}_psfFluxMean": mean, f"{band}_psfFluxMeanErr": mean * 0.05,
                        f"{band}_psfFluxSigma": mean * 0.1, f"{band}_psfFluxNdata": rng.randrange(0, n + 1)})
        objects.append(obj)
        dia.append(row)
        if seen_before:
            before_objects.append({**obj, "lastmjd": first + 1.0, "deltamjd": 1.0, "n_det": max(1, earlier)})
            before_dia.append({**row, "nDiaSources": max(1, earlier), "lastDiaSourceMjdTai": first + 1.0})
    rng.shuffle(objects)
    rng.shuffle(dia)
    return {"detection": detections, "lsst_detection": lsst, "object": objects, "lsst_dia_object": dia,
            "before_object": before_objects, "before_lsst_dia_object": before_dia}


def batches(rows: Sequence[dict[str, Any]], size: int) -> list[Sequence[dict[str, Any]]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


# -- the two ways to write a night ----------------------------------------------------------------


def ident_list(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def raw_copy(conn: psycopg.Connection[Any], table: str, rows: Sequence[dict[str, Any]]) -> None:
    with conn.transaction(), conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), ident_list(list(rows[0])))) as copy:
        for row in rows:
            copy.write_row(tuple(row.values()))


def raw_binary_copy(conn: psycopg.Connection[Any], table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Binary COPY with the columns' types set (psycopg's fastest way): shown beside the text COPY target."""
    names = list(rows[0])
    found = dict(conn.execute(
        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped", (table,)).fetchall())  # type: ignore[arg-type]
    with conn.transaction(), conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), ident_list(names))) as copy:
        copy.set_types([found[n] for n in names])
        for row in rows:
            copy.write_row(tuple(row.values()))


def raw_upsert(conn: psycopg.Connection[Any], table: str, key: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """COPY into a temporary table, then one hand-written INSERT ... SELECT ... ON CONFLICT ... DO UPDATE."""
    names = list(rows[0])
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TEMP TABLE night_stage (LIKE {}) ON COMMIT DROP").format(sql.Identifier(table)))
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY night_stage ({}) FROM STDIN").format(ident_list(names))
                                            ) as copy:
            for row in rows:
                copy.write_row(tuple(row.values()))
        conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM night_stage ON CONFLICT ({}) DO UPDATE SET {}").format(
            sql.Identifier(table), ident_list(names), ident_list(names), ident_list(key),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names if n not in key)))


def values_upsert(conn: psycopg.Connection[Any], table: str, key: Sequence[str], rows: Sequence[dict[str, Any]],
                  page: int = 1000) -> None:
    """ALeRCE's way: INSERT ... VALUES (...), (...) ... ON CONFLICT DO UPDATE, 1,000 rows a statement (SQLAlchemy's
    "insertmanyvalues" page), in one transaction."""
    names = list(rows[0])
    row_sql = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(names)))
    update = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names if n not in key)
    with conn.transaction():
        for i in range(0, len(rows), page):
            chunk = rows[i:i + page]
            conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}").format(
                sql.Identifier(table), ident_list(names), sql.SQL(", ").join([row_sql] * len(chunk)), ident_list(key),
                update), [v for row in chunk for v in row.values()])


PHASES = ("detections", "objects")
UPSERTS = (("object", ("oid", "sid")), ("lsst_dia_object", ("oid",)))


def night_raw(conn: psycopg.Connection[Any], night: dict[str, Any], batch: int) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    for table in ("detection", "lsst_detection"):
        for chunk in batches(night[table], batch):
            raw_copy(conn, table, chunk)
    times["detections"] = time.perf_counter() - start
    start = time.perf_counter()
    for table, key in UPSERTS:
        for chunk in batches(night[table], batch):
            raw_upsert(conn, table, key, chunk)
    times["objects"] = time.perf_counter() - start
    return times


def objects_values(conn: psycopg.Connection[Any], night: dict[str, Any], batch: int) -> float:
    start = time.perf_counter()
    for table, key in UPSERTS:
        for chunk in batches(night[table], batch):
            values_upsert(conn, table, key, chunk)
    return time.perf_counter() - start


def night_dbp(db: SQLConnection, night: dict[str, Any], batch: int) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    for table in ("detection", "lsst_detection"):
        q = db.query(table)
        for chunk in batches(night[table], batch):
            q.bulk_insert(chunk, on_conflict="error")
    times["detections"] = time.perf_counter() - start
    start = time.perf_counter()
    for table in ("object", "lsst_dia_object"):
        q = db.query(table)
        for chunk in batches(night[table], batch):
            q.bulk_insert(chunk, on_conflict="update")
    times["objects"] = time.perf_counter() - start
    return times


def reset(conn: psycopg.Connection[Any]) -> None:
    """The state before the night: no detections, the known objects only; then a checkpoint."""
    conn.execute("TRUNCATE detection, lsst_detection, object, lsst_dia_object")
    conn.execute("INSERT INTO object SELECT * FROM before_object")
    conn.execute("INSERT INTO lsst_dia_object SELECT * FROM before_lsst_dia_object")
    conn.execute("VACUUM ANALYZE object, lsst_dia_object")
    conn.execute("CHECKPOINT")


def stored(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """What a night left: counts and sums that differ if a row or a value is missing or wrong."""
    return tuple(conn.execute(q).fetchone()[0] for q in (  # type: ignore[index]
        "SELECT count(*) FROM detection", "SELECT count(*) FROM lsst_detection",
        'SELECT sum("psfFlux"::numeric) FROM lsst_detection', "SELECT count(*) FROM object",
        "SELECT sum(n_det) FROM object", "SELECT sum(lastmjd::numeric) FROM object",
        'SELECT count(*) FROM lsst_dia_object', 'SELECT sum("nDiaSources") FROM lsst_dia_object'))


def report(what: str, against: str, ratios: list[float], target: str) -> None:
    median = statistics.median(ratios)
    print(f"  {what:<50} vs {against:<42} {median:5.2f}x (best {max(ratios):.2f}x)   target {target}",
          flush=True)


def bench_night(db: SQLConnection, conn: psycopg.Connection[Any], night: dict[str, Any], batch: int,
                repeat: int) -> None:
    rows = len(night["detection"])
    print(f"one night: {rows:,} detections (detection + lsst_detection, {len(night['lsst_detection'][0])} columns) "
          f"of {len(night['object']):,} objects ({len(night['before_object']):,} known before), "
          f"batches of {batch:,}, {repeat} round(s), ABAB")
    raw_times: dict[str, list[float]] = {p: [] for p in PHASES}
    our_times: dict[str, list[float]] = {p: [] for p in PHASES}
    values_times: list[float] = []
    binary_times: list[float] = []
    expected = None
    for i in range(repeat):
        reset(conn)  # the objects alone, as ALeRCE's ingestion sends them (shown, no target)
        gc.collect()
        values_times.append(objects_values(conn, night, batch))
        values_stored = stored(conn)[3:]
        start = time.perf_counter()  # the detections through raw binary COPY (shown)
        for table in ("detection", "lsst_detection"):
            for chunk in batches(night[table], batch):
                raw_binary_copy(conn, table, chunk)
        binary_times.append(time.perf_counter() - start)
        binary_stored = stored(conn)[:3]
        order = ("dbp", "raw") if i % 2 == 0 else ("raw", "dbp")
        for who in order:
            reset(conn)
            gc.collect()
            times = night_dbp(db, night, batch) if who == "dbp" else night_raw(conn, night, batch)
            found = stored(conn)
            if expected is None:
                expected = found
            assert found == expected, f"{who} stored {found}, the other {expected}"
            for phase in PHASES:
                (our_times if who == "dbp" else raw_times)[phase].append(times[phase])
        assert values_stored == expected[3:] and binary_stored == expected[:3]  # type: ignore[index]
        total_raw = sum(raw_times[p][-1] for p in PHASES)
        total_ours = sum(our_times[p][-1] for p in PHASES)
        print(f"  round {i + 1}: raw {total_raw:.2f} s ({rows / total_raw:,.0f} detections/s), "
              f"dbp {total_ours:.2f} s ({rows / total_ours:,.0f} detections/s)", flush=True)
    ratio = {p: [r / o for r, o in zip(raw_times[p], our_times[p])] for p in PHASES}
    report("bulk_insert(on_conflict='error'), detections", "raw psycopg COPY", ratio["detections"], ">= 0.9")
    report("bulk_insert(on_conflict='error'), detections", "raw binary COPY with set_types",
           [b / o for b, o in zip(binary_times, our_times["detections"])], "(shown)")
    report("bulk_insert(on_conflict='update'), objects", "COPY + INSERT ... ON CONFLICT DO UPDATE",
           ratio["objects"], ">= 0.9")
    totals = [sum(raw_times[p][i] for p in PHASES) / sum(our_times[p][i] for p in PHASES) for i in range(repeat)]
    report("the whole night", "the raw night", totals, ">= 0.9")
    report("bulk_insert(on_conflict='update'), objects", "INSERT ... VALUES (1,000 rows) ON CONFLICT",
           [v / o for v, o in zip(values_times, our_times["objects"])], "(shown)")


def bench_lookup(db: SQLConnection, conn: psycopg.Connection[Any], oids: Sequence[int], calls: int) -> None:
    """One object's row and detections by oid: partitioned object against an unpartitioned copy."""
    conn.execute("DROP TABLE IF EXISTS object_flat")
    conn.execute("CREATE TABLE object_flat (LIKE object INCLUDING ALL)")
    conn.execute("INSERT INTO object_flat SELECT * FROM object")
    conn.execute("VACUUM ANALYZE object_flat, object, detection")
    lookup = ("SELECT o.oid, o.sid, o.meanra, o.meandec, o.n_det, d.measurement_id, d.mjd, d.band "
              "FROM {} AS o JOIN detection AS d ON d.oid = o.oid AND d.sid = o.sid WHERE o.oid = %s")
    rng = random.Random(5)
    picks = [rng.choice(oids) for _ in range(calls)]
    print(f"lookup of one object's row and detections by oid ({calls} calls each, interleaved, median)")
    for prepared in (True, False):  # psycopg prepares a statement on its 5th run: then a generic plan
        conn.prepare_threshold = 5 if prepared else None
        times: dict[str, list[float]] = {"object": [], "object_flat": []}
        for oid in picks:  # interleaved, one call each in turn
            for table in ("object", "object_flat"):
                start = time.perf_counter()
                rows = conn.execute(sql.SQL(lookup).format(sql.Identifier(table)), [oid]).fetchall()
                times[table].append(time.perf_counter() - start)
                assert rows, oid
        partitioned, flat = statistics.median(times["object"]), statistics.median(times["object_flat"])
        print(f"  {'prepared (psycopg default)' if prepared else 'never prepared':<27} partitioned object "
              f"{partitioned * 1e3:.3f} ms, unpartitioned copy {flat * 1e3:.3f} ms: {partitioned / flat:.2f}x the time "
              "(shown)")
    conn.prepare_threshold = 5
    plan = [r[0] for r in conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + lookup
                                               ).format(sql.Identifier("object")), [picks[0]]).fetchall()]
    scanned = [line for line in plan if " on object_part_" in line]
    print(f"  partitions of object read for one oid: {len(scanned)} of 8; the plan:")
    for line in plan:
        print(f"    {line}")
    text = (ROOT / "sql" / "multisurvey" / "queries" / "detections.sql").read_text()
    db.query("detections", {"oid": picks[0]}).paginate(per_page=1000, count=False)  # learns its columns: untimed
    named: dict[str, list[float]] = {"dbp": [], "raw": []}
    for oid in picks[:500]:
        start = time.perf_counter()
        ours = db.query("detections", {"oid": oid}).paginate(per_page=1000, count=False).items
        named["dbp"].append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = conn.execute(text + " ORDER BY oid, sid, measurement_id", {"oid": oid}).fetchall()
        named["raw"].append(time.perf_counter() - start)
        assert len(ours) == len(theirs) > 0, oid
    ours_median, raw_median = statistics.median(named["dbp"]), statistics.median(named["raw"])
    print(f"  the bundled detections query, one page: dbp {ours_median * 1e3:.3f} ms, the same statement through "
          f"raw psycopg {raw_median * 1e3:.3f} ms: {ours_median / raw_median:.2f}x the time (shown)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="detections in the night")
    parser.add_argument("--per-object", type=int, default=10, help="detections per object, on average")
    parser.add_argument("--known", type=float, default=0.5, help="fraction of the objects known before the night")
    parser.add_argument("--batch", type=int, default=50_000, help="rows per bulk_insert (and per raw COPY)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of dbp and raw, alternating")
    parser.add_argument("--lookups", type=int, default=2000, help="timed lookups by oid per table")
    parser.add_argument("--quick", action="store_true", help="20,000 detections, 2 rounds, 200 lookups")
    parser.add_argument("--local-dir", help="where the local servers live (default: a fresh temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat, args.lookups = min(args.rows, 20_000), min(args.repeat, 2), min(args.lookups, 200)
    root = Path(args.local_dir) if args.local_dir else Path(tempfile.mkdtemp(prefix="dbp-bench-night-"))
    owned = not root.exists() or not any(root.iterdir())
    root.mkdir(parents=True, exist_ok=True)
    servers = LocalServers(root / "servers")

    signalled = [signal.SIGINT]

    def stop(signum: int, frame: Any) -> None:
        signalled[0] = signal.Signals(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # even if started with SIGINT ignored (a background job)
    try:
        url = servers.start(["sql"])["sql"]
        config = resolve_config({"SQL": {**section(url, "night"), "SCHEMA_SET": "multisurvey"}}, environ={})
        initdb(config, ["sql"])
        print(f"dbp {dbp.__version__}, Python {sys.version.split()[0]}, servers under {root}")
        start = time.perf_counter()
        night = make_night(args.rows, args.per_object, args.known)
        gc.collect()
        gc.freeze()  # the night's rows: never walked by the collector during the measurements
        print(f"rows made in {time.perf_counter() - start:.1f} s\n")
        with dbp.connect(config, engine="sql") as db, psycopg.connect(
                **dict(db.settings.params), autocommit=True) as conn:
            assert isinstance(db, SQLConnection)
            for table in ("object", "lsst_dia_object"):
                conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(sql.Identifier(f"before_{table}"),
                                                                        sql.Identifier(table)))
                if night[f"before_{table}"]:
                    raw_copy(conn, f"before_{table}", night[f"before_{table}"])
            bench_night(db, conn, night, args.batch, args.repeat)
            print()
            bench_lookup(db, conn, [r["oid"] for r in night["object"]], args.lookups)
    except KeyboardInterrupt:
        print(f"bench: {'terminated' if signalled[0] == signal.SIGTERM else 'interrupted'}; deleting the servers",
              file=sys.stderr, flush=True)
        code = 128 + signalled[0]
    else:
        code = 0
    finally:
        servers.delete()  # also the data kept outside root (as root, PostgreSQL's)
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        print(f"bench: servers deleted{'; removed ' + str(root) if owned else ''}", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
