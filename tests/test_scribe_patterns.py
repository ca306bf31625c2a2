"""docs/alerce-scribe.md, checked: each ALeRCE write as ALeRCE runs it on one database, as one dbp call on another.

Two databases built from the multisurvey set start with the same rows; ALeRCE's
statements (written here as its SQLAlchemy code sends them: the scribe's Python
de-duplication, then one multi-row ``INSERT ... ON CONFLICT``, or one ``UPDATE`` per
row) run on "theirs" through raw psycopg, the dbp call on "ours", and the tables must
then hold the same rows. The differences the page lists are asserted too.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

import dbp
from dbp.sql.connection import SQLConnection
from dbp.sql.settings import SQLSettings

from .hyp import examples
from .multisurvey_data import SHARED, multisurvey_database

TODAY = datetime.date.today()
OLD = datetime.date(2025, 1, 1)
TABLES = ("object", "lsst_dia_object", "magstat", "probability", "feature", "ztf_object", "xmatch")
ORDER = {"object": ("oid", "sid"), "lsst_dia_object": ("oid",), "ztf_object": ("oid",),
         "magstat": ("oid", "sid", "band"), "probability": ("oid", "sid", "classifier_id", "class_id"),
         "feature": ("oid", "sid", "feature_id", "band", "version", "value"), "xmatch": ("oid", "sid", "catid")}
#: The object statistics the scribe's magstat commands write (parse_obj_stats), by UPDATE ... WHERE oid = ...
OBJECT_STATS = ("meanra", "meandec", "sigmara", "sigmadec", "firstmjd", "lastmjd", "deltamjd", "n_det", "n_forced",
                "n_non_det")
#: The magstat columns the scribe's ZTF magstat command sends (parse_ztf_magstats): not step_id_corr, updated_date.
MAGSTAT = ("oid", "sid", "band", "stellar", "corrected", "ndubious", "dmdt_first", "dm_first", "sigmadm_first",
           "dt_first", "magmean", "magmedian", "magmax", "magmin", "magsigma", "maglast", "magfirst", "magmean_corr",
           "magmedian_corr", "magmax_corr", "magmin_corr", "magsigma_corr", "maglast_corr", "magfirst_corr",
           "saturation_rate", "n_det", "firstmjd", "lastmjd")


class Pair(NamedTuple):
    ours: SQLConnection  # dbp's calls
    raw: psycopg.Connection[dict[str, Any]]  # the same database as ours, for set-up and reading
    theirs: psycopg.Connection[dict[str, Any]]  # ALeRCE's statements


def _raw(config: Any) -> psycopg.Connection[dict[str, Any]]:
    settings = config.settings("sql")
    assert isinstance(settings, SQLSettings)
    return psycopg.connect(**dict(settings.params), autocommit=True, row_factory=dict_row)


@pytest.fixture(scope="module")
def pair(sql_server_url: str) -> Iterator[Pair]:
    with ExitStack() as stack:
        ours_config = stack.enter_context(multisurvey_database(sql_server_url))
        theirs_config = stack.enter_context(multisurvey_database(sql_server_url))
        ours = stack.enter_context(dbp.connect(ours_config, engine="sql"))
        assert isinstance(ours, SQLConnection)
        yield Pair(ours, stack.enter_context(_raw(ours_config)), stack.enter_context(_raw(theirs_config)))


def _insert(conn: psycopg.Connection[Any], table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))


def start(pair: Pair, **seeds: Sequence[Mapping[str, Any]]) -> None:
    """Both databases emptied, then given the same ``seeds`` (table -> rows)."""
    for conn in (pair.raw, pair.theirs):
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, TABLES))))
        for table, rows in seeds.items():
            _insert(conn, table, rows)


def table(conn: psycopg.Connection[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY {}").format(
        sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, ORDER[name])))).fetchall()


def assert_same(pair: Pair, *names: str) -> None:
    for name in names:
        ours, theirs = table(pair.raw, name), table(pair.theirs, name)
        assert ours == theirs, name
        assert ours, f"{name} is empty: the comparison says nothing"


def columns(conn: psycopg.Connection[Any], name: str) -> list[str]:
    return [r["column_name"] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s ORDER BY ordinal_position", [name]).fetchall()]


# -- ALeRCE's statements, as its SQLAlchemy code sends them ------------------------------------------


def alerce_insert(conn: psycopg.Connection[Any], name: str, rows: Sequence[Mapping[str, Any]], *,
                  constraint: str | None = None, set_columns: Sequence[str] = ()) -> None:
    """One multi-row ``INSERT ... ON CONFLICT``: DO NOTHING, or DO UPDATE SET each of ``set_columns`` = EXCLUDED.

    (SQLAlchemy's ``insert(Model).values(rows)``, and its "insertmanyvalues" form of an executemany.)
    """
    names = list(rows[0])
    values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(names)))
                                for _ in rows)
    action = sql.SQL("DO NOTHING") if constraint is None else sql.SQL("ON CONSTRAINT {} DO UPDATE SET {}").format(
        sql.Identifier(constraint),
        sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in set_columns))
    conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES {} ON CONFLICT {}").format(
        sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, names)), values, action),
        [row[n] for row in rows for n in names])


def alerce_object_stats(conn: psycopg.Connection[Any], stats: Sequence[Mapping[str, Any]]) -> None:
    """The magstat commands' ``UPDATE object SET ... WHERE oid = :_oid``, one execution per object."""
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("UPDATE object SET {} WHERE oid = %(_oid)s").format(
            sql.SQL(", ").join(sql.SQL("{0} = {1}").format(sql.Identifier(c), sql.Placeholder(c))
                               for c in OBJECT_STATS)),
            [{**{c: s[c] for c in OBJECT_STATS}, "_oid": s["oid"]} for s in stats])


