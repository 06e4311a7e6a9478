"""Durations as the policy writes them: ``<n>s``, ``<n>m``, ``<n>h`` or ``<n>d``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^([0-9]+)([smhd])$")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; ValueError naming the accepted forms otherwise."""
    match = _PATTERN.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration: write <n>s, <n>m, <n>h or <n>d, n > 0")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
