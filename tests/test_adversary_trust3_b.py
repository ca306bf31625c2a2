"""Adversarial repros (trust3, reviewer b): each test fails on the code it was written against."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from dbp.errors import DbpError, FilterError

N_BIG = 150_001  # more than pymongo's maxWriteBatchSize (100,000): pymongo splits the batch


def _count_mongo(db, name):
    return db.query(name).collection.count_documents({})


def test_mongo_bulk_insert_unencodable_late_row_writes_nothing(mongo_db):
    """A Decimal at row 150,000 of a MongoDB bulk_insert: refused, but pymongo already sent the first batch."""
    rows = [{"_id": i, "v": i} for i in range(N_BIG)]
    rows[-1] = {"_id": N_BIG - 1, "v": decimal.Decimal("1.5")}
    q = mongo_db.query("half_ins")
    with pytest.raises(FilterError):
        q.bulk_insert(rows)
    assert _count_mongo(mongo_db, "half_ins") == 0


def test_mongo_bulk_insert_overflowing_datetime_late_row_writes_nothing(mongo_db):
    """An aware datetime whose UTC time is in year 0, at row 150,000: refused, after 100,000 rows were written."""
    rows = [{"_id": i, "t": dt.datetime(2020, 1, 1)} for i in range(N_BIG)]
    rows[-1]["t"] = dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    q = mongo_db.query("half_ins_dt")
    with pytest.raises(FilterError):
        q.bulk_insert(rows)
    assert _count_mongo(mongo_db, "half_ins_dt") == 0


@pytest.mark.slow
def test_mongo_bulk_update_unencodable_late_row_writes_nothing(mongo_db):
    """bulk_update of 150,001 distinct _ids (one round, the columnar path), a Decimal in the last attrs."""
    q = mongo_db.query("half_upd")
    q.collection.insert_many([{"_id": i, "v": 0} for i in range(N_BIG)])
    instances = [{"_id": i} for i in range(N_BIG)]
    attrs = [{"v": 1} for _ in range(N_BIG)]
    attrs[-1] = {"v": decimal.Decimal("2.5")}
    with pytest.raises(FilterError):
        q.bulk_update(instances, attrs)
    assert q.collection.count_documents({"v": 1}) == 0


def test_sql_bulk_insert_update_char_keys_last_value_wins(sql_db):
    """'a' and 'a  ' are one key of a char(3) column: within the batch the last value should win, as documented."""
    sql_db.execute("CREATE TABLE chk (k char(3) PRIMARY KEY, v int)")
    sql_db.execute("INSERT INTO chk VALUES ('a', 0)")
    q = sql_db.query("chk")
    q.bulk_insert([{"k": "a", "v": 1}, {"k": "a  ", "v": 2}], on_conflict="update")
    assert [r["v"] for r in q.find_all(paginate=False)] == [2]


def test_sql_bulk_insert_update_char_keys_new_row_last_value_wins(sql_db):
    """The same, for a key not yet stored."""
    sql_db.execute("CREATE TABLE chk2 (k char(3) PRIMARY KEY, v int)")
    q = sql_db.query("chk2")
    q.bulk_insert([{"k": "b", "v": 1}, {"k": "b ", "v": 2}], on_conflict="update")
    assert [r["v"] for r in q.find_all(paginate=False)] == [2]


def test_sql_inc_infinity_on_jsonb_path_stays_a_number(sql_db):
    """$inc by float('inf') on a jsonb path: MongoDB stores inf; PostgreSQL stores the *string* 'Infinity'."""
    sql_db.execute("CREATE TABLE jinf (id int PRIMARY KEY, d jsonb)")
    q = sql_db.query("jinf")
    q.bulk_insert([{"id": 1, "d": {"z": 1.5}}])
    try:
        q.update({"id": 1}, {"$inc": {"d.z": float("inf")}})
    except FilterError:
        return  # refusing it (as $set of inf is refused) would be fine
    stored = q.find_one({"id": 1})["d"]["z"]
    assert isinstance(stored, float), f"a number became {stored!r}"




def test_sql_filter_numpy_timedelta64_is_dbp_error(sql_db):
    """np.timedelta64 is an np.signedinteger: dbp's converter calls int() on it, a raw TypeError."""
    np = pytest.importorskip("numpy")
    sql_db.execute("CREATE TABLE tdf (id int PRIMARY KEY, x float8)")
    with pytest.raises(DbpError):
        sql_db.query("tdf").count({"x": np.timedelta64(1, "s")})


