"""Named queries: ``NAME.sql`` statements and ``NAME.json`` Mongo pipelines in a queries folder.

One statement per file, named by the file (a file of two is refused). A ``.sql``
file is plain SQL with psycopg's ``%(name)s`` parameters; its leading comment
block may declare ``-- key: a, b`` (the output columns that identify a row:
stable pages and keyset pagination), ``-- not null: a`` (output columns that are
never NULL, so that ORDER BY can use a plain index), ``-- optional: p``
(parameters that default to NULL) and ``-- position: ra, dec`` (the output
columns that hold positions in degrees, for ``$cone``, ``$distance`` and
crossmatch). A ``.json`` file is an object with ``collection``, ``columns``,
``key``, ``optional``, ``position`` and ``pipeline``, whose parameters are
``{"$param": "name"}``: a one-key document under a ``$`` name that no stored
field and no MongoDB operator has.

Folders are read lazily: a file is parsed when its name is first used, and a
malformed one raises :class:`~dbp.errors.ConfigError` naming it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from dbp._redact import shown
from dbp._types import MAX_DEPTH, too_deep
from dbp._values import find_overflow, overflow_message, plain
from dbp.errors import ConfigError, FilterError
from dbp.sqltext import _DOLLAR_TAG, _block_comment_end, _ident_char, _quote_end, split_statements

__all__ = ["BUNDLED", "NamedPipeline", "NamedSQL", "Queries", "bind", "parse_pipeline", "parse_sql"]

#: dbp's own ALeRCE queries (package data).
BUNDLED = Path(__file__).resolve().parent / "queries"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PLACEHOLDER = re.compile(r"%(?:%|\((?P<name>[^)]*)\)(?P<fmt>.)|(?P<bare>.)|$)", re.S)
_HEADER = re.compile(r"--\s*(key|not null|position|optional|params)\s*:(.*)", re.I)
_READS = ("select", "with", "values", "table")
_WRITES = ("insert", "update", "delete", "merge")
#: Pipeline stages that write: a source that wrote on every read would be a trap.
_WRITING_STAGES = ("$out", "$merge")
PARAM = "$param"
#: Parameter values a pipeline accepts (documents are refused: they could carry operators).
_SCALARS = (str, int, float, bool, _dt.datetime, _dt.date)


#: Declared parameter types (``-- params: version text, ranking integer``; ``"params"`` in a pipeline file):
#: the Python values each accepts, the same on both engines (None is always accepted: NULL).
TYPES: Mapping[str, tuple[type, ...]] = {"text": (str,), "integer": (int,), "float": (int, float),
                                         "boolean": (bool,)}


def _types(pairs: Mapping[str, Any], params: frozenset[str], where: str, what: str) -> Mapping[str, str]:
    """``pairs`` (parameter -> type name) checked against the parameters and :data:`TYPES`."""
    _check_optional(frozenset(pairs), params, where, what)
    bad = [f"{p} {shown(t, 30)}" for p, t in pairs.items() if not isinstance(t, str) or t.lower() not in TYPES]
    if bad:
        raise ConfigError(f"{where}: {what} gives {bad[0]}; parameter types are {', '.join(TYPES)}")
    return {p: str(t).lower() for p, t in pairs.items()}


def _sql_types(raw: str, params: frozenset[str], where: str) -> Mapping[str, str]:
    pairs: dict[str, str] = {}
    for item in _names(raw, where):
        words = item.split()
        if len(words) != 2:
            raise ConfigError(f"{where}: -- params: is a list of `name type`, not {shown(item, 40)}")
        if words[0] in pairs:
            raise ConfigError(f"{where}: -- params: gives {shown(words[0], 40)} twice; give each parameter one type")
        pairs[words[0]] = words[1]
    return _types(pairs, params, where, "-- params:")


def check_types(name: str, types: Mapping[str, str], given: Mapping[str, Any]) -> None:
    """FilterError for a value that is not of its parameter's declared type (bool is not an integer)."""
    for param, wanted in types.items():
        value = given.get(param)
        if value is None:
            continue
        ok = isinstance(value, TYPES[wanted]) and (wanted == "boolean" or not isinstance(value, bool))
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise FilterError(f"{name}: parameter {param} is {wanted}, not {type(value).__name__} "
                              f"{shown(value, 40)}")