def alerce_features(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> None:
    """The LSST feature command: COPY into a staging table, UPDATE the rows that match, INSERT the others."""
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE staging_features (oid BIGINT, sid SMALLINT, feature_id INT, band SMALLINT, "
                     "value FLOAT8, version INT) ON COMMIT DROP")
        with conn.cursor().copy("COPY staging_features (oid, sid, feature_id, band, value, version) FROM STDIN"
                                ) as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("UPDATE feature AS f SET value = s.value, version = s.version, updated_date = NOW() "
                     "FROM staging_features AS s WHERE f.oid = s.oid AND f.sid = s.sid "
                     "AND f.feature_id = s.feature_id AND f.band = s.band")
        conn.execute("INSERT INTO feature (oid, sid, feature_id, band, value, version, updated_date) "
                     "SELECT s.oid, s.sid, s.feature_id, s.band, s.value, s.version, NOW() FROM staging_features s "
                     "LEFT JOIN feature f ON f.oid = s.oid AND f.sid = s.sid AND f.feature_id = s.feature_id "
                     "AND f.band = s.band WHERE f.oid IS NULL")


# -- rows -------------------------------------------------------------------------------------------


def object_row(oid: int, sid: int, rng: random.Random, **extra: Any) -> dict[str, Any]:
    first = 60000 + rng.randrange(0, 800) / 8
    return {"oid": oid, "tid": 0 if sid == 0 else 1, "sid": sid, "meanra": rng.uniform(0, 360),
            "meandec": rng.uniform(-90, 90), "sigmara": None, "sigmadec": None, "firstmjd": first, "lastmjd": first,
            "deltamjd": 0.0, "n_det": 1, "n_forced": 0, "n_non_det": 0, **extra}


def dia_object_row(oid: int, rng: random.Random) -> dict[str, Any]:
    """A row with the columns the ingestion step sends for a DIA object (the alert's diaObject fields)."""
    ra, dec = rng.uniform(0, 360), rng.uniform(-60, 10)
    row: dict[str, Any] = {"oid": oid, "validityStartMjdTai": 60000 + rng.randrange(800) / 4, "ra": ra,
                           "raErr": 0.125, "dec": dec, "decErr": 0.125, "ra_dec_Cov": None,
                           "nDiaSources": rng.randrange(1, 30), "firstDiaSourceMjdTai": 60000.5,
                           "lastDiaSourceMjdTai": 60100.25}
    for band in "ugrizy":
        row[f"{band}_psfFluxMean"] = rng.randrange(1, 4000) / 4 if band in "gri" else None
        row[f"{band}_psfFluxNdata"] = rng.randrange(0, 9)
    return row


# -- objects ----------------------------------------------------------------------------------------


def test_objects_are_inserted_once(pair: Pair) -> None:
    """Ingestion: INSERT INTO object / ztf_object ... ON CONFLICT DO NOTHING is bulk_insert(rows)."""
    rng = random.Random(1)
    seeds = [object_row(oid, sid, rng) for oid, sid in ((1, 0), (2, 1), (SHARED, 0))]
    start(pair, object=seeds, ztf_object=[{"oid": 1, "corrected": False}, {"oid": SHARED, "corrected": True}])
    batch = [object_row(oid, sid, rng) for oid, sid in ((1, 0), (2, 1), (3, 1), (SHARED, 1), (SHARED, 0), (5, 0))]
    ztf = [{"oid": o["oid"], "g_r_max": None, "g_r_max_corr": None, "g_r_mean": 0.5, "g_r_mean_corr": None,
            "corrected": False} for o in batch if o["sid"] == 0]
    alerce_insert(pair.theirs, "object", batch)
    alerce_insert(pair.theirs, "ztf_object", ztf)
    assert pair.ours.query("object").bulk_insert(batch) == 3
    assert pair.ours.query("ztf_object").bulk_insert(ztf) == 1
    assert_same(pair, "object", "ztf_object")
    assert table(pair.raw, "object")[0] == {**seeds[0], "created_date": TODAY, "updated_date": None}  # kept


def test_dia_objects_are_upserted_whole(pair: Pair) -> None:
    """Ingestion: INSERT INTO lsst_dia_object ... ON CONFLICT (oid) DO UPDATE SET every other column."""
    rng = random.Random(2)
    start(pair, lsst_dia_object=[dia_object_row(oid, rng) for oid in (10, 11, 12)])
    batch = [dia_object_row(oid, rng) for oid in (11, 13, 10, 14)]
    alerce_insert(pair.theirs, "lsst_dia_object", batch, constraint="pk_lsstdiaobject_oid",
                  set_columns=[c for c in columns(pair.theirs, "lsst_dia_object") if c != "oid"])
    assert pair.ours.query("lsst_dia_object").bulk_insert(batch, on_conflict="update") == 2
    assert_same(pair, "lsst_dia_object")
    assert {r["oid"]: r["ra"] for r in table(pair.raw, "lsst_dia_object")}[11] == batch[0]["ra"]


def test_object_statistics_update_every_surveys_row_of_the_oid(pair: Pair) -> None:
    """The magstat commands' UPDATE object ... WHERE oid = :oid is bulk_update(..., filter_fields=["oid"])."""
    rng = random.Random(3)
    start(pair, object=[object_row(oid, sid, rng) for oid, sid in ((1, 0), (2, 1), (SHARED, 0), (SHARED, 1))])
    stats = [{**object_row(oid, sid, rng, n_det=7, deltamjd=3.5, sigmara=0.25), "corrected": True, "stellar": None}
             for oid, sid in ((2, 1), (SHARED, 1), (9, 1))]  # SHARED: ZTF's row of the oid changes too
    alerce_object_stats(pair.theirs, stats)
    updated = pair.ours.query("object").bulk_update([{"oid": s["oid"]} for s in stats],
                                                    [{c: s[c] for c in OBJECT_STATS} for s in stats],
                                                    filter_fields=["oid"])
    assert updated == 3  # rows matched: 2, and both rows of SHARED; oid 9 has none
    assert_same(pair, "object")
    rows = {(r["oid"], r["sid"]): r for r in table(pair.raw, "object")}
    assert rows[(SHARED, 0)]["n_det"] == rows[(SHARED, 1)]["n_det"] == 7 and (9, 1) not in rows
    # with the sid as well, only that survey's row (the page's advice)
    pair.ours.query("object").bulk_update([{"oid": SHARED, "sid": 1}], [{"n_det": 8}], filter_fields=["oid", "sid"])
    rows = {(r["oid"], r["sid"]): r for r in table(pair.raw, "object")}
    assert (rows[(SHARED, 0)]["n_det"], rows[(SHARED, 1)]["n_det"]) == (7, 8)


# -- magstat and probability ------------------------------------------------------------------------

KEYS = st.tuples(st.sampled_from([1, 2, SHARED]), st.sampled_from([0, 1]), st.sampled_from([1, 2, 3]))
EIGHTHS = st.integers(120, 200).map(lambda k: k / 8)


@st.composite
def magstat_rows(draw: Any, unique: bool = False) -> list[dict[str, Any]]:
    keys = draw(st.lists(KEYS, min_size=1, max_size=8, unique=unique))
    rows = []
    for key in keys:
        mags = {c: draw(st.one_of(st.none(), EIGHTHS)) for c in MAGSTAT[6:24]}
        rows.append({**dict(zip(("oid", "sid", "band"), key)), "stellar": draw(st.booleans()),
                     "corrected": draw(st.booleans()), "ndubious": draw(st.integers(0, 3)), **mags,
                     "saturation_rate": draw(st.one_of(st.none(), st.just(0.0), st.just(0.5))),
                     "n_det": draw(st.integers(1, 50)), "firstmjd": 60000.5, "lastmjd": 0.0})
    return rows


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=magstat_rows(unique=True), batch=magstat_rows(), order=st.randoms(use_true_random=False))
def test_magstat_upsert(pair: Pair, seeds: list[dict[str, Any]], batch: list[dict[str, Any]],
                        order: random.Random) -> None:
    """The scribe keeps, of one key's rows, the one whose message is latest, then upserts every column; dbp gets the
    same from the rows sorted by lastmjd (one key's last values win)."""
    for i, row in enumerate(batch):  # each row from a message of its own, at its own time
        row["lastmjd"] = 60100 + order.randrange(10**6) / 1024 + i / 2**20
    start(pair, magstat=seeds)
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in batch:  # the scribe's de-duplication
        key = (row["oid"], row["sid"], row["band"])
        if key not in kept or row["lastmjd"] > kept[key]["lastmjd"]:
            kept[key] = row
    alerce_insert(pair.theirs, "magstat", list(kept.values()), constraint="pk_magstat_oid_sid_band",
                  set_columns=columns(pair.theirs, "magstat"))
    inserted = pair.ours.query("magstat").bulk_insert(sorted(batch, key=lambda r: r["lastmjd"]), on_conflict="update")
    assert inserted == len(set(kept) - {(r["oid"], r["sid"], r["band"]) for r in seeds})
    assert_same(pair, "magstat")


