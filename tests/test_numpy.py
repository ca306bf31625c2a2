"""numpy and pandas values on every write and filter path, on both engines (issue 13)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from typing import Any

import pytest

from dbp import FilterError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

from .conftest import ROOT

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

STAR_SQL = """
CREATE TABLE star (id bigint PRIMARY KEY, n integer, mag double precision, ok boolean, seen timestamp,
                   name text, nums bigint[], doc jsonb);
"""
ENGINES = ("sql", "mongo")
T = dt.datetime(2024, 1, 1, 7)


@pytest.fixture
def stars(sql_db: SQLConnection, mongo_db: MongoConnection) -> dict[str, Any]:
    sql_db.execute(STAR_SQL)
    return {"sql": sql_db.query("star"), "mongo": mongo_db.query("star")}


def key(engine: str) -> str:
    return "id" if engine == "sql" else "_id"


def plain_rows(q: Any, engine: str) -> list[dict[str, Any]]:
    rows = []
    for row in q.find_all(sort=[(key(engine), 1)], paginate=False):
        row = {("id" if k == "_id" else k): v for k, v in row.items()}
        rows.append({f: row.get(f) for f in ("id", "n", "mag", "ok", "seen", "name", "nums", "doc")})
    return rows


@pytest.mark.parametrize("engine", ENGINES)
def test_numpy_and_pandas_values_on_every_path(stars: dict[str, Any], engine: str) -> None:
    q, k = stars[engine], key(engine)
    aware = pd.Timestamp("2024-01-01 12:00", tz="Etc/GMT-5")  # 07:00 UTC
    rows = [{k: np.int64(1), "n": np.int32(5), "mag": np.float32(1.5), "ok": np.bool_(True), "seen": aware,
             "name": np.str_("a"), "nums": np.array([1, 2], dtype=np.int64), "doc": {"x": np.int64(3)}},
            {k: 2, "n": np.int16(6), "mag": np.float64(2.5), "ok": np.bool_(False), "seen": pd.NaT,
             "name": "b", "nums": None, "doc": None},
            {k: 3, "n": 7, "seen": np.datetime64("2024-01-01T07:00:00")}]
    assert q.bulk_insert(rows) == 3
    assert q.count({"n": np.int64(5)}) == 1
    assert q.count({"n": {"$in": np.array([5, 6])}}) == 2
    assert q.count({"mag": {"$gte": np.float32(1.5)}}) == 2
    assert q.count({"ok": np.bool_(False)}) == 1
    assert q.count({"seen": aware}) == 2 and q.count({"seen": np.datetime64("2024-01-01T07:00")}) == 2
    assert q.count({"seen": pd.NaT}) == 1  # NaT is None
    assert q.update({k: np.int64(2)}, {"$set": {"n": np.int64(60)}, "$inc": {"mag": np.float64(0.5)}}) == 1
    assert q.bulk_update([{k: np.int64(3)}], [{"n": np.int8(70), "nums": np.array([7])}]) == 1
    row, created = q.get_or_create({k: np.int64(4)}, n=np.int64(8), seen=pd.Timestamp("2024-01-01 07:00"))
    assert created and row["n"] == 8
    q.upsert({k: np.int64(4)}, {"$push": {"nums": np.int64(9)}})
    got = plain_rows(q, engine)
    assert [(r["id"], r["n"], r["mag"], r["ok"], r["seen"], r["name"], r["nums"]) for r in got] == [
        (1, 5, 1.5, True, T, "a", [1, 2]), (2, 60, 3.0, False, None, "b", None), (3, 70, None, None, T, None, [7]),
        (4, 8, None, None, T, None, [9])]
    assert got[0]["doc"] == {"x": 3}
    for row in got:  # plain Python values come back
        assert all(type(v).__module__ == "builtins" or isinstance(v, dt.datetime) for v in row.values()), row


@pytest.mark.parametrize("engine", ENGINES)
def test_dataframes_in_and_out(stars: dict[str, Any], engine: str) -> None:
    q, k = stars[engine], key(engine)
    frame = pd.DataFrame({k: [1, 2, 3], "n": [1, 2, 3], "mag": [1.5, np.nan, 3.5],
                          "seen": [pd.Timestamp("2024-01-01 07:00"), pd.NaT, pd.Timestamp("2024-01-02")]})
    assert q.bulk_insert(frame) == 3
    assert q.count({"mag": None}) == 1 and q.count({"seen": None}) == 1  # NaN and NaT are NULL
    update = pd.DataFrame({k: [1, 3], "mag": [np.nan, 9.0]})
    assert q.bulk_update(update) == 2
    out = q.frame(sort=[(k, 1)], projection=[k, "n", "mag"])
    assert list(out.columns) == [k, "n", "mag"]
    assert out[k].tolist() == [1, 2, 3] and out["n"].tolist() == [1, 2, 3]
    assert out["mag"].isna().tolist() == [True, True, False] and out["mag"].tolist()[2] == 9.0


def test_nan_into_an_integer_column_names_row_and_column(stars: dict[str, Any]) -> None:
    q = stars["sql"]
    with pytest.raises(FilterError, match=r"row 1: star\.n is integer; .*nan"):
        q.bulk_insert([{"id": 1, "n": 1}, {"id": 2, "n": np.float64("nan")}])
    with pytest.raises(FilterError, match="NaN"):
        q.count({"mag": np.float64("nan")})
    assert q.count() == 0


def test_import_dbp_imports_neither_numpy_nor_pandas() -> None:
    code = ("import sys, dbp, dbp.query, dbp.filters, dbp.updates, dbp._values; "
            "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