def editable(where: str) -> str:
    """The file a user edits to change the named query read from ``where``: for a bundled query, a copy in
    their own QUERIES_DIR (the project's file replaces dbp's), never the installed package's file."""
    from dbp._bundled import set_queries
    from dbp.engines import schema_set_names

    parent = Path(where).parent
    if parent == BUNDLED or parent in {set_queries(name) for name in schema_set_names()}:
        return f"a copy of {where} in your QUERIES_DIR (a project query of that name replaces dbp's)"
    return where


def _names(raw: str, where: str) -> tuple[str, ...]:
    found = tuple(n.strip() for n in raw.split(",") if n.strip())
    if not found:
        raise ConfigError(f"{where}: a header line names no column")
    return found


@dataclass(frozen=True)
class NamedSQL:
    """A parsed ``.sql`` statement; ``text`` has positional ``%s`` marks, filled from ``order``."""

    name: str
    where: str
    text: str
    order: tuple[str, ...]
    params: frozenset[str]
    key: tuple[str, ...] = ()
    not_null: frozenset[str] = frozenset()
    #: The statement's first keyword (select, with, insert, ...).
    verb: str = "select"
    #: The output columns ``(ra, dec)`` that ``-- position: ra, dec`` declares, for $cone and crossmatch.
    position: Optional[tuple[str, str]] = None
    #: Parameters that ``-- optional: a, b`` lets the caller leave out: they are then None (NULL).
    optional: frozenset[str] = frozenset()
    #: The declared types of parameters (``-- params: a text``), checked before anything runs.
    types: tuple[tuple[str, str], ...] = ()

    @property
    def writes(self) -> bool:
        return self.verb in _WRITES

    def bind(self, params: Optional[Mapping[str, Any]]) -> list[Any]:
        """The values for ``text``'s marks; FilterError naming missing or unexpected parameters."""
        given = bind(self.name, self.params, params, self.optional)
        given = {n: _plain_param(self.name, n, v) for n, v in given.items()}
        check_types(self.name, dict(self.types), given)
        return [given[n] for n in self.order]


def parse_sql(name: str, text: str, where: str) -> NamedSQL:
    """Parse a named statement; ConfigError (naming ``where``) if psycopg could not run it as written."""
    order: list[str] = []
    out: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        out.append(text[last:match.start()])
        last = match.end()
        token = match.group()
        line = text.count("\n", 0, match.start()) + 1
        if token == "%%":
            out.append("%%")
            continue
        param = match.group("name")
        if param is None and match.group("bare") not in ("s", "b", "t"):
            raise ConfigError(f"{where} line {line}: a lone % (psycopg reads every % in a statement): "
                              "write %% for a literal %, and %(name)s for a parameter")
        if param is None or match.group("fmt") != "s" or not NAME.fullmatch(param):
            raise ConfigError(f"{where} line {line}: parameters are %(name)s with a name of letters, digits "
                              f"and _, not {shown(token, 40)}")
        order.append(param)
        out.append("%s")
    out.append(text[last:])
    body = "".join(out)
    statements = split_statements(body)
    if len(statements) > 1:
        raise ConfigError(f"{where}: a named query is one statement; this one holds {len(statements)} "
                          "(put each in a file of its own)")
    # up to the statement's last character: a trailing `;`, empty statement or comment would spoil what dbp
    # appends (quotes and comments are read as PostgreSQL does: `--` inside a string is text)
    body = body[:_code_end(body)]
    key: tuple[str, ...] = ()
    not_null: frozenset[str] = frozenset()
    position: Optional[tuple[str, str]] = None
    optional: frozenset[str] = frozenset()
    types: tuple[tuple[str, str], ...] = ()
    # the leading comment block, as written: `%%` there is a `%` (the text goes to psycopg as it is)
    for text_line in text.split("\n"):  # not splitlines(): \x85, \u2028 and the like are text to SQL
        stripped = text_line.strip()
        if stripped and not stripped.startswith("--"):
            break
        header = _HEADER.match(stripped.replace("%%", "%"))
        if header and header.group(1).lower() == "key":
            key = _names(header.group(2), where)
        elif header and header.group(1).lower() == "position":
            names = _names(header.group(2), where)
            if len(names) != 2:
                raise ConfigError(f"{where}: -- position: names two output columns, ra then dec (in degrees), "
                                  f"not {len(names)}")
            position = (names[0], names[1])
        elif header and header.group(1).lower() == "optional":
            optional = frozenset(_names(header.group(2), where))
            _check_optional(optional, frozenset(order), where, "-- optional:")
        elif header and header.group(1).lower() == "params":
            if types:
                raise ConfigError(f"{where}: more than one -- params: line; declare every parameter type on one")
            types = tuple(_sql_types(header.group(2), frozenset(order), where).items())
        elif header:
            not_null = frozenset(_names(header.group(2), where))
    words = statements[0].text.replace("(", " ").split() if statements else []
    if not words:
        raise ConfigError(f"{where}: the file holds no statement")
    verb = words[0].lower()
    if verb not in _READS + _WRITES:
        raise ConfigError(f"{where}: a named query is one SELECT, WITH, VALUES, INSERT, UPDATE, DELETE or "
                          f"MERGE statement, not {shown(words[0], 30)}")
    return NamedSQL(name, where, body, tuple(order), frozenset(order), key, not_null, verb, position, optional,
                    types)


