"""Keeping secrets out of messages, logs and reprs.

Secrets are removed by structure where text is built: settings know which of
their fields hold secrets (:func:`is_secret_key`), URLs are printed from their
parsed parts (:func:`mask_url`), and errors quote driver text only through
:func:`scrub`.

:func:`scrub` is the last line of defence for text dbp did not write (driver
messages, user code's exceptions, tracebacks). It runs in linear time and masks
a registered secret only where it stands as a whole token, never inside a
word; secrets that are ordinary words, very short, or also a public setting
(a host, a user, a database name) are not registered, since masking them would
garble messages and tell a reader what the password is.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from urllib.parse import quote, quote_plus, unquote

MASK = "***"

#: Setting and parameter names whose values are secrets (case-insensitive substrings).
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "authmechanismproperties", "credential")
#: A secret shorter than this is not scrubbed from foreign text (it would match everywhere).
MIN_SCRUB_LENGTH = 4
#: Nor one longer than this (messages are bounded far below it; a megabyte "password" is an attack).
MAX_SCRUB_LENGTH = 1024

_lock = threading.Lock()
_secrets: set[str] = set()
_public: set[str] = set()
_AUTHORITY_END = re.compile(r"[\s\"'<>/?#]")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ORDINARY = re.compile(r"[A-Za-z]+|[0-9]{1,6}")
# password=... in key/value conninfo strings; the quoted form is bounded so that the scan stays linear.
_KV_PASSWORD = re.compile(r"(?i)(\b[a-z_]*pass(?:word)?\s*=\s*)('(?:[^'\\]|\\.){0,256}'|[^\s&'\"]+)")


def is_secret_key(key: object) -> bool:
    """Whether a setting or URL parameter named ``key`` holds a secret (``PASSWORD``, ``sslpassword``, ...)."""
    lowered = str(key).lower()
    return any(word in lowered for word in _SECRET_WORDS)


def register_public(value: object) -> None:
    """Remember a value that is printed anyway (host, user, database): it is never masked."""
    if isinstance(value, (str, int)) and str(value):
        with _lock:
            _public.add(str(value))
            _secrets.discard(str(value))


def register_secret(secret: object) -> None:
    """Remember ``secret`` so that :func:`scrub` hides it in foreign text from now on."""
    if (not isinstance(secret, str) or not MIN_SCRUB_LENGTH <= len(secret) <= MAX_SCRUB_LENGTH
            or _ORDINARY.fullmatch(secret)):
        return
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    with _lock:
        _secrets.update(f for f in forms if f and f not in _public)


def mask_url(url: str) -> str:
    """``scheme://user:pw@host/db?sslpassword=x`` -> ``scheme://user:***@host/db?sslpassword=***``.

    The userinfo ends at the last ``@`` of the authority (so a password holding
    a space or ``@`` is masked whole); a URL with an ``@`` after its authority
    (see :func:`ambiguous_at`) is masked whole after ``scheme://``; secret query parameters, also inside
    Airflow's ``__extra__`` JSON, are masked. Text without ``://`` is returned as is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if "@" in rest[_authority_end(rest):]:  # ambiguous: where the password ends is unknown
        return f"{scheme}://{MASK}"
    at = userinfo_end(rest)
    if at >= 0:
        userinfo, hosts_and_rest = rest[:at], rest[at + 1 :]
        user = userinfo.partition(":")[0]
        auth = f"{user}:{MASK}@" if ":" in userinfo else f"{user}@"
    else:
        auth, hosts_and_rest = "", rest
    head, qmark, query = hosts_and_rest.partition("?")
    query, hash_, _fragment = query.partition("#")
    return f"{scheme}://{auth}{head}" + (qmark + mask_query(query) if qmark else "") + (hash_ + MASK if hash_ else "")


def userinfo_end(rest: str) -> int:
    """Where the userinfo of ``rest`` (a URL after ``://``) ends: the index of its ``@``, or -1.

    The last ``@`` before the first ``/``, ``?`` or ``#``. Callers that parse a
    URL refuse it first when :func:`ambiguous_at` holds (an ``@`` further on).
    """
    return rest.rfind("@", 0, _authority_end(rest))


