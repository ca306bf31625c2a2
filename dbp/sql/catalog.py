"""Reading a PostgreSQL schema's catalog, and comparing two of them.

A :class:`Catalog` holds what dbp promises to reproduce exactly: tables,
columns (order, type, nullability, default), primary keys, foreign keys,
unique and check constraints, indexes (method, columns, predicate), and for a
partitioned table its partition key and every partition with its bounds.
Partitions are never tables of their own: their columns, constraints and
indexes are the parent's, and the names PostgreSQL gives the index copies on
them are not compared; which of the table's indexes each partition has a copy
of is (an index made ``ON ONLY`` the table and never attached leaves some out),
and so are the indexes a partition has of its own.
Definitions come from ``pg_get_constraintdef`` / ``pg_get_indexdef`` read with
``search_path`` set to the schema itself (and the extensions' schemas), so two
schemas compare equal when their DDL was the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import psycopg
from psycopg.rows import dict_row

__all__ = ["Catalog", "Column", "Constraint", "Index", "Partition", "Table", "diff", "read_catalog"]

#: Tables that belong to dbp's and yoyo's bookkeeping, never to a user's schema.
LEDGER_TABLES = frozenset(
    {"_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock", "_dbp_schema", "_dbp_migrations"}
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: Optional[str] = None
    #: A domain's base type, with its modifier (None for other types): values follow its rules.
    base: Optional[str] = None


@dataclass(frozen=True)
class Constraint:
    name: str
    #: p primary key, f foreign key, u unique, c check, x exclusion
    kind: str
    definition: str
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Index:
    name: str
    #: ``btree (ra)``, ``hash (oid)``, ``btree (ranking) WHERE (ranking = 1)``: after ``USING``.
    definition: str
    unique: bool
    #: The full ``CREATE INDEX`` statement, schema qualification removed.
    create: str

    @property
    def method(self) -> str:
        return self.definition.split(" ", 1)[0]


@dataclass(frozen=True)
class Partition:
    name: str
    #: As ``pg_get_expr(relpartbound)`` prints it: ``FOR VALUES WITH (modulus 8, remainder 0)``.
    bound: str
    #: ``HASH (oid)`` if this partition is partitioned in turn, else None.
    partitioned_by: Optional[str] = None
    #: The table or partition it is a partition of (None: not read).
    parent: Optional[str] = None
    #: The table's indexes this partition has an attached copy of, by the table's index name (a primary
    #: key's or unique constraint's: the constraint's), sorted. The copies' own names are not kept.
    copies: tuple[str, ...] = ()
    #: Indexes made on this partition alone (a copy of none of the table's), by name, sorted.
    own_indexes: tuple[str, ...] = ()


@dataclass
class Table:
    name: str
    columns: list[Column] = field(default_factory=list)
    constraints: dict[str, Constraint] = field(default_factory=dict)
    #: Indexes that no constraint owns (a primary key's or unique constraint's index is the constraint's).
    indexes: dict[str, Index] = field(default_factory=dict)
    #: ``HASH (oid)``, ``RANGE (mjd)``, as ``pg_get_partkeydef`` prints it; None: not partitioned.
    partitioned_by: Optional[str] = None
    #: The partitions by name, at every level below this table (a sub-partition's own key is on it).
    partitions: dict[str, Partition] = field(default_factory=dict)

    def column(self, name: str) -> Optional[Column]:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def primary_key(self) -> Optional[Constraint]:
        return next((c for c in self.constraints.values() if c.kind == "p"), None)

    def unique_keys(self) -> list[tuple[str, ...]]:
        """Column sets that a primary key, unique constraint or unique index covers."""
        keys = [c.columns for c in self.constraints.values() if c.kind in ("p", "u")]
        keys += [_index_columns(i) for i in self.indexes.values() if i.unique and " WHERE " not in i.definition]
        return [k for k in keys if k]


def _index_columns(index: Index) -> tuple[str, ...]:
    inside = index.definition.partition("(")[2].rpartition(")")[0]
    return tuple(part.strip().strip('"') for part in inside.split(","))


@dataclass
class Catalog:
    schema: str
    tables: dict[str, Table] = field(default_factory=dict)

    @property
    def index_count(self) -> int:
        return sum(len(t.indexes) for t in self.tables.values())


_COLUMNS = """
SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default,
       CASE WHEN ty.typtype = 'd' THEN format_type(ty.typbasetype, ty.typtypmod) END AS base
FROM pg_attribute a
JOIN pg_type ty ON ty.oid = a.atttypid
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

