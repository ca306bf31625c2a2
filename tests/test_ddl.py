"""make_migrations' DDL generator, by property: for random schemas A and B, the DDL from A to B
turns A into B, and the DDL from B to A turns it back (on a real server, in a rolled-back transaction).
"""

from __future__ import annotations

from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbp.sql.catalog import Catalog, diff, read_catalog
from dbp.sql.connection import SQLConnection
from dbp.sql.ddl import migration_ddl
from dbp.sqltext import split_statements
from tests.hyp import examples

COLUMNS = {
    "a": ["integer", "bigint", "text"],
    "b": ["double precision", "real"],
    "c": ["character varying", "text"],
    "d": ["boolean"],
    "e": ["timestamp without time zone", "date"],
}
DEFAULTS = {"integer": "0", "bigint": "7", "text": "'x'::text", "double precision": "1.5", "real": "2",
            "character varying": "'y'::character varying", "boolean": "true",
            "timestamp without time zone": "now()", "date": "CURRENT_DATE"}


@st.composite
def tables(draw: Any) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["t0", "t1", "t2"]), min_size=1, max_size=3, unique=True))
    out = {}
    for name in sorted(names):
        cols = {}
        for col in draw(st.lists(st.sampled_from(sorted(COLUMNS)), max_size=5, unique=True)):
            kind = draw(st.sampled_from(COLUMNS[col]))
            cols[col] = (kind, draw(st.booleans()), draw(st.booleans()))  # type, not null, default
        out[name] = {
            "columns": cols,
            "index": draw(st.sampled_from([None, *sorted(cols)])),
            "unique": draw(st.sampled_from([None, *sorted(cols)])),
            "check": "a" in cols and cols["a"][0] != "text" and draw(st.booleans()),
        }
    # a foreign key from a later table to t0's primary key
    if "t0" in out and len(out) > 1 and draw(st.booleans()):
        out[sorted(out)[-1]]["fk"] = True
    return out


def create(spec: dict[str, Any]) -> list[str]:
    statements = []
    for name, table in spec.items():
        parts = ["id bigint PRIMARY KEY"]
        for col, (kind, not_null, default) in table["columns"].items():
            parts.append(f"{col} {kind}" + (f" DEFAULT {DEFAULTS[kind]}" if default else "")
                         + (" NOT NULL" if not_null else ""))
        if table.get("fk"):
            parts.append("parent bigint REFERENCES t0 (id)")
        if table["check"]:
            parts.append(f"CONSTRAINT {name}_a_positive CHECK (a >= 0)")
        statements.append(f"CREATE TABLE {name} ({', '.join(parts)})")
        if table["index"]:
            statements.append(f"CREATE INDEX {name}_{table['index']}_idx ON {name} ({table['index']})")
        if table["unique"]:
            statements.append(f"ALTER TABLE {name} ADD CONSTRAINT {name}_{table['unique']}_key "
                              f"UNIQUE ({table['unique']})")
    return statements


def shape(catalog: Catalog) -> dict[str, Any]:
    """Everything read_catalog compares, column order aside."""
    return {
        name: (sorted((c.name, c.type, c.not_null, c.default) for c in t.columns),
               sorted((c.name, c.definition) for c in t.constraints.values()),
               sorted((i.name, i.definition) for i in t.indexes.values()),
               t.partitioned_by, sorted(t.partitions.values(), key=lambda p: p.name))
        for name, t in catalog.tables.items()
    }


def in_schema(conn: psycopg.Connection[Any], schema: str, statements: list[str]) -> Catalog:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute("SELECT set_config('search_path', %s, true)", (schema,))
    for statement in statements:
        conn.execute(statement)
    return read_catalog(conn, schema)


def round_trip(db: SQLConnection, before: list[str], after: list[str]) -> None:
    """Build ``before`` in schema a and ``after`` in b; the DDL turns a into b and back, exactly."""
    with db.connection() as conn, conn.transaction(force_rollback=True):
        a = in_schema(conn, "a", before)
        b = in_schema(conn, "b", after)
        forward = migration_ddl(a, b)
        migrated = in_schema(conn, "a", [s.text for s in split_statements(forward)])
        assert shape(migrated) == shape(b), forward
        assert diff(migrated, b) == [], forward
        backward = migration_ddl(migrated, a)
        restored = in_schema(conn, "a", [s.text for s in split_statements(backward)])
        assert shape(restored) == shape(a), backward
        assert diff(restored, a) == [], backward
        assert migration_ddl(restored, a) == ""


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=tables(), after=tables())
def test_generated_ddl_turns_one_schema_into_the_other(sql_db: SQLConnection, before: Any, after: Any) -> None:
    round_trip(sql_db, create(before), create(after))
