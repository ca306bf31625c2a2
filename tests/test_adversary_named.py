"""Adversary repros for named queries and pipelines (issue 12).

Each test states a promise from the issue or the README; an independent adversary
wrote them without seeing the suite, and each failed until the cause it names was fixed.
"""

from __future__ import annotations

import pytest

import dbp
from dbp.mongo.connection import MongoConnection
from dbp.sql import admin as sql_admin
from dbp.sql.connection import SQLConnection


def test_an_inline_source_never_writes_even_when_its_text_closes_the_wrapping(sql_db: SQLConnection) -> None:
    """db.sql makes a *read-only* source; describing it must not run a second, writing statement.

    The describe step runs ``SELECT * FROM (\\n<text>\\n) AS q LIMIT 0`` with no
    parameters, which psycopg sends with the simple protocol: a text that closes
    the parenthesis smuggles a DELETE through, and it runs before any error.
    """
    sql_admin.initdb(sql_db)
    sql_db.query("object").bulk_insert([{"oid": "survivor"}])
    smuggled = "SELECT 1 AS a) AS q; DELETE FROM object; SELECT * FROM (SELECT 1 AS a"
    with pytest.raises(dbp.DbpError):
        sql_db.sql(smuggled).find_one()
    with SQLConnection(settings=sql_db.settings) as other:  # committed: another session sees it gone
        assert other.query("object").count() == 1  # the row the read-only source deleted


def test_output_column_types_follow_the_parameters_not_the_first_description(sql_db: SQLConnection) -> None:
    """The describe cache is keyed by the statement text alone, but output types depend on the parameters."""
    text = "-- key: v\nSELECT %(x)s AS v"
    assert sql_db.sql(text, {"x": 1}).find_one() == {"v": 1}  # describes v as smallint, cached
    as_float = sql_db.sql(text, {"x": 1.5})
    assert as_float.find_one() == {"v": 1.5}
    assert as_float.find_one({"v": 1.5}) == {"v": 1.5}  # silently no row: 1.5 "equals no smallint"
    as_text = sql_db.sql(text, {"x": "text"})
    assert as_text.find_one({"v": "text"}) == {"v": "text"}  # FilterError: v is smallint


def test_offset_pages_of_a_keyless_source_cover_every_row_once(sql_db: SQLConnection) -> None:
    """Without ``-- key`` nothing breaks ties: pages of a sort with ties repeat rows and skip others.

    dbp neither refuses nor completes the order (e.g. with every output column),
    so db.sql(...).paginate and keyless named queries give wrong pages silently.
    """
    sql_admin.initdb(sql_db)
    sql_db.query("object").bulk_insert([{"oid": f"o{i:05d}", "ndet": i % 2} for i in range(3000)])
    source = sql_db.sql("SELECT oid, ndet FROM object")
    seen: list[str] = []
    for page in range(1, 31):
        items = source.paginate(page=page, per_page=100, sort=[("ndet", 1)], count=False).items
        seen += [r["oid"] for r in items]
    assert len(seen) == 3000
    assert len(set(seen)) == 3000


@pytest.mark.parametrize("name", ["object_list/../object_list", "a..b"])
def test_a_hostile_name_on_mongo_is_a_dbp_error(mongo_db: MongoConnection, name: str) -> None:
    """db.query(name) on MongoDB lets pymongo's InvalidName through for a name with '..' (pre-existing check)."""
    with pytest.raises(dbp.DbpError):
        mongo_db.query(name)


def test_a_keyset_walk_over_a_real_output_column_visits_every_row_once(sql_db: SQLConnection) -> None:
    """A float4 (``real``) output column comes back as its short decimal (0.33333334), which the token carries;

    compared as float8 with the stored value (0.3333333432674408) it falls on the
    wrong side, so each page boundary repeats a row (25 rows for 23). The same
    happens on a table with a real column (the shared keyset code), and an equality
    filter with a value read back finds nothing.
    """
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, v real)")
    sql_db.execute("INSERT INTO t SELECT g, (g / 3.0)::real FROM generate_series(1, 23) AS g")
    source = sql_db.sql("-- key: id\nSELECT id, v FROM t")
    full = list(source.find_all(sort=[("v", -1)], paginate=False))
    page = source.paginate(per_page=5, keyset=True, sort=[("v", -1)])
    seen = list(page.items)
    while page.has_next:
        page = page.next()
        seen += page.items
    assert seen == full
    row = source.find_one({"id": 1})
    assert row is not None and source.find_one({"v": row["v"]}) == row