#: Partitioned tables' keys, and every partition (at any depth) under its top-level table.
_PARTITIONS = """
SELECT c.relname AS table, pg_get_partkeydef(c.oid) AS key, NULL AS partition, NULL AS bound,
       NULL AS parent
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'p' AND NOT c.relispartition
UNION ALL
SELECT root.relname, CASE WHEN p.relkind = 'p' THEN pg_get_partkeydef(p.oid) END, p.relname,
       pg_get_expr(p.relpartbound, p.oid), up.relname
FROM pg_class root JOIN pg_namespace n ON n.oid = root.relnamespace
CROSS JOIN LATERAL pg_partition_tree(root.oid) t
JOIN pg_class p ON p.oid = t.relid
JOIN pg_class up ON up.oid = t.parentrelid
WHERE n.nspname = %(schema)s AND root.relkind = 'p' AND NOT root.relispartition AND t.level > 0
ORDER BY 1, 3
"""

#: Every index on a partition: the index of the top-level table it is a copy of, or (not a copy) its own name.
_PARTITION_INDEXES = """
SELECT root.relname AS table, p.relname AS partition, top.relname AS copy_of,
       CASE WHEN top.oid IS NULL AND NOT i.relispartition THEN i.relname END AS own
FROM pg_class root JOIN pg_namespace n ON n.oid = root.relnamespace
CROSS JOIN LATERAL pg_partition_tree(root.oid) t
JOIN pg_class p ON p.oid = t.relid
JOIN pg_index x ON x.indrelid = p.oid
JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_index tx ON tx.indexrelid = pg_partition_root(x.indexrelid) AND tx.indrelid = root.oid
LEFT JOIN pg_class top ON top.oid = tx.indexrelid
WHERE n.nspname = %(schema)s AND root.relkind = 'p' AND NOT root.relispartition AND t.level > 0
ORDER BY 1, 2, 3, 4
"""

_CONSTRAINTS = """
SELECT c.relname AS table, k.conname AS name, k.contype AS kind,
       pg_get_constraintdef(k.oid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
             ORDER BY u.ord)::text[] AS columns
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND k.contype IN ('p', 'f', 'u', 'c', 'x')
ORDER BY c.relname, k.conname
"""

_INDEXES = """
SELECT t.relname AS table, i.relname AS name, x.indisunique AS unique,
       pg_get_indexdef(i.oid) AS create
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x'))
ORDER BY t.relname, i.relname
"""


def visible_path(cur: Any, schema: str) -> str:
    """A ``search_path`` of ``schema`` and the schemas that hold extensions (q3c's functions, say).

    Schema files and their catalog are built and read with it: an index on ``q3c_ang2ipix(...)`` is
    then created in a scratch schema, and printed unqualified there as in ``public``.
    """
    rows = cur.execute(
        "SELECT quote_ident(%s) AS q UNION ALL "
        "(SELECT DISTINCT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', %s) ORDER BY 1)",
        (schema, schema),
    ).fetchall()
    return ", ".join(r["q"] if isinstance(r, dict) else r[0] for r in rows)


def read_catalog(
    conn: psycopg.Connection[Any], schema: str = "public", *, exclude: Iterable[str] = LEDGER_TABLES
) -> Catalog:
    """The catalog of ``schema``, read inside a transaction (``conn`` may be any psycopg connection)."""
    excluded = set(exclude)
    catalog = Catalog(schema)
    args = {"schema": schema}
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        quoted = cur.execute("SELECT quote_ident(%s) AS q", (schema,)).fetchone()
        assert quoted is not None
        prefix = f"ON {quoted['q']}."  # as pg_get_indexdef writes it
        # definitions print unqualified only for the schema on the search path
        saved = cur.execute("SELECT current_setting('search_path') AS path").fetchone()
        cur.execute("SELECT set_config('search_path', %s, true)", (visible_path(cur, schema),))
        for row in cur.execute(_COLUMNS, args).fetchall():
            if row["table"] in excluded:
                continue
            table = catalog.tables.setdefault(row["table"], Table(row["table"]))
            table.columns.append(Column(row["name"], row["type"], row["not_null"], row["default"],
                                        row["base"]))
        for row in cur.execute(_PARTITIONS, args).fetchall():
            if row["table"] not in catalog.tables:
                continue
            table = catalog.tables[row["table"]]
            if row["partition"] is None:
                table.partitioned_by = row["key"]
            else:
                table.partitions[row["partition"]] = Partition(row["partition"], row["bound"], row["key"],
                                                                  row["parent"])
        found: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for row in cur.execute(_PARTITION_INDEXES, args).fetchall():
            lists = found.setdefault((row["table"], row["partition"]), ([], []))
            if row["copy_of"] is not None:
                lists[0].append(row["copy_of"])
            elif row["own"] is not None:
                lists[1].append(row["own"])
        for (name, part), (copies, own) in found.items():
            partitions = catalog.tables[name].partitions if name in catalog.tables else {}
            if part in partitions:
                partitions[part] = replace(partitions[part], copies=tuple(sorted(copies)),
                                           own_indexes=tuple(sorted(own)))
        for row in cur.execute(_CONSTRAINTS, args).fetchall():
            if row["table"] in catalog.tables:
                catalog.tables[row["table"]].constraints[row["name"]] = Constraint(
                    row["name"], row["kind"], row["definition"], tuple(row["columns"] or ())
                )
        for row in cur.execute(_INDEXES, args).fetchall():
            if row["table"] in catalog.tables:
                # a partitioned table's index reads ON ONLY: an index made on it reaches every partition
                create = row["create"].replace(f"ON ONLY {prefix[3:]}", "ON ", 1).replace(prefix, "ON ", 1)
                definition = create.split(" USING ", 1)[1]
                catalog.tables[row["table"]].indexes[row["name"]] = Index(
                    row["name"], definition, row["unique"], create
                )
        assert saved is not None
        cur.execute("SELECT set_config('search_path', %s, true)", (saved["path"],))
    return catalog


