"""Issue 20, named queries and inline SQL: one statement per file, and descriptions keyed by parameter types."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbp import ConfigError, FilterError, QueryError
from dbp.named import parse_sql
from dbp.sql import admin as sql_admin
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings
from dbp.sql.source import run_statement


@pytest.fixture
def folder_db(tmp_path: Path, sql_settings: SQLSettings) -> Iterator[tuple[Path, SQLConnection]]:
    folder = tmp_path / "queries"
    folder.mkdir()
    db = SQLConnection(settings=dataclasses.replace(sql_settings, queries_dir=folder)).connect()
    sql_admin.initdb(db)
    db.execute("CREATE TABLE t (n integer)")
    db.execute("INSERT INTO t VALUES (1), (2)")
    try:
        yield folder, db
    finally:
        db.close()


# -- item 4: one statement per file, on every path --------------------------------------------------------


MULTI = [
    "SELECT 1 AS one; DELETE FROM t",
    "DELETE FROM t WHERE n = 1; DELETE FROM t",
    "UPDATE t SET n = n + 10; COMMIT",
    "-- key: n\nSELECT n FROM t;\n/* a comment */ DELETE FROM t;\n-- end\n",
    "SELECT n FROM t WHERE n > %(at)s; DELETE FROM t",
]


@pytest.mark.parametrize("text", MULTI)
def test_a_named_file_with_two_statements_is_refused_on_every_path(
        folder_db: tuple[Path, SQLConnection], text: str) -> None:
    folder, db = folder_db
    (folder / "two.sql").write_text(text)
    params = {"at": 0} if "%(at)s" in text else None
    for call in (lambda: db.run("two", params), lambda: db.query("two", params)):
        with pytest.raises(ConfigError, match=r"two\.sql: a named query is one statement; this one holds 2"):
            call()
    with pytest.raises(FilterError, match=r"inline SQL: a named query is one statement; this one holds 2"):
        db.sql(text, params)
    with db.transaction():
        db.execute("UPDATE t SET n = n + 100")
        with pytest.raises(ConfigError, match="is one statement"):
            db.run("two", params)
        assert [r["n"] for r in db.execute("SELECT n FROM t ORDER BY n").fetchall()] == [101, 102]
    assert [r["n"] for r in db.execute("SELECT n FROM t ORDER BY n").fetchall()] == [101, 102]


@pytest.mark.parametrize("text", ["SELECT 1 AS one; DELETE FROM t", "UPDATE t SET n = n + 10; COMMIT",
                                  "DELETE FROM t WHERE n = 1; DELETE FROM t"])
def test_a_statement_the_splitter_missed_still_runs_as_one_through_the_extended_protocol(
        folder_db: tuple[Path, SQLConnection], text: str) -> None:
    _, db = folder_db
    # as parsed before the splitter's check: the server must still refuse the second statement
    statement = dataclasses.replace(parse_sql("one", "SELECT 1", "one.sql"), text=text,
                                    verb=text.split()[0].lower())
    with db.transaction():
        db.execute("UPDATE t SET n = n + 100")
        with pytest.raises(QueryError, match="cannot insert multiple commands into a prepared statement"):
            run_statement(db, statement, None)
    assert [r["n"] for r in db.execute("SELECT n FROM t ORDER BY n").fetchall()] == [1, 2]


def test_one_statement_files_still_run_without_parameters(folder_db: tuple[Path, SQLConnection]) -> None:
    folder, db = folder_db
    (folder / "clear.sql").write_text("-- Deletes every row.\nDELETE FROM t WHERE n > 1;\n-- the end\n")
    (folder / "listed.sql").write_text("SELECT n, ';' AS semi, $$a;b$$ AS dollar FROM t -- x; y\nORDER BY n")
    (folder / "unused_int.sql").write_text("SELECT n FROM t WHERE n <> 0 /* %%s */")
    assert db.run("listed") == [{"n": 1, "semi": ";", "dollar": "a;b"}, {"n": 2, "semi": ";", "dollar": "a;b"}]
    assert db.run("unused_int") == [{"n": 1}, {"n": 2}]
    assert db.query("listed").count() == 2
    assert db.run("clear") == 1
    assert db.sql("SELECT n FROM t;").find_one() == {"n": 1}


# -- item 8: the description cache is keyed by the types psycopg sends --------------------------------------


def test_a_list_of_strings_after_a_list_of_ints(sql_db: SQLConnection) -> None:
    text = "SELECT %(x)s AS v"
    assert sql_db.sql(text, {"x": [1, 2]}).find_one({"v": [1, 2]}) == {"v": [1, 2]}
    strings = sql_db.sql(text, {"x": ["a", "b"]})  # psycopg sends a list of str untyped: the server reads text
    assert strings.columns["v"].type == "text"
    assert strings.find_one({"v": "{a,b}"}) == {"v": "{a,b}"}
    assert sql_db.sql(text, {"x": [1.5]}).find_one({"v": [1.5]}) == {"v": [1.5]}
    assert sql_db.sql(text, {"x": [1, 2]}).columns["v"].type == "smallint[]"


def test_a_large_int_after_a_small_one(sql_db: SQLConnection) -> None:
    text = "SELECT %(x)s AS v"
    assert sql_db.sql(text, {"x": 1}).count({"v": 1}) == 1
    large = sql_db.sql(text, {"x": 2**40})
    assert large.columns["v"].type == "bigint" and large.count({"v": 2**40}) == 1
    assert sql_db.sql(text, {"x": 10**30}).count({"v": 10**30}) == 1


def test_an_aware_datetime_after_a_naive_one_matches_its_own_row(sql_settings: SQLSettings) -> None:
    with SQLConnection(settings=sql_settings) as db:
        db.execute(f"ALTER DATABASE {sql_settings.database} SET timezone = 'America/Santiago'")
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)
    aware = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    text = "SELECT %(t)s AS t"
    with SQLConnection(settings=sql_settings) as db:
        assert db.execute("SHOW timezone").fetchone() == {"TimeZone": "America/Santiago"}
        assert db.sql(text, {"t": naive}).count({"t": naive}) == 1
        source = db.sql(text, {"t": aware})
        assert source.columns["t"].type == "timestamp with time zone"
        assert source.count({"t": aware}) == 1
        assert source.find_one({"t": aware}) == {"t": aware}


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\x0b", "\x0c", "\x1c", "\r"])
def test_line_breaks_python_knows_and_sql_does_not_are_kept(sql_db: SQLConnection, char: str) -> None:
    source = sql_db.sql(f'SELECT \'a{char}b\' AS "c{char}d"')
    assert list(source.columns) == [f"c{char}d"]
    assert source.find_one() == {f"c{char}d": f"a{char}b"}
