"""Error paths are linear: hostile values and names fail fast, in dbp's own time.

    python bench/bench_errors.py                 # local servers in a temporary folder
    python bench/bench_errors.py --size 20000000  # a 20 MB value

Each case raises a DbpError. Where the server takes part, the same failing
statement is timed on raw psycopg in the same run and subtracted, so the figure
is dbp's own time (building the statement, checking, making and scrubbing the
message). The target is 50 ms per case; the script prints the figures and never
fails on them.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import dbp  # noqa: E402
from dbp._redact import register_secret, scrub  # noqa: E402
from dbp.config import resolve_config  # noqa: E402
from dbp.local import LocalServers  # noqa: E402
from dbp.mongo.connection import MongoConnection  # noqa: E402
from dbp.sql.connection import SQLConnection  # noqa: E402

TARGET_MS = 50.0


def best_failure(fn: Callable[[], Any], expected: type[BaseException], repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs of ``fn``, which must raise ``expected``; in seconds."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        try:
            fn()
        except expected:
            pass
        else:
            raise AssertionError(f"{fn} did not raise {expected.__name__}")
        times.append(time.perf_counter() - start)
    return min(times)


def line(what: str, dbp_s: float, raw_s: float = 0.0) -> None:
    own_ms = (dbp_s - raw_s) * 1000
    verdict = "ok" if own_ms <= TARGET_MS else "OVER"
    raw = f"(raw driver {raw_s * 1000:8.1f} ms) " if raw_s else " " * 29
    print(f"  {what:<58} dbp {dbp_s * 1000:8.1f} ms {raw}own {own_ms:7.1f} ms  target <= {TARGET_MS:g} ms  {verdict}",
          flush=True)


def _raise(error: BaseException) -> None:
    raise error


def _timed(fn: Callable[[str], Any], text: str) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="characters in the big value (10,000,000)")
    parser.add_argument("--name", type=int, default=100_000, help="characters in the long name (100,000)")
    parser.add_argument("--local-dir", default=None, help="where the local servers keep their data")
    args = parser.parse_args()
    big, name = "x" * args.size, "a" * args.name
    root = Path(args.local_dir) if args.local_dir else Path(tempfile.mkdtemp(prefix="dbp-bench-errors-"))
    servers = LocalServers(root)
    config = servers.config(["sql", "mongo"], database="bench_errors")
    print(f"dbp {dbp.__version__}, Python {sys.version.split()[0]}; value {args.size:,} characters, "
          f"name {args.name:,} characters\n")
    # secrets registered as a real configuration would, so that every message is scrubbed for them
    for secret in ("Summer 2024!", "s3cr3t-Pa55word", "a@b:c/d?e#f"):
        register_secret(secret)
    try:
        SQLConnection(config).drop_db()
        SQLConnection(config).create_db()
        with SQLConnection(config) as db:
            db.execute("CREATE TABLE u (id uuid PRIMARY KEY, n int)")
            db.catalog(refresh=True)
            q = db.query("u")
            conn = db._conn
            assert conn is not None
            print("PostgreSQL")
            line(f"find_one on an unknown {args.name:,}-character column",
                 best_failure(lambda: q.find_one({name: 1}), dbp.FilterError))
            line(f"find_one with a {args.size:,}-character $exists operand",
                 best_failure(lambda: q.find_one({"n": {"$exists": big}}), dbp.FilterError))
            raw = best_failure(lambda: conn.execute("SELECT * FROM u WHERE id = %s LIMIT 1", (big,)), psycopg.Error)
            line(f"find_one with a {args.size:,}-character uuid", best_failure(
                lambda: q.find_one({"id": big}), dbp.DbpError), raw)
            raw = best_failure(lambda: conn.execute("SELECT %s::uuid", (big,)), psycopg.Error)
            line(f"execute with a {args.size:,}-character uuid", best_failure(
                lambda: db.execute("SELECT %s::uuid", (big,)), dbp.QueryError), raw)
            line(f"query() of an unknown {args.name:,}-character table",
                 best_failure(lambda: db.query(name), dbp.FilterError))
            line("query() of an unknown table (catalog probe, caches kept)",
                 best_failure(lambda: db.query("no_such_table"), dbp.FilterError))
        with MongoConnection(config) as mongo:
            print("MongoDB")
            line(f"find_one with a {args.size:,}-character $exists operand",
                 best_failure(lambda: mongo.query("c").find_one({"n": {"$exists": big}}), dbp.FilterError))
            nested: dict[str, Any] = {"n": 1}
            for _ in range(10_000):
                nested = {"$or": [nested]}
            line("find_one with a filter nested 10,000 levels deep",
                 best_failure(lambda: mongo.query("c").find_one(nested), dbp.FilterError))
        print("messages and settings")
        line(f"an error built from a {args.size:,}-character driver message",
             best_failure(lambda: _raise(dbp.OperationError("failed: " + big + "://u:" + big)), dbp.OperationError))
        print("scrub() alone (the last line of defence, on tracebacks and logs), hostile texts of n characters")
        for label, unit in (("one long word", "x"), ("URLs with passwords", "a://b:c@d "),
                            ("password= pairs", "password=x "), ("a registered secret", "Summer 2024!x")):
            small = unit * (args.size // 10 // len(unit))
            large = unit * (args.size // len(unit))
            t_small = min(_timed(scrub, small) for _ in range(3))
            t_large = min(_timed(scrub, large) for _ in range(3))
            print(f"  {label:<24} n/10: {t_small * 1000:8.1f} ms   n: {t_large * 1000:8.1f} ms   "
                  f"ratio {t_large / t_small:5.1f} (linear: about 10)", flush=True)
        line(f"a settings section with a {args.name:,}-character unknown key",
             best_failure(lambda: resolve_config({"SQL": {"URL": "postgresql://h/d", name: 1}}, environ={})
                          .settings("sql"), dbp.ConfigError))
        line(f"a {args.size:,}-character SQL URL",
             best_failure(lambda: resolve_config({"SQL": {"URL": "postgresql://u:" + big + "@h:x/d"}}, environ={}),
                          dbp.ConfigError))
    finally:
        if not args.local_dir:
            servers.delete()  # this run's folder, and the data kept outside it (as root, PostgreSQL's)


if __name__ == "__main__":
    main()
