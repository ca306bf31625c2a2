"""Adversarial review (trust3, c): repros that fail on the current code."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from dbp import DbpError
from dbp.mongo.connection import MongoConnection
from dbp.sql.connection import SQLConnection

ITEM_SQL = """
CREATE TABLE item (
    id bigint PRIMARY KEY,
    n bigint,
    x double precision,
    s text,
    tags text[],
    nums bigint[],
    doc jsonb
);
"""
FIELDS = ["n", "x", "s", "tags", "nums", "doc"]


class Pair:
    def __init__(self, sql: SQLConnection, mongo: MongoConnection) -> None:
        self.q = {"sql": sql.query("item"), "mongo": mongo.query("item")}

    def seed(self, rows: list[dict[str, Any]]) -> None:
        self.q["sql"].bulk_insert(rows)
        self.q["mongo"].bulk_insert([{("_id" if k == "id" else k): v for k, v in r.items()} for r in rows])

    def update(self, flt: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for engine, q in self.q.items():
            f = {("_id" if k == "id" else k): v for k, v in flt.items()} if engine == "mongo" else flt
            try:
                out[engine] = q.update(f, upd)
            except DbpError:
                out[engine] = "error"
        return out

    def rows(self, engine: str) -> list[dict[str, Any]]:
        key = "id" if engine == "sql" else "_id"
        out = []
        for row in self.q[engine].find_all(sort=[(key, 1)], paginate=False):
            row = {("id" if k == "_id" else k): v for k, v in row.items()}
            out.append({"id": row["id"], **{f: row.get(f) for f in FIELDS}})
        return out


@pytest.fixture
def pair(sql_db: SQLConnection, mongo_db: MongoConnection) -> Pair:
    sql_db.execute(ITEM_SQL)
    return Pair(sql_db, mongo_db)


# --- URLs with passwords ------------------------------------------------------------------------

def test_sql_url_password_with_query_and_at_is_refused_not_sent_to_dns() -> None:
    """Password ``1234?host=s3cr3tpart`` written unescaped: the ``@`` comes after ``?`` (ambiguous).

    dbp accepts it, takes ``s3cr3tpart@db.example.com`` as the host (sent to DNS) and prints
    it in the settings' repr: part of the password leaks.
    """
    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    url = "postgresql://u:1234?host=s3cr3tpart@db.example.com"
    with pytest.raises(ConfigError) as info:
        settings = resolve_config({"SQL": {"URL": url}}, environ={}).settings("sql")
        assert "s3cr3tpart" not in repr(settings)
        assert "s3cr3tpart" not in str(settings.params.get("host"))
    assert "s3cr3tpart" not in str(info.value)


def test_mongo_url_password_with_query_and_at_is_refused() -> None:
    """Password ``12?appname=s3cr3tpart`` unescaped: accepted, and the repr prints the password's tail."""
    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    url = "mongodb://u:12?appname=s3cr3tpart@h.example.com"
    with pytest.raises(ConfigError) as info:
        settings = resolve_config({"MONGO": {"URL": url, "DATABASE": "d"}}, environ={}).settings("mongo")
        assert "s3cr3tpart" not in repr(settings)
    assert "s3cr3tpart" not in str(info.value)


def test_sql_multi_host_url_error_names_a_real_problem() -> None:
    """libpq's multi-host URL (``h1:5432,h2:5433``) is either taken or refused as multi-host;
    dbp says 'the port must be a port number from 1 to 65535' of ports that are valid."""
    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"multi-host URLs .* are not supported") as info:
        resolve_config({"SQL": {"URL": "postgresql://u@h1:5432,h2:5433/db"}}, environ={}).settings("sql")
    assert "port number from 1 to 65535" not in str(info.value), str(info.value)


# --- maxTimeMS on every MongoDB read --------------------------------------------------------------

class _Reads:
    """Records MongoDB read commands (find, aggregate, count, distinct) while ``on``."""

    on = False
    seen: ClassVar[list[dict[str, Any]]] = []

    def started(self, event: Any) -> None:
        if _Reads.on and event.command_name in ("find", "aggregate", "count", "distinct"):
            _Reads.seen.append(dict(event.command))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


