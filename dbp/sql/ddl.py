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
away is dropped with its rows, as a table or column is; a table is never
dropped to be made again under its name: a plain table that becomes a partition
is attached, a partition that becomes a plain table of the same columns is
detached. A partition's own indexes, constraints, defaults and NOT NULL are
made on it, and a missing copy of an index made ``ON ONLY`` the table is made
and attached. What PostgreSQL cannot change in place, a partition key or bound,
plain to partitioned and back, the type of a key column, is refused
(:func:`refusals`): that is a data migration to write by hand; so are foreign
table partitions, and tables to attach or detach whose columns differ.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Optional

from psycopg import sql

from dbp.errors import OperationError
from dbp.sql.catalog import Catalog, Column, Constraint, Index, Partition, Table

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


def _depth(table: Table, name: str) -> int:
    seen = 0
    parent = table.partitions[name].parent
    while parent in table.partitions and seen <= len(table.partitions):  # a cycle cannot come from a server
        parent = table.partitions[parent].parent
        seen += 1
    return seen


def _by_depth(table: Table, names: Iterable[str]) -> list[str]:
    """``names`` (partitions of ``table``), each after its parent."""
    return sorted(names, key=lambda n: (_depth(table, n), n))


def _create_partitions(table: Table, names: set[str]) -> list[str]:
    """``CREATE TABLE ... PARTITION OF`` for the partitions ``names`` of ``table``, each after its parent."""
    return [_create_partition(table, table.partitions[n]) for n in _by_depth(table, names)]


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


#: Why make_migrations refuses a change, after ``cannot change X``: PostgreSQL cannot move the rows.
_REPARTITION = ("PostgreSQL cannot re-partition rows in place; write that data migration by hand (create the new "
                "table, copy the rows, swap the names: see 'Partitioned tables' in docs/migrations.md)")
_FOREIGN = ("make_migrations creates, changes and drops no foreign table; write that migration by hand "
            "(dbp make_migrations NAME --empty)")


_Homes = dict[str, tuple[Table, Partition]]


def _homes(catalog: Catalog) -> _Homes:
    """Every partition of ``catalog`` by name, with its top-level table."""
    return {name: (table, p) for table in catalog.tables.values() for name, p in table.partitions.items()}


def _column_types(table: Table) -> dict[str, str]:
    return {c.name: c.type for c in table.columns}


def _moves(live: Catalog, wanted: Catalog) -> tuple[_Homes, _Homes]:
    """The plain tables ``live`` has that ``wanted`` has as partitions (to attach), and the partitions ``live`` has
    that ``wanted`` has as plain tables (to detach), each with its top-level table and partition."""
    attach = {n: home for n, home in _homes(wanted).items() if n in live.tables}
    detach = {n: home for n, home in _homes(live).items() if n in wanted.tables}
    return attach, detach


def _attach_refusal(live: Catalog, name: str, root: Table, part: Partition) -> Optional[str]:
    table = live.tables[name]
    parent = live.tables.get(root.name, root)  # as the parent is when the partition is attached
    if table.partitioned_by or part.partitioned_by or parent.partitioned_by != root.partitioned_by:
        return "it or its new parent is partitioned differently"
    if _column_types(table) != _column_types(parent):
        return f"its columns differ from {root.name}'s"
    return None


def _detach_refusal(wanted: Catalog, name: str, root: Table, part: Partition) -> Optional[str]:
    table = wanted.tables[name]
    if table.partitioned_by or part.partitioned_by:
        return "it is partitioned"
    if _column_types(table) != _column_types(root):
        return f"its columns in the schema files differ from {root.name}'s"
    return None


def _constraint_copy(table: str, partition: str, c: Constraint) -> tuple[str, str]:
    index = _copy_name(partition, c.name)
    return (f"the copy of constraint {c.name}'s index on partition {partition} of {table}",
            f"PostgreSQL makes it with the constraint; run ALTER TABLE {_ident(partition)} ADD CONSTRAINT "
            f"{_ident(index)} {c.definition}; ALTER INDEX {_ident(c.name)} ATTACH PARTITION {_ident(index)}; "
            "by hand, then dbp check")


