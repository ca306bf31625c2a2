"""The query contract: db-plugins' BaseQuery, without an ORM, the same on both engines.

:class:`BaseQuery` implements what is engine-neutral (finding, counting,
both kinds of pagination) on a few primitives each engine provides
(:meth:`BaseQuery._select`, :meth:`BaseQuery._stream`, :meth:`BaseQuery._count`)
and declares the writes each engine implements on its fast path.

Results are ordered by the sort you give, then by the primary key (SQL) or
``_id`` (MongoDB), so that pages are stable. Sorts put NULLs first ascending
and last descending unless an entry says ``"nulls_first"`` or ``"nulls_last"``,
and compare text by code point, on both engines.
"""

from __future__ import annotations

import datetime as _dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NoReturn, Optional, Union

from dbp._redact import shown
from dbp._values import is_frame, records
from dbp.errors import ConfigError, FilterError
from dbp.filters import After, And, Node, SortKey, check_key_value, parse, parse_projection, parse_sort
from dbp.pagination import (
    KeysetPage,
    Pagination,
    PaginationNoCount,
    TokenTypes,
    decode_token,
    encode_token,
    fingerprint,
)
from dbp.sky import DISTANCE, DISTANCE_FIELD, Match, parse_positions, parse_radius
from dbp.updates import Change, Columns, columnar, instant, is_plain, parse_update, replaces

__all__ = ["BaseQuery", "ConflictMode", "Filter", "ReadOnly", "ReadQuery", "Round", "Row", "Sort", "collapse"]

Row = dict[str, Any]
_UTC = _dt.timezone.utc
Filter = Optional[Mapping[str, Any]]
Sort = Optional[Sequence[Any]]
ConflictMode = Literal["ignore", "error", "update"]
#: One round of bulk_update: each key's values (at most once) and its parsed changes.
Round = tuple[list[dict[str, Any]], list[tuple[Change, ...]]]
DEFAULT_PER_PAGE = 10
STREAM_BATCH = 2000
#: Positions per crossmatch round trip.
CROSSMATCH_BATCH = 2000
#: The largest ``batch_size`` of a streamed find_all (rows held in memory at once).
MAX_BATCH = 100_000
#: Offsets, limits and counts stay within a signed 64-bit integer on both servers.
MAX_ROWS = 2**62
#: The longest table / collection name (MongoDB's namespace limit; PostgreSQL's is 63 bytes).
MAX_NAME = 255


def _positive_int(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_ROWS) -> int:
    """``value`` as an int for argument ``name``; FilterError naming it if it is not a whole number in range.

    Floats are refused, even whole ones, so that ``page=1.5`` cannot silently mean another page.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(f"{name} must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise FilterError(f"{name} must be from {minimum} to {maximum:,}, not {shown(value, 40)}")
    return value


def _rows(name: str, value: Any) -> Any:
    """``value`` if it is a list (sequence) of dicts; FilterError naming argument ``name`` otherwise."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise FilterError(f"{name} must be a list of dicts, not {type(value).__name__}")
    if set(map(type, value)) <= {dict}:
        return value
    bad = next((i for i, row in enumerate(value) if not isinstance(row, Mapping)), None)
    if bad is not None:
        raise FilterError(f"{name}[{bad}] must be a dict, not {type(value[bad]).__name__}")
    return value


