"""dbp.regex.escape: user input inside a $regex matches itself, literally, on both engines."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp.mongo.connection import MongoConnection
from dbp.regex import MAX_LENGTH, escape
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

HOSTILE = ["ZTF20.*", "a|b", "(x)", "[abc]", "^$", "a+b?", "{1,2}", "\\d", "back\\slash", "tab\tand-dash/slash",
           "ümlaut", "ZTF20aaaa", "ZTF20aaab", ".", "*", ""]


@pytest.fixture
def both(sql_db: SQLConnection, mongo_db: MongoConnection) -> dict[str, object]:
    sql_db.execute("CREATE TABLE s (id int PRIMARY KEY, oid text)")
    rows = [{"id": i, "oid": text} for i, text in enumerate(HOSTILE)]
    sql_db.query("s").bulk_insert(rows)
    mongo_db.query("s").bulk_insert([{"_id": r["id"], "oid": r["oid"]} for r in rows])
    return {"sql": sql_db.query("s"), "mongo": mongo_db.query("s")}


def test_an_escaped_text_matches_only_itself_on_both_engines(both: dict[str, object]) -> None:
    for text in HOSTILE:
        for engine, q in both.items():
            found = [r["oid"] for r in q.find_all({"oid": {"$regex": "^" + escape(text) + "$"}},  # type: ignore[attr-defined]
                                                  paginate=False)]
            assert found == [text], (engine, text)
    for engine, q in both.items():  # a prefix search: the dot is a dot
        found = sorted(r["oid"] for r in q.find_all({"oid": {"$regex": "^" + escape("ZTF20.")}},  # type: ignore[attr-defined]
                                                    paginate=False))
        assert found == ["ZTF20.*"], engine


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n"),
               max_size=MAX_LENGTH // 2 - 2))
def test_every_escaped_text_is_inside_the_portable_subset(text: str) -> None:
    import re

    from dbp.regex import translate

    pattern = translate("^" + escape(text) + "$")
    assert re.fullmatch(pattern.mongo, text)