def _refusals(live: Catalog, wanted: Catalog) -> list[tuple[str, str]]:
    """Each change of :func:`refusals` with why make_migrations refuses it (what follows ``cannot change X:``)."""
    out: list[tuple[str, str]] = []
    for name in sorted(set(live.tables) & set(wanted.tables)):
        have, want = live.tables[name], wanted.tables[name]
        if have.partitioned_by != want.partitioned_by:
            out.append((f"table {name} from {_keyed(have.partitioned_by)} to {_keyed(want.partitioned_by)}",
                        _REPARTITION))
            continue
        keyed = _key_columns(have)
        for column in want.columns:  # first: the bounds of such a column print differently too
            old = have.column(column.name)
            if old is not None and old.type != column.type and column.name in keyed:
                out.append((f"column {name}.{column.name}, in a partition key, from {old.type} to {column.type}",
                            _REPARTITION))
        for pname in sorted(have.partitions.keys() & want.partitions.keys()):
            a, b = have.partitions[pname], want.partitions[pname]
            if a.parent != b.parent:
                out.append((f"partition {pname} of {name} from a partition of {a.parent} to one of {b.parent}",
                            _REPARTITION))
            if a.bound != b.bound:
                out.append((f"partition {pname} of {name} from {a.bound} to {b.bound}", _REPARTITION))
            if a.partitioned_by != b.partitioned_by:
                out.append((f"partition {pname} of {name} from {_keyed(a.partitioned_by)} "
                            f"to {_keyed(b.partitioned_by)}", _REPARTITION))
            for c in want.constraints.values():
                if c.kind in ("p", "u", "x") and c.name in have.constraints and c.name in b.copies \
                        and c.name not in a.copies and have.constraints[c.name].definition == c.definition:
                    out.append(_constraint_copy(name, pname, c))
            for c in have.constraints.values():
                if c.kind in ("p", "u", "x") and c.name in want.constraints and c.name in a.copies \
                        and c.name not in b.copies and want.constraints[c.name].definition == c.definition:
                    out.append((f"the copy of constraint {c.name}'s index on partition {pname} of {name}",
                                "only an index made ON ONLY the table lacks it; drop and make the constraint "
                                "by hand"))
    live_homes, wanted_homes = _homes(live), _homes(wanted)
    for pname in sorted(live_homes.keys() & wanted_homes.keys()):
        a_root, b_root = live_homes[pname][0].name, wanted_homes[pname][0].name
        if a_root != b_root:
            out.append((f"partition {pname} from a partition of {a_root} to one of {b_root}", _REPARTITION))
    for pname in sorted(live_homes.keys() | wanted_homes.keys()):
        a_home, b_home = live_homes.get(pname), wanted_homes.get(pname)
        foreign = any(home is not None and home[1].foreign for home in (a_home, b_home))
        same = a_home is not None and b_home is not None and a_home[0].name == b_home[0].name \
            and a_home[1] == b_home[1]
        if foreign and not same:
            root = (b_home or a_home)[0].name  # type: ignore[index]
            out.append((f"foreign table {pname} (a partition of {root})", _FOREIGN))
    attach, detach = _moves(live, wanted)
    for pname, (root, part) in sorted(attach.items()):
        why = _attach_refusal(live, pname, root, part)
        if why is not None:
            out.append((f"table {pname} to a partition of {part.parent}",
                        f"{why}: attach it by hand (ALTER TABLE ... ATTACH PARTITION), never dropped with its rows"))
    for pname, (root, part) in sorted(detach.items()):
        why = _detach_refusal(wanted, pname, root, part)
        if why is not None:
            out.append((f"partition {pname} of {part.parent} to a table",
                        f"{why}: detach it by hand (ALTER TABLE ... DETACH PARTITION), never dropped with its rows"))
    return out


def refusals(live: Catalog, wanted: Catalog) -> list[str]:
    """What changing ``live`` into ``wanted`` needs that no DDL does in place, one ``what from X to Y`` each.

    PostgreSQL cannot change a table's partition key, a partition's bounds or
    key, make a plain table partitioned or back, or change the type of a column
    a partition key uses: rows would have to move. That needs a data migration.
    A foreign table among the partitions, a table to attach or a partition to
    detach whose columns differ, and a missing copy of a constraint's index on
    a partition are refused too: the DDL for those is the user's to write.
    """
    return [what for what, _ in _refusals(live, wanted)]


def refused(live: Catalog, wanted: Catalog) -> Optional[OperationError]:
    """The error make_migrations raises when :func:`refusals` finds something, else None."""
    found = _refusals(live, wanted)
    if not found:
        return None
    more = f" (and {len(found) - 1} more change(s) like it)" if len(found) > 1 else ""
    what, why = found[0]
    return OperationError(f"sql: make_migrations cannot change {what}{more}: {why}; nothing was written",
                          details=[w for w, _ in found])


