"""Finding, reading and checking ``DB_CONFIG``.

A settings file is either TOML (``[DB_CONFIG.SQL]``, ``[DB_CONFIG.MONGO]``) or
Python (``DB_CONFIG = {"SQL": {...}, "MONGO": {...}}``); both give the same
:class:`Config`.  Each section is checked by its engine's settings class, named
in :data:`dbp.engines.ENGINES`, so that every mistake surfaces at load time as
one :class:`~dbp.errors.ConfigError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import sys
import traceback
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from dbp._bundled import schema_set
from dbp._redact import mask_mapping, register_secret
from dbp._types import MAX_DEPTH, too_deep
from dbp.engines import ENGINES, EngineSettings, engine_for_section
from dbp.errors import ConfigError

__all__ = ["Config", "ConfigSource", "find_project", "find_settings", "load_config", "resolve_config"]

log = logging.getLogger("dbp.config")

SETTINGS_ENV = "DBP_SETTINGS"
PROJECT_FILE = "dbp.toml"
DEFAULT_FILES = (PROJECT_FILE, "settings.py")
#: Section keys whose values are mappings of driver parameters, kept as given.
_VERBATIM_KEYS = frozenset({"OPTIONS", "POOL"})
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A settings file larger than this is refused unread (no DB_CONFIG needs a megabyte).
MAX_SETTINGS_BYTES = 1 << 20
#: Keys that say where a project's files are, not where a server is: a section holding only these
#: (``dbp init-project`` writes such sections) does not configure its engine.
PROJECT_KEYS = ("SCHEMA_SET", "SCHEMA_DIR", "QUERIES_DIR")

ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any], None]


class Section(dict):  # type: ignore[type-arg]
    """One engine's settings, keys upper-cased. Its repr hides secrets."""

    def __repr__(self) -> str:
        return repr(_masked(self))


class Config(dict):  # type: ignore[type-arg]
    """``DB_CONFIG`` as loaded: ``{"SQL": {...}, "MONGO": {...}}``.

    ``source`` is the file it came from (``None`` for a dict or the environment).
    Its repr hides passwords; the values themselves are the caller's own.
    """

    def __init__(self, data: Mapping[str, Any], source: Optional[Path] = None) -> None:
        super().__init__(data)
        self.source = source
        #: Sections whose URL came from an environment variable (``SQL`` -> ``DBP_SQL_URL``): errors name it.
        self.url_vars: dict[str, str] = {}
        #: Sections that hold no server (only SCHEMA_DIR / QUERIES_DIR, or nothing): why, e.g.
        #: ``DB_CONFIG.MONGO holds only SCHEMA_DIR``. Their engine is skipped, and refused when asked for.
        self.unconfigured: dict[str, str] = {}
        #: Sections left unchecked at load time because the caller asked for other engines only:
        #: the error each one raises when its engine is asked for.
        self.problems: dict[str, ConfigError] = {}

    def configured(self, engine: str) -> bool:
        """Whether ``engine`` has a section that names a server (it may still be invalid)."""
        section = ENGINES[engine].section
        return section in self and section not in self.unconfigured

    def __repr__(self) -> str:
        return f"Config({_masked(self)!r}, source={str(self.source) if self.source else None!r})"

    __str__ = __repr__

    def settings(self, engine: str) -> EngineSettings:
        """The checked settings of ``engine`` (``"sql"`` or ``"mongo"``)."""
        spec = ENGINES.get(engine)
        if spec is None:
            raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
        section = self.get(spec.section)
        if section is None:
            where = f" in {self.source}" if self.source else ""
            raise ConfigError(f"no DB_CONFIG.{spec.section} section{where}")
        problem = self.problems.get(spec.section)
        if problem is not None:
            raise ConfigError(str(problem))
        if spec.section in self.unconfigured:
            raise ConfigError(
                f"{self.unconfigured[spec.section]}: {engine} is not configured; give DB_CONFIG.{spec.section} "
                f"a URL (or its address keys), or set ${spec.url_env}"
            )
        where = f"DB_CONFIG.{spec.section}"
        try:
            return spec.settings_class().from_section(section, where=where)
        except ConfigError as exc:
            var, text = self.url_vars.get(spec.section), str(exc)
            if var is None or not text.startswith(f"{where}.URL"):
                raise
        raise ConfigError(f"${var}{text[len(where) + 4:]}")