def test_get_or_create_read_has_max_time_ms(mongo_settings: Any) -> None:
    """get_or_create with ``_id`` in the filter reads the document back with a bare find_one: no maxTimeMS."""
    from pymongo import monitoring

    class Listener(_Reads, monitoring.CommandListener):
        pass

    monitoring.register(Listener())
    with MongoConnection(settings=mongo_settings) as db:
        q = db.query("things")
        q.bulk_insert([{"_id": 1, "a": 1}])
        _Reads.seen.clear()
        _Reads.on = True
        try:
            q.get_or_create({"_id": 1})
            q.get_or_create({"_id": 2}, a=5)
        finally:
            _Reads.on = False
    assert _Reads.seen, "no read seen"
    assert all("maxTimeMS" in c for c in _Reads.seen), [
        {k: v for k, v in c.items() if k in ("find", "filter", "maxTimeMS")} for c in _Reads.seen]


# --- $regex: linear by construction? -------------------------------------------------------------

def _best_ms(q: Any, flt: dict[str, Any]) -> float:
    import time

    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        list(q.find_all(flt, paginate=False))
        best = min(best, time.perf_counter() - start)
    return best * 1000


@pytest.mark.parametrize(("pattern", "options"), [
    # eight top-level alternatives, each admitted on its own ("costs add"): each start position
    # runs every branch to the end of the value -> 8 * n^2 / 2 steps; "i" turns z into [zZ]
    ("[^z]*z|[^y]*y|[^x]*x|[^w]*w|[^v]*v|[^u]*u|[^t]*t|[^s]*s", "i"),
    ("(?:[^z][^z])*z|(?:[^y][^y])*y|(?:[^x][^x])*x|(?:[^w][^w])*w|(?:[^v][^v])*v|(?:[^u][^u])*u"
     "|(?:[^t][^t])*t|(?:[^s][^s])*s", "i"),
])
def test_admitted_regex_is_fast_on_a_1000_character_value_mongo(mongo_db: MongoConnection, pattern: str,
                                                                 options: str) -> None:
    from dbp.errors import FilterError
    from dbp.regex import translate

    # fixed: refused (at most one unanchored alternative with a loop that can fail); what is still
    # admitted nearby (one such alternative, the others anchored) must be fast
    with pytest.raises(FilterError, match=r"a second unanchored alternative with a loop|which can also start the"):
        translate(pattern, options)
    admitted = "|".join("^" + b for b in pattern.split("|"))  # each [^z]* run can hold a start: anchored
    translate(admitted, options)
    q = mongo_db.query("t")
    q.bulk_insert([{"_id": 1, "s": "a" * 1000}])
    base = _best_ms(q, {"s": {"$regex": "^b"}})
    spent = _best_ms(q, {"s": {"$regex": admitted, "$options": options}})
    assert spent - base < 50, f"{spent:.0f} ms (a trivial pattern: {base:.0f} ms)"


def test_admitted_regex_is_fast_on_a_1000_character_value_sql(sql_db: SQLConnection) -> None:
    """Fixed repeats of long literal groups (no choice anywhere, at most 256 characters):
    PostgreSQL expands each ``{100}`` into thousands of states; one 1,000-character value takes
    70-120 ms (compiling and running a pattern the server has not seen; its regex cache holds 32)."""
    import time

    from dbp.errors import FilterError
    from dbp.regex import MAX_EXPANDED, translate

    for pattern in [("(?:" + "a" * 30 + "){100}") * 6, ("(?:" + "a" * 118 + "){100}") * 2,
                    ("(?:" + "a" * 27 + "){100}") * 7]:
        with pytest.raises(FilterError, match="expand the pattern to"):  # fixed: refused
            translate(pattern)
    # the largest expansions still admitted must be fast
    patterns = [("^(?:" + "a" * 30 + "){17}"), ("^(?:" + "a" * 5 + "){100}") + "a" * 10,
                ("(?:" + "a" * 25 + "){10}") * 2 + "a" * 12, "^" + ("(?:" + "a" * 25 + "){10}") * 2 + "a" * 11]
    assert all(len(p) <= 256 for p in patterns) and MAX_EXPANDED == 512
    sql_db.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
    q = sql_db.query("t")
    q.bulk_insert([{"id": 1, "s": "a" * 1000}])
    base = _best_ms(q, {"s": {"$regex": "^b"}})
    worst = 0.0
    for pattern in patterns:
        translate(pattern)  # admitted
        start = time.perf_counter()
        list(q.find_all({"s": {"$regex": pattern}}, paginate=False))
        worst = max(worst, (time.perf_counter() - start) * 1000)
    assert worst - base < 50, f"{worst:.0f} ms (a trivial pattern: {base:.0f} ms)"