def _copy_name(partition: str, index: str) -> str:
    """The name make_migrations gives a partition's copy of ``index``: at most 63 bytes, the same every time."""
    name = f"{partition}_{index}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    cut = name.encode()[:54].decode(errors="ignore")
    return f"{cut}_{digest}"


def _index_on(index: Index, name: str, table: str, only: bool) -> str:
    unique = "UNIQUE " if index.unique else ""
    return f"CREATE {unique}INDEX {_ident(name)} ON {'ONLY ' if only else ''}{_ident(table)} USING {index.definition};"


def _copies(have: Optional[Table], want: Table, created: set[str]) -> tuple[list[str], list[str], set[str]]:
    """What gives each partition of ``want`` the copies of ``want``'s indexes it has (an index made ``ON ONLY``
    the table, and attached on some partitions, leaves the others out): drops, statements after every index is
    made, and the indexes those make in place of their plain ``CREATE INDEX``.

    A missing copy is made on the partition and attached (``ALTER INDEX ... ATTACH PARTITION``); a copy too
    many cannot be detached: the table's index is made again, ``ON ONLY``, with the copies wanted. Partitions in
    ``created`` (made or attached by this migration) get a copy of every index from PostgreSQL.
    """
    drops: list[str] = []
    adds: list[str] = []
    replaced: set[str] = set()
    tables = {n for n, p in want.partitions.items() if not p.foreign}  # PostgreSQL indexes no foreign table
    for iname, index in sorted(want.indexes.items()):
        with_copy = {n for n in tables if iname in want.partitions[n].copies}
        old = have.indexes.get(iname) if have is not None else None
        fresh = old is None or old.definition != index.definition
        names: dict[str, str] = {}
        extra = have is not None and any(iname in have.partitions[n].copies
                                         for n in tables - with_copy - created if n in have.partitions)
        if fresh or (tables & created) - with_copy or extra:
            if with_copy == tables:
                continue  # the plain CREATE INDEX, or the index as it is
            if not fresh:
                drops.append(f"DROP INDEX {_ident(iname)};")
            replaced.add(iname)
            adds.append(_index_on(index, iname, want.name, True))
            missing = with_copy
        else:
            assert have is not None
            missing = {n for n in with_copy - created if iname not in have.partitions[n].copies}
            names = {n: dict(have.partitions[n].copy_names).get(iname, "") for n in with_copy - missing - created}
        for n in _by_depth(want, missing):
            part = want.partitions[n]
            names[n] = _copy_name(n, iname)
            parent = iname if part.parent in (None, want.name) else names.get(part.parent or "", "") or iname
            adds.append(_index_on(index, names[n], n, part.partitioned_by is not None))
            adds.append(f"ALTER INDEX {_ident(parent)} ATTACH PARTITION {_ident(names[n])};")
    return drops, adds, replaced


def _effective(table: Table, partition: Optional[str], column: str) -> tuple[Optional[str], bool]:
    """The default and NOT NULL of ``column`` on ``partition`` of ``table`` (None: on the table)."""
    part = table.partitions.get(partition or "")
    if part is None:
        col = table.column(column)
        return (col.default, col.not_null) if col is not None else (None, False)
    default, not_null = _effective(table, part.parent if part.parent != table.name else None, column)
    defaults = dict(part.defaults)
    return defaults.get(column, default), not_null or column in part.not_null


