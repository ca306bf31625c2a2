"""Issue 20, item 18: a URL whose authority is ambiguous is refused without quoting any of it.

A password holding an unescaped ``@`` and, later, a ``/``, ``?`` or ``#``
(``postgresql://u:p@ss/word@host/db``) used to split at the first ``@``: the
fragment after it went to DNS as a host name and into messages.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

import dbp
from dbp import ConfigError
from dbp.config import resolve_config

#: Passwords that hold an '@' and later a '/', '?' or '#', each with a distinctive part ("Zq9W").
PASSWORDS = ["p@ss/Zq9Wword", "p@ss?Zq9Wword", "p@ss#Zq9Wword", "Zq9W@x/y", "a@b/c@Zq9W", "p@Zq9W?k=v",
             "p@Zq9W#", "p@Zq9W/"]


def _said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def _sections(password: str) -> list[dict[str, dict[str, str]]]:
    return [{"SQL": {"URL": f"postgresql://alerce:{password}@127.0.0.1:5432/db"}},
            {"SQL": {"URL": f"postgres://alerce:{password}@127.0.0.1/db?sslmode=disable"}},
            {"MONGO": {"URL": f"mongodb://alerce:{password}@127.0.0.1:27017/db"}},
            {"MONGO": {"URL": f"mongodb://alerce:{password}@127.0.0.1:27017/?authSource=admin", "DATABASE": "d"}}]


@pytest.mark.parametrize("password", PASSWORDS)
def test_ambiguous_authority_is_refused_without_quoting(password: str) -> None:
    for section in _sections(password):
        with pytest.raises(ConfigError, match="percent-encode") as info:
            resolve_config(section, environ={})
        said = _said(info.value)
        assert "Zq9W" not in said and "ss" not in str(info.value).replace("address", "").replace("password", "")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("password", PASSWORDS)
def test_ambiguous_authority_is_refused_by_connect(password: str) -> None:
    for section in _sections(password):
        engine = "sql" if "SQL" in section else "mongo"
        with pytest.raises(ConfigError) as info:
            dbp.connect(section, engine=engine)
        assert "Zq9W" not in _said(info.value)


@pytest.mark.parametrize("url", [
    "postgresql://alerce:p%40ss%2Fword@127.0.0.1:5432/db",
    "postgresql://alerce@127.0.0.1:5432/db?application_name=me%40lab",
    "mongodb://alerce:p%40ss%2Fword@127.0.0.1:27017/db",
    "mongodb://127.0.0.1:27017/db?appName=me%40lab",
])
def test_escaped_or_query_value_at_signs_still_work(url: str) -> None:
    section = {"SQL": {"URL": url}} if url.startswith("postgresql") else {"MONGO": {"URL": url}}
    resolve_config(section, environ={}).settings("sql" if "SQL" in section else "mongo")


@pytest.mark.parametrize("password", ["p@ss/Zq9Wword", "p@Zq9W?k=v"])
def test_cli_refuses_without_a_trace_of_the_password(password: str, run_dbp: Any, tmp_path: Path) -> None:
    for section, url in (("SQL", f"postgresql://alerce:{password}@127.0.0.1:5432/db"),
                         ("MONGO", f"mongodb://alerce:{password}@127.0.0.1:27017/db")):
        (tmp_path / "dbp.toml").write_text(f'[DB_CONFIG.{section}]\nURL = "{url}"\n')
        for verbose in ([], ["-vv"]):
            result = run_dbp(*verbose, "status")
            assert result.returncode == 78, result.stderr
            said = result.stdout + result.stderr
            assert "percent-encode" in said and "Zq9W" not in said and "ss/" not in said


@pytest.mark.parametrize("url", [  # adversary trust3 c: an '@' after the host is never guessed at
    "postgresql://alerce@127.0.0.1:5432/db?application_name=me@lab",
    "mongodb://127.0.0.1:27017/db?appName=me@lab",
])
def test_unescaped_query_value_at_sign_is_refused_saying_to_escape_it(url: str) -> None:
    section = {"SQL": {"URL": url}} if url.startswith("postgresql") else {"MONGO": {"URL": url}}
    with pytest.raises(ConfigError, match=r"query value \(e\.g\. a file path\) must be written %40") as info:
        resolve_config(section, environ={})
    assert "lab" not in str(info.value)
