"""``initdb`` / ``dropdb``: the ALeRCE catalog exactly, idempotence, all-or-nothing, adopt."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pymongo import IndexModel

from dbp import OperationError, QueryError
from dbp._bundled import bundled
from dbp.admin import initdb
from dbp.config import resolve_config
from dbp.mongo import admin as mongo_admin
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql import admin as sql_admin
from dbp.sql.catalog import read_catalog
from dbp.sql.connection import SQLConnection
from dbp.sql.schema import StatementError
from dbp.sql.settings import SQLSettings

from .alerce_catalog import TABLES
from .conftest import sql_section

#: The reference's Mongo indexes (shared/reference/alerce-mongo-collections.md), `_id_` aside.
MONGO_INDEXES: dict[str, dict[str, dict[str, Any]]] = {
    "object": {
        "oid": {"key": [("oid", 1)]},
        "sid": {"key": [("sid", 1)]},
        "lastmjd": {"key": [("lastmjd", -1)]},
        "firstmjd": {"key": [("firstmjd", -1)]},
        "radec": {"key": [("loc", "2dsphere")]},
        "probabilities": {"key": [
            ("probabilities.classifier_name", 1), ("probabilities.ranking", -1),
            ("probabilities.classifier_version", -1), ("probabilities.class_name", -1),
            ("probabilities.probability", -1),
        ]},
    },
    "detection": {"aid_1_oid_1": {"key": [("aid", 1), ("oid", 1)]}, "sid_1": {"key": [("sid", 1)]}},
    "forced_photometry": {"aid_oid": {"key": [("aid", 1), ("oid", 1)]}, "sid": {"key": [("sid", 1)]}},
    "non_detection": {
        "unique": {"key": [("aid", 1), ("fid", 1), ("mjd", 1)], "unique": True},
        "sid": {"key": [("sid", 1)]},
    },
    "taxonomy": {"name_version": {"key": [("classifier_name", 1), ("classifier_version", -1)]}},
}
_FK = re.compile(r"FOREIGN KEY \((.*)\) REFERENCES (\w+)\((.*)\)")


def _cols(text: str) -> tuple[str, ...]:
    return tuple(c.strip().strip('"') for c in text.split(","))


def live_catalog_as_reference(settings: SQLSettings) -> dict[str, dict[str, Any]]:
    """The live ``public`` catalog in the reference's terms."""
    with SQLConnection(settings=settings) as db, db.connection() as conn:
        catalog = read_catalog(conn)
    out: dict[str, dict[str, Any]] = {}
    for name, table in catalog.tables.items():
        pk = table.primary_key
        fks = {}
        for c in table.constraints.values():
            if c.kind == "f":
                m = _FK.match(c.definition)
                assert m, c.definition
                fks[c.name] = (_cols(m.group(1)), m.group(2), _cols(m.group(3)))
        others = [c.name for c in table.constraints.values() if c.kind not in ("p", "f")]
        assert others == [], f"{name} has unexpected constraints {others}"
        out[name] = {
            "columns": [(c.name, c.type, c.not_null) for c in table.columns],
            "primary_key": (pk.name, pk.columns) if pk else None,
            "foreign_keys": fks,
            "indexes": {i.name: i.definition for i in table.indexes.values()},
        }
    return out


def sql_init(settings: SQLSettings, **kw: Any) -> Any:
    with SQLConnection(settings=settings) as db:
        return sql_admin.initdb(db, **kw)


def mongo_init(settings: MongoSettings, **kw: Any) -> Any:
    with MongoConnection(settings=settings) as db:
        return mongo_admin.initdb(db, **kw)


def public_tables(settings: SQLSettings) -> list[str]:
    with SQLConnection(settings=settings) as db:
        rows = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        ).fetchall()
    return [r["table_name"] for r in rows]


# -- the catalog ------------------------------------------------------------------


def test_initdb_creates_the_reference_catalog_exactly(sql_settings: SQLSettings) -> None:
    report = sql_init(sql_settings)
    assert report.outcome == "created"
    assert report.counts == {"tables": 17, "indexes": 27}
    assert live_catalog_as_reference(sql_settings) == TABLES


def test_initdb_creates_the_reference_mongo_indexes(mongo_settings: MongoSettings) -> None:
    report = mongo_init(mongo_settings)
    assert report.outcome == "created"
    assert report.counts == {"collections": 5, "indexes": 13}
    with MongoConnection(settings=mongo_settings) as db:
        names = set(db.database.list_collection_names())
        assert set(MONGO_INDEXES) <= names
        for collection, expected in MONGO_INDEXES.items():
            live = db.collection(collection).index_information()
            live.pop("_id_")
            normal = {
                name: {k: v for k, v in info.items() if k not in ("v", "2dsphereIndexVersion")}
                for name, info in live.items()
            }
            assert normal == expected, collection


