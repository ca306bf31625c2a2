"""Small value checks shared by the engines' settings."""

from __future__ import annotations

from typing import Any

from dbp.errors import ConfigError


def check_str(value: Any, where: str, *, empty: bool = False) -> str:
    """``value`` as a string; the error never repeats the value (it may be a secret)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise ConfigError(f"{where} must not be empty")
    return value


def check_port(value: Any, where: str) -> int:
    """A TCP port from an int or a string of digits (``${PORT}`` expands to a string)."""
    port: Any = value
    if isinstance(value, str) and value.strip().isdigit():
        port = int(value.strip())
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where} must be a port number from 1 to 65535, not {value!r}")
    return port


def check_number(value: Any, where: str, *, minimum: float = 0) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{where} must be a number >= {minimum:g}, not {value!r}")
    return float(value)
