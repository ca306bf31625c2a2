"""Adversary attacks on bulk_insert's key= and the write paths of partitioned parents (adv22b).

Each test is an attack; a comment above each says how it was made. Findings are strict xfails; the attacks
that held up are kept as guards. Real servers only; the killed writer is a real process.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dbp.errors import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

from .conftest import sql_section

ROOT = Path(__file__).resolve().parents[1]
KEY = ["oid", "sid", "feature_id", "band", "version"]
OBJECT = dict(tid=0, sid=1, meanra=1.0, meandec=1.0, firstmjd=1.0, lastmjd=1.0, deltamjd=0.0, n_det=1,
              n_forced=0, n_non_det=0)


def multisurvey(db: SQLConnection) -> None:
    """ALeRCE's multi-survey object (PK (oid, sid), 8 hash partitions) and keyless feature (32 partitions)."""
    for name in ("010_object.sql", "015_feature.sql"):
        db.execute((ROOT / "sql" / "multisurvey" / "schema" / name).read_text())


def feature(oid: int, value: float, **other: Any) -> dict[str, Any]:
    return {"oid": oid, "sid": 1, "feature_id": 1, "band": 1, "version": 1, "value": value, **other}


# Found by a probe script: SIGKILL a process 3 s into bulk_insert(600000 rows, on_conflict="update", key=KEY)
# on the keyless, 32-way partitioned feature table (the merge path: COPY into a temp table, LOCK TABLE,
# UPDATE ... FROM, INSERT ... WHERE NOT EXISTS). Held: nothing half-written, no backend left behind.
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ignore", "update"])
def test_a_killed_key_writer_leaves_nothing_half_written(sql_db: SQLConnection, mode: str) -> None:
    multisurvey(sql_db)
    url = sql_section(sql_db.settings)["URL"]
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import dbp\n"
        "rows = [dict(oid=k, sid=1, feature_id=k % 7, band=1, version=1, value=1.0) for k in range(400000)]\n"
        "with dbp.connect({'SQL': {'URL': sys.argv[2]}}, engine='sql') as db:\n"
        "    print('start', flush=True)\n"
        "    db.query('feature').bulk_insert(rows, on_conflict=sys.argv[3], key=sys.argv[4].split(','))\n"
        "    print('done', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), url, mode, ",".join(KEY)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:  # the server notices the dead client and rolls back
        if not sql_db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                              "AND pid <> pg_backend_pid() AND state <> 'idle'").fetchall():
            break
        time.sleep(0.2)
    assert sql_db.query("feature").count({}) in (0, 400000)
    # and the table is not left locked: the next writer by key goes through
    assert sql_db.query("feature").bulk_insert([feature(1, 2.0)], on_conflict="update", key=KEY) in (0, 1)


# Found by opening a transaction around bulk_insert(key=...) on feature and object (fast path that falls back
# to the merge on a duplicate, then a fast path) and checking lock_timeout and rollback. Held: the caller's
# rollback removes every row, lock_timeout is the caller's again after each call.
def test_bulk_insert_by_key_inside_the_callers_transaction(sql_db: SQLConnection) -> None:
    multisurvey(sql_db)
    objects, features = sql_db.query("object"), sql_db.query("feature")
    objects.bulk_insert([{**OBJECT, "oid": 5}], on_conflict="error")
    features.bulk_insert([feature(5, 1.0)], on_conflict="error")

    class Stop(Exception):
        pass

    with pytest.raises(Stop), sql_db.transaction():
        sql_db.execute("SET LOCAL lock_timeout = '7s'")
        assert objects.bulk_insert([{**OBJECT, "oid": 5}, {**OBJECT, "oid": 9}]) == 1
        assert features.bulk_insert([feature(5, 3.0), feature(9, 4.0)], on_conflict="update", key=KEY) == 1
        assert sql_db.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "7s"
        assert objects.bulk_insert([{**OBJECT, "oid": 10}]) == 1
        assert sql_db.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "7s"
        raise Stop
    assert sorted(r["oid"] for r in objects.find_all(paginate=False)) == [5]
    assert [(r["oid"], r["value"]) for r in features.find_all(paginate=False)] == [(5, 1.0)]