def _masked(value: Any) -> Any:
    """Settings data with every secret masked by its key, and every URL by its structure."""
    return mask_mapping(value)


def find_project(cwd: Union[str, os.PathLike[str], None] = None) -> Optional[Path]:
    """The folder holding the nearest ``dbp.toml``: ``cwd`` (default: the working directory) or the closest
    folder above it, as git finds ``.git``; None if there is none.

    The walk stops at the filesystem root, at a mount point (it never looks on another filesystem), and at a
    folder that belongs to neither the current user nor root. Above ``cwd``, a ``dbp.toml`` of another user
    (not root) is ignored with a warning and ends the walk: no one else's file is ever read by surprise.
    """
    folder = Path.cwd() if cwd is None else Path(cwd).absolute()
    me = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        device = os.stat(folder).st_dev
    except OSError:
        return None
    first = True
    while True:
        candidate = folder / PROJECT_FILE
        try:
            info = os.lstat(candidate)
        except OSError:
            info = None
        if info is not None:
            if first or me is None or info.st_uid in (me, 0):
                with contextlib.suppress(OSError):  # (a link to nothing: reading it says so)
                    if stat.S_ISDIR(os.stat(candidate).st_mode):
                        raise ConfigError(f"{candidate} is a folder, not dbp's settings file: rename it, "
                                          "or name the settings with --settings")
                return folder
            log.warning("ignoring %s: it belongs to uid %s, not to you (uid %s)", candidate, info.st_uid, me)
            return None
        parent = folder.parent
        if parent == folder:
            return None
        try:
            above = os.stat(parent)
        except OSError:
            return None
        if above.st_dev != device or (me is not None and above.st_uid not in (me, 0)):
            return None
        folder, first = parent, False