def ambiguous_at(rest: str) -> bool:
    """Whether ``rest`` (a URL after ``://``) holds an unescaped ``@`` after the first ``/``, ``?``
    or ``#``, or two in its authority: then where the password ends is a guess (it probably holds
    an unescaped ``@ / ? #``), and any guess may send part of it to DNS or print it. Such a URL is
    refused; a legitimate ``@`` in a query value must be written ``%40``.
    """
    end = _authority_end(rest)
    return rest.count("@", 0, end) > 1 or "@" in rest[end:]


#: The message for a URL :func:`ambiguous_at` refuses (it quotes nothing of the URL).
AMBIGUOUS_AT = ("the URL holds an unescaped '@' after its host or a second '@': a password holding "
                "'@', '/', '?' or '#' must percent-encode it (urllib.parse.quote(password, safe='')), "
                "and an '@' in a query value (e.g. a file path) must be written %40")


def _authority_end(rest: str) -> int:
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    return end


def mask_query(query: str) -> str:
    """A URL query string with the values of secret parameters masked (``__extra__`` JSON included).

    A secret value holding an unescaped ``&`` splits into items; the items after a
    secret one that do not look like ``name=value`` (a name of letters, digits and
    ``_``) are taken as the secret's tail, and masked with it.
    """
    parts: list[str] = []
    in_secret = False
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        name = unquote(key)
        if in_secret and not (eq and _PARAM_NAME.fullmatch(name)):
            continue  # the secret's tail: its mask covers it
        in_secret = False
        if eq and is_secret_key(name):
            value = MASK
            in_secret = True
        elif eq and name == "__extra__":
            value = quote(json.dumps(mask_mapping(_json(unquote(value.replace("+", " "))))), safe="")
        parts.append(key + eq + value)
    return "&".join(parts)


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return MASK


def mask_mapping(value: object, key: str = "") -> object:
    """A copy of settings data with secret keys' values masked and URLs masked."""
    if is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: mask_mapping(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_mapping(v, key) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _mask_secret(text: str, secret: str) -> str:
    """``text`` with every whole-token occurrence of ``secret`` masked; linear in ``len(text)``."""
    out: list[str] = []
    start = 0
    pos = text.find(secret)
    check_left, check_right = _is_word(secret[0]), _is_word(secret[-1])
    while pos >= 0:
        end = pos + len(secret)
        left_ok = not check_left or pos == 0 or not _is_word(text[pos - 1])
        right_ok = not check_right or end == len(text) or not _is_word(text[end])
        if left_ok and right_ok:
            out.append(text[start:pos])
            out.append(MASK)
            start = end
            pos = text.find(secret, end)
        else:
            pos = text.find(secret, pos + 1)
    if not out:
        return text
    out.append(text[start:])
    return "".join(out)


def _mask_urls(text: str) -> str:
    """Mask the userinfo password of every ``scheme://user:pw@host`` in free text; linear."""
    if "://" not in text:
        return text
    out: list[str] = []
    start = 0
    pos = text.find("://")
    while pos >= 0:
        begin = pos + 3
        # the authority: up to whitespace, a quote, '/', '?' or '#'
        end = _AUTHORITY_END.search(text, begin)
        stop = end.start() if end else len(text)
        at = text.rfind("@", begin, stop)
        if at >= 0:
            colon = text.find(":", begin, at)
            if colon >= 0:
                out.append(text[start : colon + 1])
                out.append(MASK)
                start = at
        pos = text.find("://", max(stop, begin))
    out.append(text[start:])
    return "".join(out)


def scrub(text: str) -> str:
    """Mask URL passwords, ``password=...`` pairs and every registered secret in ``text``; linear time."""
    text = _mask_urls(text)
    if "pass" in text.lower():
        text = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = _mask_secret(text, secret)
    return text


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters, computed without a full repr."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value) - limit} more)"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 20:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return shorten(text, limit)


class ScrubFormatter(logging.Formatter):
    """A logging formatter whose output (message and traceback) is scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
