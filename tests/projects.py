"""Throw-away dbp projects (settings, schema folders, migrations) for the migration tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dbp.mongo.settings import MongoSettings
from dbp.sql.settings import SQLSettings

from .conftest import sql_section


@dataclass
class Project:
    root: Path

    @property
    def sql_schema(self) -> Path:
        return self.root / "sql" / "schema"

    @property
    def sql_migrations(self) -> Path:
        return self.root / "sql" / "migrations"

    @property
    def mongo(self) -> Path:
        return self.root / "mongo"

    def sql_migration(self, name: str, apply: str, rollback: str | None = None) -> Path:
        path = self.sql_migrations / f"{name}.sql"
        path.write_text(apply)
        if rollback is not None:
            (self.sql_migrations / f"{name}.rollback.sql").write_text(rollback)
        return path

    def mongo_migration(self, name: str, up: str, down: str | None = None, doc: str = "") -> Path:
        text = f'"""{doc or name}"""\n\nimport time\n\n\ndef up(db):\n' + _indent(up)
        if down is not None:
            text += "\n\ndef down(db):\n" + _indent(down)
        path = self.mongo / f"{name}.py"
        path.write_text(text)
        return path


def _indent(body: str) -> str:
    return "".join(f"    {line}\n" for line in body.strip().splitlines())


def make_project(root: Path, sql: SQLSettings, mongo: MongoSettings) -> Project:
    """A project whose schema is one log table and one collection, configured in ``root/dbp.toml``."""
    project = Project(root)
    project.sql_schema.mkdir(parents=True)
    project.sql_migrations.mkdir()
    project.mongo.mkdir()
    (project.sql_schema / "01_log.sql").write_text(
        "CREATE TABLE applied_log (migration text PRIMARY KEY, pid int NOT NULL DEFAULT pg_backend_pid());\n"
    )
    (project.mongo / "collections.toml").write_text(
        '[[collection]]\nname = "applied_log"\nindexes = [{ name = "pid", keys = [["pid", 1]] }]\n'
    )
    (root / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql)["URL"]}"\nSCHEMA_DIR = "sql"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo.host}"\nDATABASE = "{mongo.database}"\nSCHEMA_DIR = "mongo"\n'
    )
    return project


def make_sql_project(root: Path, sql: SQLSettings, schema: str) -> Project:
    """A project with only an SQL engine, whose one schema file holds ``schema``, in ``root/dbp.toml``."""
    project = Project(root)
    project.sql_schema.mkdir(parents=True)
    project.sql_migrations.mkdir()
    (project.sql_schema / "01_schema.sql").write_text(schema)
    (root / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql)["URL"]}"\nSCHEMA_DIR = "sql"\n')
    return project


def add_logging_migrations(
    project: Project, count: int, sleep: float = 0.0, start: int = 1, mongo_sleep: float | None = None
) -> None:
    """``count`` SQL and ``count`` Mongo migrations that log themselves.

    A repeated SQL one fails (primary key); a repeated Mongo one counts ``n`` up to 2.
    """
    mongo_sleep = sleep if mongo_sleep is None else mongo_sleep
    for n in range(start, start + count):
        name = f"{n:04d}_step_{n}"
        project.sql_migration(
            name,
            f"-- log step {n}\nINSERT INTO applied_log (migration) VALUES ('{name}');\n"
            + (f"SELECT pg_sleep({sleep});\n" if sleep else ""),
            f"DELETE FROM applied_log WHERE migration = '{name}';\n",
        )
        project.mongo_migration(
            name,
            f"db.applied_log.update_one({{'_id': {name!r}}}, {{'$inc': {{'n': 1}}}}, upsert=True)\n"
            + (f"time.sleep({mongo_sleep})\n" if mongo_sleep else ""),
            f"db.applied_log.delete_one({{'_id': {name!r}}})",
            doc=f"log step {n}",
        )