# -- idempotence --------------------------------------------------------------------


def test_second_initdb_changes_nothing(sql_settings: SQLSettings, mongo_settings: MongoSettings) -> None:
    sql_init(sql_settings)
    mongo_init(mongo_settings)
    before_sql = live_catalog_as_reference(sql_settings)
    with SQLConnection(settings=sql_settings) as db:
        ledger_before = db.execute("SELECT * FROM _dbp_schema").fetchall()
    again = sql_init(sql_settings)
    assert again.outcome == "already initialized"
    assert "baseline" in again.version
    assert live_catalog_as_reference(sql_settings) == before_sql
    with SQLConnection(settings=sql_settings) as db:
        assert db.execute("SELECT * FROM _dbp_schema").fetchall() == ledger_before
    assert mongo_init(mongo_settings).outcome == "already initialized"


def test_initdb_cli_twice_exits_0(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    (tmp_path / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo_settings.host}"\nDATABASE = "{mongo_settings.database}"\n'
    )
    first = run_dbp("initdb")
    assert first.returncode == 0, first.stderr
    assert re.search(r"sql: created 17 tables, 27 indexes in \S+:\d+/" + sql_settings.database, first.stdout)
    assert re.search(r"mongo: created 5 collections, 13 indexes in 127\.0\.0\.1:\d+/", first.stdout)
    second = run_dbp("initdb")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already initialized") == 2


# -- all or nothing -------------------------------------------------------------------


def broken_sql_dir(tmp_path: Path) -> Path:
    root = tmp_path / "broken_sql"
    shutil.copytree(bundled("sql/ztf"), root)
    target = root / "schema" / "009_probability.sql"
    broken = "CREATE INDEX ix_probabilities_oid ON nowhere (oid);\nCREATE INDEX x"
    target.write_text(target.read_text().replace("CREATE INDEX ix_probabilities_oid", broken))
    return root


def test_failure_midway_leaves_no_trace(sql_settings: SQLSettings, tmp_path: Path) -> None:
    settings = SQLSettings(params=sql_settings.params, schema_dir=broken_sql_dir(tmp_path))
    with pytest.raises(StatementError) as info:
        sql_init(settings)
    message = str(info.value)
    assert "009_probability.sql:13" in message
    assert 'relation "nowhere" does not exist' in message
    assert public_tables(sql_settings) == []  # no schema tables, no yoyo tables, no marker
    # and the good schema still goes in afterwards
    assert sql_init(sql_settings).outcome == "created"


def test_mongo_failure_midway_drops_what_it_created(mongo_settings: MongoSettings, tmp_path: Path) -> None:
    root = tmp_path / "mongo"
    shutil.copytree(bundled("mongo_migrations"), root)
    toml = root / "collections.toml"
    # same keys under a second name: the server refuses it (IndexOptionsConflict)
    toml.write_text(toml.read_text().replace(
        '{ name = "sid", keys = [["sid", 1]] },\n]\n\n[[collection]]\nname = "taxonomy"',
        '{ name = "sid", keys = [["sid", 1]] },\n    { name = "sid_again", keys = [["sid", 1]] },\n]\n\n'
        '[[collection]]\nname = "taxonomy"',
    ))
    settings = MongoSettings(host=mongo_settings.host, database=mongo_settings.database,
                             options=mongo_settings.options, schema_dir=root)
    with pytest.raises(OperationError, match="at collection non_detection"):
        mongo_init(settings)
    with MongoConnection(settings=mongo_settings) as db:
        left = [n for n in db.database.list_collection_names() if not n.startswith("_dbp")]
        assert left == []
        assert db.database["_dbp_migrations"].count_documents({}) == 0
        assert db.database["_dbp"].find_one({"_id": "schema"}) is None


# -- adopting a database created by other means -----------------------------------------


def create_by_other_means(settings: SQLSettings) -> None:
    """What db-plugins would leave: the same tables, no dbp or yoyo ledger."""
    with SQLConnection(settings=settings) as db, db.transaction() as conn:
        for path in sorted((bundled("sql/ztf") / "schema").glob("*.sql")):
            conn.execute(path.read_text())