def _partition_columns(have: Table, want: Table, changed: set[tuple[str, str]], created: set[str],
                       attached: dict[str, Table]) -> list[str]:
    """``ALTER TABLE partition ALTER COLUMN ...`` for the defaults and NOT NULL partitions of ``want`` have of
    their own; ``changed``: the (column, "default" or "not null") the statements on the table change (which
    PostgreSQL passes on to every partition). Each statement on a partition is passed on to its partitions too.
    """
    out: list[str] = []
    touched = {(want.name, column, what) for column, what in changed}
    have_cols = {c.name for c in have.columns}
    for name in _by_depth(want, want.partitions):
        part = want.partitions[name]
        if part.foreign:
            continue
        parent = part.parent or want.name
        for column in want.columns:
            target = _effective(want, name, column.name)
            before: Optional[tuple[Optional[str], bool]] = None
            if name in attached:
                old = attached[name].column(column.name)
                before = (old.default, old.not_null) if old is not None else None
            elif name not in created and name in have.partitions and column.name in have_cols:
                before = _effective(have, name, column.name)
            for i, what in enumerate(("default", "not null")):
                via_parent = (parent, column.name, what) in touched
                if via_parent or name in created or before is None:
                    now = _effective(want, parent if parent != want.name else None, column.name)[i]
                    # PostgreSQL 18 keeps a partition's NOT NULL of its own when its parent's goes
                    emit = now != target[i] or (what == "not null" and before is not None and before[i]
                                                and not target[i])
                else:
                    emit = before[i] != target[i]
                if not emit:
                    if via_parent:
                        touched.add((name, column.name, what))
                    continue
                touched.add((name, column.name, what))
                col = f"ALTER TABLE {_ident(name)} ALTER COLUMN {_ident(column.name)}"
                if what == "default":
                    out.append(f"{col} DROP DEFAULT;" if target[0] is None else f"{col} SET DEFAULT {target[0]};")
                else:
                    out.append(f"{col} {'SET' if target[1] else 'DROP'} NOT NULL;")
    return out