def test_mongo_filter_numpy_timedelta64_is_dbp_error(mongo_db):
    np = pytest.importorskip("numpy")
    with pytest.raises(DbpError):
        mongo_db.query("tdf").count({"x": np.timedelta64(1, "s")})



def test_mongo_bulk_insert_numpy_timedelta64_is_dbp_error(mongo_db):
    np = pytest.importorskip("numpy")
    with pytest.raises(DbpError):
        mongo_db.query("tdi").bulk_insert([{"_id": 1, "x": np.timedelta64(1, "s")}])


def test_mongo_update_numpy_timedelta64_is_dbp_error(mongo_db):
    np = pytest.importorskip("numpy")
    q = mongo_db.query("tdu")
    q.bulk_insert([{"_id": 1}])
    with pytest.raises(DbpError):
        q.update({"_id": 1}, {"$set": {"x": np.timedelta64(1, "s")}})


def test_sql_nested_pandas_timestamp_outside_years_is_refused(sql_db):
    """A pd.Timestamp (unit us reaches year 0) two levels deep in a timestamptz[] value: not made plain, so the
    years-1..9999 check misses it; PostgreSQL stores '0001-12-31 23:30:00+00 BC' and every read raises
    psycopg.DataError."""
    pd = pytest.importorskip("pandas")
    sql_db.execute("CREATE TABLE tsa (id int PRIMARY KEY, ta timestamptz[])")
    q = sql_db.query("tsa")
    ts = pd.Timestamp("0001-01-01 00:30", tz="Etc/GMT-1")
    try:
        q.bulk_insert([{"id": 1, "ta": [[ts]]}])
    except FilterError:
        return
    q.find_one({"id": 1})  # raises psycopg.DataError: the row cannot be read


def test_sql_named_param_nested_pandas_timestamp_outside_years_is_refused(sql_db):
    """The same value as a parameter of an inline / named statement: refused at one level, not at two."""
    pd = pytest.importorskip("pandas")
    ts = pd.Timestamp("0001-01-01 00:30", tz="Etc/GMT-1")
    with pytest.raises(FilterError):
        sql_db.sql("SELECT %(x)s AS v", {"x": [[ts]]}).find_one()


def test_sql_named_param_numpy_timedelta64_is_dbp_error(sql_db):
    """Fixed as a conversion, not a refusal: a timedelta64 is the timedelta it stands for (an interval in SQL)."""
    np = pytest.importorskip("numpy")
    assert sql_db.sql("SELECT %(x)s AS v", {"x": np.timedelta64(1, "s")}).find_one() == {"v": dt.timedelta(seconds=1)}


def test_mongo_bulk_update_counts_distinct_rows_for_keys_equal_to_the_server(mongo_db):
    """Datetimes one microsecond apart are one BSON date (milliseconds): one document, but counted twice."""
    q = mongo_db.query("msk")
    base = dt.datetime(2020, 1, 1)
    q.bulk_insert([{"_id": base, "v": 0}])
    n = q.bulk_update([{"_id": base.replace(microsecond=100)}, {"_id": base.replace(microsecond=200)}],
                      [{"v": 1}, {"v": 2}])
    assert n == 1


def test_sql_bulk_update_inc_infinity_on_jsonb_path_stays_a_number(sql_db):
    """bulk_update's $inc by inf on a jsonb path: the number becomes the string 'Infinity' (update refuses $set inf)."""
    sql_db.execute("CREATE TABLE jinf2 (id int PRIMARY KEY, d jsonb)")
    q = sql_db.query("jinf2")
    q.bulk_insert([{"id": 1, "d": {"z": 1}}])
    try:
        q.bulk_update([{"id": 1}], [{"$mul": {"d.z": float("-inf")}}])
    except FilterError:
        return
    stored = q.find_one({"id": 1})["d"]["z"]
    assert isinstance(stored, float), f"a number became {stored!r}"