def _code_end(text: str) -> int:
    """The index after ``text``'s last character of code: not white space, a comment or a top-level ``;``."""
    end = i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            found = text.find("\n", i)
            i = n if found < 0 else found + 1
        elif text.startswith("/*", i):
            i = _block_comment_end(text, i)
        elif char in ("'", '"'):
            escapes = char == "'" and i > 0 and text[i - 1] in "eE" and not _ident_char(text, i - 2)
            i = end = _quote_end(text, i, char, escapes)
        elif char == "$" and (tag := _DOLLAR_TAG.match(text, i)) and not _ident_char(text, i - 1):
            found = text.find(tag.group(), tag.end())
            i = end = n if found < 0 else found + len(tag.group())
        else:
            i += 1
            if char != ";" and not char.isspace():
                end = i
    return end


def _check_optional(optional: frozenset[str], params: frozenset[str], where: str, what: str) -> None:
    stray = sorted(optional - params)
    if stray:
        raise ConfigError(f"{where}: {what} names {', '.join(stray)}, which is not a parameter "
                          f"({', '.join(sorted(params)) or 'none'})")


def bind(name: str, wanted: frozenset[str], params: Optional[Mapping[str, Any]],
         optional: frozenset[str] = frozenset()) -> Mapping[str, Any]:
    """``params`` if it gives exactly ``wanted`` (None for each ``optional`` one left out); FilterError naming
    what is missing or unexpected."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise FilterError(f"the parameters of {name} are a dict, not {type(params).__name__}")
    bad = [k for k in params if not isinstance(k, str)]
    if bad:
        raise FilterError(f"parameter names of {name} are strings, not {shown(bad[0], 40)}")
    missing = sorted(wanted - optional - params.keys())
    unexpected = sorted(set(params) - wanted)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing parameter(s) {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected parameter(s) {', '.join(shown(u, 40) for u in unexpected[:10])}")
        takes = ", ".join(sorted(wanted - optional)) or "none"
        also = f"; optional: {', '.join(sorted(optional))}" if optional else ""
        raise FilterError(f"{name}: {'; '.join(parts)} (it takes: {takes}{also})")
    left_out = optional - params.keys()
    return {**params, **dict.fromkeys(left_out)} if left_out else params


# -- pipelines ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedPipeline:
    """A parsed pipeline file: stages run on ``collection``, rows shaped to ``columns``."""

    name: str
    where: str
    collection: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    pipeline: tuple[Any, ...]
    params: frozenset[str]
    #: Parameters the caller may leave out (``"optional"``): they are then None.
    optional: frozenset[str] = frozenset()
    #: The columns ``(ra, dec)`` that ``"position": ["ra", "dec"]`` declares, for $cone and crossmatch.
    position: Optional[tuple[str, str]] = None
    #: The declared types of parameters (``"params": {"a": "text"}``), checked before anything runs.
    types: tuple[tuple[str, str], ...] = ()

    def bind(self, params: Optional[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The stages with parameter values in place; FilterError for a missing, unexpected or unusable one."""
        given = {param: _plain_param(self.name, param, value)
                 for param, value in bind(self.name, self.params, params, self.optional).items()}
        for param, value in given.items():
            _check_param(self.name, param, value)
        check_types(self.name, dict(self.types), given)
        return [_fill(stage, given, "stage") for stage in self.pipeline]