def probability_rows(oids: Sequence[tuple[int, int]], rng: random.Random, classifier_id: int = 1
                     ) -> list[dict[str, Any]]:
    rows = []
    for oid, sid in oids:
        values = sorted((rng.randrange(1, 64) / 64 for _ in range(5)), reverse=True)
        rows += [{"oid": oid, "sid": sid, "classifier_id": classifier_id, "classifier_version": 201, "class_id": c,
                  "probability": v, "ranking": r, "lastmjd": 60000 + rng.randrange(100) / 4}
                 for r, (c, v) in enumerate(zip(rng.sample(range(5), 5), values), 1)]
    return rows


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeded=st.lists(st.sampled_from([(1, 1), (2, 1), (SHARED, 0), (SHARED, 1)]), unique=True),
       written=st.lists(st.sampled_from([(1, 1), (2, 1), (3, 1), (SHARED, 0), (SHARED, 1)]), min_size=1, max_size=6),
       seed=st.integers(0, 2**16))
def test_probability_upsert(pair: Pair, seeded: list[tuple[int, int]], written: list[tuple[int, int]],
                            seed: int) -> None:
    """The scribe's probabilities: the last row of a key, then ON CONFLICT DO UPDATE SET probability, ranking."""
    rng = random.Random(seed)
    start(pair, probability=probability_rows(seeded, rng))
    batch = probability_rows(written, rng)  # an object written twice: the batch holds its key twice
    kept = {(r["oid"], r["sid"], r["classifier_id"], r["class_id"]): r for r in batch}  # the scribe: the last wins
    alerce_insert(pair.theirs, "probability", list(kept.values()), constraint="pk_probability_oid_classifierid_classid",
                  set_columns=["ranking", "probability"])
    inserted = pair.ours.query("probability").bulk_insert(batch, on_conflict="update",
                                                          update_fields=["probability", "ranking"])
    assert inserted == 5 * len(set(written) - set(seeded))
    assert_same(pair, "probability")


