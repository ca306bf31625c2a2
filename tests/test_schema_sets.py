"""Bundled schema sets: ``SCHEMA_SET`` in a section, ``init-project --schema-set``, and their refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dbp
from dbp._bundled import bundled, schema_set
from dbp.config import resolve_config
from dbp.errors import ConfigError
from dbp.project import init_project
from dbp.sql.settings import SQLSettings

from .conftest import sql_section

MONGO = {"URL": "mongodb://127.0.0.1:1", "DATABASE": "x"}
SQL = {"URL": "postgresql://u@127.0.0.1:1/x"}


def test_sql_schema_set_names_the_bundled_folder() -> None:
    config = resolve_config({"SQL": {**SQL, "SCHEMA_SET": "multisurvey"}}, environ={})
    settings = config.settings("sql")
    assert settings.schema_dir == bundled("sql/multisurvey")
    assert settings.schema_set == "multisurvey"
    default = resolve_config({"SQL": dict(SQL)}, environ={}).settings("sql")
    assert default.schema_dir is None and default.schema_set is None  # the default set, ztf


def test_schema_dir_beside_schema_set_is_the_folder_and_the_set_names_the_queries(tmp_path: Path) -> None:
    config = resolve_config({"SQL": {**SQL, "SCHEMA_SET": "multisurvey", "SCHEMA_DIR": str(tmp_path)}}, environ={})
    settings = config.settings("sql")
    assert settings.schema_dir == tmp_path and settings.schema_set == "multisurvey"


@pytest.mark.parametrize(("value", "said"), [
    ("multisurvey", "the 'multisurvey' schema set is for SQL only"),
    ("nope", "unknown schema set 'nope'; dbp bundles ztf, multisurvey"),
    (3, "names a bundled schema set (ztf, multisurvey), not a int"),
    ("x" * 500, "unknown schema set"),
])
def test_mongo_section_naming_a_set_it_lacks_is_one_config_error(value: Any, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config({"MONGO": {**MONGO, "SCHEMA_SET": value}}, environ={}).settings("mongo")
    message = str(caught.value)
    assert said in message and "\n" not in message and len(message) < 300, message
    assert "DB_CONFIG.MONGO.SCHEMA_SET" in message


def test_a_bad_mongo_set_is_the_mongo_sections_mistake_only() -> None:
    """With only SQL asked for, a MONGO section's set stays MONGO's problem."""
    config = resolve_config({"SQL": {**SQL, "SCHEMA_SET": "multisurvey"},
                             "MONGO": {**MONGO, "SCHEMA_SET": "multisurvey"}}, environ={}, engines=["sql"])
    assert config.settings("sql").schema_set == "multisurvey"
    with pytest.raises(ConfigError, match="is for SQL only"):
        config.settings("mongo")
    with pytest.raises(ConfigError, match="is for SQL only"):  # asked for both: refused at load time
        resolve_config({"SQL": dict(SQL), "MONGO": {**MONGO, "SCHEMA_SET": "multisurvey"}}, environ={})


def test_a_section_holding_only_schema_set_configures_no_server() -> None:
    config = resolve_config({"SQL": dict(SQL), "MONGO": {"SCHEMA_SET": "ztf"}}, environ={})
    assert not config.configured("mongo")
    assert "SCHEMA_SET" in config.unconfigured["MONGO"]


def test_schema_set_function_refuses_in_one_line() -> None:
    assert schema_set("sql") == bundled("sql/ztf")
    assert schema_set("mongo") == bundled("mongo_migrations")
    with pytest.raises(ConfigError, match=r"^X: the 'multisurvey' schema set is for SQL only"):
        schema_set("mongo", "multisurvey", "X")


def test_init_project_copies_the_multisurvey_set_alone(tmp_path: Path, run_dbp: Any) -> None:
    made = run_dbp("init-project", "--schema-set", "multisurvey", "proj")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "proj"
    assert sorted(p.name for p in project.iterdir()) == [".gitignore", "dbp.toml", "sql"]
    shipped = bundled("sql/multisurvey")
    assert sorted(p.name for p in (project / "sql" / "schema").iterdir()) == sorted(
        p.name for p in (shipped / "schema").iterdir())
    assert not (project / "sql" / "queries").exists()  # named queries stay dbp's; a project's own replace them
    text = (project / "dbp.toml").read_text()
    assert 'SCHEMA_SET = "multisurvey"' in text and 'SCHEMA_DIR = "sql"' in text and "MONGO" not in text
    settings = resolve_config(project / "dbp.toml", environ={}, engines=()).problems  # no server: no settings
    assert "SQL" not in settings


def test_init_project_refuses_mongo_with_multisurvey_and_writes_nothing(tmp_path: Path, run_dbp: Any) -> None:
    made = run_dbp("init-project", "--engine", "mongo", "--schema-set", "multisurvey", "proj")
    assert made.returncode == 78, (made.stdout, made.stderr)
    assert "is for SQL only" in made.stderr and len(made.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "proj").exists()
    with pytest.raises(ConfigError):
        init_project(tmp_path / "p2", ["sql", "mongo"], schema_set="multisurvey")
    assert not (tmp_path / "p2").exists()
    unknown = run_dbp("init-project", "--schema-set", "lsst", "proj")
    assert unknown.returncode != 0 and "invalid choice" in unknown.stderr
    assert not (tmp_path / "proj").exists()


def test_initdb_of_a_named_set(sql_settings: SQLSettings, tmp_path: Path, run_dbp: Any) -> None:
    """A settings file that names the set, no SCHEMA_DIR: initdb builds the multi-survey catalog."""
    (tmp_path / "dbp.toml").write_text(
        f'[DB_CONFIG.SQL]\nURL = "{sql_section(sql_settings)["URL"]}"\nSCHEMA_SET = "multisurvey"\n')
    done = run_dbp("initdb")
    assert done.returncode == 0, done.stderr
    assert "created 30 tables" in done.stdout, done.stdout
    with dbp.connect(tmp_path / "dbp.toml", engine="sql") as db:
        assert db.query("sid_lut").count() == 3
        assert db.query("feature").count() == 0


def test_local_commands_take_the_projects_schema_set(tmp_path: Path) -> None:
    """``--local`` takes SCHEMA_SET (and SCHEMA_DIR) from dbp.toml and nothing else."""
    from dbp.config import Config, Section
    from dbp.project import apply_schema_dirs

    (tmp_path / "dbp.toml").write_text('[DB_CONFIG.SQL]\nSCHEMA_SET = "multisurvey"\nHOST = "elsewhere"\n')
    config = Config({"SQL": Section(URL="postgresql://u@127.0.0.1:1/x")})
    apply_schema_dirs(config, tmp_path / "dbp.toml")
    assert config["SQL"] == {"URL": "postgresql://u@127.0.0.1:1/x", "SCHEMA_SET": "multisurvey"}
    assert config.settings("sql").schema_dir == bundled("sql/multisurvey")