def test_tables_without_ledger_are_refused_then_adopted(sql_settings: SQLSettings) -> None:
    create_by_other_means(sql_settings)
    with pytest.raises(OperationError, match=r"already has 17 table\(s\).*--adopt"):
        sql_init(sql_settings)
    report = sql_init(sql_settings, adopt=True)
    assert report.outcome == "adopted"
    assert live_catalog_as_reference(sql_settings) == TABLES
    assert sql_init(sql_settings).outcome == "already initialized"
    with SQLConnection(settings=sql_settings) as db:
        assert db.execute("SELECT how FROM _dbp_schema").fetchone() == {"how": "adopted"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("ALTER TABLE object ADD COLUMN brightness double precision", "column object.brightness"),
        ("ALTER TABLE magstat DROP COLUMN saturation_rate", "column magstat.saturation_rate is missing"),
        ("ALTER TABLE detection ALTER COLUMN rb TYPE real", "column detection.rb is real"),
        ("DROP INDEX ix_object_ndet", "index ix_object_ndet on object is missing"),
    ],
)
def test_adopt_refuses_a_database_that_differs(sql_settings: SQLSettings, change: str, named: str) -> None:
    create_by_other_means(sql_settings)
    with SQLConnection(settings=sql_settings) as db:
        db.execute(change)
    with pytest.raises(OperationError) as info:
        sql_init(sql_settings, adopt=True)
    assert named in str(info.value)
    assert len(info.value.details) == 1
    assert "_dbp_schema" not in public_tables(sql_settings)
    assert "_yoyo_migration" not in public_tables(sql_settings)