def _plain_param(name: str, param: str, value: Any) -> Any:
    """A parameter's numpy and pandas values as plain ones (NaT and NA None; an array or Series a list).

    A datetime outside years 1..9999 in UTC is refused, as in filters.
    """
    value = plain(value)
    if isinstance(value, (list, tuple)):
        value = type(value)(plain(item) for item in value)
    found = find_overflow(value)
    if found is not None:
        raise FilterError(overflow_message(f"{name}: parameter {param}", found[1]))
    return value


def _check_param(name: str, param: str, value: Any, depth: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, (list, tuple)) and depth == 0:
        for item in value:
            _check_param(name, param, item, 1)
        return
    if isinstance(value, float) and math.isnan(value):
        raise FilterError(f"{name}: parameter {param} is NaN, which compares differently on each engine")
    if not isinstance(value, _SCALARS):
        raise FilterError(f"{name}: parameter {param} is a {type(value).__name__}; pipeline parameters are "
                          "None, str, int, float, bool, dates, or a list of those")


def _literal(value: Any) -> Any:
    return {"$literal": list(value) if isinstance(value, tuple) else value}


#: Stage arguments that are not expressions: a query (the value goes in as it is, as in $match) or a
#: constant the server reads as it is (where ``{"$literal": n}`` is refused). Others are expressions.
_STAGE_ARGS: Mapping[str, Mapping[str, str]] = {
    "$graphLookup": {"restrictSearchWithMatch": "query", "maxDepth": "const"},
    "$geoNear": {"query": "query", "near": "const", "maxDistance": "const", "minDistance": "const",
                 "distanceMultiplier": "const", "spherical": "const"},
    "$sample": {"size": "const"},
    "$bucketAuto": {"buckets": "const", "granularity": "const"},
}
#: Arguments of expression operators that are constants ($shift's offset in $setWindowFields).
_OPERATOR_ARGS: Mapping[str, Mapping[str, str]] = {"$shift": {"by": "const"}}


def _fill(node: Any, given: Mapping[str, Any], context: str) -> Any:
    """``node`` with each ``{"$param": n}`` replaced: as it is in a query or a constant, as ``$literal`` in an
    expression.

    ``context`` is ``stage`` (a stage document), ``query`` (a $match filter or another stage's query),
    ``const`` (an argument the server reads as a value, as $sample's size) or
    ``expr`` (an aggregation expression, where a string starting with $ would be read as a field path).
    """
    if isinstance(node, dict):
        if len(node) == 1 and PARAM in node:
            value = given[node[PARAM]]
            value = list(value) if isinstance(value, tuple) else value
            return value if context in ("query", "const") else _literal(value)
        if context == "stage":
            ((op, body),) = node.items()
            if isinstance(body, dict) and len(body) == 1 and PARAM in body:  # {"$limit": {"$param": n}}
                return {op: given[body[PARAM]]}
            if op == "$facet" and isinstance(body, dict):
                return {op: {k: [_fill(s, given, "stage") for s in v] if isinstance(v, list) else v
                             for k, v in body.items()}}
            if op in _STAGE_ARGS and isinstance(body, dict):
                args = _STAGE_ARGS[op]
                return {op: {k: _fill(v, given, args.get(k, "expr")) for k, v in body.items()}}
            return {op: _fill(body, given, "query" if op == "$match" else "expr")}
        out = {}
        for key, value in node.items():
            if key == "$expr":
                out[key] = _fill(value, given, "expr")
            elif key == "$literal":
                out[key] = value
            elif key == "pipeline" and isinstance(value, list):
                out[key] = [_fill(s, given, "stage") for s in value]
            elif key in _OPERATOR_ARGS and isinstance(value, dict) and context == "expr":
                args = _OPERATOR_ARGS[key]
                out[key] = {k: _fill(v, given, args.get(k, "expr")) for k, v in value.items()}
            else:
                out[key] = _fill(value, given, context if context != "stage" else "expr")
        return out
    if isinstance(node, list):
        return [_fill(item, given, context) for item in node]
    return node


