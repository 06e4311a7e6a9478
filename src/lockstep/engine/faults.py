"""A fault-injection hook for crash tests: the process kills itself (SIGKILL, as ``kill -9``
would) when it reaches the step named in ``LOCKSTEP_FAULT_AT``.

Steps are ``OP:POINT``, e.g. ``rotate_credential:target_changed``; the points of a
credential change are, in order, ``staged`` (the new secret stored as pending),
``target_changed``, ``delivered`` and ``promoted`` (the vault's current credential
updated). ``recovery:POINT`` names the same points while an unfinished change is completed.
Unset, the hook costs one dictionary look-up. A test sets it to prove that a crash at that
step leaves nothing the next pass cannot complete or roll back.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "LOCKSTEP_FAULT_AT"
SIGNAL_ENV = "LOCKSTEP_FAULT_SIGNAL"  # TERM or INT instead of KILL: a clean stop is asked
POINTS = ("staged", "target_changed", "delivered", "promoted")


def reached(op: str, point: str) -> None:
    if os.environ.get(FAULT_ENV) == f"{op}:{point}":
        name = os.environ.get(SIGNAL_ENV, "KILL")
        os.kill(os.getpid(), signal.Signals[f"SIG{name}"])
