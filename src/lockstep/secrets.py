"""Secret values: a wrapper that never renders in clear, and a process-wide redactor.

Every secret lockstep learns (an expanded ``${VAR}`` in a secret-bearing key, a password it
generates) is registered here, so that any text leaving the process (CLI output, logs,
exception messages, journal payloads) can be scrubbed as a last line of defence. The first
line of defence is never putting a secret into such text at all.
"""

from __future__ import annotations

import hashlib
import secrets as _random
import string
import threading

_MASK = "***"
_MIN_REDACTABLE = 4  # shorter strings would scrub ordinary words out of messages

_lock = threading.Lock()
_known: set[str] = set()


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
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """Replace every known secret in ``text`` by ``***``, longest first."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, _MASK)
    return text


def fingerprint(value: str) -> str:
    """A short, non-reversible identifier of a secret, fit for the journal."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


_ALPHABET = string.ascii_letters + string.digits + "-_.~"


def generate_password(length: int = 32) -> Secret:
    """A random password from a URL- and shell-safe alphabet (~190 bits at 32 chars)."""
    return Secret("".join(_random.choice(_ALPHABET) for _ in range(length)))
