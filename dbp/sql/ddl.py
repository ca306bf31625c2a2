"""DDL that turns one catalog into another, for ``make_migrations``.

Type, default, constraint and index text comes from the server's own
``format_type`` / ``pg_get_expr`` / ``pg_get_constraintdef`` /
``pg_get_indexdef``; names are always quoted with ``psycopg.sql.Identifier``.
Statements are ordered so that each one is valid when it runs: constraints and
indexes that go away are dropped first, then tables, then columns change, and
new constraints (foreign keys last) and indexes come at the end.
"""

from __future__ import annotations

from psycopg import sql

from dbp.sql.catalog import Catalog, Column, Constraint, Table

__all__ = ["migration_ddl"]


def _ident(*names: str) -> str:
    return sql.Identifier(*names).as_string(None)


def _column_def(column: Column) -> str:
    text = f"{_ident(column.name)} {column.type}"
    if column.default is not None:
        text += f" DEFAULT {column.default}"
    if column.not_null:
        text += " NOT NULL"
    return text


def _add_constraint(table: str, c: Constraint) -> str:
    return f"ALTER TABLE {_ident(table)} ADD CONSTRAINT {_ident(c.name)} {c.definition};"


def _drop_constraint(table: str, c: Constraint) -> str:
    return f"ALTER TABLE {_ident(table)} DROP CONSTRAINT {_ident(c.name)};"


def _create_table(table: Table) -> str:
    lines = [_column_def(c) for c in table.columns]
    lines += [f"CONSTRAINT {_ident(c.name)} {c.definition}" for c in table.constraints.values() if c.kind != "f"]
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {_ident(table.name)} (\n    {body}\n);"


def migration_ddl(live: Catalog, wanted: Catalog) -> str:
    """Statements that change ``live`` into ``wanted`` (column order aside)."""
    drops_fk: list[str] = []
    drops_other: list[str] = []
    drop_tables: list[str] = []
    create_tables: list[str] = []
    columns: list[str] = []
    adds_other: list[str] = []
    adds_fk: list[str] = []
    indexes_drop: list[str] = []
    indexes_add: list[str] = []

    for name in sorted(set(live.tables) - set(wanted.tables)):
        table = live.tables[name]
        drops_fk += [_drop_constraint(name, c) for c in table.constraints.values() if c.kind == "f"]
        drop_tables.append(f"DROP TABLE {_ident(name)};")
    for name in sorted(set(wanted.tables) - set(live.tables)):
        table = wanted.tables[name]
        create_tables.append(_create_table(table))
        adds_fk += [_add_constraint(name, c) for c in table.constraints.values() if c.kind == "f"]
        indexes_add += [i.create + ";" for i in table.indexes.values()]

    for name in sorted(set(live.tables) & set(wanted.tables)):
        have, want = live.tables[name], wanted.tables[name]
        t = _ident(name)
        have_cols = {c.name: c for c in have.columns}
        want_cols = {c.name: c for c in want.columns}
        # constraints and indexes: drop what goes or changes, add what comes or changes
        for cname, c in sorted(have.constraints.items()):
            other = want.constraints.get(cname)
            gone_col = any(col not in want_cols for col in c.columns)
            if other is None or other.definition != c.definition or gone_col:
                (drops_fk if c.kind == "f" else drops_other).append(_drop_constraint(name, c))
        for cname, c in sorted(want.constraints.items()):
            other = have.constraints.get(cname)
            if other is None or other.definition != c.definition or any(col not in have_cols for col in c.columns):
                (adds_fk if c.kind == "f" else adds_other).append(_add_constraint(name, c))
        for iname, i in sorted(have.indexes.items()):
            other_index = want.indexes.get(iname)
            if other_index is None or other_index.definition != i.definition:
                indexes_drop.append(f"DROP INDEX {_ident(iname)};")
        for iname, i in sorted(want.indexes.items()):
            other_index = have.indexes.get(iname)
            if other_index is None or other_index.definition != i.definition:
                indexes_add.append(i.create + ";")
        # columns
        for cname in [c.name for c in have.columns if c.name not in want_cols]:
            columns.append(f"ALTER TABLE {t} DROP COLUMN {_ident(cname)};")
        for column in [c for c in want.columns if c.name not in have_cols]:
            columns.append(f"ALTER TABLE {t} ADD COLUMN {_column_def(column)};")
        for column in want.columns:
            old = have_cols.get(column.name)
            if old is None:
                continue
            col = _ident(column.name)
            if old.type != column.type:
                if old.default is not None:  # the old default may not cast to the new type
                    columns.append(f"ALTER TABLE {t} ALTER COLUMN {col} DROP DEFAULT;")
                columns.append(
                    f"ALTER TABLE {t} ALTER COLUMN {col} TYPE {column.type} USING {col}::{column.type};"
                )
                if column.default is not None:
                    columns.append(f"ALTER TABLE {t} ALTER COLUMN {col} SET DEFAULT {column.default};")
            elif old.default != column.default:
                columns.append(
                    f"ALTER TABLE {t} ALTER COLUMN {col} DROP DEFAULT;" if column.default is None
                    else f"ALTER TABLE {t} ALTER COLUMN {col} SET DEFAULT {column.default};"
                )
            if old.not_null != column.not_null:
                action = "SET NOT NULL" if column.not_null else "DROP NOT NULL"
                columns.append(f"ALTER TABLE {t} ALTER COLUMN {col} {action};")

    statements = (
        drops_fk + indexes_drop + drops_other + drop_tables + create_tables + columns + adds_other + adds_fk
        + indexes_add
    )
    return "\n".join(statements) + ("\n" if statements else "")
