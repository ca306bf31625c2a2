"""The SQL schema folder: ``schema/*.sql`` applied in name order, ``migrations/`` beside it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import psycopg
from psycopg import sql

from dbp._bundled import schema_set
from dbp.errors import ConfigError, OperationError
from dbp.sql.catalog import Catalog, read_catalog, visible_path
from dbp.sqltext import Statement, read_script, transaction_control

__all__ = ["SchemaFiles", "StatementError"]

def not_utf8(exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8: the byte offset and the byte."""
    return f"byte {exc.start} (0x{exc.object[exc.start]:02x}) cannot be decoded; save it as UTF-8"


class StatementError(OperationError):
    """A statement of a schema or migration file failed; the message names file, line and cause."""

    def __init__(self, statement: Statement, exc: psycopg.Error) -> None:
        cause = exc.diag.message_primary or str(exc).splitlines()[0]
        super().__init__(f"{statement.where}: {cause} in: {statement.summary()}")
        self.statement = statement
        self.sqlstate = exc.sqlstate


@dataclass(frozen=True)
class SchemaFiles:
    """A project's ``sql/`` folder."""

    root: Path

    @classmethod
    def for_settings(cls, schema_dir: Optional[Path]) -> SchemaFiles:
        return cls(schema_dir if schema_dir is not None else schema_set("sql"))

    @property
    def schema_dir(self) -> Path:
        return self.root / "schema"

    @property
    def migrations_dir(self) -> Path:
        return self.root / "migrations"

    def files(self) -> list[Path]:
        if not self.schema_dir.is_dir():
            raise ConfigError(f"schema folder {self.schema_dir} does not exist")
        files = sorted(p for p in self.schema_dir.iterdir() if p.suffix == ".sql" and p.is_file())
        if not files:
            raise ConfigError(f"schema folder {self.schema_dir} has no .sql files")
        return files

    @cached_property
    def statements(self) -> list[Statement]:
        """Every statement of every schema file, read and split before anything runs."""
        out: list[Statement] = []
        for path in self.files():
            try:
                out.extend(read_script(path))
            except UnicodeDecodeError as exc:
                raise ConfigError(f"schema file {path} is not UTF-8: {not_utf8(exc)}") from None
            except OSError as exc:
                raise ConfigError(f"cannot read schema file {path}: {exc}") from None
        for statement in out:
            command = transaction_control(statement)
            if command:
                raise ConfigError(
                    f"{statement.where}: {command} is not allowed in a schema file: dbp runs the whole schema in "
                    "one transaction, which it would end half-way; remove it"
                )
        return out

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for path in self.files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def apply(self, conn: psycopg.Connection[Any]) -> None:
        """Run every schema statement on ``conn``; the caller owns the transaction."""
        for statement in self.statements:
            try:
                conn.execute(statement.text)
            except psycopg.Error as exc:
                raise StatementError(statement, exc) from None

    def scratch_catalog(self, conn: psycopg.Connection[Any], then: Sequence[Path] = ()) -> Catalog:
        """The catalog these files (then the scripts ``then``) create, built in a throw-away schema, rolled back."""
        scratch = f"dbp_scratch_{uuid.uuid4().hex[:12]}"  # unique: a leftover or a concurrent one never collides
        with conn.transaction(force_rollback=True):  # the rollback drops it, whatever happens inside
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
            with conn.cursor() as cur:  # the extensions' functions (q3c) stay callable, as in public
                cur.execute("SELECT set_config('search_path', %s, true)", (visible_path(cur, scratch),))
            self.apply(conn)
            for path in then:
                for statement in read_script(path):
                    try:
                        conn.execute(statement.text)
                    except psycopg.Error as exc:
                        raise StatementError(statement, exc) from None
            catalog = read_catalog(conn, scratch)
        catalog.schema = "public"
        return catalog
