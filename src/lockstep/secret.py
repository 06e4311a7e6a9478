"""Secret values: a wrapper that never renders in clear, and a process-wide redactor.

Every secret lockstep learns (an expanded ``${VAR}`` in a secret-bearing key, a password it
generates) is registered here, so that any text leaving the process (CLI output, logs,
exception messages, journal payloads) can be scrubbed as a last line of defence. The first
line of defence is never putting a secret into such text at all.
"""

from __future__ import annotations

import hashlib
import re
import secrets as _random
import threading
from collections.abc import Set
from dataclasses import dataclass

_MASK = "***"
_MIN_REDACTABLE = 4  # shorter strings would scrub ordinary words out of messages
# Past this many known secrets of one length, a text is searched by looking up each of its
# windows of that length instead of once per secret: the cost then follows the text's size,
# not the number of secrets (a service holding thousands of leases redacts every log line).
_SCAN_LIMIT = 16

_lock = threading.Lock()
_by_length: dict[int, set[str]] = {}
_spaced: dict[int, int] = {}  # per length, how many of its secrets hold whitespace


@dataclass(frozen=True)
class _Group:
    length: int
    # Scanned for: a copy. Looked up: the live set itself, so that registering one more
    # secret (a lease issued) costs no rebuild; a lookup in a set another thread is
    # changing is safe under the GIL, unlike iterating it.
    values: Set[str]
    runs: re.Pattern[str] | None  # set when windows are looked up instead of scanned


_groups: tuple[_Group, ...] | None = None  # rebuilt after a change, shared by readers


class Secret:
    """A string that shows as ``***`` in repr, str and f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def fingerprint(self) -> str:
        return fingerprint(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and _random.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def register(value: str) -> None:
    if len(value) >= _MIN_REDACTABLE:
        _change(value, add=True)


def forget(value: str) -> None:
    """Stop redacting a secret that no longer opens anything (an ended lease)."""
    _change(value, add=False)


def _change(value: str, add: bool) -> None:
    global _groups
    length = len(value)
    with _lock:
        bucket = _by_length.setdefault(length, set())
        if (value in bucket) == add:
            return
        looked_up = _looked_up(length)
        if add:
            bucket.add(value)
        else:
            bucket.discard(value)
        if _has_space(value):
            _spaced[length] = _spaced.get(length, 0) + (1 if add else -1)
        if not (looked_up and _looked_up(length)):
            _groups = None


def _looked_up(length: int) -> bool:
    """Whether the secrets of ``length`` are found by looking up windows of the text."""
    return len(_by_length.get(length, ())) > _SCAN_LIMIT and not _spaced.get(length)


def _current_groups() -> tuple[_Group, ...]:
    global _groups
    groups = _groups  # one read of a reference: no lock needed to use a built index
    if groups is not None:
        return groups
    with _lock:
        if _groups is None:
            _groups = tuple(
                _Group(length, values, re.compile(rf"\S{{{length},}}"))
                if _looked_up(length)
                else _Group(length, frozenset(values), None)
                for length, values in sorted(_by_length.items(), reverse=True)
                if values
            )
        return _groups


def _has_space(value: str) -> bool:
    return any(c.isspace() for c in value)


def _spans(text: str, group: _Group) -> list[tuple[int, int]]:
    found = []
    if group.runs is None:
        for value in group.values:
            start = text.find(value)
            while start != -1:
                found.append((start, start + group.length))
                start = text.find(value, start + 1)
        return found
    for run in group.runs.finditer(text):
        for i in range(run.start(), run.end() - group.length + 1):
            if text[i : i + group.length] in group.values:
                found.append((i, i + group.length))
    return found


def holds_secret(text: str) -> bool:
    """Whether ``text`` contains a known secret: ``redact(text) != text``, answered
    without rewriting anything, and at once for a text shorter than every secret."""
    groups = _current_groups()
    if not groups or len(text) < groups[-1].length:
        return False
    return any(_spans(text, group) for group in groups if group.length <= len(text))


def redact(text: str) -> str:
    """Replace every occurrence of every known secret in ``text`` by ``***``."""
    groups = _current_groups()
    if not groups or len(text) < groups[-1].length:
        return text
    spans = sorted(
        span for group in groups if group.length <= len(text) for span in _spans(text, group)
    )
    if not spans:
        return text
    pieces, cursor = [], 0
    for start, end in spans:
        if end <= cursor:
            continue
        if start >= cursor:
            pieces.append(text[cursor:start])
            pieces.append(_MASK)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def fingerprint(value: str) -> str:
    """A short, non-reversible identifier of a secret, fit for the journal."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def generate_password(length: int = 32) -> Secret:
    """A random password from a URL- and shell-safe alphabet (192 bits at 32 characters)."""
    # Base64url of random bytes: each character 6 uniform bits, from one call for all of
    # them rather than one per character.
    return Secret(_random.token_urlsafe(length)[:length])