# --- the update language: half-applied writes ---------------------------------------------------

@pytest.mark.parametrize("method", ["update", "bulk_update"])
def test_failing_update_leaves_every_document_as_it_was_on_both_engines(pair: Pair, method: str) -> None:
    """``$inc`` on ``doc.a`` where one of three rows holds a string there: SQL refuses the whole
    statement (nothing changes); MongoDB increments the other documents, then reports the error."""
    pair.seed([{"id": 1, "doc": {"a": 1}}, {"id": 2, "doc": {"a": "x"}}, {"id": 3, "doc": {"a": 3}}])
    for engine, q in pair.q.items():
        key = "id" if engine == "sql" else "_id"
        with pytest.raises(DbpError):
            if method == "update":
                q.update({key: {"$in": [1, 2, 3]}}, {"$inc": {"doc.a": 1}})
            else:
                q.bulk_update([{key: 1}, {key: 2}, {key: 3}], [{"$inc": {"doc.a": 1}}] * 3)
    assert [r["doc"] for r in pair.rows("sql")] == [{"a": 1}, {"a": "x"}, {"a": 3}]
    assert [r["doc"] for r in pair.rows("mongo")] == [{"a": 1}, {"a": "x"}, {"a": 3}]


# --- Airflow connections: every form maps the same -----------------------------------------------

def test_airflow_uri_and_json_forms_map_an_ipv6_host_alike_sql() -> None:
    """``postgres://u:pw@[::1]:5432/db`` keeps the brackets as the host (libpq then cannot resolve
    ``[::1]``: 'could not translate host name'); the JSON form (and Airflow's own URI parse, whose
    ``host`` is ``urlsplit().hostname``) gives ``::1``."""
    from dbp.airflow.mapping import connection_from_env, section_for

    uri = connection_from_env("postgres://u:pw@[::1]:5432/db", "x", "AIRFLOW_CONN_X")
    js = connection_from_env('{"conn_type": "postgres", "host": "::1", "port": 5432, "login": "u", '
                             '"password": "pw", "schema": "db"}', "x", "AIRFLOW_CONN_X")
    assert section_for(uri, "sql") == section_for(js, "sql")


def test_airflow_ipv6_host_field_works_on_mongo() -> None:
    """Airflow stores an IPv6 host without brackets (JSON form, or DbpHook's Connection.host):
    dbp hands ``::1`` to MongoClient, which refuses it; the settings are unusable."""
    from dbp.airflow.mapping import connection_from_env, section_for
    from dbp.config import resolve_config

    js = connection_from_env('{"conn_type": "mongo", "host": "::1", "port": 27017, "login": "u", '
                             '"password": "pw", "schema": "db"}', "x", "AIRFLOW_CONN_X")
    uri = connection_from_env("mongo://u:pw@[::1]:27017/db", "x", "AIRFLOW_CONN_X")
    s_js = resolve_config({"MONGO": section_for(js, "mongo")}, environ={}).settings("mongo")
    s_uri = resolve_config({"MONGO": section_for(uri, "mongo")}, environ={}).settings("mongo")
    assert s_js.masked_url() == s_uri.masked_url()
    from dbp.errors import ServerUnavailable

    # no server there: a ServerUnavailable (from connecting, or from the query), not a ConfigError
    with pytest.raises(ServerUnavailable), MongoConnection(settings=s_js) as db:
        db.query("t").count()


