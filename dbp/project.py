"""A project of one's own: the bundled schema copied out of the package, and its ``dbp.toml``.

``dbp init-project [DIR]`` (:func:`init_project`) copies each engine's bundled
schema folder into ``DIR`` and writes a ``dbp.toml`` whose ``SCHEMA_DIR`` keys
point at the copies, and a ``.gitignore`` line for the local servers' folder ``.dbp/``.
``--local`` commands take ``SCHEMA_DIR`` from the settings
file found the usual way (:func:`apply_schema_dirs`), so the copies are what
``initdb``, ``migrate`` and ``make_migrations`` use.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from dbp._bundled import schema_set as bundled_set
from dbp.config import Config, find_settings
from dbp.engines import ENGINES
from dbp.errors import ConfigError, OperationError

__all__ = ["SETTINGS_FILE", "apply_schema_dirs", "init_project", "project_engines", "project_folder", "schema_dirs"]

SETTINGS_FILE = "dbp.toml"
GITIGNORE = ".gitignore"
#: The line init-project adds to the project's .gitignore: the local servers' folder (see dbp.local).
IGNORED = ".dbp/"
#: Lines that already ignore it.
_IGNORING = frozenset({".dbp", ".dbp/", "/.dbp", "/.dbp/", ".dbp/*", "/.dbp/*", ".dbp/**", "/.dbp/**"})
#: Not copied: package files, and a set's named queries (dbp offers them; a project's own replace them by name).
_SKIP = shutil.ignore_patterns("__init__.py", "__pycache__", "*.pyc", "queries")

_HEADER = """\
# dbp settings, written by `dbp init-project`.
#
# `dbp --local COMMAND` runs on the project-local servers (under ./.dbp) and takes only
# SCHEMA_SET and SCHEMA_DIR from this file. For other servers, give each section their address
# (URL, or HOST / PORT / ...: see dbp's README) or set {urls}.
"""


def project_folder(engine: str) -> str:
    """The folder name of ``engine``'s schema in a project: the bundled folder's own name."""
    return ENGINES[engine].bundled_folder


def init_project(directory: Union[str, os.PathLike[str]] = ".", engines: Iterable[str] = tuple(ENGINES),
                 schema_set: Optional[str] = None) -> list[Path]:
    """Copy a bundled schema set (default: each engine's default, ``ztf``) into ``directory`` and write its
    ``dbp.toml``; return what was written. An engine that lacks the set is a ConfigError.

    Nothing is overwritten: if any target exists, nothing is written at all. ``.dbp/`` is added to the
    folder's ``.gitignore`` (made if missing) unless a line there names it already.
    """
    root = Path(directory).resolve()
    chosen = list(engines)
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown:
        raise ConfigError(f"unknown engine {unknown[0]!r}; expected one of {', '.join(ENGINES)}")
    sources = {e: bundled_set(e, schema_set, f"--schema-set for {ENGINES[e].section}") for e in chosen}
    name = schema_set if schema_set is not None else next((ENGINES[e].default_set for e in chosen), "ztf")
    targets = [root / project_folder(e) for e in chosen] + [root / SETTINGS_FILE]
    existing = [p for p in targets if p.exists() or p.is_symlink()]
    if existing:
        raise OperationError(
            f"{', '.join(str(p) for p in existing)} already exist(s); init-project writes nothing over them "
            "(move them away, or choose another folder)"
        )
    if root.exists() and not root.is_dir():
        raise OperationError(f"{root} is not a folder")
    _gitignore_lines(root / GITIGNORE)  # refused before anything is written
    try:
        return _write(root, chosen, sources, name)
    except FileExistsError as exc:  # another init-project got there first, between the check and the copy
        raise OperationError(f"{exc.filename} appeared while init-project ran; it stopped there") from None
    except OSError as exc:
        raise OperationError(f"init-project cannot write {exc.filename or root}: {exc.strerror or exc}") from None


def _write(root: Path, chosen: list[str], sources: Mapping[str, Path], name: str) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for engine in chosen:
        target = root / project_folder(engine)
        shutil.copytree(sources[engine], target, ignore=_SKIP)
        for path in [target, *target.rglob("*")]:  # an installed package's files may be read-only
            path.chmod(path.stat().st_mode | 0o200)
        written.append(target)
    text = _HEADER.format(urls=" / ".join(f"${ENGINES[e].url_env}" for e in chosen))
    for engine in chosen:
        spec = ENGINES[engine]
        text += (f"\n[DB_CONFIG.{spec.section}]\n"
                 f'SCHEMA_SET = "{name}"    # the bundled set it was copied from: its named queries\n'
                 f'SCHEMA_DIR = "{project_folder(engine)}"    # {spec.schema_folder}\n')
    settings = root / SETTINGS_FILE
    with open(settings, "x", encoding="utf-8") as handle:  # never over a file that appeared meanwhile
        handle.write(text)
    written.append(settings)
    if _ignore(root / GITIGNORE):
        written.append(root / GITIGNORE)
    return written


def _gitignore_lines(path: Path) -> Optional[list[str]]:
    """The lines of ``path`` (None if it does not exist); OperationError if it is not a plain file (a symbolic
    link is never written through)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise OperationError(f"{path} is not a plain file (a link?); init-project writes nothing through it: "
                             f"add {IGNORED} to it yourself, or move it away")
    try:
        return path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise OperationError(f"init-project cannot read {path}: {exc.strerror or exc}") from None


def _ignore(path: Path) -> bool:
    """Have git ignore the local servers' folder: ``.dbp/`` added to ``path`` (made if missing) unless a line
    there already names it. True if ``path`` was written."""
    lines = _gitignore_lines(path)
    if lines is not None and any(line.strip() in _IGNORING for line in lines):
        return False
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "ab") as handle:
        ends_open = lines is not None and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        handle.write((b"\n" if ends_open else b"") + IGNORED.encode() + b"\n")
    return True


