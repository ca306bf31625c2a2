"""The multisurvey set's bundled named queries (sql/multisurvey/queries) against oracles over the same data.

One database, built by ``initdb`` from ``SCHEMA_SET = "multisurvey"`` and loaded with
tests/multisurvey_data.py's ZTF + LSST rows, serves every test here (they only read).
Each query's rows are compared exactly with a brute-force oracle written in plain
Python over the same rows: ``object_list`` (filters, sorts, offset and keyset pages),
``detections`` and ``cone_around`` (also against dbp's own ``$cone`` on ``object``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cmp_to_key
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbp
from dbp.errors import DbpError, FilterError
from dbp.pagination import KeysetPage, Pagination
from dbp.sky import separation
from dbp.sql.connection import SQLConnection

from .hyp import examples
from .multisurvey_data import CLASSES, CLASSIFIER, SHARED, make_data, multisurvey_database

DATA = make_data()
OBJECT_COLUMNS = ("oid", "sid", "tid", "meanra", "meandec", "sigmara", "sigmadec", "firstmjd", "lastmjd",
                  "deltamjd", "n_det", "n_forced", "n_non_det")
LIST_KEY = ("oid", "sid", "classifier_id", "class_id")
ZTF_DET = ("pid", "magpsf", "sigmapsf", "magpsf_corr", "sigmapsf_corr", "sigmapsf_corr_ext", "diffmaglim",
           "isdiffpos", "rb", "drb", "corrected", "dubious", "parent_candid")
LSST_DET = ("visit", "detector", "psfFlux", "psfFluxErr", "scienceFlux", "scienceFluxErr", "snr", "reliability",
            "extendedness", "isNegative", "isDipole", "pixelFlags")


@pytest.fixture(scope="module")
def db(sql_server_url: str) -> Iterator[SQLConnection]:
    with multisurvey_database(sql_server_url, DATA) as config, dbp.connect(config, engine="sql") as conn:
        assert isinstance(conn, SQLConnection)
        yield conn


# -- oracles ----------------------------------------------------------------------------------------


def list_oracle(classifier: Optional[str], ranking: Optional[int], sid: Optional[int] = None,
                version: Optional[str] = None) -> list[dict[str, Any]]:
    """object_list's rows, unordered: each object with its probabilities from one version of the classifier."""
    ztf = {o["oid"]: o for o in DATA["ztf_object"]}
    lsst = {o["oid"]: o for o in DATA["lsst_dia_object"]}
    rows = []
    for o in DATA["object"]:
        if sid is not None and o["sid"] != sid:
            continue
        z = ztf.get(o["oid"], {}) if o["sid"] == 0 else {}
        la = lsst.get(o["oid"], {}) if o["sid"] == 1 else {}
        base = {**{k: o.get(k) for k in OBJECT_COLUMNS}, "corrected": z.get("corrected"),
                "stellar": z.get("stellar"), "ndethist": z.get("ndethist"), "nDiaSources": la.get("nDiaSources")}
        mine = [p for p in DATA["probability"] if (p["oid"], p["sid"]) == (o["oid"], o["sid"])
                and CLASSIFIER[p["classifier_id"]][0] == classifier]
        chosen = version if version is not None else max(
            (CLASSIFIER[p["classifier_id"]][1] for p in mine), default=None)  # str order: code points
        probs = [p for p in mine if CLASSIFIER[p["classifier_id"]][1] == chosen
                 and (ranking is None or p["ranking"] == ranking)]
        for p in probs or [None]:
            rows.append({**base, **({
                "classifier_id": p["classifier_id"], "classifier_name": classifier,
                "classifier_version": chosen, "class_id": p["class_id"],
                "class_name": CLASSES[p["classifier_id"]].get(p["class_id"]), "probability": p["probability"],
                "ranking": p["ranking"]} if p else dict.fromkeys(
                ("classifier_id", "classifier_name", "classifier_version", "class_id", "class_name", "probability",
                 "ranking")))})
    return rows


def _compare(a: Any, b: Any) -> int:
    if a is None or b is None:
        return (a is not None) - (b is not None)  # NULL sorts first ascending, last descending
    return int((a > b) - (a < b))


