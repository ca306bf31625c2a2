"""The ALeRCE multi-survey reference schema, parsed from its markdown when the tests run.

The reference (``alerce-multisurvey-sql-schema.md``, in the shared reference folder beside the
repository) is read, never copied: :func:`load` finds it, parses every table (columns in order,
constraints, indexes, defaults, partitioning, the partitions' index copies), every sequence, the
seed rows and the closing counts, and refuses a line it does not understand, so a change in the
reference's format fails loudly instead of leaving something out. Missing reference: the tests
fail when ``CI`` is set, and are skipped otherwise.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from .conftest import ROOT

FILE = "alerce-multisurvey-sql-schema.md"
ENV = "DBP_SHARED_REFERENCE"


class ReferenceFormatError(ValueError):
    """A line of the reference that this parser does not understand; the message names it."""


@dataclass(frozen=True)
class RefColumn:
    name: str
    #: As ``information_schema.columns.data_type`` reports it (an array: ``<udt_name without _>[]``).
    type: str
    not_null: bool


@dataclass(frozen=True)
class RefCopy:
    """An index copy on each partition: ``name`` with ``i`` for the partition's number."""

    #: e.g. ``object_part_{i}_meanra_idx``
    name_template: str
    #: ``btree (meanra)``, after USING; a primary key's: ``PRIMARY KEY (oid, sid)``
    definition: str
    primary_key: bool

    def name(self, i: int) -> str:
        return self.name_template.format(i=i)