def find_settings(
    path: Union[str, os.PathLike[str], None] = None,
    *,
    cwd: Union[str, os.PathLike[str], None] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Optional[Path]:
    """The settings file to read: ``path``, ``$DBP_SETTINGS``, the nearest ``dbp.toml`` (``./dbp.toml`` or
    one in a folder above, see :func:`find_project`), ``./settings.py``.

    An explicitly named file that does not exist is an error; ``None`` means
    no file was named and none of the default names exists.
    """
    env = os.environ if environ is None else environ
    base = Path.cwd() if cwd is None else Path(cwd)
    if path is not None:
        named, how = Path(path), "settings file"
    elif env.get(SETTINGS_ENV):
        named, how = Path(env[SETTINGS_ENV]), f"settings file from ${SETTINGS_ENV}"
    else:
        project = find_project(base)
        if project is not None:  # a FIFO or a folder by that name is refused when read, not skipped
            return project / PROJECT_FILE if project != base.absolute() else base / PROJECT_FILE
        for name in DEFAULT_FILES[1:]:
            if (base / name).exists():
                return base / name
        return None
    named = named if named.is_absolute() else base / named
    try:
        mode = named.stat().st_mode
    except OSError:
        mode = None
    if mode is None:
        raise ConfigError(f"{how} {named} does not exist")
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{how} {named} is a directory, not a file")
    if not stat.S_ISREG(mode):  # a FIFO would block for ever, /dev/zero never ends
        raise ConfigError(f"{how} {named} is not a regular file")
    return named


def load_config(
    path: Union[str, os.PathLike[str], None] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    engines: Optional[Collection[str]] = None,
) -> Config:
    """Find, read and check ``DB_CONFIG``; raise :class:`ConfigError` on any problem.

    ``DBP_SQL_URL`` / ``DBP_MONGO_URL`` override the file's address keys. With
    no file at all, those variables alone may configure dbp; with neither, the
    error says where a file was looked for: dbp never falls back to a default
    database.

    ``engines``: check only these engines' sections now (``None``: every one).
    Another engine's mistakes are kept in :attr:`Config.problems` and raised
    when its settings are asked for. A section holding only ``SCHEMA_DIR`` /
    ``QUERIES_DIR`` (or nothing) is not an error but :attr:`Config.unconfigured`,
    unless ``engines`` names its engine.
    """
    env = os.environ if environ is None else environ
    found = find_settings(path, environ=env)
    if found is None:
        if not any(env.get(spec.url_env) for spec in ENGINES.values()):
            raise ConfigError(
                "no settings found: pass --settings FILE, set $DBP_SETTINGS, create "
                "./dbp.toml or ./settings.py (dbp init-project writes one), or set "
                + " / ".join(f"${spec.url_env}" for spec in ENGINES.values())
                + "; or use --local for project-local servers"
            )
        return _finish({}, None, env, engines)
    raw = _read_toml(found, env) if found.suffix == ".toml" else _read_python(found)
    return _finish(raw, found, env, engines)


def resolve_config(
    source: ConfigSource = None,
    *,
    engine: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    engines: Optional[Collection[str]] = None,
) -> Config:
    """A :class:`Config` from a path, a ``DB_CONFIG`` dict, or (``None``) the usual search.

    A dict that holds a single engine's keys (``{"HOST": ..., ...}``, as
    db-plugins' ``connect(config=DB_CONFIG["SQL"])`` takes) is read as the
    section of ``engine``. ``engines``: as for :func:`load_config`.
    """
    if isinstance(source, Config):
        return source
    if source is None or isinstance(source, (str, os.PathLike)):
        return load_config(source, environ=environ, engines=engines)
    if not isinstance(source, Mapping):
        raise ConfigError(
            f"expected a settings path or a DB_CONFIG dict, got {type(source).__name__}"
        )
    data: Mapping[str, Any] = source
    upper = {str(k).upper() for k in data}
    if "DB_CONFIG" in upper and len(upper) == 1:
        data = next(iter(data.values()))
    elif engine is not None and not upper & {spec.section for spec in ENGINES.values()}:
        data = {ENGINES[engine].section: data} if engine in ENGINES else data
    env = os.environ if environ is None else environ
    return _finish(data, None, env, engines)


def _read_toml(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on old Pythons only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read settings file {path}: it is not UTF-8 text") from None
    problem = None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column, never the text
        problem = f"invalid TOML: {str(exc).splitlines()[0][:200]}"
    except RecursionError:
        problem = "invalid TOML: it nests too deeply"
    if problem is not None:  # raised here, so that no __context__ keeps the file's text
        raise ConfigError(f"{path}: {problem}")
    if too_deep(doc):
        raise ConfigError(f"{path}: tables and arrays nest more than {MAX_DEPTH} levels deep")
    if "DB_CONFIG" not in doc:
        raise ConfigError(f"{path} has no [DB_CONFIG] table (expected [DB_CONFIG.SQL] and/or [DB_CONFIG.MONGO])")
    raw: Any = doc["DB_CONFIG"]
    result: dict[str, Any] = {}
    if not isinstance(raw, dict):
        result = raw  # _normalize refuses it
        return result
    for name, section in raw.items():  # each section on its own: one section's unset ${VAR} spares the others
        try:
            result[name] = _expand_env(section, env, f"{path}: DB_CONFIG.{name}")
        except ConfigError as exc:
            result[name] = _Invalid(exc)
    return result


class _Invalid:
    """A section that could not be read; its error is raised if its engine is checked."""

    def __init__(self, error: ConfigError) -> None:
        self.error = error


def _expand_env(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Expand ``${VAR}`` from the environment in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _expand_env(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name not in env:
            raise ConfigError(f"{where} uses ${{{name}}} but environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(sub, value)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing a file that is not regular or is larger than MAX_SETTINGS_BYTES."""
    problem = None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                problem = "it is not a regular file"
            else:
                with os.fdopen(fd, "rb", closefd=False) as handle:
                    data = handle.read(MAX_SETTINGS_BYTES + 1)
                if len(data) > MAX_SETTINGS_BYTES:
                    problem = f"it is larger than {MAX_SETTINGS_BYTES // 1024} KiB"
        finally:
            os.close(fd)
    except OSError as exc:
        problem = _reason(exc)
    if problem is not None:
        raise ConfigError(f"cannot read settings file {path}: {problem}")
    return data


#: User-code exceptions whose message names code (a variable, a module), never a value.
_NAMING_ERRORS = (NameError, ImportError)


def _read_python(path: Path) -> Any:
    source = _read_bytes(path)
    problem = None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:  # message and line only: the offending text may hold a secret
        problem = f"Python syntax error at line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        problem = f"cannot compile settings file: {type(exc).__name__}"
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "dbp_settings"}
    try:
        exec(code, namespace)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure of user code, sys.exit() too, is a config error
        line = next(
            (f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__)) if f.filename == str(path)),
            None,
        )
        variable = _missing_variable(exc)
        if isinstance(exc, SystemExit):
            problem = f"settings file called sys.exit() at line {line}"
        elif variable is not None:
            problem = (f"line {line} reads environment variable {variable} (os.environ[{variable!r}]), which is not "
                       f"set: set it, or read it with os.environ.get({variable!r}, default)")
        else:
            # Only messages that name code (not values, as KeyError's key may be) are repeated.
            detail = f": {str(exc)[:200]}" if isinstance(exc, _NAMING_ERRORS) else ""
            problem = f"settings file raised {type(exc).__name__} at line {line}{detail}"
        del exc
    if problem is not None:  # raised outside the handler: no __context__ keeps user code's exception
        raise ConfigError(f"{path}: {problem}")
    if "DB_CONFIG" not in namespace:
        raise ConfigError(f"{path} does not define DB_CONFIG")
    if too_deep(namespace["DB_CONFIG"]):
        raise ConfigError(f"{path}: DB_CONFIG nests more than {MAX_DEPTH} levels deep")
    return namespace["DB_CONFIG"]


def _missing_variable(exc: BaseException) -> Optional[str]:
    """The name of the environment variable whose lookup raised ``exc`` (a KeyError raised by
    ``os.environ[...]`` itself), else None. A variable's name is no secret; its value is never read."""
    if not isinstance(exc, KeyError) or len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return None
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or tb.tb_frame.f_locals.get("self") is not os.environ:
        return None
    name = exc.args[0]
    return shown_name(name) if name.isprintable() else repr(name)[1:-1][:60]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def _normalize(raw: Any, where: str, problems: dict[str, ConfigError]) -> dict[str, Section]:
    """The sections, keys upper-cased; a section that is not a table is left empty, its error in ``problems``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: DB_CONFIG must be a table/dict, not {type(raw).__name__}")
    if too_deep(raw):
        raise ConfigError(f"{where}: DB_CONFIG nests more than {MAX_DEPTH} levels deep")
    out: dict[str, Section] = {}
    for key, value in raw.items():
        name = str(key).upper()
        if engine_for_section(name) is None:
            valid = ", ".join(spec.section for spec in ENGINES.values())
            raise ConfigError(f"{where}: unknown section DB_CONFIG.{shown_name(key)}; expected {valid}")
        if name in out:  # that engine's mistake: a command on the other engine goes on
            out[name] = Section()
            problems[name] = ConfigError(f"{where}: section {name} is given twice (keys are case-insensitive)")
            continue
        section = Section()
        out[name] = section
        if isinstance(value, _Invalid):
            problems[name] = value.error
            continue
        if not isinstance(value, Mapping):
            problems[name] = ConfigError(
                f"{where}: DB_CONFIG.{name} must be a table/dict, not {type(value).__name__}")
            continue
        for k, v in value.items():
            upper = str(k).upper()
            if upper in section:
                section.clear()
                problems[name] = ConfigError(
                    f"{where}: DB_CONFIG.{name}.{shown_name(upper)} is given twice (keys are case-insensitive)"
                )
                break
            if upper in _VERBATIM_KEYS and isinstance(v, Mapping):
                v = {str(ik).lower(): iv for ik, iv in v.items()}
            section[upper] = v
    return out


def shown_name(key: Any, limit: int = 60) -> str:
    """A setting's name for a message, cut to ``limit`` characters."""
    text = str(key)
    return text if len(text) <= limit else text[:limit] + "..."


def _finish(
    raw: Any, source: Optional[Path], env: Mapping[str, str], engines: Optional[Collection[str]] = None
) -> Config:
    where = str(source) if source else "DB_CONFIG"
    problems: dict[str, ConfigError] = {}
    sections = _normalize(raw, where, problems)

    def strict(section: str) -> bool:
        return engines is None or engine_for_section(section) in engines

    for key, problem in problems.items():
        if strict(key):
            raise problem
    unconfigured: dict[str, str] = {}
    for spec in ENGINES.values():
        section = sections.get(spec.section)
        if spec.section in problems:
            continue
        try:
            if section is not None and "AIRFLOW_CONN_ID" in section:
                section = _from_airflow(section, spec.address_keys, env, f"DB_CONFIG.{spec.section}", spec.name)
            url = env.get(spec.url_env)
            if url:
                kept = {k: v for k, v in (section or {}).items() if k not in spec.address_keys}
                section = Section(kept, URL=url)
                log.debug("DB_CONFIG.%s address taken from $%s", spec.section, spec.url_env)
            if section is not None:
                sections[spec.section] = _resolve_paths(section, source, f"DB_CONFIG.{spec.section}", spec.name)
                if set(section) <= set(PROJECT_KEYS):
                    held = [k for k in PROJECT_KEYS if k in section]
                    unconfigured[spec.section] = (
                        f"DB_CONFIG.{spec.section} holds only {' and '.join(held)}" if held
                        else f"DB_CONFIG.{spec.section} is empty")
        except ConfigError as exc:
            if strict(spec.section):
                raise
            problems[spec.section] = exc
    config = Config(sections, source)
    config.url_vars = {spec.section: spec.url_env for spec in ENGINES.values() if env.get(spec.url_env)}
    config.unconfigured = unconfigured
    config.problems = problems
    for key in list(config):  # check the sections now, so mistakes surface at load time
        engine = engine_for_section(key) or ""
        if key in problems:
            continue
        if key in unconfigured:
            if engines is not None and engine in engines:
                config.settings(engine)  # raises: it says what the section lacks
            continue
        try:
            settings = config.settings(engine)
        except ConfigError as exc:
            if strict(key):
                raise
            problems[key] = exc
            continue
        for secret in settings.secrets():
            register_secret(secret)
    return config


def _resolve_paths(section: Section, source: Optional[Path], where: str, engine: str) -> Section:
    """Make ``SCHEMA_DIR`` and ``QUERIES_DIR`` absolute, relative to the settings file (or the working directory).

    ``SCHEMA_SET`` is checked here, so that a set that the engine lacks is refused even in a section that
    names no server.
    """
    if "SCHEMA_SET" in section:
        schema_set(engine, section["SCHEMA_SET"], f"{where}.SCHEMA_SET")
    for key in ("SCHEMA_DIR", "QUERIES_DIR"):
        value = section.get(key)
        if value is None:
            continue
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{where}.{key} must be a path, not {type(value).__name__}")
        base = source.absolute().resolve().parent if source is not None else Path.cwd()  # the real file's folder
        section[key] = str((base / Path(value).expanduser()).resolve())
    return section


def _from_airflow(
    section: Section, address_keys: frozenset[str], env: Mapping[str, str], where: str, engine: str
) -> Section:
    """The section with its address read from ``$AIRFLOW_CONN_<ID>``, mapped as ``DbpHook`` maps it."""
    from dbp.airflow.mapping import connection_from_env, engine_for, section_for

    conn_id = section["AIRFLOW_CONN_ID"]
    if not isinstance(conn_id, str) or not conn_id:
        raise ConfigError(f"{where}.AIRFLOW_CONN_ID must be a connection id string")
    var = "AIRFLOW_CONN_" + re.sub(r"[^A-Za-z0-9]", "_", conn_id).upper()
    value = env.get(var)
    if not value:
        raise ConfigError(f"{where}.AIRFLOW_CONN_ID is {conn_id!r} but ${var} is not set")
    kept = {k: v for k, v in section.items() if k not in address_keys}
    conn = connection_from_env(value, conn_id, var)
    database = kept.get("DATABASE") if engine == "mongo" else None
    return Section(section_for(conn, engine_for(conn, engine), database=database, settings=kept))
