"""bulk_update, third trust pass (issue 20, items 3, 22 and 23).

3. Keys that the server takes for one row but Python does not (``char(n)``
   padding, ``citext`` case, a nondeterministic collation, numeric scale) are one
   key: every increment applies, and the last plain value wins. MongoDB compares
   keys exactly, so there such keys stay distinct documents.
22. db-plugins' ``filter_fields``, one ``{field: value}`` dict per instance, is
   accepted on both engines (the dict's values find the row).
23. An unknown column in ``attrs`` or ``filter_fields`` is a FilterError naming it
   on every SQL path, with nothing written.

The oracle for SQL is ``update`` called once per instance on a twin table (a
path that shares no grouping code with bulk_update); MongoDB gets the same
changes keyed by each row's canonical key, so both engines must end equal.
"""

from __future__ import annotations

import decimal
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbp import DbpError, FilterError
from dbp.mongo.connection import MongoConnection
from dbp.mongo.query import MongoQuery
from dbp.query import BaseQuery
from dbp.sql.connection import SQLConnection
from tests.hyp import examples

D = decimal.Decimal
ENGINES = ("sql", "mongo")
FIELDS = ["n", "x", "s"]


def _has_icu(db: SQLConnection) -> bool:
    try:
        db.execute("CREATE COLLATION IF NOT EXISTS ci "
                   "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    except DbpError:  # the embedded PostgreSQL 18 is built without ICU; the system PostgreSQL 15 has it
        return False
    return True


#: Key column types the server compares differently from Python, each with its rows' canonical keys and,
#: for each of them, spellings that the server takes for that key (the canonical one first).
KINDS: dict[str, tuple[str, list[list[Any]]]] = {
    "char": ("character(4)", [["ab", "ab ", "ab  ", "ab    "], ["cd", "cd "], ["e", "e   "]]),
    "citext": ("citext", [["ab", "AB", "Ab", "aB"], ["cd", "CD"], ["e", "E"]]),
    "numeric": ("numeric(6,2)", [[D("1.5"), D("1.50"), D("1.500"), 1.5], [D("2"), 2, D("2.00"), 2.0],
                                 [D("-0.25"), -0.25, D("-0.250")]]),
    "ci": ("text COLLATE ci", [["ab", "AB", "aB"], ["cd", "CD"], ["e", "E"]]),
}


def _table(db: SQLConnection, kind: str, name: str, *, unique: bool = True) -> None:
    if kind == "citext":
        db.execute("CREATE EXTENSION IF NOT EXISTS citext")
    if kind == "ci" and not _has_icu(db):
        pytest.skip("this PostgreSQL has no ICU (nondeterministic collations); "
                    "run with DBP_TEST_SQL_URL=postgresql://postgres@127.0.0.1:5432/postgres")
    key = f"k {KINDS[kind][0]} PRIMARY KEY" if unique else f"id serial PRIMARY KEY, k {KINDS[kind][0]}"
    db.execute(f"CREATE TABLE {name} ({key}, label int, n bigint, x double precision, s text)")


def _collection(db: MongoConnection, name: str) -> MongoQuery:
    q = db.query(name)
    assert isinstance(q, MongoQuery)
    return q


# -- 3. server-equal keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_server_equal_keys_are_one_key(sql_db: SQLConnection, kind: str) -> None:
    """Cause: keys are grouped by Python equality; 'ab' and 'ab ' reach one char(4) row in one UPDATE ... FROM,
    which applies one of them (3 x $inc 1 added 1), and merged plain values kept the first."""
    _table(sql_db, kind, "t")
    spellings = KINDS[kind][1]
    q = sql_db.query("t")
    q.bulk_insert([{"k": s[0], "label": i, "n": 0, "s": "-"} for i, s in enumerate(spellings)])
    same = spellings[0]
    assert q.bulk_update([{"k": v} for v in same], [{"$inc": {"n": 1}}] * len(same)) == 1
    assert q.find_one({"label": 0})["n"] == len(same)  # type: ignore[index]
    # plain values merge in order: the last wins; fields only an earlier one carries stay
    assert q.bulk_update([{"k": same[0]}, {"k": same[1]}, {"k": spellings[1][0]}],
                         [{"s": "first", "x": 1.0}, {"s": "last"}, {"s": "other"}]) == 2
    assert {r["label"]: (r["s"], r["x"]) for r in q.find_all(paginate=False)} == {
        0: ("last", 1.0), 1: ("other", None), 2: ("-", None)}
    # distinct plain int-or-str keys of one shape (the columnar fast path's batch)
    assert q.bulk_update([{"k": v} for v in same[1:]] + [{"k": spellings[2][-1]}],
                         [{"s": f"v{i}"} for i in range(len(same))]) == 2
    assert {r["label"]: r["s"] for r in q.find_all(paginate=False)} == {
        0: f"v{len(same) - 2}", 1: "other", 2: f"v{len(same) - 1}"}


@pytest.mark.parametrize("kind", ["char", "citext", "ci"])
def test_server_equal_keys_on_a_column_that_is_not_unique(sql_db: SQLConnection, kind: str) -> None:
    """Two rows equal to both keys: each row gets both increments, as two updates in a row would give it."""
    _table(sql_db, kind, "t", unique=False)
    same = KINDS[kind][1][0]
    q = sql_db.query("t")
    q.bulk_insert([{"k": same[0], "label": 0, "n": 0}, {"k": same[1], "label": 1, "n": 0},
                   {"k": "zz", "label": 2, "n": 0}])
    assert q.bulk_update([{"k": same[1]}, {"k": same[0]}, {"k": same[1]}], [{"$inc": {"n": 1}}] * 3,
                         filter_fields=["k"]) == 2
    assert {r["label"]: r["n"] for r in q.find_all(paginate=False)} == {0: 3, 1: 3, 2: 0}
    assert q.bulk_update([{"k": same[0]}, {"k": same[1]}], [{"s": "a"}, {"s": "b"}], filter_fields=["k"]) == 2
    assert {r["label"]: r["s"] for r in q.find_all(paginate=False)} == {0: "b", 1: "b", 2: None}


def test_server_equal_keys_in_a_key_of_two_columns(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE EXTENSION IF NOT EXISTS citext; "
                   "CREATE TABLE t (c citext, m numeric(4,1), n bigint, PRIMARY KEY (c, m))")
    q = sql_db.query("t")
    q.bulk_insert([{"c": "ab", "m": D("1.0"), "n": 0}, {"c": "ab", "m": D("2.0"), "n": 0}])
    keys = [{"c": "AB", "m": 1}, {"c": "ab", "m": D("1.00")}, {"c": "Ab", "m": 2}, {"c": "aB", "m": 1.0}]
    assert q.bulk_update(keys, [{"$inc": {"n": 1}}] * 4) == 2
    assert {r["m"]: r["n"] for r in q.find_all(paginate=False)} == {D("1.0"): 3, D("2.0"): 1}


def test_mongo_keeps_comparing_keys_exactly(mongo_db: MongoConnection) -> None:
    q = _collection(mongo_db, "t")
    q.bulk_insert([{"_id": "ab", "n": 0}, {"_id": "AB", "n": 0}, {"_id": "ab ", "n": 0}])
    assert q.bulk_update([{"_id": "ab"}, {"_id": "AB"}, {"_id": "ab "}, {"_id": "ab"}],
                         [{"$inc": {"n": 1}}] * 4) == 3
    assert {r["_id"]: r["n"] for r in q.find_all(paginate=False)} == {"ab": 2, "AB": 1, "ab ": 1}


# -- 3. the differential test: random operator sequences over server-equal keys ------------------------------

_small = st.integers(-50, 50)
_floats = st.floats(-1e3, 1e3, allow_nan=False).map(lambda f: round(f, 2))
_words = st.sampled_from(["a", "b", "Z", "é", ""])
_changes = st.one_of(
    st.builds(lambda v: {"$set": {"n": v}}, st.none() | _small),
    st.builds(lambda v: {"$inc": {"n": v}}, _small),
    st.builds(lambda v: {"$mul": {"n": v}}, st.integers(-2, 2)),
    st.builds(lambda v: {"$min": {"n": v}}, _small),
    st.builds(lambda v: {"$max": {"n": v}}, _small),
    st.builds(lambda v: {"$inc": {"x": v}}, _floats),
    st.builds(lambda v: {"$max": {"x": v}}, _floats),
    st.builds(lambda v: {"$min": {"s": v}}, _words),
    st.builds(lambda v: {"$unset": {v: ""}}, st.sampled_from(FIELDS)),
    st.builds(lambda a, b: {"$inc": {"n": a}, "$set": {"s": b}}, _small, _words),
)
_plain = st.fixed_dictionaries({}, optional={"n": st.none() | _small, "x": _floats, "s": _words}).filter(bool)
#: One call: (row index, spelling index) per instance, and either one plain dict or one operator update each.
_calls = st.lists(
    st.tuples(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=6),
              st.booleans(), st.data()),
    min_size=1, max_size=4)


