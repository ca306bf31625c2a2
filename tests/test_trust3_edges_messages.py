"""Issue 20, item 19: messages that could not be followed, or contradicted each other.

Each one now names what the user can change, and none points into dbp's own
installed files (which a user cannot edit) or asks for an impossible entry
(``[inline SQL]`` in positions.toml).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import dbp
from dbp import ConfigError, FilterError, OperationError
from dbp.config import resolve_config
from dbp.mongo import admin as mongo_admin
from dbp.mongo import cone as mongo_cone
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings
from dbp.sql import cone_run
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .test_schema import MONGO_INDEXES, create_by_other_means

INSTALLED = str(Path(dbp.__file__).parent)


def test_inline_sql_without_a_position_names_a_change_that_can_be_made(sql_db: SQLConnection) -> None:
    with pytest.raises(FilterError) as info:
        cone_run.position(sql_db.sql("SELECT 1.0 AS ra, 2.0 AS dec"))
    message = str(info.value)
    assert "[inline SQL]" not in message and "positions.toml" not in message
    assert "add a line '-- position: <ra column>, <dec column>' to the comments that open the statement" in message


def test_named_sql_without_a_position_names_its_header(sql_settings: SQLSettings, tmp_path: Path) -> None:
    (tmp_path / "spots.sql").write_text("SELECT 1.0 AS ra, 2.0 AS dec")
    with SQLConnection(settings=dataclasses.replace(sql_settings, queries_dir=tmp_path)) as db, \
            pytest.raises(FilterError) as info:
        cone_run.position(db.query("spots"))
    message = str(info.value)
    assert "add a line '-- position: <ra column>, <dec column>' to the comments that open" in message
    assert "spots.sql" in message
    assert "positions.toml" not in message


def test_a_table_without_schema_dir_is_not_sent_into_dbps_files(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE TABLE spots (id integer PRIMARY KEY, ra float8, dec float8)")
    assert sql_db.settings.schema_dir is None
    with pytest.raises(FilterError) as info:
        cone_run.position(sql_db.query("spots"))
    message = str(info.value)
    assert INSTALLED not in message
    assert "add [spots] with ra and dec columns to positions.toml in your SQL schema folder and set SCHEMA_DIR" \
        in message


def test_mongo_position_message_names_schema_dir() -> None:
    with pytest.raises(FilterError) as info:
        mongo_cone._require(None, "spots")
    assert "collections.toml in the folder SCHEMA_DIR names" in str(info.value)


@pytest.mark.parametrize("url", ["postgresql://u:pa/ss@h:5432/db", "mongodb://u:pa/ss@h:27017/db"])
def test_both_engines_give_the_same_percent_encoding_advice(url: str) -> None:
    section = {"SQL": {"URL": url}} if url.startswith("postgresql") else {"MONGO": {"URL": url}}
    with pytest.raises(ConfigError, match=r"percent-encode it \(urllib\.parse\.quote\(password, safe=''\)\)"):
        resolve_config(section, environ={})


def test_mongo_adopt_does_not_point_into_dbps_files(mongo_settings: MongoSettings) -> None:
    from pymongo import IndexModel

    with MongoConnection(settings=mongo_settings) as db:
        for collection, indexes in MONGO_INDEXES.items():
            models = [IndexModel(info["key"], name=name, **{k: v for k, v in info.items() if k != "key"})
                      for name, info in indexes.items()]
            db.collection(collection).create_indexes(models)
        db.collection("object").drop_index("sid")
        with pytest.raises(OperationError) as info:
            mongo_admin.initdb(db, adopt=True)
    message = str(info.value)
    assert INSTALLED not in message
    assert "dbp's bundled ALeRCE schema, as SCHEMA_DIR is not set; change the indexes, or run dbp init-project" \
        in message


def test_sql_adopt_names_where_the_schema_files_are(sql_settings: SQLSettings) -> None:
    create_by_other_means(sql_settings)
    with SQLConnection(settings=sql_settings) as db:
        db.execute("ALTER TABLE object ADD COLUMN brightness double precision")
        with pytest.raises(OperationError) as info:
            from dbp.sql import admin as sql_admin

            sql_admin.initdb(db, adopt=True)
    message = str(info.value)
    assert INSTALLED not in message
    assert "the schema files (dbp's bundled ALeRCE schema, as SCHEMA_DIR is not set; change the database" \
        in message
