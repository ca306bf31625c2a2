"""The SQL statement splitter: examples, properties, and agreement with a real server."""

from __future__ import annotations

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from dbp.config import resolve_config
from dbp.sql.connection import SQLConnection
from dbp.sqltext import split_statements
from tests.hyp import examples


def test_examples() -> None:
    text = (
        "-- header; with a semicolon\n"
        "CREATE TABLE a (x text DEFAULT 'a;b', \"we;ird\" int);\n"
        "/* block; /* nested; */ still; */\n"
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n"
        "SELECT E'it\\'s;', 'O''Brien;';\n"
        "   ;;  -- empty statements vanish\n"
    )
    statements = split_statements(text, "f.sql")
    assert [s.line for s in statements] == [2, 4, 5]
    assert statements[0].text.startswith("CREATE TABLE a") and statements[0].text.endswith(")")
    assert "$body$ SELECT 1; $body$" in statements[1].text
    assert statements[2].where == "f.sql:5"


# Statements built from pieces that may hide semicolons inside quotes, dollar quotes and comments.
_piece = st.one_of(
    st.text(alphabet="abcxyz0123 ,()=+", min_size=1, max_size=8),
    st.text(alphabet="ab;'\n $", max_size=6).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.text(alphabet='ab;" \n', max_size=6).map(lambda s: '"' + s.replace('"', '""') + '"'),
    st.text(alphabet="ab;'\n ", max_size=6).map(lambda s: "$q$" + s + "$q$"),
    st.text(alphabet="ab;' ", max_size=6).map(lambda s: "/* " + s + " */"),
    st.text(alphabet="ab;' ", max_size=6).map(lambda s: "-- " + s + "\n"),
)
_statement = st.lists(_piece, min_size=1, max_size=6).map(lambda ps: "SELECT " + " ".join(ps))


@given(st.lists(_statement, min_size=1, max_size=5))
def test_split_recovers_the_statements(statements: list[str]) -> None:
    text = ";\n".join(statements) + ";"
    found = split_statements(text)
    assert [s.text.rstrip() for s in found] == [s.rstrip() for s in statements]
    lines = [text.count("\n", 0, text.index(s)) + 1 for s in statements[:1]]
    assert found[0].line == lines[0]


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(_statement, min_size=1, max_size=3))
def test_server_sees_one_command_per_piece(sql_server_url: str, statements: list[str]) -> None:
    """Each piece is a single command to the server (the extended protocol refuses several)."""
    settings_ = resolve_config({"SQL": {"URL": sql_server_url}}, environ={}).settings("sql")
    with SQLConnection(settings=settings_) as db:  # type: ignore[arg-type]
        for statement in split_statements(";\n".join(statements)):
            error = ""
            try:
                with db.transaction() as conn:
                    conn.execute(statement.text, binary=True)  # binary forces the extended protocol
            except psycopg.Error as exc:
                error = str(exc)
            assert "multiple commands" not in error
