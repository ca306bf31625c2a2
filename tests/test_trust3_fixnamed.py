"""Named queries and cones after the adv1 findings: declared parameter types, sortability from the catalog,
pipeline parameters in queries and constants, server-side JavaScript refused, one statement trimmed as
PostgreSQL reads it, and refusals that name what the user can change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp.errors import ConfigError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.named import parse_pipeline, parse_sql
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

from .named_data import load_sql


def _mongo(mongo_db: MongoConnection, tmp_path: Path, name: str, doc: dict[str, Any]) -> MongoConnection:
    folder = tmp_path / "queries"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(doc))
    return MongoConnection(settings=dataclasses.replace(mongo_db.settings, queries_dir=folder)).connect()


# -- declared parameter types ----------------------------------------------------------------------

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32),
                    st.text(max_size=3))
_TYPE_OF = {"text": (str,), "integer": (int,), "float": (int, float), "boolean": (bool,)}


def _fits(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return False
    return isinstance(value, _TYPE_OF[kind]) and (kind == "boolean" or not isinstance(value, bool))


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(_TYPE_OF)), value=_VALUES)
def test_declared_param_type_is_checked_alike_on_both_engines(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                              tmp_path: Path, kind: str, value: Any) -> None:
    """A `-- params: p <type>` / "params" declaration accepts the same values on both engines and refuses the
    rest with the same FilterError, before anything runs."""
    sql_text = f"-- params: p {kind}\nSELECT 1 AS a WHERE (%(p)s::text) IS NULL OR TRUE"
    mongo = _mongo(mongo_db, tmp_path, "typed", {"collection": "typed_c", "columns": ["a"], "params": {"p": kind},
                                                 "pipeline": [{"$match": {"a": {"$ne": {"$param": "p"}}}}]})
    outcomes = []
    for make in (lambda: sql_db.sql(sql_text, {"p": value}), lambda: mongo.query("typed", {"p": value})):
        try:
            make()
            outcomes.append("ok")
        except FilterError as exc:
            outcomes.append(str(exc).split(": ", 1)[1])
    expected = "ok" if _fits(kind, value) else f"parameter p is {kind}, not {type(value).__name__} {value!r}"
    assert outcomes == [expected, expected]


@pytest.mark.parametrize(("header", "message"), [
    ("-- params: p decimal", "-- params: gives p 'decimal'; parameter types are text, integer, float, boolean"),
    ("-- params: q text", "-- params: names q, which is not a parameter (p)"),
    ("-- params: p", "-- params: is a list of `name type`, not 'p'"),
])
def test_malformed_params_header_is_refused(header: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sql("t", f"{header}\nSELECT %(p)s AS a", "t.sql")
    assert str(info.value) == f"t.sql: {message}"


def test_malformed_params_in_a_pipeline_file_is_refused() -> None:
    doc = {"collection": "c", "columns": ["a"], "params": {"p": "number"},
           "pipeline": [{"$match": {"a": {"$param": "p"}}}]}
    with pytest.raises(ConfigError, match=r"^p\.json: params gives p 'number'; parameter types are text"):
        parse_pipeline("p", json.dumps(doc), "p.json")


# -- sortability from the catalog ------------------------------------------------------------------


def test_keyless_source_orders_by_every_column_the_catalog_says_sorts(sql_db: SQLConnection) -> None:
    """Types without a btree ordering (json[], point[], xid, cid, jsonpath, aclitem[], a domain over json) are
    left out of a keyless source's tie-break; sortable ones (varchar via text, enum, range, int[]) stay in it."""
    sql_db.execute_raw("DROP DOMAIN IF EXISTS fixnamed_jd; CREATE DOMAIN fixnamed_jd AS json")
    sql_db.execute_raw("DROP TYPE IF EXISTS fixnamed_e; CREATE TYPE fixnamed_e AS ENUM ('b', 'a')")
    text = ("SELECT v.n::varchar AS n, v.e::fixnamed_e AS e, int4range(1, 2) AS r, ARRAY[1] AS ia, "
            "ARRAY['{}'::json] AS js, ARRAY[point(1, 2)] AS pts, '1'::xid AS x, '1'::cid AS c, "
            "'$.a'::jsonpath AS jp, ARRAY[makeaclitem(10, 10, 'SELECT', false)] AS acl, '{}'::fixnamed_jd AS d "
            "FROM (VALUES ('2', 'a'), ('1', 'a'), ('1', 'b')) AS v(n, e)")
    source = sql_db.sql(text)
    assert source._tie_break() == ["n", "e", "r", "ia"]
    assert [(r["n"], r["e"]) for r in source.find_all(paginate=False)] == [("1", "b"), ("1", "a"), ("2", "a")]


# -- pipeline parameters outside expressions -------------------------------------------------------


def test_pipeline_params_in_constants_run_on_the_server(mongo_db: MongoConnection, tmp_path: Path) -> None:
    """$bucketAuto.buckets takes the bare value ({"$literal": n} is refused by the server)."""
    mongo = _mongo(mongo_db, tmp_path, "buckets", {"collection": "bk", "columns": ["n"], "pipeline": [
        {"$bucketAuto": {"groupBy": "$a", "buckets": {"$param": "k"}}}, {"$project": {"_id": 0, "n": "$count"}}]})
    mongo.collection("bk").insert_many([{"a": i} for i in range(6)])
    rows = list(mongo.query("buckets", {"k": 2}).find_all(paginate=False))
    assert sorted(r["n"] for r in rows) == [3, 3]