def migration_ddl(live: Catalog, wanted: Catalog) -> str:
    """Statements that change ``live`` into ``wanted`` (column order aside).

    Raises the :func:`refused` error when that needs a data migration.
    """
    error = refused(live, wanted)
    if error is not None:
        raise error
    drops_fk: list[str] = []
    drops_other: list[str] = []
    detaches: list[str] = []
    drop_tables: list[str] = []
    create_tables: list[str] = []
    create_partitions: list[str] = []
    attaches: list[str] = []
    columns: list[str] = []
    adds_other: list[str] = []
    adds_fk: list[str] = []
    indexes_drop: list[str] = []
    indexes_add: list[str] = []
    copies_add: list[str] = []

    attach, detach = _moves(live, wanted)
    for name, (root, part) in sorted(detach.items()):
        detaches.append(f"ALTER TABLE {_ident(part.parent or root.name)} DETACH PARTITION {_ident(name)};")

    def add_attaches(want: Table) -> set[str]:
        """ATTACH for the partitions of ``want`` that are plain tables now, each after what it needs."""
        mine = {n for n in want.partitions if n in attach}
        parent_table = live.tables.get(want.name, want)
        for name in _by_depth(want, mine):
            part, table = want.partitions[name], live.tables[name]
            parent = part.parent or want.name
            default_parent = parent if parent != want.name else None
            source = parent_table if default_parent is None or default_parent in parent_table.partitions else want
            for column in table.columns:  # PostgreSQL refuses a partition nullable where its parent is not
                if not column.not_null and _effective(source, default_parent, column.name)[1]:
                    attaches.append(f"ALTER TABLE {_ident(name)} ALTER COLUMN {_ident(column.name)} SET NOT NULL;")
            for c in parent_table.constraints.values():  # and one without the parent's CHECK constraints
                if c.kind == "c" and c.name not in table.constraints:
                    attaches.append(_add_constraint(name, c))
            attaches.append(f"ALTER TABLE {_ident(parent)} ATTACH PARTITION {_ident(name)} {part.bound};")
        return mine

    def partition_extras(have: Optional[Table], want: Table, created: set[str]) -> None:
        """Constraints and indexes partitions of ``want`` have of their own, dropped, changed and made."""
        for name in _by_depth(want, want.partitions):
            part = want.partitions[name]
            if name in attach:
                table = live.tables[name]
                old_c = {n: c for n, c in table.constraints.items() if n in {x.name for x in part.constraints}}
                old_i = {n: i for n, i in table.indexes.items() if n in {x.name for x in part.indexes}}
            elif have is not None and name in have.partitions and name not in created:
                old_c = {c.name: c for c in have.partitions[name].constraints}
                old_i = {i.name: i for i in have.partitions[name].indexes}
            else:
                old_c, old_i = {}, {}
            new_c = {c.name: c for c in part.constraints}
            new_i = {i.name: i for i in part.indexes}
            for cname, c in sorted(old_c.items()):
                if cname not in new_c or new_c[cname].definition != c.definition:
                    (drops_fk if c.kind == "f" else drops_other).append(_drop_constraint(name, c))
            for cname, c in sorted(new_c.items()):
                if cname not in old_c or old_c[cname].definition != c.definition:
                    (adds_fk if c.kind == "f" else adds_other).append(_add_constraint(name, c))
            for iname, i in sorted(old_i.items()):
                if iname not in new_i or new_i[iname].definition != i.definition:
                    indexes_drop.append(f"DROP INDEX {_ident(iname)};")
            for iname, i in sorted(new_i.items()):
                if iname not in old_i or old_i[iname].definition != i.definition:
                    indexes_add.append(i.create + ";")

    for name in sorted(set(live.tables) - set(wanted.tables) - set(attach)):
        table = live.tables[name]
        drops_fk += [_drop_constraint(name, c) for c in table.constraints.values() if c.kind == "f"]
        drop_tables.append(f"DROP TABLE {_ident(name)};")
    for name in sorted(set(wanted.tables) - set(live.tables) - set(detach)):
        table = wanted.tables[name]
        create_tables.append(_create_table(table))
        attached = add_attaches(table)
        create_tables += _create_partitions(table, set(table.partitions) - attached)
        adds_fk += [_add_constraint(name, c) for c in table.constraints.values() if c.kind == "f"]
        _, adds, replaced = _copies(None, table, set(table.partitions))
        indexes_add += [i.create + ";" for i in table.indexes.values() if i.name not in replaced]
        copies_add += adds
        partition_extras(None, table, set(table.partitions) - attached)
        columns += _partition_columns(table, table, set(), set(table.partitions) - attached,
                                      {n: live.tables[n] for n in attached})

    for name in sorted(set(live.tables) & set(wanted.tables)):
        have, want = live.tables[name], wanted.tables[name]
        t = _ident(name)
        have_cols = {c.name: c for c in have.columns}
        want_cols = {c.name: c for c in want.columns}
        drop_tables += _drop_partitions(have, set(have.partitions) - set(want.partitions) - set(detach))
        attached = add_attaches(want)
        new_partitions = set(want.partitions) - set(have.partitions) - attached
        create_partitions += _create_partitions(want, new_partitions)
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
        drops, adds, replaced = _copies(have, want, new_partitions | attached)
        indexes_drop += drops
        copies_add += adds
        for iname, i in sorted(want.indexes.items()):
            other_index = have.indexes.get(iname)
            if (other_index is None or other_index.definition != i.definition) and iname not in replaced:
                indexes_add.append(i.create + ";")
        partition_extras(have, want, new_partitions)
        # columns
        changed: set[tuple[str, str]] = set()
        for cname in [c.name for c in have.columns if c.name not in want_cols]:
            columns.append(f"ALTER TABLE {t} DROP COLUMN {_ident(cname)};")
        for column in [c for c in want.columns if c.name not in have_cols]:
            columns.append(f"ALTER TABLE {t} ADD COLUMN {_column_def(column)};")
            changed |= {(column.name, "default"), (column.name, "not null")}
        for column in want.columns:
            old = have_cols.get(column.name)
            if old is None:
                continue
            col = _ident(column.name)
            if old.type != column.type:
                # the old default (a partition's own too) may not cast to the new type
                if old.default is not None or any(column.name in dict(p.defaults) for p in have.partitions.values()):
                    columns.append(f"ALTER TABLE {t} ALTER COLUMN {col} DROP DEFAULT;")
                    changed.add((column.name, "default"))
                columns.append(
                    f"ALTER TABLE {t} ALTER COLUMN {col} TYPE {column.type} USING {col}::{column.type};"
                )
                if column.default is not None:
                    columns.append(f"ALTER TABLE {t} ALTER COLUMN {col} SET DEFAULT {column.default};")
                    changed.add((column.name, "default"))
            elif old.default != column.default:
                columns.append(
                    f"ALTER TABLE {t} ALTER COLUMN {col} DROP DEFAULT;" if column.default is None
                    else f"ALTER TABLE {t} ALTER COLUMN {col} SET DEFAULT {column.default};"
                )
                changed.add((column.name, "default"))
            if old.not_null != column.not_null:
                action = "SET NOT NULL" if column.not_null else "DROP NOT NULL"
                columns.append(f"ALTER TABLE {t} ALTER COLUMN {col} {action};")
                changed.add((column.name, "not null"))
        columns += _partition_columns(have, want, changed, new_partitions, {n: live.tables[n] for n in attached})

    statements = (
        drops_fk + indexes_drop + drops_other + detaches + drop_tables + create_tables + create_partitions
        + attaches + columns + adds_other + adds_fk + indexes_add + copies_add
    )
    return "\n".join(statements) + ("\n" if statements else "")