@dataclass
class RefTable:
    name: str
    columns: list[RefColumn] = field(default_factory=list)
    #: constraint name -> ``pg_get_constraintdef`` text
    constraints: dict[str, str] = field(default_factory=dict)
    #: index name -> definition after ``USING``
    indexes: dict[str, str] = field(default_factory=dict)
    #: column -> ``information_schema.columns.column_default``
    defaults: dict[str, str] = field(default_factory=dict)
    #: True where the reference says there is no primary key
    no_primary_key: bool = False
    #: ``HASH (oid)``; None: not partitioned
    partitioned_by: Optional[str] = None
    #: partition name -> bound as ``pg_get_expr(relpartbound)`` prints it, in remainder order
    partitions: dict[str, str] = field(default_factory=dict)
    #: The parent's indexes and constraints that each partition has a copy of, by the parent's name.
    copied: list[str] = field(default_factory=list)
    copies: list[RefCopy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def primary_key(self) -> Optional[tuple[str, str]]:
        found = [(n, d) for n, d in self.constraints.items() if d.startswith("PRIMARY KEY ")]
        return found[0] if found else None


@dataclass(frozen=True)
class RefSequence:
    name: str
    type: str
    start: int
    increment: int
    minvalue: int
    maxvalue: int
    cache: int
    cycle: bool
    owner_table: str
    owner_column: str
    last_value: int
    is_called: bool


@dataclass
class RefSeed:
    table: str
    #: the columns of ``ON CONFLICT (...)``
    conflict: tuple[str, ...]
    #: the columns supplied, in order
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    #: the row count the section's title states
    stated: int


@dataclass
class Reference:
    path: Path
    tables: dict[str, RefTable]
    sequences: dict[str, RefSequence]
    #: in the order the reference gives (the order ALeRCE's create_db inserts them)
    seeds: list[RefSeed]
    #: the Counts section: label -> the text after the colon
    counts: dict[str, str]

    def count(self, label: str) -> int:
        """The first number of the Counts line ``label``."""
        return self.numbers(label)[0]

    def numbers(self, label: str) -> list[int]:
        """Every number of the Counts line ``label``, in order."""
        if label not in self.counts:
            raise ReferenceFormatError(f"{self.path}: the Counts section has no line {label!r}")
        return [int(n) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", self.counts[label])]


# -- finding it --------------------------------------------------------------------------------------------


def candidates() -> list[Path]:
    """Where the reference may be, in the order looked at."""
    out = [ROOT.parent / "shared" / "reference" / FILE, Path("/work/shared/reference") / FILE]
    folder = os.environ.get(ENV)
    if folder:
        out.append(Path(folder) / FILE)
    return out


def locate() -> Optional[Path]:
    return next((p for p in candidates() if p.is_file()), None)


def load() -> Reference:
    """The parsed reference; fails (``CI`` set) or skips the calling test when it cannot be found."""
    path = locate()
    if path is None:
        where = ", ".join(str(p) for p in candidates())
        message = (f"the ALeRCE multi-survey reference {FILE} is not in any of: {where}; "
                   f"set {ENV} to the folder that holds it")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return parse(path)


# -- parsing -----------------------------------------------------------------------------------------------

_TABLE = re.compile(r"^### `([^`]+)`$")
_ROW = re.compile(r"^\| (.+?) \| (.+?) \| (NOT NULL|yes) \|$")
_CONSTRAINT = re.compile(r"^- constraint `([^`]+)`: (.+)$")
_INDEX = re.compile(r"^- index `([^`]+)`: USING (.+)$")
_DEFAULT = re.compile(r"^- default `([^`]+)`: (.+)$")
_PARTITIONED = re.compile(r"^- partitioned: PARTITION BY (.+?), (\d+) partitions named (\w+)_0 … (\w+)_(\d+)$")
_BOUNDS = re.compile(r"^- partition bounds: (\w+)_i is FOR VALUES WITH \(modulus (\d+), remainder i\) "
                     r"for i = 0 … (\d+)(?: \(.*\))?$")
_DECLARED = re.compile(r"^- declared on the parent: (.+?) \(index definitions read `ON ONLY [^`]+`\); "
                       r"each partition carries attached copies")
_COPY = re.compile(r"^`(\w+)_i_(\w+)` (USING (.+)|PRIMARY KEY \(.+\))$")
_SEQUENCE = re.compile(
    r"^- sequence `([^`]+)`: (\w+), START (\d+), INCREMENT (\d+), MINVALUE (\d+), MAXVALUE (\d+), "
    r"CACHE (\d+), (NO CYCLE|CYCLE), owned by (\w+)\.(\w+); last_value (\d+), is_called (true|false)$")
_SEED = re.compile(r"^#### (\w+): (\d+) rows?, ON CONFLICT \(([^)]*)\) DO NOTHING$")
_SEED_COLUMNS = re.compile(r"^-- columns: \((.*)\)$")


def parse(path: Path) -> Reference:
    lines = path.read_text(encoding="utf-8").splitlines()
    tables: dict[str, RefTable] = {}
    sequences: dict[str, RefSequence] = {}
    seeds: list[RefSeed] = []
    counts: dict[str, str] = {}
    section = "preamble"
    table: Optional[RefTable] = None
    seed: Optional[RefSeed] = None
    in_code = False
    awaiting_copies = False

    def bad(number: int, why: str) -> ReferenceFormatError:
        return ReferenceFormatError(f"{path}:{number}: {why}: {lines[number - 1]!r}")

    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            section = {"## Sequences": "sequences", "## Seed rows": "seeds", "## Counts": "counts"}.get(line, "")
            if not section:
                raise bad(number, "unknown section")
            table = None
            continue
        match = _TABLE.match(line)
        if match:
            if section not in ("preamble", "tables"):
                raise bad(number, "a table after the tables")
            section = "tables"
            name = match.group(1)
            if name in tables:
                raise bad(number, "table listed twice")
            table = tables[name] = RefTable(name)
            continue
        if section == "tables":
            assert table is not None
            if awaiting_copies:
                awaiting_copies = False
                if not line.startswith("  "):
                    raise bad(number, "expected the partitions' index copies")
                for item in line.strip().split("; "):
                    copy = _COPY.match(item)
                    if not copy or copy.group(1) != table.name + "_part":
                        raise bad(number, f"cannot read the index copy {item!r}")
                    definition = copy.group(4) if copy.group(4) else copy.group(3)
                    table.copies.append(RefCopy(f"{copy.group(1)}_{{i}}_{copy.group(2)}", definition,
                                                copy.group(4) is None))
                continue
            _table_line(table, line, number, bad)
            awaiting_copies = line.startswith("- declared on the parent:")
        elif section == "sequences":
            if line.startswith("- "):
                match = _SEQUENCE.match(line)
                if not match:
                    raise bad(number, "cannot read the sequence")
                g = match.groups()
                sequences[g[0]] = RefSequence(g[0], g[1], int(g[2]), int(g[3]), int(g[4]), int(g[5]), int(g[6]),
                                              g[7] == "CYCLE", g[8], g[9], int(g[10]), g[11] == "true")
        elif section == "seeds":
            if line.startswith("```"):
                in_code = not in_code
                if not in_code:
                    seed = None
                continue
            if in_code:
                if seed is None:
                    raise bad(number, "seed rows outside a table's section")
                match = _SEED_COLUMNS.match(line)
                if match:
                    seed.columns = _names(match.group(1))
                elif line.strip():
                    row = parse_row(line, lambda why, n=number: bad(n, why))
                    if len(row) != len(seed.columns):
                        raise bad(number, f"{len(row)} values for {len(seed.columns)} columns")
                    seed.rows.append(row)
                continue
            if line.startswith("#"):
                match = _SEED.match(line)
                if not match:
                    raise bad(number, "cannot read the seed table's title")
                seed = RefSeed(match.group(1), _names(match.group(3)), (), [], int(match.group(2)))
                seeds.append(seed)
        elif section == "counts" and line.startswith("- "):
            label, colon, text = line[2:].partition(": ")
            if not colon:
                raise bad(number, "a count without a colon")
            counts[label] = text
    if in_code:
        raise ReferenceFormatError(f"{path}: a code block is not closed")
    for seed_ in seeds:
        if len(seed_.rows) != seed_.stated:
            raise ReferenceFormatError(f"{path}: {seed_.table} states {seed_.stated} rows but lists {len(seed_.rows)}")
    if not tables or not sequences or not seeds or not counts:
        raise ReferenceFormatError(f"{path}: tables, sequences, seed rows or counts are missing")
    return Reference(path, tables, sequences, seeds, counts)


def _table_line(table: RefTable, line: str, number: int, bad: Any) -> None:
    if not line.strip() or line in ("| column | type | null |", "|---|---|---|"):
        return
    row = _ROW.match(line)
    if row:
        table.columns.append(RefColumn(row.group(1), row.group(2), row.group(3) == "NOT NULL"))
        return
    for pattern, store in ((_CONSTRAINT, table.constraints), (_INDEX, table.indexes), (_DEFAULT, table.defaults)):
        match = pattern.match(line)
        if match:
            if match.group(1) in store:
                raise bad(number, "listed twice")
            store[match.group(1)] = match.group(2)
            return
    if line.startswith("- no primary key:"):
        table.no_primary_key = True
        return
    match = _PARTITIONED.match(line)
    if match:
        key, n, first, last, top = match.groups()
        if first != f"{table.name}_part" or last != first or int(top) != int(n) - 1:
            raise bad(number, "partition names that are not <table>_part_0 … <table>_part_<n-1>")
        table.partitioned_by = key
        table.partitions = {f"{first}_{i}": "" for i in range(int(n))}
        return
    match = _BOUNDS.match(line)
    if match:
        prefix, modulus, top = match.groups()
        if prefix != f"{table.name}_part" or int(top) != len(table.partitions) - 1 or not table.partitions:
            raise bad(number, "bounds that do not match the partitions listed before")
        for i in range(len(table.partitions)):
            table.partitions[f"{prefix}_{i}"] = f"FOR VALUES WITH (modulus {modulus}, remainder {i})"
        return
    match = _DECLARED.match(line)
    if match:
        table.copied = re.findall(r"`([^`]+)`", match.group(1))
        return
    if line.startswith("- which of "):
        table.notes.append(line[2:])
        return
    raise bad(number, f"unknown line in table {table.name}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z]+)
)\s*(?P<end>,|\)|$)""", re.VERBOSE)


def parse_row(line: str, bad: Any) -> tuple[Any, ...]:
    """One SQL-literal row, ``(1, 'it''s', NULL, true, -2.5)``, as Python values."""
    text = line.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise bad("a row is (value, ...)")
    pos, out = 1, []
    while True:
        match = _TOKEN.match(text, pos)
        if not match or match.group("end") == "":
            raise bad(f"cannot read a value at column {pos + 1}")
        if match.group("string") is not None:
            out.append(match.group("string")[1:-1].replace("''", "'"))
        elif match.group("number") is not None:
            number = match.group("number")
            out.append(float(number) if any(c in number for c in ".eE") else int(number))
        else:
            word = match.group("word").lower()
            if word not in ("null", "true", "false"):
                raise bad(f"unknown literal {match.group('word')}")
            out.append(None if word == "null" else word == "true")
        pos = match.end()
        if match.group("end") == ")":
            if pos != len(text):
                raise bad("text after the row's closing parenthesis")
            return tuple(out)