def test_mongo_bulk_update_later_round_failure_reports_what_went_through(mongo_db):
    """A repeated key runs in a second round; when that round fails, the first round's writes are stored, but the
    BulkWriteError says 'the other 0 write(s) went through': a caller who retries increments twice."""
    q = mongo_db.query("rnd")
    q.bulk_insert([{"_id": 1, "v": 0, "s": "x"}, {"_id": 2, "v": 0}])
    with pytest.raises(DbpError) as info:
        q.bulk_update([{"_id": 1}, {"_id": 2}, {"_id": 1}],
                      [{"$inc": {"v": 1}}, {"$inc": {"v": 1}}, {"$inc": {"s": 1}}])
    written = q.collection.count_documents({"v": 1})
    assert written == 0 or f"other {written} write" in str(info.value), (written, str(info.value))


def test_mongo_bulk_update_later_round_failure_names_the_callers_row(mongo_db):
    """The failing update is instances[2]; BulkWriteError.rows said [0] (its index within the second round).

    Fixed further: the type clash is now found by a read before the first round, so nothing is written
    and the refusal names the field (the rounds' row indexes no longer matter)."""
    q = mongo_db.query("rnd2")
    q.bulk_insert([{"_id": 1, "v": 0, "s": "x"}, {"_id": 2, "v": 0}])
    with pytest.raises(FilterError, match=r"'s' holds a non-number .*nothing was changed"):
        q.bulk_update([{"_id": 1}, {"_id": 2}, {"_id": 1}],
                      [{"$inc": {"v": 1}}, {"$inc": {"v": 1}}, {"$inc": {"s": 1}}])
    assert list(q.find_all({}, sort=[("_id", 1)], paginate=False)) == [{"_id": 1, "v": 0, "s": "x"}, {"_id": 2, "v": 0}]


def test_sql_bulk_insert_dataframe_with_duplicate_columns_is_refused(sql_db):
    """Two columns named 'a': records() keeps one (pandas only warns), and the other's values are dropped silently."""
    pd = pytest.importorskip("pandas")
    sql_db.execute("CREATE TABLE dupc (id int PRIMARY KEY, a int)")
    q = sql_db.query("dupc")
    frame = pd.DataFrame([[1, 10, 20]], columns=["id", "a", "a"])
    try:
        q.bulk_insert(frame)
    except FilterError:
        return
    pytest.fail(f"stored {q.find_one({'id': 1})} from a frame whose two 'a' columns hold 10 and 20")


def test_sql_numpy_timedelta64_is_not_stored_as_an_integer(sql_db):
    """np.timedelta64(5, 'ns') is an np.signedinteger: dbp makes it the int 5 and stores it in a bigint column
    (with unit 's' the same conversion is a raw TypeError)."""
    np = pytest.importorskip("numpy")
    sql_db.execute("CREATE TABLE tdn (id int PRIMARY KEY, n bigint)")
    q = sql_db.query("tdn")
    try:
        q.bulk_insert([{"id": 1, "n": np.timedelta64(5, "ns")}])
    except FilterError:
        return
    pytest.fail(f"a duration was stored as the number {q.find_one({'id': 1})['n']!r}")


def test_mongo_filter_numpy_timedelta64_does_not_match_a_number(mongo_db):
    np = pytest.importorskip("numpy")
    q = mongo_db.query("tdm")
    q.bulk_insert([{"_id": 1, "n": 5}])
    try:
        found = q.count({"n": np.timedelta64(5, "ns")})
    except FilterError:
        return
    assert found == 0, "a 5 ns duration matched the number 5"


def test_mongo_bulk_insert_update_unencodable_late_row_writes_nothing(mongo_db):
    """on_conflict='update' (upserting UpdateOnes): a Decimal in the last of 150,001 rows; 100,000 are upserted."""
    rows = [{"_id": i, "v": i} for i in range(N_BIG)]
    rows[-1] = {"_id": N_BIG - 1, "v": decimal.Decimal("1.5")}
    q = mongo_db.query("half_ups")
    with pytest.raises(FilterError):
        q.bulk_insert(rows, on_conflict="update")
    assert _count_mongo(mongo_db, "half_ups") == 0


def test_sql_filter_whole_integer_array_equality(sql_db):
    """{"nums": [1, 2]} on a bigint[] column: psycopg sends smallint[], and PostgreSQL has no bigint[] = smallint[]
    (the same filter matches on MongoDB; [2**40, 1] and a text[] column work)."""
    sql_db.execute("CREATE TABLE arreq (id int PRIMARY KEY, nums bigint[])")
    q = sql_db.query("arreq")
    q.bulk_insert([{"id": 1, "nums": [1, 2]}])
    assert q.count({"nums": [1, 2]}) == 1


