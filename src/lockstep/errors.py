"""The root of every failure lockstep expects: bad input, unreachable state, refusals.

Each kind carries a stable ``code`` (for scripts, logs and API bodies) and a remediation
``hint``, as Prowler's errors do; the message itself is one line and never holds a secret.
Whatever is not a ``LockstepError`` is a bug, reported as an internal error.
"""

from __future__ import annotations

from typing import ClassVar


class LockstepError(Exception):
    code: ClassVar[str] = "error"
    default_hint: ClassVar[str | None] = None

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint if hint is not None else self.default_hint