#: Operators that run server-side JavaScript: a caller's parameter must never become code.
_JAVASCRIPT = ("$where", "$function", "$accumulator")


def _no_javascript(node: Any, where: str) -> None:
    """ConfigError naming ``where`` if ``node`` holds a JavaScript operator anywhere (even under $literal)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _JAVASCRIPT:
                raise ConfigError(f"{where}: a named pipeline may not run server-side JavaScript ({key}): "
                                  "a parameter could become code")
            _no_javascript(value, where)
    elif isinstance(node, list):
        for item in node:
            _no_javascript(item, where)


def _scan(node: Any, where: str, found: set[str], *, stage: bool = False) -> None:
    """Collect parameter names; refuse a malformed placeholder or a writing stage."""
    if isinstance(node, dict):
        if PARAM in node:
            value = node[PARAM]
            if len(node) != 1 or not isinstance(value, str) or not NAME.fullmatch(value):
                raise ConfigError(f'{where}: a parameter is {{"$param": "name"}} alone, not {shown(node, 60)}')
            found.add(value)
            return
        if stage:
            if len(node) != 1:
                raise ConfigError(f"{where}: each stage is a document with one key, not {shown(list(node), 60)}")
            if next(iter(node)) in _WRITING_STAGES:
                raise ConfigError(f"{where}: a named pipeline is read-only; {next(iter(node))} writes")
        for key, value in node.items():
            if key == "$literal":
                continue
            is_stages = key in ("pipeline",) and isinstance(value, list)
            if key == "$facet" and isinstance(value, dict):
                for sub in value.values():
                    for s in sub if isinstance(sub, list) else []:
                        _scan(s, where, found, stage=True)
                continue
            for item in (value if is_stages else [value]):
                _scan(item, where, found, stage=is_stages)
    elif isinstance(node, list):
        for item in node:
            _scan(item, where, found)


_PIPELINE_KEYS = ("collection", "columns", "key", "pipeline", "optional", "position", "params", "description")
_TOO_DEEP = object()


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {what} is a list of field names")
    return tuple(value)


def parse_pipeline(name: str, text: str, where: str) -> NamedPipeline:
    try:
        data = json.loads(text)
    except RecursionError:
        data = _TOO_DEEP
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON: {exc}") from None
    if data is _TOO_DEEP or too_deep(data):  # raised here, outside the handler: no RecursionError as context
        raise ConfigError(f"{where}: the pipeline file nests more than {MAX_DEPTH} levels deep")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a pipeline file is a JSON object with {', '.join(_PIPELINE_KEYS[:4])}")
    unknown = sorted(set(data) - set(_PIPELINE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; keys are {', '.join(_PIPELINE_KEYS)}")
    collection = data.get("collection")
    if not isinstance(collection, str) or not collection or "$" in collection:
        raise ConfigError(f"{where}: collection is the name of the collection the pipeline starts from")
    columns = _strings(data.get("columns"), "columns", where)
    key = _strings(data.get("key", []), "key", where)
    stray = [k for k in key if k not in columns]
    if stray:
        raise ConfigError(f"{where}: key field(s) {', '.join(stray)} are not among the columns")
    pipeline = data.get("pipeline")
    if not isinstance(pipeline, list) or not all(isinstance(s, dict) for s in pipeline):
        raise ConfigError(f"{where}: pipeline is a list of stage documents")
    _no_javascript(pipeline, where)
    found: set[str] = set()
    for stage in pipeline:
        _scan(stage, where, found, stage=True)
    optional = frozenset(_strings(data.get("optional", []), "optional", where))
    _check_optional(optional, frozenset(found), where, "optional")
    position: Optional[tuple[str, str]] = None
    if "position" in data:
        names = _strings(data["position"], "position", where)
        if len(names) != 2 or not set(names) <= set(columns) or any(n.startswith("$") for n in names):
            raise ConfigError(f'{where}: position is ["ra column", "dec column"], two of the columns (in degrees)')
        position = (names[0], names[1])
    declared = data.get("params", {})
    if not isinstance(declared, dict):
        raise ConfigError(f'{where}: params is {{"name": "type"}}, types being {", ".join(TYPES)}')
    types = tuple(_types(declared, frozenset(found), where, "params").items())
    return NamedPipeline(name, where, collection, columns, key, tuple(pipeline), frozenset(found), optional,
                         position, types)


# -- folders --------------------------------------------------------------------------------------

Parsed = Union[NamedSQL, NamedPipeline]


class Queries:
    """The named queries of a project folder and dbp's bundled ones; the project's win on a name."""

    def __init__(self, folder: Optional[Path], *, explicit: bool = False, base: Path = BUNDLED) -> None:
        self.folder = folder
        #: dbp's bundled named queries: ``dbp/queries`` (ztf's), or a schema set's own ``queries/``.
        self.base = base
        self.explicit = explicit
        self._index: Optional[dict[tuple[str, str], tuple[Path, bool]]] = None
        self._parsed: dict[tuple[str, str], Parsed] = {}
        self._lock = threading.Lock()

    def _files(self) -> dict[tuple[str, str], tuple[Path, bool]]:
        if self._index is None:
            index: dict[tuple[str, str], tuple[Path, bool]] = {}
            folders: list[tuple[Path, bool]] = [(self.base, True)]
            if self.folder is not None:
                if self.folder.is_dir():
                    folders.append((self.folder, False))
                elif self.explicit:
                    raise ConfigError(f"QUERIES_DIR {self.folder} is not a folder")
            for folder, bundled in folders:
                for path in sorted(folder.glob("*")):
                    if path.suffix in (".sql", ".json") and path.is_file() and NAME.fullmatch(path.stem):
                        index[(path.stem, path.suffix)] = (path, bundled)
            self._index = index
        return self._index

    def names(self, suffix: str) -> list[str]:
        return sorted(n for n, s in self._files() if s == suffix)

    def bundled(self, name: str, suffix: str) -> bool:
        found = self._files().get((name, suffix))
        return bool(found and found[1])

    def get(self, name: Any, suffix: str) -> Optional[Parsed]:
        """The parsed query ``name`` (``.sql`` or ``.json``), or None if there is no such file."""
        if not isinstance(name, str):
            return None
        key = (name, suffix)
        with self._lock:
            parsed = self._parsed.get(key)
            if parsed is not None:
                return parsed
            found = self._files().get(key)
            if found is None:
                return None
            path = found[0]
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read named query {path}: {exc}") from None
            parsed = parse_sql(name, text, str(path)) if suffix == ".sql" else parse_pipeline(name, text, str(path))
            self._parsed[key] = parsed
            return parsed


def queries_for(folder: Optional[Path], schema_set: Optional[str] = None) -> Queries:
    """The queries of ``folder`` (QUERIES_DIR), or of ``./queries`` if it exists, over the bundled ones of
    ``schema_set`` (its own ``queries/`` folder if it has one, else dbp's)."""
    from dbp._bundled import set_queries

    base = set_queries(schema_set) or BUNDLED
    if folder is not None:
        return Queries(folder, explicit=True, base=base)
    return Queries(Path.cwd() / "queries", base=base)