# Found by probing in-batch duplicates whose key values are equal to PostgreSQL but not to Python: NaN
# (float and numpy, distinct objects), 0.0 / -0.0, int / numpy.int64 / numpy.int16. Held: one row per key,
# the first with "ignore", the last with "update"; a bool or a str of digits for a smallint key is refused.
def test_equal_keys_of_different_python_forms_are_one_row(sql_db: SQLConnection) -> None:
    multisurvey(sql_db)
    sql_db.execute("CREATE TABLE ff (oid bigint NOT NULL, x double precision, value double precision)")
    ff, features = sql_db.query("ff"), sql_db.query("feature")
    assert ff.bulk_insert([{"oid": 1, "x": float("nan"), "value": 1.0},
                           {"oid": 1, "x": np.float64("nan"), "value": 2.0},
                           {"oid": 1, "x": 0.0, "value": 3.0}, {"oid": 1, "x": -0.0, "value": 4.0}],
                          key=["oid", "x"]) == 2
    assert ff.bulk_insert([{"oid": 1, "x": float("nan"), "value": 5.0}], key=["oid", "x"]) == 0
    assert sorted(r["value"] for r in ff.find_all(paginate=False)) == [1.0, 3.0]
    assert features.bulk_insert([feature(1, 1.0), feature(np.int64(1), 2.0, band=np.int16(1))],
                                on_conflict="update", key=KEY) == 1
    assert [r["value"] for r in features.find_all(paginate=False)] == [2.0]
    for bad in (True, "1"):
        with pytest.raises(FilterError, match=r"row 0: feature\.band is smallint"):
            features.bulk_insert([feature(2, 1.0, band=bad)], key=KEY)
    assert features.count({}) == 1


# Found by update()/bulk_update() that change oid, the partition key of object: the row must move to its
# new partition, a collision must change nothing.
def test_changing_the_partition_key_moves_the_row(sql_db: SQLConnection) -> None:
    multisurvey(sql_db)
    objects = sql_db.query("object")
    objects.bulk_insert([{**OBJECT, "oid": 5}, {**OBJECT, "oid": 6}], on_conflict="error")
    assert objects.update({"oid": 5}, {"oid": 77}) == 1
    where = {r["oid"]: r["p"] for r in sql_db.execute("SELECT oid, tableoid::regclass::text AS p FROM object")}
    assert set(where) == {6, 77} and objects.count({"oid": 77}) == 1 and objects.count({"oid": 5}) == 0
    with pytest.raises(Exception, match="duplicate key"):
        objects.update({"oid": 77}, {"oid": 6})
    assert sorted(r["oid"] for r in objects.find_all(paginate=False)) == [6, 77]
    assert objects.bulk_update([{"oid": 6, "sid": 1}, {"oid": 77, "sid": 1}],
                               [{"n_det": 9, "oid": 1006}, {"n_det": 10}]) == 2
    assert {r["oid"]: r["n_det"] for r in objects.find_all(paginate=False)} == {1006: 9, 77: 10}
    assert objects.count({"oid": 1006}) == 1 and objects.count({"oid": 6}) == 0


# Found by the same in-batch probes on MongoDB: a bool is not a number there, NaN matches NaN, and the
# collection has only _id (so key= takes any fields, under the lease).
def test_mongo_key_values_of_different_python_forms(mongo_db: MongoConnection) -> None:
    docs = mongo_db.query("feat")
    assert docs.bulk_insert([{"oid": 1, "band": 1, "value": 1.0}, {"oid": 1, "band": True, "value": 2.0},
                             {"oid": 1, "band": np.int64(1), "value": 3.0},
                             {"oid": 2, "band": float("nan"), "value": 4.0},
                             {"oid": 2, "band": float("nan"), "value": 5.0}], key=["oid", "band"]) == 3
    stored = sorted((d["oid"], str(d["band"]), d["value"]) for d in docs.find_all(paginate=False))
    assert stored == [(1, "1", 1.0), (1, "True", 2.0), (2, "nan", 4.0)]
    assert docs.bulk_insert([{"oid": 1, "band": 1, "value": 9.0}, {"oid": 2, "band": math.nan, "value": 9.0}],
                            on_conflict="update", key=["oid", "band"]) == 0
    assert sorted(d["value"] for d in docs.find_all(paginate=False)) == [2.0, 9.0, 9.0]


# -- findings (strict xfail) ---------------------------------------------------------------------------------