class Three:
    """SQL ``bulk`` (bulk_update, spellings), SQL ``ref`` (one update per instance), MongoDB (canonical keys)."""

    def __init__(self, sql: SQLConnection, mongo: MongoConnection, kind: str) -> None:
        self.sql = sql
        self.kind = kind
        _table(sql, kind, "bulk")
        sql.execute("CREATE TABLE ref (LIKE bulk INCLUDING ALL)")
        self.q: dict[str, BaseQuery] = {"bulk": sql.query("bulk"), "ref": sql.query("ref"),
                                        "mongo": _collection(mongo, "rows")}

    def reset(self) -> None:
        self.sql.execute("TRUNCATE bulk, ref")
        self.q["mongo"].delete({})
        start: list[dict[str, Any]] = [{"label": i, "n": i, "x": 0.5 * i, "s": "m"} for i in range(3)]
        for name in ("bulk", "ref"):
            self.q[name].bulk_insert([{"k": KINDS[self.kind][1][r["label"]][0], **r} for r in start])
        self.q["mongo"].bulk_insert([{"_id": r["label"], **r} for r in start])

    def spelling(self, row: int, which: int) -> Any:
        """Row 3 has no row: its key matches nothing on either engine."""
        if row == 3:
            return "zz" if self.kind != "numeric" else D("99")
        options = KINDS[self.kind][1][row]
        return options[which % len(options)]

    def rows(self, name: str) -> list[dict[str, Any]]:
        got = [{f: r.get(f) for f in ("label", *FIELDS)} for r in self.q[name].find_all(paginate=False)]
        return sorted(got, key=lambda r: r["label"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_random_updates_over_server_equal_keys_agree(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                     kind: str) -> None:
    three = Three(sql_db, mongo_db, kind)

    @settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(calls=_calls)
    def run(calls: list[tuple[list[tuple[int, int]], bool, Any]]) -> None:
        three.reset()
        for picks, plain, data in calls:
            attrs = [data.draw(_plain if plain else _changes) for _ in picks]
            keys = [three.spelling(row, which) for row, which in picks]
            bulk = _outcome(three.q["bulk"].bulk_update, [{"k": k} for k in keys], attrs)
            mongo = _outcome(three.q["mongo"].bulk_update, [{"_id": row if row < 3 else 99} for row, _ in picks],
                             attrs)
            ref: Any = 0
            for key, change in zip(keys, attrs):
                ref = _outcome(three.q["ref"].update, {"k": key}, change)
                if ref is FilterError:
                    break
            matched = len({row for row, _ in picks if row < 3})
            assert bulk == mongo == (ref if ref is FilterError else matched), (keys, attrs)
            assert three.rows("bulk") == three.rows("ref") == three.rows("mongo"), (keys, attrs)

    run()


def _outcome(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except FilterError:
        return FilterError


# -- 22. db-plugins' filter_fields: one {field: value} dict per instance -------------------------------------


def _store(engine: str, sql_db: SQLConnection, mongo_db: MongoConnection) -> BaseQuery:
    if engine == "sql":
        sql_db.execute("CREATE TABLE obj (oid text, fid int, n bigint, s text, PRIMARY KEY (oid, fid))")
        return sql_db.query("obj")
    return _collection(mongo_db, "obj")


def _state(q: BaseQuery) -> list[tuple[Any, ...]]:
    return sorted((r["oid"], r["fid"], r.get("n"), r.get("s")) for r in q.find_all(paginate=False))


@pytest.mark.parametrize("engine", ENGINES)
def test_filter_fields_as_db_plugins_dicts(sql_db: SQLConnection, mongo_db: MongoConnection, engine: str) -> None:
    """Cause: the dicts were taken for field names (a raw TypeError: unhashable type: 'dict')."""
    q = _store(engine, sql_db, mongo_db)
    q.bulk_insert([{"oid": o, "fid": f, "n": 0, "s": "-"} for o in ("a", "b") for f in (1, 2)])
    # db-plugins' own call: the dict finds the row, whatever the instance holds (it takes precedence)
    assert q.bulk_update([{"oid": "zzz", "other": 1}, {}], [{"s": "x"}, {"$inc": {"n": 2}}],
                         filter_fields=[{"oid": "a", "fid": 1}, {"fid": 2, "oid": "b"}]) == 2
    # one field each: every row with that value
    assert q.bulk_update([{}, {}, {}], [{"$inc": {"n": 1}}] * 3,
                         filter_fields=[{"oid": "a"}, {"oid": "b"}, {"oid": "a"}]) == 4
    assert _state(q) == [("a", 1, 2, "x"), ("a", 2, 2, "-"), ("b", 1, 1, "-"), ("b", 2, 3, "-")]
    # the fast path's batch: distinct keys, one shape
    assert q.bulk_update([{}, {}], [{"s": "p"}, {"s": "q"}], filter_fields=[{"oid": "a", "fid": 2},
                                                                            {"oid": "b", "fid": 1}]) == 2
    assert _state(q) == [("a", 1, 2, "x"), ("a", 2, 2, "p"), ("b", 1, 1, "q"), ("b", 2, 3, "-")]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("instances", "filter_fields", "message"), [
    ([{}, {}], [{"oid": "a"}], r"^bulk_update got 2 instances but 1 filter_fields dicts$"),
    ([{}, {}], [{"oid": "a"}, {"fid": 1}], r"^bulk_update: filter_fields\[1\] names fid, but filter_fields\[0\] "
                                           r"names oid: every dict names the same fields"),
    ([{}], [{}], r"^bulk_update: filter_fields\[0\] is empty"),
    ([{}, {}], [{"oid": "a"}, "oid"], r"^bulk_update: filter_fields is a list of field names, or one "
                                      r"\{field: value\} dict per instance \(db-plugins' form\)"),
    ([{}], [{"oid": {"$in": ["a", "b"]}}], r"^bulk_update: filter_fields\[0\]\.oid: a key value is a plain value"),
    ([{}], [{"$where": "1"}], r"^bulk_update: filter_fields: '\$where' is not a field name"),
])
def test_filter_fields_dicts_that_cannot_be_read_are_refused(sql_db: SQLConnection, mongo_db: MongoConnection,
                                                             engine: str, instances: Any, filter_fields: Any,
                                                             message: str) -> None:
    q = _store(engine, sql_db, mongo_db)
    q.bulk_insert([{"oid": "a", "fid": 1, "n": 0}])
    with pytest.raises(FilterError, match=message):
        q.bulk_update(instances, [{"$inc": {"n": 1}}] * len(instances), filter_fields=filter_fields)
    assert _state(q) == [("a", 1, 0, None)]


# -- 23. unknown columns on SQL --------------------------------------------------------------------------


@pytest.mark.parametrize(("instances", "attrs", "filter_fields"), [
    ([{"id": 1}], [{"nope": 1}], None),                                    # the columnar fast path, plain
    ([{"id": 1}, {"id": 2}], [{"$inc": {"nope": 1}}] * 2, None),           # the fast path, an operator
    ([{"id": 1}, {"id": 1}], [{"nope": 1}] * 2, None),                     # the per-row path
    ([{"id": 1}, {"id": 1}], [{"$inc": {"nope": 1}}] * 2, None),           # the per-row path, rounds
    ([{"id": 1}, {"id": 2}], [{"n": 1}, {"nope.a": 1}], None),             # two shapes
    ([{"nope": 1}], [{"n": 1}], ["nope"]),                                 # filter_fields
    ([{"nope": 1}, {"nope": 1}], [{"$inc": {"n": 1}}] * 2, ["nope"]),
    ([{"nope": "x", "id": 1}], [{"n": 1}], ["id", "nope"]),
    ([{}], [{"n": 1}], [{"nope": 1}]),                                     # db-plugins' dicts
])
def test_unknown_columns_are_a_filter_error_naming_them(sql_db: SQLConnection, instances: Any, attrs: Any,
                                                        filter_fields: Any) -> None:
    """Cause: rules[name] (a KeyError) on the fast path and for filter fields, before any _column check."""
    sql_db.execute("CREATE TABLE u (id bigint PRIMARY KEY, n bigint)")
    q = sql_db.query("u")
    q.bulk_insert([{"id": 1, "n": 0}, {"id": 2, "n": 0}])
    with pytest.raises(FilterError, match=r"u has no column 'nope'; its columns are id, n"):
        q.bulk_update(instances, attrs, filter_fields=filter_fields)
    with pytest.raises(FilterError, match=r"u has no column 'nope'; its columns are id, n"):
        q.update({"id": 1}, {"nope": 1})  # the same message as update's
    assert sorted(r["n"] for r in q.find_all(paginate=False)) == [0, 0]


def test_a_dataframe_with_an_unknown_column(sql_db: SQLConnection) -> None:
    pd = pytest.importorskip("pandas")
    sql_db.execute("CREATE TABLE u (id bigint PRIMARY KEY, n bigint)")
    q = sql_db.query("u")
    q.bulk_insert([{"id": 1, "n": 0}])
    with pytest.raises(FilterError, match=r"u has no column 'nope'"):
        q.bulk_update(pd.DataFrame({"id": [1], "nope": [3]}))
    assert q.find_one({"id": 1}) == {"id": 1, "n": 0}


def test_a_key_that_does_not_fit_is_named_before_anything_is_written(sql_db: SQLConnection) -> None:
    sql_db.execute("CREATE EXTENSION IF NOT EXISTS citext; CREATE TABLE t (k citext PRIMARY KEY, n bigint)")
    q = sql_db.query("t")
    q.bulk_insert([{"k": "ab", "n": 0}, {"k": "cd", "n": 0}])
    with pytest.raises(FilterError, match=r"^bulk_update: instances\[3\]: t\.k is citext; int 5 does not fit"):
        q.bulk_update([{"k": "AB"}, {"k": "ab"}, {"k": "cd"}, {"k": 5}], [{"$inc": {"n": 1}}] * 4)
    assert sorted(r["n"] for r in q.find_all(paginate=False)) == [0, 0]


# -- 3. any type: an = that is not an equivalence (circle's = compares areas within 1e-6) ---------------------

R1, R2, R3 = "<(0,0),1>", "<(0,0),1.000000127>", "<(0,0),1.000000254>"  # R1 = R2 and R2 = R3, but R1 <> R3


def test_keys_whose_equality_is_not_an_equivalence_are_refused(sql_db: SQLConnection) -> None:
    """Cause: R1 and R3 are two keys, yet the row R2 equals both; one UPDATE ... FROM applied one of them.

    No list of types: the server's catalog says whether an operator class holds the type's =.
    """
    sql_db.execute("CREATE TABLE c (id int PRIMARY KEY, c circle, n bigint)")
    q = sql_db.query("c")
    q.bulk_insert([{"id": 1, "c": R2, "n": 0}])
    with pytest.raises(FilterError, match=r"^bulk_update on c: c is circle, whose = the server does not keep to an "
                                          r"equivalence \(no default btree or hash operator class holds it\)"):
        q.bulk_update([{"c": R1}, {"c": R3}], [{"$inc": {"n": 1}}] * 2, filter_fields=["c"])
    assert q.find_one({"id": 1})["n"] == 0  # type: ignore[index]
    assert q.bulk_update([{"c": R1}, {"c": R1}], [{"$inc": {"n": 1}}] * 2, filter_fields=["c"]) == 1  # one key
    assert q.find_one({"id": 1})["n"] == 2  # type: ignore[index]


def test_money_keys_of_mixed_types_across_parameter_batches(sql_db: SQLConnection) -> None:
    """Decimal 1, '1' and '1.00' are one money value; Decimals and strings go as VALUES rows in batches of 15,000, and
    keys equal across two batches are one key too."""
    sql_db.execute("CREATE TABLE mo (k money PRIMARY KEY, n bigint); INSERT INTO mo VALUES (1, 0), (2, 0)")
    q = sql_db.query("mo")
    keys: list[Any] = [D(1), *map(D, range(10, 16_010)), "1.00", "2.00", D(2), "1"]
    assert q.bulk_update([{"k": k} for k in keys], [{"$inc": {"n": 1}}] * len(keys)) == 2
    assert sorted(r["n"] for r in q.find_all(paginate=False)) == [2, 3]
    assert q.bulk_update([{"k": "2"}, {"k": D("2.0")}], [{"n": 7}, {"n": 8}]) == 1
    assert sorted(r["n"] for r in q.find_all(paginate=False)) == [3, 8]