def ordered(rows: list[dict[str, Any]], sort: Sequence[tuple[str, int]], key: Sequence[str]) -> list[dict[str, Any]]:
    order = list(sort) + [(k, 1) for k in key if k not in {f for f, _ in sort}]

    def cmp(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        for field, direction in order:
            c = _compare(a[field], b[field]) * direction
            if c:
                return c
        return 0

    return sorted(rows, key=cmp_to_key(cmp))


def _matches(value: Any, condition: Any) -> bool:
    if not isinstance(condition, dict):
        return bool(value == condition)
    tests = {"$gte": lambda v, c: v >= c, "$gt": lambda v, c: v > c, "$lte": lambda v, c: v <= c,
             "$lt": lambda v, c: v < c, "$in": lambda v, c: v in c, "$ne": lambda v, c: v != c}
    return all((value is not None or op == "$ne") and tests[op](value, c) for op, c in condition.items())


def filtered(rows: list[dict[str, Any]], filter_by: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [r for r in rows if all(_matches(r[f], c) for f, c in filter_by.items())]


def detections_oracle(oid: int) -> list[dict[str, Any]]:
    ztf = {(d["oid"], d["measurement_id"], d["sid"]): d for d in DATA["ztf_detection"]}
    lsst = {(d["oid"], d["measurement_id"], d["sid"]): d for d in DATA["lsst_detection"]}
    rows = []
    for d in DATA["detection"]:
        if d["oid"] != oid:
            continue
        key = (d["oid"], d["measurement_id"], d["sid"])
        z, la = ztf.get(key, {}), lsst.get(key, {})
        rows.append({**{k: d[k] for k in ("oid", "sid", "measurement_id", "mjd", "ra", "dec", "band")},
                     **{k: z.get(k) for k in ZTF_DET}, **{k: la.get(k) for k in LSST_DET},
                     "has_stamp": z["has_stamp"] if z.get("has_stamp") is not None else la.get("has_stamp")})
    return ordered(rows, [], ("oid", "sid", "measurement_id"))


def cone_oracle(oid: int, radius: float, sid: Optional[int] = None) -> list[dict[str, Any]]:
    centres = sorted((o for o in DATA["object"] if o["oid"] == oid and sid in (None, o["sid"])),
                     key=lambda o: o["sid"])
    if not centres:
        return []
    c = centres[0]
    rows = []
    for o in DATA["object"]:
        d = separation(c["meanra"], c["meandec"], o["meanra"], o["meandec"])
        if d <= radius:
            rows.append({**{k: o[k] for k in ("oid", "sid", "tid", "meanra", "meandec", "firstmjd", "lastmjd",
                                               "n_det")}, "separation": d})
    return ordered(rows, [], ("oid", "sid"))


# -- object_list -------------------------------------------------------------------------------------

RUBIN, BETA = "stamp_classifier_rubin", "stamp_classifier_2025_beta"
PARAMS: list[dict[str, Any]] = [
    {"classifier": RUBIN, "ranking": 1},
    {"classifier": RUBIN, "ranking": None, "sid": 1},
    {"classifier": RUBIN, "ranking": None, "version": "10.0"},
    {"classifier": RUBIN, "ranking": 2, "version": "2.0.1", "sid": None},
    {"classifier": BETA, "ranking": None, "sid": 0},
    {"classifier": "no_such_classifier", "ranking": 1},
]
FILTERS: list[dict[str, Any]] = [
    {}, {"class_name": "SN"}, {"probability": {"$gte": 0.5}}, {"sid": 1}, {"n_det": {"$gte": 2, "$lt": 4}},
    {"oid": {"$in": [SHARED, 2003, 1005, 4000, 99999]}}, {"ranking": {"$ne": 1}},
    {"classifier_version": "2.0.10", "probability": {"$lt": 0.75}},
]
SORTS: list[list[tuple[str, int]]] = [
    [], [("probability", -1)], [("n_det", 1)], [("class_name", 1), ("meanra", -1)], [("oid", -1)],
    [("nDiaSources", -1), ("firstmjd", 1)],
]


def test_the_set_names_its_own_queries(db: SQLConnection) -> None:
    source = db.query("object_list", {"classifier": RUBIN, "ranking": 1})
    assert source.statement.where.endswith("sql/multisurvey/queries/object_list.sql")  # not ztf's dbp/queries
    for name, params in (("detections", {"oid": 1}), ("cone_around", {"oid": 1, "radius": 1})):
        assert db.query(name, params).statement.where.endswith(f"sql/multisurvey/queries/{name}.sql")


def test_the_data_set_is_what_the_oracles_read(db: SQLConnection) -> None:
    """The loaded rows are the generated ones, and the data set holds the cases the queries must get right."""
    for table in ("object", "detection", "probability"):
        assert db.query(table).count() == len(DATA[table])
    assert {o["sid"] for o in DATA["object"] if o["oid"] == SHARED} == {0, 1}
    versions = {o["oid"]: {p["classifier_id"] for p in DATA["probability"] if p["oid"] == o["oid"]}
                for o in DATA["object"]}
    assert any({1, 3} <= v for v in versions.values()) and any({1, 4} <= v for v in versions.values())
    assert any(p["class_id"] == 99 for p in DATA["probability"])
    assert any(not v for v in versions.values())


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_object_list_pages_equal_slices_of_the_oracle(db: SQLConnection, params: dict[str, Any]) -> None:
    rows = list_oracle(params["classifier"], params["ranking"], params.get("sid"), params.get("version"))
    source = db.query("object_list", params)
    tried = 0
    for filter_by in FILTERS:
        for sort in SORTS:
            expected = ordered(filtered(rows, filter_by), sort, LIST_KEY)
            assert list(source.find_all(filter_by, sort=sort, paginate=False)) == expected, (filter_by, sort)
            per_page = 4
            last = max(1, -(-len(expected) // per_page))
            for page in sorted({1, 2, last, last + 1}):
                got = source.paginate(filter_by, page=page, per_page=per_page, sort=sort)
                assert isinstance(got, Pagination)
                assert got.total == len(expected), (filter_by, sort)
                assert got.items == expected[(page - 1) * per_page: page * per_page], (filter_by, sort, page)
                tried += 1
    assert tried >= 3 * len(FILTERS) * len(SORTS)


@pytest.mark.parametrize("sort", SORTS, ids=str)
def test_object_list_keyset_walks_equal_the_oracle(db: SQLConnection, sort: list[tuple[str, int]]) -> None:
    for params, filter_by in (({"classifier": RUBIN, "ranking": None}, {}),
                              ({"classifier": RUBIN, "ranking": None, "sid": 1}, {"probability": {"$gte": 0.25}}),
                              ({"classifier": BETA, "ranking": 1}, {"sid": {"$in": [0, 2]}})):
        expected = ordered(filtered(list_oracle(params["classifier"], params["ranking"], params.get("sid")),
                                    filter_by), sort, LIST_KEY)
        assert len(expected) > 10
        page = db.query("object_list", params).paginate(filter_by, per_page=3, sort=sort, keyset=True)
        assert isinstance(page, KeysetPage)
        seen = list(page.items)
        while page.has_next:
            page = page.next()
            seen += page.items
        assert seen == expected, (params, filter_by, sort)


def test_object_list_lists_each_object_once_per_class_and_no_object_twice(db: SQLConnection) -> None:
    """The default version is each object's greatest as text: "2.0.10" over "2.0.1" over "10.0"."""
    rows = list(db.query("object_list", {"classifier": RUBIN, "ranking": 1}).find_all(paginate=False))
    assert len(rows) == len({(r["oid"], r["sid"]) for r in rows}) == len(DATA["object"])
    by_object = {(r["oid"], r["sid"]): r["classifier_version"] for r in rows}
    for (oid, sid), version in by_object.items():
        mine = {CLASSIFIER[p["classifier_id"]][1] for p in DATA["probability"]
                if (p["oid"], p["sid"]) == (oid, sid) and CLASSIFIER[p["classifier_id"]][0] == RUBIN}
        assert version == (("2.0.10" if "2.0.10" in mine else "2.0.1" if "2.0.1" in mine else "10.0")
                           if mine else None)
    shared = [r for r in rows if r["oid"] == SHARED]  # ZTF's row of the oid has no rubin probabilities
    assert {r["sid"]: r["classifier_id"] for r in shared} == {0: None, 1: 1}


def test_object_list_takes_a_cone_on_its_position(db: SQLConnection) -> None:
    source = db.query("object_list", {"classifier": RUBIN, "ranking": 1})
    got = list(source.find_all({"$cone": {"ra": 150.0, "dec": 2.0, "radius": 30.0}}, paginate=False))
    expected = ordered([r for r in list_oracle(RUBIN, 1) if separation(150.0, 2.0, r["meanra"], r["meandec"]) <= 30],
                       [], LIST_KEY)
    assert got == expected and 0 < len(got) < len(DATA["object"])


# -- detections -------------------------------------------------------------------------------------


@pytest.mark.parametrize("oid", sorted({o["oid"] for o in DATA["object"]} | {123456789}))
def test_detections_are_one_row_per_detection_with_the_surveys_columns(db: SQLConnection, oid: int) -> None:
    got = list(db.query("detections", {"oid": oid}).find_all(paginate=False))
    assert got == detections_oracle(oid)


def test_detections_of_an_oid_two_surveys_share_keep_each_surveys_columns(db: SQLConnection) -> None:
    rows = list(db.query("detections", {"oid": SHARED}).find_all(sort=[("mjd", 1)], paginate=False))
    assert [(r["sid"], r["measurement_id"]) for r in rows] == [(0, 777), (0, 778), (1, 777), (1, 779), (1, 780)]
    for r in rows:  # measurement 777 of each survey: its own survey's columns only
        assert (r["magpsf"] is None) is (r["sid"] == 1) and (r["visit"] is None) is (r["sid"] == 0)
    lsst = db.query("detections", {"oid": SHARED}).find_all({"sid": 1, "psfFlux": {"$gte": 1550}}, paginate=False)
    assert [r["measurement_id"] for r in lsst] == [779, 780]
    bare = next(r for r in db.query("detections", {"oid": 1003}).find_all(paginate=False) if r["magpsf"] is None)
    assert bare["measurement_id"] == 100300 and bare["has_stamp"] is None  # a detection without its ztf row


def test_detections_page_by_key(db: SQLConnection) -> None:
    expected = ordered(detections_oracle(SHARED), [("mjd", -1)], ("oid", "sid", "measurement_id"))
    page = db.query("detections", {"oid": SHARED}).paginate(per_page=2, sort=[("mjd", -1)], keyset=True)
    seen = list(page.items)
    while page.has_next:
        page = page.next()
        seen += page.items
    assert seen == expected


# -- cone_around ------------------------------------------------------------------------------------

CENTRES = [o for o in DATA["object"] if o["oid"] in (1001, 1006, 1007, 2004, 2013, SHARED, 4000)]


def assert_same_cone(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same rows in the same order; separations within a microarcsecond of the oracle's."""
    assert [{k: v for k, v in r.items() if k != "separation"} for r in got] == [
        {k: v for k, v in r.items() if k != "separation"} for r in expected]
    assert all(abs(a["separation"] - b["separation"]) < 1e-6 for a, b in zip(got, expected))


@pytest.mark.parametrize("radius", [0, 0.5, 5, 30.0, 120, 3600.0, 10 * 3600])
def test_cone_around_equals_the_oracle_and_dbps_own_cone(db: SQLConnection, radius: float) -> None:
    objects = db.query("object")
    seen = 0
    for centre in CENTRES:
        for sid in (None, centre["sid"]):
            got = list(db.query("cone_around", {"oid": centre["oid"], "radius": radius, "sid": sid}
                                ).find_all(paginate=False))
            assert_same_cone(got, cone_oracle(centre["oid"], radius, sid))
            first = min((o for o in DATA["object"] if o["oid"] == centre["oid"] and sid in (None, o["sid"])),
                        key=lambda o: o["sid"])
            assert any(r["oid"] == first["oid"] and r["sid"] == first["sid"] and r["separation"] == 0 for r in got)
            if radius:  # $cone takes a radius above 0
                cone = {"ra": first["meanra"], "dec": first["meandec"], "radius": radius}
                theirs = objects.find_all({"$cone": cone}, projection=["oid", "sid"], paginate=False)
                assert sorted((r["oid"], r["sid"]) for r in theirs) == [(r["oid"], r["sid"]) for r in got]
            seen += len(got)
    assert seen >= 2 * len(CENTRES)


def test_cone_around_across_ra_zero_and_near_the_pole(db: SQLConnection) -> None:
    wrap = [o for o in DATA["object"] if abs(o["meandec"] + 30) < 0.01]
    pole = [o for o in DATA["object"] if o["meandec"] > 89.99]
    assert {o["meanra"] > 359 for o in wrap} == {True, False} and len(pole) >= 2
    for group, radius in ((wrap, 30.0), (pole, 7200.0)):
        centre = group[0]
        got = list(db.query("cone_around", {"oid": centre["oid"], "radius": radius, "sid": centre["sid"]}
                            ).find_all(sort=[("separation", 1)], paginate=False))
        assert {(r["oid"], r["sid"]) for r in got} >= {(o["oid"], o["sid"]) for o in group}
        assert_same_cone(got, ordered(cone_oracle(centre["oid"], radius, centre["sid"]), [("separation", 1)],
                                      ("oid", "sid")))


def test_cone_around_of_the_shared_oid_centres_on_the_surveys_row(db: SQLConnection) -> None:
    ztf_row, lsst_row = sorted((o for o in DATA["object"] if o["oid"] == SHARED), key=lambda o: o["sid"])
    assert separation(ztf_row["meanra"], ztf_row["meandec"], lsst_row["meanra"], lsst_row["meandec"]) > 20
    for sid, own, other in ((None, ztf_row, lsst_row), (0, ztf_row, lsst_row), (1, lsst_row, ztf_row)):
        rows = {(r["oid"], r["sid"]): r["separation"]
                for r in db.query("cone_around", {"oid": SHARED, "radius": 10, "sid": sid}).find_all(paginate=False)}
        assert rows[(own["oid"], own["sid"])] == 0 and (other["oid"], other["sid"]) not in rows
    assert list(db.query("cone_around", {"oid": SHARED, "radius": 10, "sid": 2}).find_all(paginate=False)) == []
    assert list(db.query("cone_around", {"oid": 55, "radius": 3600}).find_all(paginate=False)) == []


def test_cone_around_combines_with_filters_and_its_own_position(db: SQLConnection) -> None:
    source = db.query("cone_around", {"oid": 1001, "radius": 60})
    expected = [r for r in cone_oracle(1001, 60) if r["sid"] == 1 and r["n_det"] >= 2]
    assert [r["oid"] for r in source.find_all({"sid": 1, "n_det": {"$gte": 2}}, paginate=False)] == [
        r["oid"] for r in expected]
    near = list(source.find_all({"$cone": {"ra": 150.0, "dec": 2.0, "radius": 20}}, sort=[("$distance", 1)],
                                projection=["oid", "sid", "$distance"], paginate=False))
    assert near
    distances = [r["distance"] for r in near]
    assert distances == sorted(distances) and all(d <= 20 for d in distances)
    assert {(r["oid"], r["sid"]) for r in near} == {
        (r["oid"], r["sid"]) for r in cone_oracle(1001, 60) if separation(150.0, 2.0, r["meanra"], r["meandec"]) <= 20}


# -- hostile parameters -------------------------------------------------------------------------------

WRONG = [
    ("object_list", {"classifier": 7, "ranking": 1}, "parameter classifier is text, not int"),
    ("object_list", {"classifier": RUBIN, "ranking": "1"}, "parameter ranking is integer, not str"),
    ("object_list", {"classifier": RUBIN, "ranking": True}, "parameter ranking is integer, not bool"),
    ("object_list", {"classifier": RUBIN, "ranking": 1.0}, "parameter ranking is integer, not float"),
    ("object_list", {"classifier": RUBIN, "ranking": 1, "sid": "1"}, "parameter sid is integer, not str"),
    ("object_list", {"classifier": RUBIN, "ranking": 1, "version": 2.0}, "parameter version is text, not float"),
    ("object_list", {"classifier": RUBIN}, "missing parameter(s) ranking"),
    ("object_list", {"classifier": RUBIN, "ranking": 1, "limit": "1; DROP TABLE object"},
     "unexpected parameter(s) 'limit'"),
    ("detections", {"oid": "1001"}, "parameter oid is integer, not str"),
    ("detections", {"oid": "1001 OR 1=1"}, "parameter oid is integer, not str"),
    ("detections", {"oid": [1001, 1002]}, "parameter oid is integer, not list"),
    ("detections", {}, "missing parameter(s) oid"),
    ("cone_around", {"oid": 1001, "radius": float("nan")}, "parameter radius is float, not float nan"),
    ("cone_around", {"oid": 1001, "radius": float("inf")}, "parameter radius is float, not float inf"),
    ("cone_around", {"oid": 1001, "radius": "30"}, "parameter radius is float, not str"),
    ("cone_around", {"oid": 1001.5, "radius": 30}, "parameter oid is integer, not float"),
    ("cone_around", {"oid": 1001}, "missing parameter(s) radius"),
]


@pytest.mark.parametrize(("name", "params", "said"), WRONG, ids=[f"{w[0]}-{w[2]}" for w in WRONG])
def test_wrong_parameters_are_one_line_filter_errors(db: SQLConnection, name: str, params: dict[str, Any],
                                                     said: str) -> None:
    with pytest.raises(FilterError) as caught:
        list(db.query(name, params).find_all(paginate=False))
    message = str(caught.value)
    assert said in message and "\n" not in message and len(message) < 300, message


INJECTIONS = ["'; DROP TABLE object; --", "stamp_classifier_rubin' OR '1'='1", "%(ranking)s", "%s",
              "\\'; SELECT pg_sleep(10); --", '") OR TRUE --', "stamp_classifier_rubin\u2028",
              "\uff53tamp"]  # a fullwidth s


@pytest.mark.parametrize("text", INJECTIONS)
def test_sql_in_strings_is_only_a_value(db: SQLConnection, text: str) -> None:
    rows = list(db.query("object_list", {"classifier": text, "ranking": None}).find_all(paginate=False))
    assert len(rows) == len(DATA["object"]) and all(r["classifier_id"] is None for r in rows)
    versioned = list(db.query("object_list", {"classifier": RUBIN, "ranking": None, "version": text}
                              ).find_all(paginate=False))
    assert all(r["classifier_id"] is None for r in versioned)
    assert db.query("object").count() == len(DATA["object"])


def test_out_of_range_and_odd_values_are_harmless(db: SQLConnection) -> None:
    assert list(db.query("detections", {"oid": 2**70}).find_all(paginate=False)) == []
    assert list(db.query("detections", {"oid": -(2**63)}).find_all(paginate=False)) == []
    assert list(db.query("cone_around", {"oid": 2**70, "radius": 30}).find_all(paginate=False)) == []
    assert list(db.query("cone_around", {"oid": 1001, "radius": -5}).find_all(paginate=False)) == []
    assert list(db.query("object_list", {"classifier": RUBIN, "ranking": 2**40, "sid": 2**40}
                         ).find_all(paginate=False)) == []
    everything = list(db.query("cone_around", {"oid": 1001, "radius": 1e300}).find_all(paginate=False))
    assert len(everything) == len(DATA["object"])
    with pytest.raises(DbpError) as caught:  # PostgreSQL text holds no NUL: the server's refusal, one line
        list(db.query("object_list", {"classifier": "a\x00b", "ranking": 1}).find_all(paginate=False))
    assert "\n" not in str(caught.value)
    assert db.query("object").count() == len(DATA["object"])


CLASSIFIER_NAMES = st.one_of(st.sampled_from([RUBIN, BETA]), st.text(st.characters(blacklist_characters="\x00"),
                                                                      max_size=40))
VERSIONS = st.one_of(st.none(), st.sampled_from(["2.0.1", "2.0.10", "10.0", "2.1.1"]),
                     st.text(st.characters(blacklist_characters="\x00"), max_size=12))


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(classifier=CLASSIFIER_NAMES, version=VERSIONS, ranking=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1),
                                                                         st.integers(1, 6)),
       sid=st.one_of(st.none(), st.integers(-3, 3)))
def test_any_parameters_give_the_oracles_rows(db: SQLConnection, classifier: str, version: Optional[str],
                                              ranking: Optional[int], sid: Optional[int]) -> None:
    """Whatever the text (quotes, comments, % signs, any script), the statement reads it as a value."""
    got = db.query("object_list", {"classifier": classifier, "ranking": ranking, "sid": sid, "version": version}
                   ).find_all(sort=[("probability", -1)], paginate=False)
    assert list(got) == ordered(list_oracle(classifier, ranking, sid, version), [("probability", -1)], LIST_KEY)