# Found by a probe of rows of different shapes on a table whose key is an identity column: one row names the
# id, the other lets the table generate it. When the batch goes to the merge path (a duplicate in the fast
# path's COPY, or any key= batch on a table with no unique key), the row without an id is inserted with an
# explicit NULL id and the whole batch fails ("null value in column "id" ... nothing was written"; in the
# first case the error names no row). A plain COPY or INSERT of the same row generates the id.
# Suspected cause: dbp/sql/bulk.py:_merge: CREATE TEMP TABLE (LIKE ... INCLUDING DEFAULTS) copies no identity,
# and the INSERT ... SELECT lists every column of the union of the batch's shapes.
def test_a_row_without_its_identity_value_gets_the_next_one_in_the_merge(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE ti (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)")
    ti = sql_db.query("ti")
    ti.bulk_insert([{"id": 1, "v": "x"}], on_conflict="error")
    # the row without an id takes the identity's next value, as INSERT does: here 1, which exists (it was given
    # explicitly), so "ignore" skips it, exactly as INSERT ... ON CONFLICT DO NOTHING does on a twin table
    sql_db.execute("CREATE TABLE twin (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)")
    sql_db.execute("INSERT INTO twin (id, v) VALUES (1, 'x')")
    for batch in ([{"id": 1, "v": "a"}, {"v": "b"}], [{"id": 1, "v": "a"}, {"v": "c"}]):  # merge path: id 1 exists
        got = ti.bulk_insert(batch)
        raw = sql_db.execute("INSERT INTO twin (v) VALUES (%s) ON CONFLICT DO NOTHING", (batch[1]["v"],)).rowcount
        assert got == raw
    assert [(r["id"], r["v"]) for r in ti.find_all(sort=[("id", 1)], paginate=False)] == [
        (r["id"], r["v"]) for r in sql_db.execute("SELECT id, v FROM twin ORDER BY id")] == [(1, "x"), (2, "c")]


def test_a_key_batch_with_and_without_identity_values(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE tn (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100), "
                   "k int NOT NULL, v text)")
    tn = sql_db.query("tn")
    assert tn.bulk_insert([{"k": 5, "v": "a", "id": 50}, {"k": 6, "v": "b"}], key=["k"]) == 2
    assert sorted(r["k"] for r in tn.find_all(paginate=False)) == [5, 6]


# Found by a table whose one unique key is an expression index (UNIQUE (lower(k)), a common case-insensitive
# key): bulk_insert(rows) with the default on_conflict="ignore" refuses every batch with "row 0 has no value
# for key field 'lower(k)'", a field no row can carry. Expected: ON CONFLICT DO NOTHING skips the row that
# conflicts ('a' vs the stored 'A') and inserts the other. Suspected cause: dbp/sql/bulk.py:_conflict takes
# table.unique_keys()' expression as a column list and runs refuse_null_keys on it.
def test_ignore_on_a_table_whose_unique_key_is_an_expression(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE te (k text NOT NULL, v text)")
    sql_db.execute("CREATE UNIQUE INDEX te_lower ON te (lower(k))")
    te = sql_db.query("te")
    te.bulk_insert([{"k": "A", "v": "x"}], on_conflict="error")
    assert te.bulk_insert([{"k": "a", "v": "y"}, {"k": "b", "v": "z"}]) == 1
    assert sorted((r["k"], r["v"]) for r in te.find_all(paginate=False)) == [("A", "x"), ("b", "z")]


# Found by a soft-delete table: UNIQUE INDEX (k) WHERE NOT deleted keeps one live row per k, and archived rows
# share k. bulk_insert(on_conflict="update", key=["k"]) takes the table for one without a unique key (the
# partial index is not listed) and overwrites the archived row too (its v 'old' becomes 'new'): the archived
# row's data is lost. Expected: the update reaches the row the unique index identifies (or a FilterError).
# Suspected cause: dbp/sql/query.py:_check_conflict_key / table.unique_keys() skip partial unique indexes, so
# dbp/sql/bulk.py:_merge runs the locked keyless UPDATE ... FROM on every row with k.
def test_update_by_key_leaves_rows_outside_a_partial_unique_index(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE tp (k int NOT NULL, v text, deleted boolean NOT NULL DEFAULT false)")
    sql_db.execute("CREATE UNIQUE INDEX tp_live ON tp (k) WHERE NOT deleted")
    tp = sql_db.query("tp")
    tp.bulk_insert([{"k": 1, "v": "old", "deleted": True}, {"k": 1, "v": "live"}], on_conflict="error")
    with pytest.raises(FilterError, match="covers part of the table") as caught:  # refused, one line
        tp.bulk_insert([{"k": 1, "v": "new"}], on_conflict="update", key=["k"])
    assert "\n" not in str(caught.value)
    with pytest.raises(FilterError, match="covers part of the table"):  # without key= too
        tp.bulk_insert([{"k": 1, "v": "new"}], on_conflict="update")
    assert tp.count({"deleted": True, "v": "old"}) == 1 and tp.count({"v": "live"}) == 1
    assert tp.bulk_insert([{"k": 1, "v": "again"}, {"k": 2, "v": "two"}]) == 1  # ignore: skips the live k=1
    assert tp.count({"k": 1}) == 2


# Found by giving MongoDB rows an _id besides key= fields: with "ignore", a row whose key is new but whose _id
# is taken raises BulkWriteError ("E11000 duplicate key ... _id_ ...; the other 1 write(s) went through"),
# while "ignore" without key= skips a taken _id, and PostgreSQL's key= "ignore" (ON CONFLICT DO NOTHING)
# skips a row that conflicts on any unique key. Suspected cause: dbp/mongo/query.py:bulk_insert re-raises
# _UpsertError through _bulk_error without ignore_duplicates for on_conflict="ignore".
def test_mongo_ignore_by_key_skips_a_taken_id(mongo_db: MongoConnection) -> None:
    docs = mongo_db.query("feat2")
    docs.bulk_insert([{"_id": 1, "oid": 1, "band": 1}], on_conflict="error")
    assert docs.bulk_insert([{"_id": 1, "oid": 2, "band": 1}, {"_id": 2, "oid": 3, "band": 1}],
                            key=["oid", "band"]) == 1
    assert sorted(d["_id"] for d in docs.find_all(paginate=False)) == [1, 2]
