"""Issue 20 item 13: numpy and pandas values as named-query parameters, on both engines, and a pipeline
file nested too deep for Python's JSON reader."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbp import ConfigError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.named import parse_pipeline
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

T = dt.datetime(2024, 1, 1, 7)


@pytest.fixture
def project(tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
            ) -> Iterator[tuple[SQLConnection, MongoConnection]]:
    folder = tmp_path / "queries"
    folder.mkdir()
    (folder / "echo.sql").write_text(
        "SELECT %(n)s::bigint AS n, %(t)s::timestamp AS t, %(ns)s::bigint[] AS ns, %(f)s::float8 AS f")
    (folder / "echo.json").write_text(json.dumps({
        "collection": "thing", "columns": ["n", "t", "ns", "f"],
        "pipeline": [{"$match": {"_id": {"$in": {"$param": "ns"}}}}, {"$limit": 1},
                     {"$project": {"_id": 0, "n": {"$param": "n"}, "t": {"$param": "t"},
                                   "ns": {"$param": "ns"}, "f": {"$param": "f"}}}]}))
    (folder / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (folder / "nested.json").write_text('{"collection": "thing", "columns": ["a"], "pipeline": [{"$match": '
                                        + '{"$and": [' * 150 + "{}" + "]}" * 150 + "}]}")
    sql = SQLConnection(settings=dataclasses.replace(sql_settings, queries_dir=folder)).connect()
    mongo = MongoConnection(settings=dataclasses.replace(mongo_settings, queries_dir=folder)).connect()
    mongo.collection("thing").insert_many([{"_id": 1}, {"_id": 2}])
    try:
        yield sql, mongo
    finally:
        sql.close()
        mongo.close()


CASES = [
    ({"n": np.int64(2), "t": pd.Timestamp(T), "ns": np.array([1, 2]), "f": np.float32(1.5)},
     {"n": 2, "t": T, "ns": [1, 2], "f": 1.5}),
    ({"n": np.int32(3), "t": pd.NaT, "ns": pd.Series([1, None], dtype="Int64"), "f": np.float64(2.5)},
     {"n": 3, "t": None, "ns": [1, None], "f": 2.5}),
    ({"n": None, "t": np.datetime64("2024-01-01T07:00"), "ns": pd.array([2], dtype="Int64"), "f": pd.NA},
     {"n": None, "t": T, "ns": [2], "f": None}),
]


@pytest.mark.parametrize(("params", "want"), CASES)
def test_numpy_and_pandas_parameters_on_both_engines(project: tuple[SQLConnection, MongoConnection],
                                                      params: dict[str, Any], want: dict[str, Any]) -> None:
    sql, mongo = project
    assert sql.query("echo", params).find_one() == want
    assert sql.sql("SELECT %(n)s::bigint AS n, %(t)s::timestamp AS t, %(ns)s::bigint[] AS ns, %(f)s::float8 AS f",
                   params).find_one() == want
    assert sql.run("echo", params) == [want]
    got = mongo.query("echo", params).find_one()
    assert got == want and all(type(got[k]) is type(want[k]) for k in want), got
    assert all(type(v) in (int, type(None)) for v in got["ns"])


def test_a_pipeline_parameter_keeps_refusing_what_it_refused(project: tuple[SQLConnection, MongoConnection]
                                                              ) -> None:
    _, mongo = project
    with pytest.raises(FilterError, match="parameter n is NaN"):
        mongo.query("echo", {"n": np.float64("nan"), "t": None, "ns": [1], "f": 1.0})
    with pytest.raises(FilterError, match="parameter n is a dict"):
        mongo.query("echo", {"n": {"$gt": np.int64(1)}, "t": None, "ns": [1], "f": 1.0})


def test_a_deeply_nested_pipeline_file_is_a_config_error_naming_it(project: tuple[SQLConnection, MongoConnection]
                                                                   ) -> None:
    _, mongo = project
    for name in ("deep", "nested"):
        with pytest.raises(ConfigError, match=rf"queries/{name}\.json: .*nests more than 100 levels") as caught:
            mongo.query(name)
        assert caught.value.__cause__ is None and caught.value.__context__ is None
    with pytest.raises(ConfigError, match=r"queries/p\.json: .*nests more than 100 levels"):
        parse_pipeline("p", "[" * 100_000, "queries/p.json")


def test_a_datetime_beyond_utc_years_is_refused_as_a_parameter(project: tuple[SQLConnection, MongoConnection]
                                                               ) -> None:
    sql, mongo = project
    late = dt.datetime(9999, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    params = {"n": 1, "t": late, "ns": [1], "f": 1.0}
    for call in (lambda: sql.query("echo", params).find_one(), lambda: sql.run("echo", params),
                 lambda: mongo.query("echo", params).find_one(),
                 lambda: mongo.query("echo", {**params, "t": [late]}).find_one()):
        with pytest.raises(FilterError, match=r"echo: parameter t: 9999-12-31T23:30:00-01:00 is outside years "
                                              r"1\.\.9999 in UTC"):
            call()