def check_name(name: Any, what: str = "a table or collection name") -> str:
    """A table / collection name for ``db.query(name)``; FilterError if it cannot be one."""
    if not isinstance(name, str):
        raise FilterError(f"{what} is a string, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise FilterError(f"{what} is 1 to {MAX_NAME} characters without NUL, not {shown(name, 60)}")
    if not name.isascii():
        try:
            name.encode()
        except UnicodeEncodeError:
            raise FilterError(f"{what} is valid UTF-8 text, not {shown(name, 60)} (a lone surrogate)") from None
    return name


def key_identity(values: Sequence[Any]) -> tuple[Any, ...]:
    """Key values as a dict key that tells a bool from a number (True is not 1 to either engine).

    Aware datetimes are their UTC instant: Python takes two of one zone an hour apart around a clock change
    (``fold``) as equal. Datetimes nested in a value are compared as Python does.
    """
    return tuple((type(v) is bool, instant(v)) for v in values)


def collapse(rows: Sequence[Mapping[str, Any]], key: Sequence[str], *, last_wins: bool,
             normalize: Optional[Callable[[tuple[Any, ...]], tuple[Any, ...]]] = None,
             ) -> tuple[list[Mapping[str, Any]], list[int]]:
    """One row per key value, and the index in ``rows`` each comes from.

    With ``last_wins`` the rows of one key merge in order, so each field keeps
    its last value (and fields only earlier rows carry stay); otherwise the
    first row wins. Key values compare as ``normalize`` makes them (an aware and
    a naive datetime of one instant are one key), a bool never equal to a
    number. Rows lacking a key field, or with an unhashable key value, are kept
    as they are (the server refuses them).
    """
    out: list[Mapping[str, Any]] = []
    origin: list[int] = []
    position: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        try:
            value = tuple(row[k] for k in key)
            if normalize is not None:
                value = normalize(value)
            value = key_identity(value)
            at = position.get(value) if key else None
        except (KeyError, TypeError):
            at, value = None, None
        if at is None:
            if value is not None and key:
                position[value] = len(out)
            out.append(row)
            origin.append(i)
        elif last_wins:
            out[at] = {**out[at], **row}
            origin[at] = i
    return out, origin


def refuse_null_keys(rows: Sequence[Any], key: Sequence[str]) -> None:
    """FilterError naming the first row that lacks a value for a field of ``key`` (or holds None there).

    A NULL never equals anything, so such a row could never be found again: it would be inserted every time.
    """
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            continue  # the engine names it
        for k in key:
            if row.get(k) is None:
                raise FilterError(f"bulk_insert: row {i} has no value for key field {k!r} (the key fields "
                                  "identify a row: each row needs a non-null value for every one of them)")


_FILTER_FIELDS = ("bulk_update: filter_fields is a list of field names, or one {field: value} dict per instance "
                  "(db-plugins' form)")


def _names(fields: Any) -> str:
    return ", ".join(shown(f, 40) if not isinstance(f, str) else f for f in fields)


def _key_columns(instances: Sequence[Any], keys: Sequence[str]) -> Optional[list[list[Any]]]:
    """bulk_update's key values by column, if every one is a plain int or str and no key repeats; else None."""
    if not instances or set(map(type, instances)) != {dict}:
        return None
    try:
        columns = [[instance[key] for instance in instances] for key in keys]
    except KeyError:
        return None
    for column in columns:
        if not set(map(type, column)) <= {int, str}:
            return None
    idents: Sequence[Any] = columns[0] if len(columns) == 1 else list(zip(*columns))
    return columns if len(set(idents)) == len(idents) else None


class ReadQuery(ABC):
    """The read half of the contract: a table, a collection, or a named query / pipeline (dbp.named)."""

    #: The table, collection or query name.
    name: str
    #: Engine-specific value types that keyset tokens carry (see dbp.pagination.TokenTypes).
    token_types: ClassVar[TokenTypes] = MappingProxyType({})

    # -- primitives each engine provides ------------------------------------------------------

    @abstractmethod
    def _select(
        self, node: Node, sort: list[SortKey], projection: Optional[list[str]],
        limit: Optional[int] = None, offset: int = 0,
    ) -> list[Row]:
        """Rows matching ``node`` in ``sort`` order (already completed with the key)."""

    @abstractmethod
    def _stream(
        self, node: Node, sort: list[SortKey], projection: Optional[list[str]], batch: int
    ) -> Iterator[Row]:
        """Like _select, streamed from the server in batches."""

    @abstractmethod
    def _count(self, node: Node, limit: Optional[int]) -> int: ...

    @abstractmethod
    def _key(self) -> list[str]:
        """The fields that identify a row: the primary key or ``_id`` ([] if there is none)."""

    # -- engine-neutral ------------------------------------------------------------------------------

    def _token_scope(self) -> Any:
        """What a keyset token belongs to besides its filter and sort (a named query adds its parameters)."""
        return self.name

    def crossmatch(self, positions: Sequence[Any], radius: float, nearest: bool = True, filter_by: Filter = None,
                   batch_size: int = CROSSMATCH_BATCH) -> list[Match]:
        """The rows within ``radius`` arcseconds of each ``(id, ra, dec)``, as :class:`dbp.sky.Match` es.

        In the positions' order, each position's nearest first; ``nearest``
        keeps only the nearest row of each. Positions without a match are left
        out. One round trip per ``batch_size`` positions.
        """
        checked = parse_positions(positions)
        radius = parse_radius(radius, "crossmatch")
        if not isinstance(nearest, bool):
            raise FilterError(f"nearest is True or False, not {type(nearest).__name__}")
        batch = _positive_int("batch_size", batch_size, minimum=1, maximum=MAX_BATCH)
        node = parse(filter_by)
        out: list[Match] = []
        for start in range(0, len(checked), batch):
            out += self._crossmatch(checked[start:start + batch], radius, nearest, node)
        return out

    def _crossmatch(self, positions: list[tuple[Any, float, float]], radius: float, nearest: bool,
                    node: Node) -> list[Match]:
        raise FilterError(f"crossmatch is not available on {type(self).__name__}")

    def _sort(self, sort: Sort) -> list[SortKey]:
        """The parsed sort; a NULL placement on a key field is refused."""
        return parse_sort(sort, self._key())

    def _full_sort(self, sort: Sort, *, stream: bool = False) -> list[SortKey]:
        order = self._sort(sort)
        named = {k.field for k in order}
        tie = self._stream_tie_break() if stream else self._tie_break()
        return order + [SortKey.default(k) for k in tie if k not in named]

    def _tie_break(self) -> list[str]:
        """The fields that order rows whose sort values tie: the key (a keyless named query overrides it)."""
        return self._key()

    def _stream_tie_break(self) -> list[str]:
        """:meth:`_tie_break` for a streamed find_all (a keyless table's stream leaves ties unordered)."""
        return self._tie_break()

    def check_exists(self, filter_by: Filter = None) -> bool:
        return bool(self._select(parse(filter_by), [], None, limit=1))

    def find_one(self, filter_by: Filter = None, sort: Sort = None, projection: Optional[Sequence[str]] = None
                 ) -> Optional[Row]:
        """The first matching row, or None; rows whose sort values tie come in key order, as in find_all."""
        order = self._full_sort(sort) if sort else []  # (no sort: any matching row, as fast as the server finds one)
        rows = self._select(parse(filter_by), order, parse_projection(projection), limit=1)
        return rows[0] if rows else None

    def count(self, filter_by: Filter = None, limit: Optional[int] = None) -> int:
        """How many rows match, counting at most ``limit``."""
        if limit is not None:
            limit = _positive_int("limit", limit)
        return self._count(parse(filter_by), limit)

    def find_all(
        self, filter_by: Filter = None, sort: Sort = None, projection: Optional[Sequence[str]] = None,
        paginate: bool = True, **kwargs: Any,
    ) -> Union[Pagination, KeysetPage, Iterator[Row]]:
        """A page (``paginate=True``, with :meth:`paginate`'s keyword arguments), or every row streamed.

        The stream reads from a server-side cursor (SQL) or a batched cursor
        (MongoDB): memory stays flat however many rows match.
        """
        if paginate:
            return self.paginate(filter_by, sort=sort, projection=projection, **kwargs)
        batch = _positive_int("batch_size", kwargs.pop("batch_size", STREAM_BATCH), minimum=1, maximum=MAX_BATCH)
        if kwargs:
            raise FilterError(f"unexpected argument(s) {', '.join(kwargs)} for a streamed find_all")
        return self._stream(parse(filter_by), self._full_sort(sort, stream=True), parse_projection(projection),
                            batch)

    def frame(self, filter_by: Filter = None, sort: Sort = None, projection: Optional[Sequence[str]] = None
              ) -> Any:
        """Every matching row in a pandas DataFrame (read as a stream, built once); pandas is optional.

        An empty frame has the projection's columns, else the table's (a named
        query's output columns; a collection's declared fields, ``_id`` first).
        A free-form collection's empty frame has no columns: nothing says what
        they would be. Integers beside a NULL are pandas' nullable ``Int64``, not
        floats, so that the frame writes back as it was read.
        """
        try:
            import pandas
        except ImportError:
            raise ConfigError("query.frame() needs pandas: pip install 'alerce-dbp[pandas]'") from None
        rows = self.find_all(filter_by, sort=sort, projection=projection, paginate=False)
        assert not isinstance(rows, (Pagination, KeysetPage))
        records = list(rows)
        columns = [DISTANCE_FIELD if f == DISTANCE else f for f in projection] if projection else None
        if columns is None and not records:  # as pd.read_sql: an empty frame still has its columns
            columns = self._frame_columns()
        frame = pandas.DataFrame.from_records(records, columns=columns)
        for name in frame.columns[frame.dtypes == "float64"]:  # ints beside a NULL: pandas made them floats
            values = [row.get(name) for row in records]
            if None in values and all(v is None or type(v) is int for v in values):
                frame[name] = pandas.array(values, dtype="Int64")  # nullable ints: bulk_insert takes them back
        return frame

    def _frame_columns(self) -> Optional[list[str]]:
        """The columns of a row read without a projection, if known (a free-form collection's are not)."""
        return None

    def paginate(
        self,
        filter_by: Filter = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
        count: bool = True,
        max_results: int = 50000,
        sort: Sort = None,
        projection: Optional[Sequence[str]] = None,
        after: Optional[str] = None,
        keyset: bool = False,
    ) -> Union[Pagination, KeysetPage]:
        """A page, as db-plugins pages: page < 1 is 1, negative ``per_page`` is 10.

        ``count=True`` returns a :class:`Pagination` whose total counts at most
        ``max_results``; ``count=False`` a :class:`PaginationNoCount`. With
        ``after=token`` (or ``keyset=True`` for the first page) it returns a
        :class:`KeysetPage`, whose cost does not grow with depth.
        """
        per_page = _positive_int("per_page", per_page, minimum=-MAX_ROWS)
        if per_page < 0:
            per_page = DEFAULT_PER_PAGE
        if after is not None and not isinstance(after, str):
            raise FilterError(f"after must be a token string from a previous page, not {type(after).__name__}")
        if after is not None or keyset:
            return self._keyset(filter_by, per_page, sort, projection, after)
        page = max(_positive_int("page", page, minimum=-MAX_ROWS), 1)
        max_results = _positive_int("max_results", max_results)
        if (page - 1) * per_page > MAX_ROWS:
            raise FilterError(f"page {page} of {per_page} rows starts beyond row {MAX_ROWS:,}")
        node = parse(filter_by)
        order = self._full_sort(sort)
        fields = parse_projection(projection)
        offset = (page - 1) * per_page

        def again(new_page: int, new_per_page: int) -> Pagination:
            result = self.paginate(filter_by, new_page, new_per_page, count, max_results, sort, projection)
            assert isinstance(result, Pagination)
            return result

        if not count:
            rows = self._select(node, order, fields, limit=per_page + 1, offset=offset) if per_page else []
            return PaginationNoCount(self, page, per_page, rows[:per_page], len(rows) > per_page, repeat=again)
        items = self._select(node, order, fields, limit=per_page, offset=offset) if per_page else []
        total = self._count(node, max_results)
        return Pagination(self, page, per_page, total, items, repeat=again)

    def _keyset(
        self, filter_by: Filter, per_page: int, sort: Sort, projection: Optional[Sequence[str]],
        after: Optional[str],
    ) -> KeysetPage:
        node = parse(filter_by)
        order = self._full_sort(sort)
        key = self._key()
        if not key:
            raise FilterError(f"keyset pagination of {self.name} needs a key that identifies rows, and it has none "
                              "(no primary key, no declared key): use page numbers (page=, per_page=), or a named "
                              "query that declares one (-- key: in a .sql file, \"key\" in a pipeline)")
        # the sort as written, a placement only where it is not the default: tokens of pairs stay valid
        owner = fingerprint(self._token_scope(), repr(node), [k.entry() for k in order])
        fields = parse_projection(projection)
        if DISTANCE in [k.field for k in order] + (fields or []):
            raise FilterError(f"keyset pagination cannot use {DISTANCE}; use page numbers (page=, per_page=)")
        dotted = next((k.field for k in order if "." in k.field), None)
        if dotted is not None:  # a token holds a row's top-level values; a path's would read as None, and loop
            raise FilterError(f"keyset pagination sorts by top-level fields, not the path {dotted!r}; "
                              "use page numbers (page=, per_page=)")
        wanted = fields if fields is None else [*fields, *(k.field for k in order if k.field not in fields)]
        if after:
            values = decode_token(after, owner, len(order), self.token_types)
            node = And((node, After(tuple(order), tuple(values))))
        rows = self._select(node, order, wanted, limit=per_page + 1) if per_page else []
        page = rows[:per_page]
        token = None
        if len(rows) > per_page and page:
            token = encode_token([page[-1].get(k.field) for k in order], owner, self.token_types)
        if fields is not None:
            page = [{f: row.get(f) for f in fields} for row in page]

        def again(next_token: str) -> KeysetPage:
            result = self.paginate(filter_by, per_page=per_page, sort=sort, projection=projection, after=next_token)
            assert isinstance(result, KeysetPage)
            return result

        return KeysetPage(page, per_page, token, again)



class BaseQuery(ReadQuery):
    """Queries on one table (SQL) or collection (MongoDB); get one with ``db.query(name)``."""

    # -- writes each engine implements ----------------------------------------------------------

    @abstractmethod
    def get_or_create(self, filter_by: Mapping[str, Any], **kwargs: Any) -> tuple[Row, bool]:
        """The row matching ``filter_by``, created from ``kwargs`` and ``filter_by`` if missing.

        Race-free: concurrent calls for the same key create one row and all get
        it back. A primary key, unique constraint or unique index must cover the
        filter's fields. ``filter_by`` wins over ``kwargs``.
        """

    def update(self, filter_by: Filter, attrs: Mapping[str, Any]) -> int:
        """Apply ``attrs`` (fields to set, or update operators: dbp.updates) to every matching row.

        Returns how many rows matched.
        """
        changes = parse_update(attrs, "update")
        if replaces(changes):
            raise FilterError("update: a $pull then $push on one path runs only in bulk_update")
        return self._update(parse(filter_by), changes)

    def _upsert_changes(self, eq: Mapping[str, Any], attrs: Any) -> tuple[Change, ...]:
        """upsert's changes: plain fields of the filter are dropped (the filter wins), operators on them refused."""
        if not isinstance(attrs, Mapping):
            raise FilterError("upsert needs a dict of fields or update operators")
        if not attrs:
            return ()
        changes = parse_update(attrs, "upsert")
        if replaces(changes):
            raise FilterError("upsert: a $pull then $push on one path runs only in bulk_update")
        kept = []
        for change in changes:
            if change.field in eq:
                if change.op == "set" and not change.subpath:
                    continue
                raise FilterError(f"upsert: {change.path!r} is a field of the filter")
            kept.append(change)
        return tuple(kept)

    def _check_fields(self, row: Mapping[str, Any], what: str) -> None:
        """Refuse field names that could be read as operators or are cut short (``$x``, a NUL)."""
        for name in row:
            if not isinstance(name, str) or not name or name.startswith("$") or "\x00" in name:
                shown = repr(name)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise FilterError(f"{what}: {shown} is not a field name (update operators are not supported)")

    def bulk_update(
        self, instances: Any, attrs: Optional[Sequence[Mapping[str, Any]]] = None,
        filter_fields: Optional[Sequence[Any]] = None,
    ) -> int:
        """Update ``instances[i]`` with ``attrs[i]``; rows are found by ``filter_fields`` (default the key).

        Key values are plain values, compared as the server compares them
        (:meth:`_same_keys`). Instances with the same key values merge in order
        (the last value of each field wins), and the result counts distinct rows
        matched; operators on a repeated key apply in order. Unequal lengths
        raise FilterError. One round trip per batch. ``instances`` may be a
        pandas DataFrame: without ``attrs``, each row's fields other than the
        keys are set (NaN and NaT as NULL). ``filter_fields`` may also be
        db-plugins' form, one ``{field: value}`` dict per instance: its values
        find the row, whatever the instance holds.
        """
        keys, found_by = self._filter_fields(filter_fields)
        if is_frame(instances):
            instances = records(instances)
            if attrs is None:
                attrs = [{k: v for k, v in row.items() if k not in keys} for row in instances]
        if is_frame(attrs):
            attrs = records(attrs)
        if attrs is None:
            raise FilterError("bulk_update needs attrs (or a DataFrame of instances)")
        _rows("instances", instances)
        _rows("attrs", attrs)
        if len(instances) != len(attrs):  # a FilterError is a ValueError, as db-plugins raised
            raise FilterError(f"bulk_update got {len(instances)} instances but {len(attrs)} attribute sets")
        where = "instances"
        if found_by is not None:
            if len(found_by) != len(instances):
                raise FilterError(f"bulk_update got {len(instances)} instances but {len(found_by)} filter_fields dicts")
            instances, where = found_by, "filter_fields"
        if not keys:
            raise FilterError(f"bulk_update on {self.name}: give filter_fields (there is no primary key)")
        self._check_keys(keys)
        fast = _key_columns(instances, keys) if self._exact_keys(keys) else None
        columns = columnar(attrs, "bulk_update: attrs") if fast is not None else None
        if fast is not None and columns is not None:  # one shape, plain values, no repeated key
            return self._bulk_update_columns(keys, fast, columns, where)
        plain = all(isinstance(change, Mapping) and is_plain(change) for change in attrs)
        parsed: list[tuple[Mapping[str, Any], tuple[Change, ...], tuple[Any, ...], tuple[Any, ...]]] = []
        for i, (instance, change) in enumerate(zip(instances, attrs)):
            changes = parse_update(change, f"bulk_update: attrs[{i}]")
            if not isinstance(instance, Mapping):
                raise FilterError(f"bulk_update: instances[{i}] is not a dict")
            missing = [k for k in keys if k not in instance]
            if missing:
                raise FilterError(f"bulk_update: instances[{i}] lacks the filter field(s) {', '.join(missing)}")
            value = tuple(check_key_value(instance[k], f"bulk_update: {where}[{i}].{k}") for k in keys)
            ident = key_identity(self._key_form(keys, value, f"bulk_update: {where}[{i}]: "))
            parsed.append((change, changes, value, ident))
        same = self._key_classes(keys, parsed)
        position: dict[tuple[Any, ...], int] = {}  # plain: the key's merged row; otherwise: times seen
        rounds: list[Round] = []
        origins: list[list[int]] = []  # each round's rows: the caller's index (for a merged row, its last)
        found: list[dict[str, Any]] = []
        merged: list[dict[str, Any]] = []  # plain changes merge field by field: the last value wins
        last: list[int] = []  # each merged row's last instance
        for i, (change, changes, value, ident) in enumerate(parsed):
            ident = same.get(ident, ident)
            if plain:
                at = position.get(ident)
                if at is None:
                    position[ident] = len(merged)
                    found.append(dict(zip(keys, value)))
                    merged.append(dict(change))
                    last.append(i)
                else:
                    merged[at].update(change)
                    last[at] = i
                continue
            seen = position.get(ident, 0)  # operators apply in order: a repeated key waits for a later round
            position[ident] = seen + 1
            while len(rounds) <= seen:
                rounds.append(([], []))
                origins.append([])
            rounds[seen][0].append(dict(zip(keys, value)))
            rounds[seen][1].append(changes)
            origins[seen].append(i)
        if merged:
            rounds, origins = [(found, [parse_update(row, "bulk_update") for row in merged])], [last]
        return self._bulk_update(keys, rounds, origins) if rounds else 0

    def _filter_fields(self, filter_fields: Any) -> tuple[list[str], Optional[list[dict[str, Any]]]]:
        """bulk_update's key fields, and, for db-plugins' form (one ``{field: value}`` dict per instance), the dicts."""
        if filter_fields is None:
            return self._key(), None
        if isinstance(filter_fields, (str, bytes, Mapping)) or not isinstance(filter_fields, Sequence):
            raise FilterError(_FILTER_FIELDS)
        if filter_fields and all(isinstance(f, Mapping) for f in filter_fields):
            first = list(filter_fields[0])
            self._check_fields(filter_fields[0], "bulk_update: filter_fields")
            for i, found in enumerate(filter_fields):
                if not found:
                    raise FilterError(f"bulk_update: filter_fields[{i}] is empty; each dict gives one instance's "
                                      "key values ({field: value})")
                if found.keys() != filter_fields[0].keys():
                    raise FilterError(
                        f"bulk_update: filter_fields[{i}] names {_names(found)}, but filter_fields[0] names "
                        f"{_names(first)}: every dict names the same fields (or pass a list of field names, "
                        "with the key values in instances)")
            return first, [dict(f) for f in filter_fields]
        if not all(isinstance(f, str) for f in filter_fields):
            raise FilterError(_FILTER_FIELDS)
        self._check_fields(dict.fromkeys(filter_fields), "bulk_update: filter_fields")
        return list(filter_fields), None

    def bulk_insert(self, rows: Any, on_conflict: ConflictMode = "ignore",
                    update_fields: Optional[Sequence[str]] = None, key: Optional[Sequence[str]] = None) -> int:
        """Insert many rows; return how many were inserted.

        ``ignore`` skips rows whose key exists (within the batch, the first row
        of a key wins); ``error`` raises; ``update`` sets, on an existing row,
        the fields the new row carries and no others (``update_fields`` narrows
        them further; key fields are never updated). Within the batch, each
        field's last value for a key wins. ``rows`` may be a pandas DataFrame
        (NaN, NaT and NA stored as NULL).

        The key is the primary key (MongoDB: ``_id``); ``key=[...]`` names the
        fields that identify a row instead: a unique key of the table, or any
        fields of a table with none (see each engine). Every row must then carry
        a non-null value for each of them.
        """
        if on_conflict not in ("ignore", "error", "update"):
            raise FilterError(f"on_conflict is 'ignore', 'error' or 'update', not {shown(on_conflict, 40)}")
        if is_frame(rows):
            rows = records(rows)
        if update_fields is not None:
            if on_conflict != "update":
                raise FilterError("update_fields goes with on_conflict='update'")
            if isinstance(update_fields, (str, bytes)) or not isinstance(update_fields, Sequence):
                raise FilterError("update_fields is a list of field names")
            self._check_fields(dict.fromkeys(update_fields), "bulk_insert: update_fields")
        names = None if key is None else self._conflict_key(key, on_conflict)
        if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
            raise FilterError(f"bulk_insert takes a list of dicts, not {type(rows).__name__}")
        if names is not None:
            refuse_null_keys(rows, names)
        return self._bulk_insert(rows, on_conflict, update_fields, names) if rows else 0

    def _conflict_key(self, key: Any, on_conflict: str) -> list[str]:
        """bulk_insert's ``key=`` as a list of field names; FilterError for one that cannot identify rows here.

        Engines add their own checks (:meth:`_check_conflict_key`): known columns, a unique key.
        """
        if on_conflict == "error":
            raise FilterError("bulk_insert: key= goes with on_conflict='ignore' or 'update' "
                              "(with 'error' every row is inserted)")
        if isinstance(key, (str, bytes, Mapping)) or not isinstance(key, Sequence):
            raise FilterError(f"bulk_insert: key is a list of field names, not {type(key).__name__}"
                              + (f" (key=[{key!r}] names one field)" if isinstance(key, str) else ""))
        names = list(key)
        if not names:
            raise FilterError("bulk_insert: key is an empty list; name the fields that identify a row")
        if not all(isinstance(k, str) for k in names):
            bad = next(k for k in names if not isinstance(k, str))
            raise FilterError(f"bulk_insert: key is a list of field names, not of {type(bad).__name__}")
        self._check_fields(dict.fromkeys(names), "bulk_insert: key")
        repeated = next((k for i, k in enumerate(names) if k in names[:i]), None)
        if repeated is not None:
            raise FilterError(f"bulk_insert: key names {shown(repeated, 60)} twice")
        self._check_conflict_key(names)
        return names

    def _check_conflict_key(self, key: list[str]) -> None:
        """Refuse a ``key=`` this table or collection cannot take (FilterError, before anything is written)."""

    @abstractmethod
    def _update(self, node: Node, changes: Sequence[Change]) -> int: ...

    @abstractmethod
    def _bulk_update(self, keys: list[str], rounds: Sequence[Round],
                     origins: Optional[Sequence[Sequence[int]]] = None) -> int:
        """Apply each round in order; the rows matched by the first (which holds every key).

        ``origins`` gives, for each round's rows, the caller's index (None: the round's own positions).
        """

    def _check_keys(self, keys: list[str]) -> None:
        """Refuse key fields the table cannot have (FilterError naming them); MongoDB checks them as it writes."""

    def _exact_keys(self, keys: list[str]) -> bool:
        """True if int and str values of these key fields are equal exactly when the server's are."""
        return True

    def _key_form(self, keys: list[str], value: tuple[Any, ...], where: str = "") -> tuple[Any, ...]:
        """Key values as the server compares them: one form for values that find the same row.

        Datetimes follow the one rule of both engines: aware ones as naive UTC.
        A value that cannot be a key of its field is a FilterError starting with ``where``.
        """
        return tuple(v.astimezone(_UTC).replace(tzinfo=None) if isinstance(v, _dt.datetime) and v.tzinfo else v
                     for v in value)

    def _key_classes(self, keys: list[str], parsed: Sequence[tuple[Any, Any, tuple[Any, ...], tuple[Any, ...]]]
                     ) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """Key identities (each ``parsed`` row's last item) the server takes for an earlier one, mapped to it."""
        firsts: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for *_, value, ident in parsed:
            firsts.setdefault(ident, value)
        idents = list(firsts)
        same = self._same_keys(keys, list(firsts.values()))
        return {ident: idents[at] for i, (ident, at) in enumerate(zip(idents, same)) if at != i}

    def _same_keys(self, keys: list[str], values: list[tuple[Any, ...]]) -> list[int]:
        """For each of ``values`` (distinct in Python), the position of the first of them the server takes as equal.

        MongoDB compares keys exactly (as Python does, after :meth:`_key_form`): each is its own.
        """
        return list(range(len(values)))

    def _bulk_update_columns(self, keys: list[str], key_values: list[list[Any]], columns: Columns,
                             where: str = "instances") -> int:
        """bulk_update's fast path: distinct keys, by column, and updates of one shape (by column too).

        ``where`` names the argument that holds the key values, for errors.
        """
        found = [dict(zip(keys, values)) for values in zip(*key_values)]
        return self._bulk_update(keys, [(found, columns.rows())])

    @abstractmethod
    def _bulk_insert(self, rows: Sequence[Mapping[str, Any]], on_conflict: ConflictMode,
                     update_fields: Optional[Sequence[str]], key: Optional[list[str]] = None) -> int:
        """Write ``rows``; ``key``: bulk_insert's ``key=``, checked (None: the engine's own key)."""

    @abstractmethod
    def upsert(self, filter_by: Mapping[str, Any], attrs: Mapping[str, Any]) -> Row:
        """Update the row matching ``filter_by`` with ``attrs``, or insert it; return it."""

    @abstractmethod
    def delete(self, filter_by: Filter) -> int:
        """Delete every matching row; return how many."""


class ReadOnly:
    """Write methods that refuse: named queries and pipelines are read-only sources."""

    name: str

    def _read_only(self, method: str) -> NoReturn:
        raise FilterError(f"{method} on {self.name}: a named query is read-only; "
                          "run a named write with db.run(name, params)")

    def get_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("get_or_create")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("update")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("bulk_update")

    def bulk_insert(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("bulk_insert")

    def upsert(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("upsert")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._read_only("delete")
