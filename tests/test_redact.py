"""Properties of the redaction helpers: structural URL masking, the word-safe scrub, literal elision."""

from __future__ import annotations

import threading
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from dbp import _redact
from dbp._redact import mask_url, register_secret, scrub
from dbp.config import resolve_config
from dbp.sql.errors import elide_literals
from tests.hyp import examples

passwords = st.text(min_size=1, max_size=40).filter(lambda p: "\x00" not in p)


@given(password=passwords, user=st.text(alphabet="abcdefgh_", min_size=1, max_size=8))
@settings(max_examples=examples(300))
def test_a_percent_encoded_password_never_survives_masking(password: str, user: str) -> None:
    encoded = quote(password, safe="")
    for url in (f"postgresql://{user}:{encoded}@db.example.org:5432/ztf?sslmode=require",
                f"mongodb://{user}:{encoded}@m1:27017,m2:27017/ztf?replicaSet=rs0",
                f"postgresql://{user}:{encoded}@/ztf?host=/tmp/sock&port=5432"):
        assert mask_url(url) == url.replace(f"{user}:{encoded}@", f"{user}:***@", 1)
    config = resolve_config({"SQL": {"URL": f"postgresql://{user}:{encoded}@h:5432/d"},
                             "MONGO": {"URL": f"mongodb://{user}:{encoded}@h:27017/d"}}, environ={})
    for text in (repr(config), repr(config.settings("sql")), repr(config.settings("mongo"))):
        assert f":{encoded}@" not in text and f"{user}:***@" in text


@given(raw=st.text(min_size=0, max_size=60))
@settings(max_examples=examples(300))
def test_masking_raw_passwords_with_any_characters(raw: str) -> None:
    """A password pasted unencoded (spaces, '@', '%', '/'...) is masked whole, or the URL is refused."""
    url = f"mongodb://alerce:{raw}ZQ@host.example.org/db"
    masked = mask_url(url)
    if "@" in raw or "/" in raw or "?" in raw or "#" in raw:
        return  # ambiguous by nature; the settings refuse such a URL (tests/test_hostile.py)
    assert "ZQ" not in masked and masked.startswith("mongodb://alerce:***@host.example.org")


@given(secret=st.text(min_size=4, max_size=20).filter(lambda s: not _redact._ORDINARY.fullmatch(s) and "\x00" not in s),
       before=st.text(max_size=30), after=st.text(max_size=30))
@settings(max_examples=examples(300))
def test_scrub_masks_the_whole_token_and_leaves_words_alone(secret: str, before: str, after: str) -> None:
    saved = set(_redact._secrets), set(_redact._public)
    try:
        _redact._secrets.clear()
        _redact._public.clear()
        register_secret(secret)
        text = f"{before} {secret} {after}"
        scrubbed = scrub(text)
        assert f" {secret} " not in scrubbed
        # ordinary words around it are untouched
        assert scrub("cannot connect to PostgreSQL: password authentication failed") == (
            "cannot connect to PostgreSQL: password authentication failed")
    finally:
        _redact._secrets.clear()
        _redact._secrets.update(saved[0])
        _redact._public.clear()
        _redact._public.update(saved[1])


def test_scrub_never_masks_inside_a_word_or_a_plain_word() -> None:
    saved = set(_redact._secrets)
    try:
        for secret in ("e", "postgres", "connect", "x1"):
            register_secret(secret)
        message = "cannot connect to PostgreSQL at h:5432/postgres: e"
        assert scrub(message) == message
        register_secret("Tr0ub4dor&3")
        assert scrub("password: Tr0ub4dor&3.") == "password: ***."
        assert scrub("xTr0ub4dor&3") == "xTr0ub4dor&3"  # inside a word: another string
    finally:
        _redact._secrets.clear()
        _redact._secrets.update(saved)


def test_registry_is_safe_across_threads() -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                register_secret(f"thread-{n}-secret-{i}")
                assert f"thread-{n}-secret-{i}" not in scrub(f"x thread-{n}-secret-{i} y")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


literal_body = st.text(max_size=30).filter(lambda s: "MARK" not in s)


@given(parts=st.lists(st.tuples(st.sampled_from(["plain", "quoted", "escaped", "dollar", "ident"]), literal_body),
                      min_size=1, max_size=6))
@settings(max_examples=examples(300))
def test_elide_literals_removes_every_literal(parts: list[tuple[str, str]]) -> None:
    """Whatever a literal holds (quotes, backslashes, dollars), nothing of it is left; identifiers stay."""
    pieces = []
    for kind, body in parts:
        if kind == "plain":
            pieces.append("SELECT " + "".join(c for c in body if c.isalnum() or c == " "))
        elif kind == "quoted":
            pieces.append("'" + (body + "MARK").replace("'", "''") + "'")
        elif kind == "escaped":
            pieces.append("E'" + (body + "MARK").replace("\\", "\\\\").replace("'", "\\'") + "'")
        elif kind == "dollar":
            pieces.append("$tag$" + (body + "MARK").replace("$tag$", "") + "$tag$")
        else:
            pieces.append('"' + body.replace('"', '""') + 'ident"')
    text = " ".join(pieces)
    elided = elide_literals(text)
    assert "MARK" not in elided
    assert elided.count("ident\"") == sum(1 for kind, _ in parts if kind == "ident")
    assert elide_literals(elided) == elided


def test_elide_literals_examples() -> None:
    assert elide_literals("CREATE ROLE x LOGIN PASSWORD 'hunter2'") == "CREATE ROLE x LOGIN PASSWORD '...'"
    assert elide_literals("SELECT $1, $$a'b$$, e'\\'x', 'it''s'") == "SELECT $1, '...', e'...', '...'"
    assert elide_literals('SELECT "col""x" FROM t') == 'SELECT "col""x" FROM t'
    assert elide_literals("SELECT 'unterminated") == "SELECT '...'"
