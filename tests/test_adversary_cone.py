"""Adversary repros for $cone and crossmatch (issue 14).

Each test states a promise from the issue or the README; an independent adversary
wrote them without seeing the suite, and each failed until the cause it names was
fixed. The fixtures are test_cone's (a ``src`` table and collection with declared
positions, Mongo longitude = ra - 180).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from dbp.errors import DbpError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.settings import MongoSettings

from .test_cone import Sky, sky  # noqa: F401  (sky is a fixture)


def test_crossmatch_nearest_picks_the_same_row_on_both_engines_when_distances_tie(sky: Sky) -> None:  # noqa: F811
    """Three objects at one position; nearest=True must keep the same one on both engines.

    SQL breaks the tie by the key (ORDER BY _dbp_distance, id LIMIT 1: id 3);
    Mongo keeps the first document its find returned (natural order: id 7).
    Duplicate detections at one position are common (same object, several alerts).
    """
    sky.load([(7, 10.0, 10.0), (3, 10.0, 10.0), (5, 10.0, 10.0)])
    position = [("alert", 10.0, 10.0 + 1 / 3600)]
    picked = {engine: [m.row[Sky.key(engine)] for m in sky.q[engine].crossmatch(position, 2.0)]
              for engine in ("sql", "mongo")}
    assert picked["sql"] == [3]
    assert picked["mongo"] == picked["sql"]


@pytest.mark.parametrize("engine", ["sql", "mongo"])
@pytest.mark.parametrize("spec", [
    {"ra": 10**400, "dec": 0.0, "radius": 1.0},
    {"ra": 1.0, "dec": -(10**400), "radius": 1.0},
    {"ra": 1.0, "dec": 0.0, "radius": 10**400},
])
def test_a_huge_integer_in_a_cone_is_a_filter_error(sky: Sky, engine: str, spec: dict[str, Any]) -> None:  # noqa: F811
    """README: hostile cone values are a FilterError; an int beyond float range raises OverflowError (sky._number)."""
    with pytest.raises(FilterError):
        sky.q[engine].find_one({"$cone": spec})


@pytest.mark.parametrize("engine", ["sql", "mongo"])
def test_a_huge_integer_in_crossmatch_is_a_filter_error(sky: Sky, engine: str) -> None:  # noqa: F811
    with pytest.raises(FilterError):
        sky.q[engine].crossmatch([("a", 10**400, 0.0)], 1.0)
    with pytest.raises(FilterError):
        sky.q[engine].crossmatch([("a", 1.0, 0.0)], 10**400)



@pytest.mark.parametrize("offset", ["nan", "inf", "-inf"])
def test_a_non_finite_ra_offset_is_a_config_error(mongo_settings: MongoSettings, tmp_path: Path, offset: str) -> None:
    """collections.toml's ``position.ra_offset`` is checked for type only: nan/inf pass, and every cone and
    crossmatch then silently finds nothing (the point at the cone's centre included)."""
    (tmp_path / "collections.toml").write_text(
        f'[[collection]]\nname = "src"\nposition = {{ point = "loc", ra_offset = {offset} }}\n'
        'indexes = [{ name = "loc", keys = [["loc", "2dsphere"]] }]\n')
    point = {"_id": 1, "loc": {"type": "Point", "coordinates": [-170.0, 10.0]}}
    try:
        with MongoConnection(settings=dataclasses.replace(mongo_settings, schema_dir=tmp_path)) as db:
            db.collection("src").insert_one(point)
            found = list(db.query("src").find_all({"$cone": {"ra": 10.0, "dec": 10.0, "radius": 5.0}},
                                                  paginate=False))
    except DbpError:
        return  # refused with a clear error: fine
    assert found == [point]  # otherwise the cone must still find the point at its centre