def _fold_pair():
    """Two instants an hour apart that Python calls equal (same tzinfo: wall time compared, fold ignored)."""
    zoneinfo = pytest.importorskip("zoneinfo")
    first = dt.datetime(2021, 11, 7, 1, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York"))  # 05:30 UTC
    second = first.replace(fold=1)  # 06:30 UTC
    assert first == second and first.astimezone(dt.timezone.utc) != second.astimezone(dt.timezone.utc)
    return first, second


def test_sql_bulk_update_timestamptz_keys_one_hour_apart_update_their_own_rows(sql_db):
    """The timestamptz rule keeps aware keys as they are, so Python merges the two instants into one key:
    the second row's value is written to the first row, and the second row is left alone."""
    first, second = _fold_pair()
    sql_db.execute("CREATE TABLE foldu (k timestamptz PRIMARY KEY, v int)")
    q = sql_db.query("foldu")
    q.bulk_insert([{"k": first, "v": 1}, {"k": second, "v": 2}])
    assert q.count() == 2
    q.bulk_update([{"k": first}, {"k": second}], [{"v": 10}, {"v": 20}])
    assert [r["v"] for r in q.find_all(paginate=False, sort=[("k", 1)])] == [10, 20]


def test_sql_bulk_insert_ignore_timestamptz_fold_keeps_the_new_row(sql_db):
    """bulk_insert (merge path, one key exists): the other instant is collapsed into it and never inserted."""
    first, second = _fold_pair()
    sql_db.execute("CREATE TABLE foldi (k timestamptz PRIMARY KEY, v int)")
    q = sql_db.query("foldi")
    q.bulk_insert([{"k": first, "v": 0}])
    q.bulk_insert([{"k": first, "v": 1}, {"k": second, "v": 2}])
    assert q.count() == 2


def test_sql_bulk_insert_update_timestamptz_fold_updates_the_existing_row(sql_db):
    first, second = _fold_pair()
    sql_db.execute("CREATE TABLE foldx (k timestamptz PRIMARY KEY, v int)")
    q = sql_db.query("foldx")
    q.bulk_insert([{"k": first, "v": 0}])
    q.bulk_insert([{"k": first, "v": 5}, {"k": second, "v": 6}], on_conflict="update")
    assert [r["v"] for r in q.find_all(paginate=False, sort=[("k", 1)])] == [5, 6]


def test_mongo_bulk_insert_update_datetime_fold_keeps_both_documents(mongo_db):
    """_upsert_many collapses rows by Python equality: two _id instants an hour apart become one document."""
    first, second = _fold_pair()
    q = mongo_db.query("foldm")
    q.bulk_insert([{"_id": first, "v": 5}, {"_id": second, "v": 6}], on_conflict="update")
    assert q.count() == 2


def test_sql_add_to_set_keeps_two_instants_python_calls_equal(sql_db):
    """$addToSet de-duplicates its operand in Python: of two instants an hour apart, one is dropped (MongoDB, which
    compares the stored instants, adds both)."""
    first, second = _fold_pair()
    sql_db.execute("CREATE TABLE folda (id int PRIMARY KEY, ts timestamptz[])")
    q = sql_db.query("folda")
    q.bulk_insert([{"id": 1, "ts": []}])
    q.update({"id": 1}, {"$addToSet": {"ts": {"$each": [first, second]}}})
    assert len(q.find_one({"id": 1})["ts"]) == 2


def test_sql_jsonb_negative_zero_reads_back_as_negative_zero(sql_db):
    """Cosmetic engine difference: jsonb's numeric has no -0, so -0.0 reads back as 0.0 (MongoDB keeps -0.0;
    a float8 column keeps it too). Documented (README, jsonb numbers) rather than changed: asserts that."""
    import math
    sql_db.execute("CREATE TABLE negz (id int PRIMARY KEY, d jsonb, f float8)")
    q = sql_db.query("negz")
    q.bulk_insert([{"id": 1, "d": {"z": -0.0}, "f": -0.0}])
    row = q.find_one({"id": 1})
    assert row["d"]["z"] == 0.0 and math.copysign(1.0, row["d"]["z"]) == 1.0
    assert math.copysign(1.0, row["f"]) == -1.0


def test_mongo_bulk_insert_update_error_names_the_callers_row(mongo_db):
    """on_conflict='update' collapses rows of one _id before writing; a write error then names the collapsed
    position (1), not the caller's row (2)."""
    q = mongo_db.query("rowidx")
    q.bulk_insert([{"_id": 2}, {"_id": 3, "u": 7}])
    q.collection.create_index("u", unique=True, sparse=True)
    with pytest.raises(DbpError) as info:
        q.bulk_insert([{"_id": 1, "v": 1}, {"_id": 1, "v": 2}, {"_id": 2, "u": 7}], on_conflict="update")
    assert getattr(info.value, "rows", None) == [2], (getattr(info.value, "rows", None), str(info.value))


def _far_timestamp():
    """A pd.Timestamp of year 10005 (pandas 3's second unit reaches it; Python's datetime does not)."""
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    return pd.Timestamp(np.datetime64("10005-01-01T00:00", "s"))


def test_filter_pandas_timestamp_outside_python_years_is_filter_error(sql_db):
    """np.datetime64 of that year is a FilterError; the pd.Timestamp is a raw ValueError from to_pydatetime()."""
    sql_db.execute("CREATE TABLE farts (id int PRIMARY KEY, t timestamp)")
    with pytest.raises(DbpError):
        sql_db.query("farts").count({"t": _far_timestamp()})


def test_mongo_bulk_insert_pandas_timestamp_outside_python_years_is_filter_error(mongo_db):
    with pytest.raises(DbpError):
        mongo_db.query("farti").bulk_insert([{"_id": 1, "t": _far_timestamp()}])


def test_mongo_nested_pandas_timestamp_outside_years_is_not_stored_as_another_date(mongo_db):
    """A pd.Timestamp inside a document or list is a datetime subclass, so bson encodes it itself (dbp's fallback
    encoder never sees it): year 10005 is stored as 1970-01-01, and 0001-01-01 00:30+01:00 (year 0 in UTC) as
    1972-12-31 23:30, silently. At the top level both are refused."""
    pd = pytest.importorskip("pandas")
    q = mongo_db.query("fartn")
    q.bulk_insert([{"_id": 1}])
    year0 = pd.Timestamp("0001-01-01 00:30", tz="Etc/GMT-1")
    try:
        q.update({"_id": 1}, {"$set": {"doc": {"t": year0}, "l": [_far_timestamp()]}})
    except FilterError:
        return
    pytest.fail(f"stored {q.find_one({'_id': 1})}")


def test_mongo_nat_inside_a_list_is_none(mongo_db):
    """NaT is None everywhere dbp converts it; inside a list bson sees a datetime subclass and raises a raw
    ValueError ('NaTType does not support utcoffset')."""
    pd = pytest.importorskip("pandas")
    q = mongo_db.query("natl")
    q.bulk_insert([{"_id": 1, "l": [pd.Timestamp("2020-01-01"), pd.NaT]}])
    assert q.find_one({"_id": 1})["l"] == [dt.datetime(2020, 1, 1), None]


def test_mongo_nat_inside_an_update_operand(mongo_db):
    pd = pytest.importorskip("pandas")
    q = mongo_db.query("natu")
    q.bulk_insert([{"_id": 1}])
    try:
        q.update({"_id": 1}, {"$set": {"doc": {"t": pd.NaT}}})
    except FilterError:
        return
    assert q.find_one({"_id": 1})["doc"] == {"t": None}


def test_sql_nested_pandas_timestamp_nanoseconds_truncate_as_at_the_top_level(sql_db):
    """Cosmetic: a pd.Timestamp with nanoseconds is truncated to the microsecond at the top level (to_pydatetime),
    but two levels deep psycopg sends its isoformat and PostgreSQL rounds it: 1.999 us is 1 us, or 2 us."""
    pd = pytest.importorskip("pandas")
    sql_db.execute("CREATE TABLE nsr (id int PRIMARY KEY, t timestamp, tn timestamp[])")
    q = sql_db.query("nsr")
    ts = pd.Timestamp("2020-01-01 00:00:00.000001999")
    q.bulk_insert([{"id": 1, "t": ts, "tn": [[ts]]}])
    row = q.find_one({"id": 1})
    assert row["tn"][0][0] == row["t"], row