def test_pipeline_param_placement_by_context() -> None:
    """A query argument and a constant get the bare value; an expression beside them still gets $literal."""
    named = parse_pipeline("g", json.dumps({"collection": "c", "columns": ["a"], "pipeline": [
        {"$sample": {"size": {"$param": "n"}}},
        {"$bucketAuto": {"groupBy": {"$add": ["$a", {"$param": "n"}]}, "buckets": {"$param": "n"}}},
        {"$setWindowFields": {"sortBy": {"a": 1}, "output": {
            "prev": {"$shift": {"output": {"$concat": ["$s", {"$param": "s"}]}, "by": {"$param": "n"}}}}}},
        {"$graphLookup": {"from": "c", "startWith": {"$param": "s"}, "connectFromField": "a", "connectToField": "a",
                          "as": "g", "restrictSearchWithMatch": {"s": {"$param": "s"}}}}]}), "g.json")
    sample, bucket, window, graph = named.bind({"n": 2, "s": "$x"})
    assert sample == {"$sample": {"size": 2}}
    assert bucket["$bucketAuto"] == {"groupBy": {"$add": ["$a", {"$literal": 2}]}, "buckets": 2}
    assert window["$setWindowFields"]["output"]["prev"]["$shift"] == {
        "output": {"$concat": ["$s", {"$literal": "$x"}]}, "by": 2}
    assert graph["$graphLookup"]["startWith"] == {"$literal": "$x"}
    assert graph["$graphLookup"]["restrictSearchWithMatch"] == {"s": "$x"}


# -- server-side JavaScript ------------------------------------------------------------------------


@pytest.mark.parametrize(("operator", "stage"), [
    ("$where", {"$match": {"$where": "this.a == 1"}}),
    ("$function", {"$project": {"a": {"$function": {"body": {"$param": "code"}, "args": [], "lang": "js"}}}}),
    ("$accumulator", {"$group": {"_id": None, "a": {"$accumulator": {"init": "function() {}", "lang": "js"}}}}),
    ("$where", {"$facet": {"f": [{"$match": {"$where": {"$param": "code"}}}]}}),
    ("$function", {"$lookup": {"from": "c", "as": "l", "pipeline": [
        {"$match": {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}}]}}),
])
def test_pipeline_running_javascript_is_refused(operator: str, stage: dict[str, Any]) -> None:
    doc = {"collection": "c", "columns": ["a"], "pipeline": [stage]}
    with pytest.raises(ConfigError) as info:
        parse_pipeline("js", json.dumps(doc), "queries/js.json")
    assert str(info.value) == (f"queries/js.json: a named pipeline may not run server-side JavaScript "
                               f"({operator}): a parameter could become code")


# -- statements as PostgreSQL reads them -----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("SELECT 1 AS a; /* done */ ;\n-- bye", 1),
    ("SELECT $$;\n-- x$$ AS a;", ";\n-- x"),
    ("SELECT 'it''s -- not a comment' AS a -- but this is", "it's -- not a comment"),
    ('-- key: k%%, a\nSELECT 1 AS "k%%", 2 AS a', 1),
])
def test_one_statement_with_trailing_noise_runs(sql_db: SQLConnection, text: str, expected: Any) -> None:
    rows = list(sql_db.sql(text).find_all(paginate=False))
    assert next(iter(rows[0].values())) == expected


def test_two_statements_are_still_refused(sql_db: SQLConnection) -> None:
    with pytest.raises(FilterError, match=r"^inline SQL: a named query is one statement; this one holds 2 "):
        sql_db.sql("SELECT 1; -- x\nSELECT 2;")


# -- refusals name what the user can change --------------------------------------------------------


def test_bundled_query_without_position_names_the_users_queries_dir(sql_db: SQLConnection,
                                                                    mongo_db: MongoConnection) -> None:
    """light_curve declares no position: the message says to copy it into QUERIES_DIR, not to edit dbp's file."""
    load_sql(sql_db, [])
    for db in (sql_db, mongo_db):
        with pytest.raises(FilterError) as info:
            list(db.query("light_curve", {"oid": "A"}).find_all({"$cone": {"ra": 1.0, "dec": 0.0, "radius": 1.0}},
                                                                paginate=False))
        assert str(info.value).startswith("light_curve declares no position for $cone / crossmatch; add ")
        assert "a copy of " in str(info.value) and "in your QUERIES_DIR" in str(info.value)


_NOISE = st.lists(st.sampled_from([";", " -- note", "\n-- note\n", "/* x; -- */", "\n", " ", ";;"]), max_size=4)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(alphabet="ab-;\n'$*/ ", max_size=12), noise=_NOISE)
def test_a_literal_survives_any_trailing_noise(sql_db: SQLConnection, content: str, noise: list[str]) -> None:
    """Whatever a string literal holds (`--`, `;`, newlines, quotes), only what follows the statement is cut."""
    text = "SELECT '" + content.replace("'", "''") + "' AS a" + "".join(noise)
    assert [r["a"] for r in sql_db.sql(text).find_all(paginate=False)] == [content]