def test_sql_query_string_password_with_ampersand_tail_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """``?password=S3cret&Tail9x`` (an unescaped '&' in the password): the tail becomes a parameter
    name, and the 'ignoring parameter(s) libpq does not accept' log line prints it."""
    import logging

    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError, match="a URL query parameter has no '='") as info:
        resolve_config({"SQL": {"URL": "postgresql://u@h/db?password=S3cret&Tail9x"}}, environ={}).settings("sql")
    assert "Tail9x" not in str(info.value)
    assert "Tail9x" not in caplog.text
    # a tail that looks like a parameter is not named in the log line either
    resolve_config({"SQL": {"URL": "postgresql://u@h/db?password=S3cret&Tail9x=1&other=2"}},
                   environ={}).settings("sql")
    assert "Tail9x" not in caplog.text and "other" in caplog.text


def test_mongo_query_string_secret_with_ampersand_tail_not_in_repr() -> None:
    """``authMechanismProperties=AWS_SESSION_TOKEN:Ab1&Zz9tail``: the masked URL (repr, messages)
    masks ``Ab1`` and prints the rest of the token, ``Zz9tail``."""
    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    url = "mongodb://u@h/db?authMechanismProperties=AWS_SESSION_TOKEN:Ab1&Zz9tail"
    from dbp._redact import mask_url

    with pytest.raises(ConfigError, match="a URL query parameter has no '='") as info:
        resolve_config({"MONGO": {"URL": url, "DATABASE": "d"}}, environ={}).settings("mongo")
    assert "Zz9tail" not in str(info.value)
    assert "Zz9tail" not in mask_url(url)  # masked through the tail wherever a URL is printed
    assert "Zz9tail" not in mask_url(url.replace("Zz9tail", "Zz9tail-x=1"))
    assert mask_url(url + "&w=1") == "mongodb://u@h/db?authMechanismProperties=***&w=1"


# --- error messages name what the user can change ------------------------------------------------

def test_too_deep_update_path_is_named_as_too_deep() -> None:
    """A 40-part path (no empty part, no '$', no NUL) is refused as 'a part is empty, starts
    with $ or holds a NUL': the message names a cause that is not there (the real one: depth)."""
    from dbp.errors import FilterError
    from dbp.updates import parse_update

    path = "doc." + ".".join(f"a{i}" for i in range(40))
    with pytest.raises(FilterError) as info:
        parse_update({"$set": {path: 1}})
    assert "empty, starts with $ or holds a NUL" not in str(info.value), str(info.value)


def test_config_repr_of_ambiguous_url_prints_no_password_part() -> None:
    """The accepted ``postgresql://u:1234?host=wordXYZ@host`` (password ``1234?host=wordXYZ``):
    ``repr(Config)`` masks nothing (the userinfo is not found), printing the password."""
    from dbp._redact import mask_mapping
    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    with pytest.raises(ConfigError, match="unescaped '@' after its host") as info:
        resolve_config({"SQL": {"URL": "postgresql://u:1234?host=wordXYZ@host"}}, environ={})
    assert "wordXYZ" not in str(info.value)
    assert "wordXYZ" not in repr(mask_mapping({"URL": "postgresql://u:1234?host=wordXYZ@host"}))  # Config's repr


def test_env_url_error_names_the_variable_the_user_set() -> None:
    """A bad ``$DBP_SQL_URL`` is reported as ``DB_CONFIG.SQL.URL``, a key the user never wrote
    (no settings file, no DB_CONFIG): the message should name ``DBP_SQL_URL``."""
    from dbp.config import resolve_config
    from dbp.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        resolve_config(None, environ={"DBP_SQL_URL": "postgresql://u:p@ss/word@host/db"}).settings("sql")
    assert "DBP_SQL_URL" in str(info.value), str(info.value)
