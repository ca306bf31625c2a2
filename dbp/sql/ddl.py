"""DDL that turns one catalog into another, for ``make_migrations``.

Type, default, constraint and index text comes from the server's own
``format_type`` / ``pg_get_expr`` / ``pg_get_constraintdef`` /
``pg_get_indexdef``; names are always quoted with ``psycopg.sql.Identifier``.
Statements are ordered so that each one is valid when it runs: constraints and
indexes that go away are dropped first, then tables and partitions, then new
tables and partitions (a parent before its partitions) are created, columns
change, and new constraints (foreign keys last) and indexes come at the end.

A partitioned table gets the same DDL as a plain one (PostgreSQL passes column,
constraint and index changes on to every partition; nothing here uses
``CONCURRENTLY``, which a partitioned table refuses). A partition that goes
away is dropped with its rows, as a table or column is. What PostgreSQL cannot
change in place, a partition key or bound, plain to partitioned and back, the
type of a key column, is refused (:func:`refusals`): that is a data migration
to write by hand.
"""

from __future__ import annotations

import re
from typing import Optional

from psycopg import sql

from dbp.errors import OperationError
from dbp.sql.catalog import Catalog, Column, Constraint, Partition, Table

__all__ = ["migration_ddl", "refusals", "refused"]


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
    key = f" PARTITION BY {table.partitioned_by}" if table.partitioned_by else ""
    return f"CREATE TABLE {_ident(table.name)} (\n    {body}\n){key};"


def _create_partition(table: Table, p: Partition) -> str:
    key = f" PARTITION BY {p.partitioned_by}" if p.partitioned_by else ""
    return f"CREATE TABLE {_ident(p.name)} PARTITION OF {_ident(p.parent or table.name)} {p.bound}{key};"


def _create_partitions(table: Table, names: set[str]) -> list[str]:
    """``CREATE TABLE ... PARTITION OF`` for the partitions ``names`` of ``table``, each after its parent."""

    def depth(name: str) -> int:
        seen = 0
        parent = table.partitions[name].parent
        while parent in table.partitions and seen <= len(table.partitions):  # a cycle cannot come from a server
            parent = table.partitions[parent].parent
            seen += 1
        return seen

    return [_create_partition(table, table.partitions[n]) for n in sorted(names, key=lambda n: (depth(n), n))]


def _drop_partitions(live: Table, names: set[str]) -> list[str]:
    """``DROP TABLE`` for the partitions ``names`` of ``live`` whose parent stays: the others go with it."""
    return [f"DROP TABLE {_ident(n)};" for n in sorted(names) if live.partitions[n].parent not in names]


def _keyed(key: Optional[str]) -> str:
    return f"partitioned by {key}" if key else "not partitioned"


_LITERAL = re.compile(r"'(?:[^']|'')*'")
_WORD = re.compile(r'"((?:[^"]|"")*)"|([A-Za-z_][A-Za-z0-9_$]*)')


def _key_columns(table: Table) -> set[str]:
    """The columns a partition key of ``table`` (at any level) may name; a function's name may be among them."""
    keys = [table.partitioned_by, *(p.partitioned_by for p in table.partitions.values())]
    words: set[str] = set()
    for key in keys:
        if key:
            text = _LITERAL.sub("", key.partition(" ")[2])
            words |= {quoted.replace('""', '"') or bare for quoted, bare in _WORD.findall(text)}
    return words & {c.name for c in table.columns}


def refusals(live: Catalog, wanted: Catalog) -> list[str]:
    """What changing ``live`` into ``wanted`` needs that no DDL does in place, one ``what from X to Y`` each.

    PostgreSQL cannot change a table's partition key, a partition's bounds or
    key, make a plain table partitioned or back, or change the type of a column
    a partition key uses: rows would have to move. That needs a data migration.
    """
    out: list[str] = []
    for name in sorted(set(live.tables) & set(wanted.tables)):
        have, want = live.tables[name], wanted.tables[name]
        if have.partitioned_by != want.partitioned_by:
            out.append(f"table {name} from {_keyed(have.partitioned_by)} to {_keyed(want.partitioned_by)}")
            continue
        keyed = _key_columns(have)
        for column in want.columns:  # first: the bounds of such a column print differently too
            old = have.column(column.name)
            if old is not None and old.type != column.type and column.name in keyed:
                out.append(f"column {name}.{column.name}, in a partition key, from {old.type} to {column.type}")
        for pname in sorted(have.partitions.keys() & want.partitions.keys()):
            a, b = have.partitions[pname], want.partitions[pname]
            if a.parent != b.parent:
                out.append(f"partition {pname} of {name} from a partition of {a.parent} to one of {b.parent}")
            if a.bound != b.bound:
                out.append(f"partition {pname} of {name} from {a.bound} to {b.bound}")
            if a.partitioned_by != b.partitioned_by:
                out.append(f"partition {pname} of {name} from {_keyed(a.partitioned_by)} "
                           f"to {_keyed(b.partitioned_by)}")
    return out


def refused(live: Catalog, wanted: Catalog) -> Optional[OperationError]:
    """The error make_migrations raises when :func:`refusals` finds something, else None."""
    found = refusals(live, wanted)
    if not found:
        return None
    more = f" (and {len(found) - 1} more change(s) like it)" if len(found) > 1 else ""
    return OperationError(
        f"sql: make_migrations cannot change {found[0]}{more}: PostgreSQL cannot re-partition rows in place; "
        "write that data migration by hand (create the new table, copy the rows, swap the names: see "
        "'Partitioned tables' in docs/migrations.md); nothing was written",
        details=found,
    )


def migration_ddl(live: Catalog, wanted: Catalog) -> str:
    """Statements that change ``live`` into ``wanted`` (column order aside).

    Raises the :func:`refused` error when that needs a data migration.
    """
    error = refused(live, wanted)
    if error is not None:
        raise error
    drops_fk: list[str] = []
    drops_other: list[str] = []
    drop_tables: list[str] = []
    create_tables: list[str] = []
    create_partitions: list[str] = []
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
        create_tables += _create_partitions(table, set(table.partitions))
        adds_fk += [_add_constraint(name, c) for c in table.constraints.values() if c.kind == "f"]
        indexes_add += [i.create + ";" for i in table.indexes.values()]

    for name in sorted(set(live.tables) & set(wanted.tables)):
        have, want = live.tables[name], wanted.tables[name]
        t = _ident(name)
        have_cols = {c.name: c for c in have.columns}
        want_cols = {c.name: c for c in want.columns}
        drop_tables += _drop_partitions(have, set(have.partitions) - set(want.partitions))
        create_partitions += _create_partitions(want, set(want.partitions) - set(have.partitions))
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
        drops_fk + indexes_drop + drops_other + drop_tables + create_tables + create_partitions + columns
        + adds_other + adds_fk + indexes_add
    )
    return "\n".join(statements) + ("\n" if statements else "")