def schema_dirs(settings: Path) -> dict[str, str]:
    """``SCHEMA_DIR`` of each section of a settings file, absolute; nothing else is read or checked."""
    return {name: keys["SCHEMA_DIR"] for name, keys in _project_keys(settings).items() if "SCHEMA_DIR" in keys}


def _project_keys(settings: Path) -> dict[str, dict[str, str]]:
    """``SCHEMA_DIR`` (absolute) and ``SCHEMA_SET`` of each section of a settings file; nothing else is read."""
    from dbp.config import _expand_env

    out: dict[str, dict[str, str]] = {}
    for name, section in _sections(settings).items():
        if not isinstance(section, Mapping):
            continue
        for key, value in section.items():
            if str(key).upper() == "SCHEMA_DIR" and isinstance(value, str) and value:
                value = _expand_env(value, os.environ, f"{settings}: DB_CONFIG.{name}.SCHEMA_DIR")
                folder = settings.absolute().resolve().parent  # the real file's folder, as dbp.config reads it
                out.setdefault(str(name).upper(), {})["SCHEMA_DIR"] = str((folder / Path(value).expanduser()).resolve())
            elif str(key).upper() == "SCHEMA_SET":
                if isinstance(value, str):  # as dbp.config reads the file: ${VAR} expanded
                    value = _expand_env(value, os.environ, f"{settings}: DB_CONFIG.{name}.SCHEMA_SET")
                out.setdefault(str(name).upper(), {})["SCHEMA_SET"] = value
    return out


def project_engines(settings: Union[str, os.PathLike[str], None] = None) -> list[str]:
    """The engines whose section ``settings``, or the settings file found the usual way, has (every engine
    if none is found).

    ``--local`` starts only these: a project made by ``init-project --engine sql`` needs no MongoDB.
    """
    found = find_settings(settings)
    if found is None:
        return list(ENGINES)
    named = {str(name).upper() for name in _sections(found)}
    chosen = [name for name, spec in ENGINES.items() if spec.section in named]
    return chosen or list(ENGINES)


def _sections(settings: Path) -> Mapping[Any, Any]:
    """The raw ``DB_CONFIG`` of a settings file, unchecked."""
    from dbp.config import _read_python

    if settings.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        try:
            doc: Any = tomllib.loads(settings.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {settings}: {exc}") from None
        raw = doc.get("DB_CONFIG", {})
    else:
        raw = _read_python(settings)
    return raw if isinstance(raw, Mapping) else {}


def apply_schema_dirs(config: Config, settings: Union[str, os.PathLike[str], None] = None) -> None:
    """Give ``config`` (the local servers') the ``SCHEMA_DIR`` and ``SCHEMA_SET`` of ``settings``, or of the
    settings file found the usual way (see :func:`dbp.config.find_settings`)."""
    found = find_settings(settings)
    if found is None:
        return
    for section, keys in _project_keys(found).items():
        if section in config:
            for key, value in keys.items():
                config[section].setdefault(key, value)
