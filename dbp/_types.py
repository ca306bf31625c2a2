"""Small value checks shared by the engines' settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dbp._redact import shown
from dbp.errors import ConfigError

#: The longest string setting (a URL, a password, an option): longer ones are refused unread.
MAX_SETTING_LENGTH = 65536


def check_str(value: Any, where: str, *, empty: bool = False) -> str:
    """``value`` as a string; the error never repeats the value (it may be a secret)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise ConfigError(f"{where} must not be empty")
    if len(value) > MAX_SETTING_LENGTH:
        raise ConfigError(f"{where} is longer than {MAX_SETTING_LENGTH:,} characters")
    if "\x00" in value:  # libpq and pymongo would cut the value there, silently
        raise ConfigError(f"{where} contains a NUL character")
    return value


def check_port(value: Any, where: str, *, show: bool = True) -> int:
    """A TCP port from an int or a string of digits (``${PORT}`` expands to a string).

    ``show=False`` leaves the value out of the error: a port read from a URL
    may be part of a password that holds an unescaped ``/``, ``?`` or ``#``.
    """
    port: Any = value
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 10:
        port = int(value.strip())
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        shown_value = f", not {shown(value, 40)}" if show else ""
        raise ConfigError(f"{where} must be a port number from 1 to 65535{shown_value}")
    return port


def check_number(value: Any, where: str, *, minimum: float = 0) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < minimum):
        raise ConfigError(f"{where} must be a number >= {minimum:g}, not {shown(value, 40)}")
    return float(value)


#: How deeply settings, filters and values may nest (Python's own limit is about 1000 frames).
MAX_DEPTH = 100


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether dicts and lists nest more than ``limit`` levels in ``value``; iterative, linear."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple)))
    return False