def diff(live: Catalog, wanted: Catalog) -> list[str]:
    """Every difference between ``live`` and ``wanted``, one sentence each; column order is ignored."""
    out: list[str] = []
    for name in sorted(set(wanted.tables) - set(live.tables)):
        out.append(f"table {name} is missing")
    for name in sorted(set(live.tables) - set(wanted.tables)):
        out.append(f"table {name} is not in the schema files")
    for name in sorted(set(live.tables) & set(wanted.tables)):
        out.extend(_diff_table(live.tables[name], wanted.tables[name]))
    return out


def _diff_table(live: Table, wanted: Table) -> list[str]:
    out: list[str] = []
    t = live.name
    live_cols = {c.name: c for c in live.columns}
    wanted_cols = {c.name: c for c in wanted.columns}
    for name in wanted_cols.keys() - live_cols.keys():
        out.append(f"column {t}.{name} is missing")
    for name in live_cols.keys() - wanted_cols.keys():
        out.append(f"column {t}.{name} is not in the schema files")
    for name in sorted(live_cols.keys() & wanted_cols.keys()):
        have, want = live_cols[name], wanted_cols[name]
        if have.type != want.type:
            out.append(f"column {t}.{name} is {have.type}, the schema files say {want.type}")
        if have.not_null != want.not_null:
            state = "NOT NULL" if want.not_null else "nullable"
            out.append(f"column {t}.{name} should be {state}")
        if have.default != want.default:
            out.append(f"column {t}.{name} defaults to {have.default}, the schema files say {want.default}")
    for kind, items_live, items_wanted in (
        ("constraint", live.constraints, wanted.constraints),
        ("index", live.indexes, wanted.indexes),
    ):
        for name in sorted(items_wanted.keys() - items_live.keys()):
            out.append(f"{kind} {name} on {t} is missing")
        for name in sorted(items_live.keys() - items_wanted.keys()):
            out.append(f"{kind} {name} on {t} is not in the schema files")
        for name in sorted(items_live.keys() & items_wanted.keys()):
            have_def = items_live[name].definition
            want_def = items_wanted[name].definition
            if have_def != want_def:
                out.append(f"{kind} {name} on {t} is {have_def}, the schema files say {want_def}")
    out.extend(_diff_partitions(live, wanted))
    return sorted(out)


def _diff_partitions(live: Table, wanted: Table) -> list[str]:
    t = live.name
    if live.partitioned_by != wanted.partitioned_by:
        return [f"table {t} is {_keyed(live.partitioned_by)}, the schema files say {_keyed(wanted.partitioned_by)}"]
    out = []
    for name in sorted(wanted.partitions.keys() - live.partitions.keys()):
        out.append(f"partition {name} of {t} is missing")
    for name in sorted(live.partitions.keys() - wanted.partitions.keys()):
        out.append(f"partition {name} of {t} is not in the schema files")
    for name in sorted(live.partitions.keys() & wanted.partitions.keys()):
        have, want = live.partitions[name], wanted.partitions[name]
        if have.bound != want.bound:
            out.append(f"partition {name} of {t} is {have.bound}, the schema files say {want.bound}")
        if have.partitioned_by != want.partitioned_by:
            out.append(f"partition {name} of {t} is {_keyed(have.partitioned_by)}, "
                       f"the schema files say {_keyed(want.partitioned_by)}")
        if have.parent != want.parent:
            out.append(f"partition {name} of {t} is a partition of {have.parent}, "
                       f"the schema files say of {want.parent}")
        # copies of an index that only one side's table has: the table's own difference says so
        both = (live.indexes.keys() | live.constraints.keys()) & (wanted.indexes.keys() | wanted.constraints.keys())
        for index in sorted((set(want.copies) - set(have.copies)) & both):
            out.append(f"partition {name} of {t} has no copy of index {index}")
        for index in sorted((set(have.copies) - set(want.copies)) & both):
            out.append(f"partition {name} of {t} has a copy of index {index}; in the schema files it has none")
        for index in sorted(set(want.own_indexes) - set(have.own_indexes)):
            out.append(f"index {index} on partition {name} of {t} is missing")
        for index in sorted(set(have.own_indexes) - set(want.own_indexes)):
            out.append(f"index {index} on partition {name} of {t} is not in the schema files")
    return out


def _keyed(key: Optional[str]) -> str:
    return f"partitioned by {key}" if key else "not partitioned"