def test_classifier_steps_insert_probabilities_once(pair: Pair) -> None:
    """The stamp classifier steps: INSERT INTO probability ... ON CONFLICT DO NOTHING is bulk_insert(rows)."""
    rng = random.Random(5)
    start(pair, probability=probability_rows([(1, 1), (SHARED, 1)], rng))
    batch = probability_rows([(1, 1), (2, 1), (SHARED, 0)], rng, classifier_id=2)
    batch += probability_rows([(1, 1)], rng)  # a key that exists: left alone
    alerce_insert(pair.theirs, "probability", batch)
    assert pair.ours.query("probability").bulk_insert(batch) == 15
    assert_same(pair, "probability")


def test_crossmatches_upsert_catalogue_id_and_distance(pair: Pair) -> None:
    """The xmatch command: the last row of a key, ON CONFLICT (oid, sid, catid) DO UPDATE SET oid_catalog, dist."""
    start(pair, xmatch=[{"oid": 1, "sid": 1, "catid": 0, "dist": 1.5, "oid_catalog": "J1", "updated_date": OLD},
                        {"oid": SHARED, "sid": 0, "catid": 0, "dist": 0.25, "oid_catalog": "J2"}])
    batch = [{"oid": oid, "sid": sid, "catid": 0, "oid_catalog": name, "dist": dist}
             for oid, sid, name, dist in ((1, 1, "J9", 0.5), (SHARED, 1, "J3", 2.0), (2, 1, "J4", 0.75),
                                          (SHARED, 1, "J5", 0.125))]
    kept = {(r["oid"], r["sid"], r["catid"]): r for r in batch}
    alerce_insert(pair.theirs, "xmatch", list(kept.values()), constraint="pk_xmatch_oid_sid_catid",
                  set_columns=["oid_catalog", "dist"])
    assert pair.ours.query("xmatch").bulk_insert(batch, on_conflict="update") == 2
    assert_same(pair, "xmatch")
    rows = {(r["oid"], r["sid"]): r for r in table(pair.raw, "xmatch")}
    assert rows[(1, 1)]["updated_date"] == OLD and rows[(SHARED, 1)]["oid_catalog"] == "J5"


