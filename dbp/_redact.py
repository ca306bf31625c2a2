"""Keeping secrets out of messages, logs and reprs.

Every password dbp reads is registered here; :func:`scrub` replaces any
registered secret (raw or percent-encoded) with ``***``.  URLs are masked
structurally with :func:`mask_url`, which needs no registry.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
# userinfo password in any scheme://user:password@host URL
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)(?P<pw>[^@\s/]*)@")
# password=... in key/value conninfo strings or URL query strings
_KV_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]+)")


def register_secret(secret: object) -> None:
    """Remember ``secret`` so that :func:`scrub` hides it from now on."""
    if not isinstance(secret, str) or len(secret) < 1:
        return
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    with _lock:
        _secrets.update(f for f in forms if f)


def mask_url(url: str) -> str:
    """``scheme://user:pw@host/db`` -> ``scheme://user:***@host/db``."""
    url = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", url)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, url)


def scrub(text: str) -> str:
    """Mask URL passwords and every registered secret in ``text``."""
    text = mask_url(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class ScrubFormatter(logging.Formatter):
    """A logging formatter whose output (message and traceback) is scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
