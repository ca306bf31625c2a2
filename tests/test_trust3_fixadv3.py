"""Adversary trust3 c, item 8: a MongoDB update that would fail on one document changes none."""

from __future__ import annotations

from typing import Any

import pytest

from dbp import FilterError
from dbp.mongo.connection import MongoConnection

CASES = [
    ([{"_id": 1, "tags": ["a"]}, {"_id": 2, "tags": "x"}], {"$push": {"tags": "b"}}, "'tags' holds a non-array"),
    ([{"_id": 1, "tags": ["a"]}, {"_id": 2, "tags": 3}], {"$pull": {"tags": "a"}}, "'tags' holds a non-array"),
    ([{"_id": 1, "n": 1}, {"_id": 2, "n": [1, 2]}], {"$mul": {"n": 2}}, "'n' holds a non-number"),
    ([{"_id": 1, "doc": {"a": 1}}, {"_id": 2, "doc": "s"}], {"$set": {"doc.a": 2}},
     "'doc' holds a value that is not an embedded document"),
    ([{"_id": 1, "doc": {"a": 1}}, {"_id": 2, "doc": [{"a": 1}]}], {"$inc": {"doc.a": 2}},
     "'doc' holds a value that is not an embedded document"),
]


@pytest.mark.parametrize("method", ["update", "bulk_update"])
@pytest.mark.parametrize(("docs", "update", "why"), CASES)
def test_type_clash_is_refused_before_any_write(mongo_db: MongoConnection, docs: list[dict[str, Any]],
                                                update: dict[str, Any], why: str, method: str) -> None:
    q = mongo_db.query("things")
    q.bulk_insert(docs)
    with pytest.raises(FilterError, match=why) as info:
        if method == "update":
            q.update({"_id": {"$in": [d["_id"] for d in docs]}}, update)
        else:
            q.bulk_update([{"_id": d["_id"]} for d in docs], [update] * len(docs))
    assert "nothing was changed" in str(info.value)
    assert list(q.find_all(sort=[("_id", 1)], paginate=False)) == docs


def test_no_clash_no_refusal(mongo_db: MongoConnection) -> None:
    q = mongo_db.query("things")
    q.bulk_insert([{"_id": 1, "doc": {"a": 1}, "tags": ["a"]}, {"_id": 2}, {"_id": 3, "doc": {}}])
    assert q.update({}, {"$inc": {"doc.a": 1}, "$push": {"tags": "b"}, "$set": {"doc.b": 1}}) == 3
    assert q.bulk_update([{"_id": 1}, {"_id": 2}], [{"$mul": {"doc.a": 2}}] * 2) == 2
    assert list(q.find_all(sort=[("_id", 1)], paginate=False)) == [
        {"_id": 1, "doc": {"a": 4, "b": 1}, "tags": ["a", "b"]}, {"_id": 2, "doc": {"a": 2, "b": 1}, "tags": ["b"]},
        {"_id": 3, "doc": {"a": 1, "b": 1}, "tags": ["b"]}]


def test_ipv6_host_is_bracketed_in_printed_urls_on_both_engines() -> None:
    """Items 10/11: hosts are kept without brackets (as Airflow stores them); URLs bracket them."""
    from dbp.airflow.mapping import connection_from_env, section_for
    from dbp.config import resolve_config

    sql = connection_from_env("postgres://u:pw@[::1]:5432/db", "x", "AIRFLOW_CONN_X")
    mongo = connection_from_env("mongo://u:pw@[::1]:27017/db", "x", "AIRFLOW_CONN_X")
    assert sql.host == mongo.host == "::1"
    config = resolve_config({"SQL": section_for(sql, "sql"), "MONGO": section_for(mongo, "mongo")}, environ={})
    assert config.settings("sql").masked_url() == "postgresql://u:***@[::1]:5432/db"
    assert config.settings("mongo").masked_url() == "mongodb://u:***@[::1]:27017/db"