def test_adopt_cli_prints_every_difference(
    run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings
) -> None:
    create_by_other_means(sql_settings)
    with SQLConnection(settings=sql_settings) as db:
        db.execute("ALTER TABLE object ADD COLUMN brightness double precision")
        db.execute("ALTER TABLE step DROP COLUMN comments")
    (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n')
    refused = run_dbp("initdb")
    assert refused.returncode == 1
    assert "--adopt" in refused.stderr
    result = run_dbp("initdb", "--adopt")
    assert result.returncode == 1
    assert "column object.brightness is not in the schema files" in result.stdout
    assert "column step.comments is missing" in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_mongo_adopt(mongo_settings: MongoSettings) -> None:
    with MongoConnection(settings=mongo_settings) as db:
        for collection, indexes in MONGO_INDEXES.items():
            models = [IndexModel(info["key"], name=name, **{k: v for k, v in info.items() if k != "key"})
                      for name, info in indexes.items()]
            db.collection(collection).create_indexes(models)
        with pytest.raises(OperationError, match="--adopt"):
            mongo_admin.initdb(db)
        db.collection("object").drop_index("sid")
        with pytest.raises(OperationError, match=r"index object\.sid \(sid 1\) is missing"):
            mongo_admin.initdb(db, adopt=True)
        db.collection("object").create_index([("sid", 1)], name="sid")
        assert mongo_admin.initdb(db, adopt=True).outcome == "adopted"
        assert mongo_admin.initdb(db).outcome == "already initialized"


# -- dropdb -----------------------------------------------------------------------------------


def test_dropdb_guards(run_dbp: Any, tmp_path: Path, sql_settings: SQLSettings) -> None:
    (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n')
    no_yes = run_dbp("dropdb")
    assert no_yes.returncode == 2
    assert "--yes" in no_yes.stderr
    with SQLConnection(settings=sql_settings) as db:
        db.execute("CREATE TABLE precious (id int)")
    not_ours = run_dbp("dropdb", "--yes")
    assert not_ours.returncode == 1
    assert "did not initialize" in not_ours.stderr
    assert SQLConnection(settings=sql_settings).database_exists()
    forced = run_dbp("dropdb", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert not SQLConnection(settings=sql_settings).database_exists()
    SQLConnection(settings=sql_settings).create_db()  # for the fixture's teardown


def test_dropdb_of_an_initialized_database(sql_settings: SQLSettings, mongo_settings: MongoSettings) -> None:
    sql_init(sql_settings)
    mongo_init(mongo_settings)
    assert "dropped" in sql_admin.dropdb(SQLConnection(settings=sql_settings))
    assert not SQLConnection(settings=sql_settings).database_exists()
    assert "dropped" in mongo_admin.dropdb(MongoConnection(settings=mongo_settings))
    with MongoConnection(settings=mongo_settings) as db:
        assert mongo_settings.database not in db.client.list_database_names()
    SQLConnection(settings=sql_settings).create_db()


# -- users' own schemas -----------------------------------------------------------------------


def test_a_users_own_schema_dir(sql_settings: SQLSettings, mongo_settings: MongoSettings, tmp_path: Path) -> None:
    project = tmp_path / "myproject"
    (project / "sql" / "schema").mkdir(parents=True)
    (project / "sql" / "migrations").mkdir()
    (project / "sql" / "schema" / "01_star.sql").write_text(
        "CREATE TABLE star (id bigint PRIMARY KEY, name text NOT NULL UNIQUE);\n"
        "CREATE INDEX star_name_lower ON star (lower(name));\n"
    )
    (project / "sql" / "migrations" / "0001_add_mass.sql").write_text("ALTER TABLE star ADD COLUMN mass real;\n")
    (project / "mongo").mkdir()
    (project / "mongo" / "collections.toml").write_text(
        '[[collection]]\nname = "star"\nindexes = [{ name = "by_name", keys = [["name", 1]], unique = true }]\n'
    )
    (project / "mongo" / "0001_seed.py").write_text('"""Seed."""\n\ndef up(db):\n    pass\n')
    (project / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\nSCHEMA_DIR = "sql"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo_settings.host}"\nDATABASE = "{mongo_settings.database}"\n'
        'SCHEMA_DIR = "mongo"\n'
    )
    config = resolve_config(project / "dbp.toml", environ={})
    reports = {r.engine: r for r in initdb(config, ["sql", "mongo"])}
    assert reports["sql"].counts == {"tables": 1, "indexes": 1}
    assert reports["sql"].baseline == ["0001_add_mass"]
    assert reports["mongo"].counts == {"collections": 1, "indexes": 1}
    assert reports["mongo"].baseline == ["0001_seed"]
    assert public_tables(sql_settings) == ["_dbp_migrations", "_dbp_schema", "_yoyo_log", "_yoyo_migration",
                                           "_yoyo_version", "star", "yoyo_lock"]
    with SQLConnection(settings=sql_settings) as db:
        applied = db.execute("SELECT migration_id FROM _yoyo_migration").fetchall()
    assert applied == [{"migration_id": "0001_add_mass"}]  # the baseline: recorded, not run
    with SQLConnection(settings=sql_settings) as db, pytest.raises(QueryError) as info:
        db.execute("SELECT mass FROM star")
    assert isinstance(info.value.__cause__, psycopg.errors.UndefinedColumn)


# -- the installed wheel ----------------------------------------------------------------------


@pytest.mark.slow
def test_installed_wheel_works_outside_the_checkout(
    tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings
) -> None:
    """Build the wheel, install it into a fresh venv, run initdb with the bundled and a custom schema."""
    import subprocess
    import sys

    from .conftest import ROOT

    source = tmp_path / "source"  # a clean copy: no stale build/ of an earlier run gets packaged
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", ".dbp", "__pycache__", ".*_cache", ".hypothesis"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("alerce_dbp-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    assert (venv / "share" / "man" / "man1" / "dbp.1").read_text().startswith(".TH DBP")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import dbp; print(dbp.__file__)"], cwd=work, check=True,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(venv))
    (work / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo_settings.host}"\nDATABASE = "{mongo_settings.database}"\n'
    )
    env = {"PATH": "/usr/bin:/bin"}
    bundled_run = subprocess.run([str(python), "-m", "dbp", "initdb"], cwd=work, env=env,
                                 capture_output=True, text=True, timeout=120)
    assert bundled_run.returncode == 0, bundled_run.stderr
    assert "created 17 tables, 27 indexes" in bundled_run.stdout
    assert "created 5 collections, 13 indexes" in bundled_run.stdout
    console = subprocess.run([str(venv / "bin" / "dbp"), "dropdb", "--yes"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
    assert console.returncode == 0, console.stderr
    custom = work / "custom"
    (custom / "schema").mkdir(parents=True)
    (custom / "schema" / "1.sql").write_text("CREATE TABLE comet (id int PRIMARY KEY);\n")
    SQLConnection(settings=sql_settings).create_db()
    custom_run = subprocess.run(
        [str(python), "-m", "dbp", "initdb", "--engine", "sql", "--sql-dir", "custom"], cwd=work, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert custom_run.returncode == 0, custom_run.stderr
    assert "created 1 table, 0 indexes" in custom_run.stdout


def test_two_initdb_processes_at_once(tmp_path: Path, sql_settings: SQLSettings, mongo_settings: MongoSettings) -> None:
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    (tmp_path / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\n'
        f'[DB_CONFIG.MONGO]\nURL = "{mongo_settings.host}"\nDATABASE = "{mongo_settings.database}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "dbp", "initdb"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    sql_lines = sorted(line for out, _ in outs for line in out.splitlines() if line.startswith("sql:"))
    assert "already initialized" in sql_lines[0] and "created 17 tables" in sql_lines[1]
    assert live_catalog_as_reference(sql_settings) == TABLES
    with MongoConnection(settings=mongo_settings) as db:
        assert db.database["_dbp"].count_documents({"_id": "schema"}) == 1