# -- what the page says differs ---------------------------------------------------------------------


def test_a_column_the_rows_leave_out_is_reset_by_alerce_and_kept_by_dbp(pair: Pair) -> None:
    rng = random.Random(6)
    seeds = [{**r, "step_id_corr": "v1", "updated_date": OLD} for r in
             [{c: None for c in MAGSTAT} | {"oid": 1, "sid": 1, "band": b, "magmean": 19.5} for b in (1, 2)]]
    start(pair, magstat=seeds, lsst_dia_object=[{**dia_object_row(10, rng), "created_date": OLD}])
    batch = [{c: None for c in MAGSTAT} | {"oid": 1, "sid": 1, "band": 1, "magmean": 18.5}]
    alerce_insert(pair.theirs, "magstat", batch, constraint="pk_magstat_oid_sid_band",
                  set_columns=columns(pair.theirs, "magstat"))
    pair.ours.query("magstat").bulk_insert(batch, on_conflict="update")
    ours, theirs = table(pair.raw, "magstat")[0], table(pair.theirs, "magstat")[0]
    assert ours["magmean"] == theirs["magmean"] == 18.5
    assert (theirs["step_id_corr"], theirs["updated_date"]) == (None, None)  # ALeRCE: set to EXCLUDED's NULL
    assert (ours["step_id_corr"], ours["updated_date"]) == ("v1", OLD)  # dbp: only the row's fields
    dia = [dia_object_row(10, rng)]
    alerce_insert(pair.theirs, "lsst_dia_object", dia, constraint="pk_lsstdiaobject_oid",
                  set_columns=[c for c in columns(pair.theirs, "lsst_dia_object") if c != "oid"])
    pair.ours.query("lsst_dia_object").bulk_insert(dia, on_conflict="update")
    assert table(pair.theirs, "lsst_dia_object")[0]["created_date"] == TODAY
    assert table(pair.raw, "lsst_dia_object")[0]["created_date"] == OLD


def test_two_rows_of_one_key_in_one_statement_fail_for_alerce_and_merge_in_dbp(pair: Pair) -> None:
    rng = random.Random(7)
    start(pair)
    batch = probability_rows([(1, 1), (1, 1)], rng)
    with pytest.raises(psycopg.errors.CardinalityViolation):  # why the scribe de-duplicates first
        alerce_insert(pair.theirs, "probability", batch, constraint="pk_probability_oid_classifierid_classid",
                      set_columns=["ranking", "probability"])
    assert pair.ours.query("probability").bulk_insert(batch, on_conflict="update") == 5
    assert table(pair.raw, "probability") == sorted(batch[5:], key=lambda r: r["class_id"])  # the last rows


# -- features ---------------------------------------------------------------------------------------


def feature_rows(oids: Sequence[int], rng: random.Random, version: int) -> list[tuple[Any, ...]]:
    return [(oid, 1, f, band, rng.randrange(-64, 64) / 8, version)
            for oid in oids for f in (64, 72, 82) for band in (1, 2)]


def test_features_staging_pattern_is_one_bulk_insert_with_key(pair: Pair) -> None:
    """The LSST feature command (COPY to staging, UPDATE ... FROM, INSERT the missing) is bulk_insert(key=...)."""
    rng = random.Random(8)
    names = ("oid", "sid", "feature_id", "band", "value", "version")
    seeds = [dict(zip(names, r)) | {"updated_date": OLD} for r in feature_rows([1, SHARED], rng, 1)]
    start(pair, feature=seeds)
    batch = feature_rows([1, 2, 3], rng, 2)
    alerce_features(pair.theirs, batch)
    rows = [dict(zip(names, r)) | {"updated_date": TODAY} for r in batch]
    inserted = pair.ours.query("feature").bulk_insert(rows, on_conflict="update",
                                                      key=["oid", "sid", "feature_id", "band"])
    assert inserted == 12
    assert_same(pair, "feature")
