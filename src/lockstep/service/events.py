"""What makes a target's pass start before its interval is up: a request, a policy change,
an access expiry. Passes are level-triggered, so an event only ever makes one sooner."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lockstep.model import Policy
from lockstep.policy import LoadedPolicy, PolicyError, PolicyInvalid, load_policy
from lockstep.policy.load import policy_files


class Doorbell:
    """Wakes one target's worker, and lets a caller wait for the pass that serves its ring.

    Rings are numbered. A pass serves every ring made before it started, so rings made while
    a pass runs are served by the next one, never silently folded into a pass that had
    already read the target.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rung = 0  # rings so far
        self._serving = 0  # rings covered by the pass running now or last
        self._done = 0  # rings covered by finished passes
        self._outcome = ""
        self._reasons: set[str] = set()
        self._closed = False

    def ring(self, reason: str) -> int:
        """Ask for a pass; returns the ticket to wait on."""
        with self._cond:
            self._rung += 1
            self._reasons.add(reason)
            self._cond.notify_all()
            return self._rung

    def rung(self) -> bool:
        with self._cond:
            return self._rung > self._serving

    def wait(self, timeout_s: float) -> None:
        """Sleep until rung, closed or ``timeout_s`` passed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._rung > self._serving or self._closed, max(timeout_s, 0.0)
            )

    def begin(self) -> tuple[int, frozenset[str]]:
        """A pass starts: the rings it serves, and why they were made."""
        with self._cond:
            self._serving = self._rung
            reasons = frozenset(self._reasons)
            self._reasons.clear()
            return self._serving, reasons

    def finish(self, ticket: int, outcome: str) -> None:
        with self._cond:
            self._done = max(self._done, ticket)
            self._outcome = outcome
            self._cond.notify_all()

    def await_pass(self, ticket: int, timeout_s: float) -> str | None:
        """The outcome of the pass that served ``ticket``; None on timeout or shutdown."""
        with self._cond:
            served = self._cond.wait_for(
                lambda: self._done >= ticket or self._closed, max(timeout_s, 0.0)
            )
            return self._outcome if served and self._done >= ticket else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(frozen=True)
class PolicyChange:
    """A policy whose files changed: the new one, or why it cannot be used."""

    fingerprint: str
    loaded: LoadedPolicy | None
    errors: tuple[PolicyError, ...] = ()


def policy_fingerprint(config: Path) -> str:
    """A digest of the policy's file names and contents (a file that cannot be read counts
    as its own state, so that its return is noticed too)."""
    digest = hashlib.sha256()
    for path in policy_files(config) if config.exists() else []:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            digest.update(f"unreadable:{exc.errno}".encode())
    return digest.hexdigest()


class PolicySource:
    """Notices edits to the policy files (by content, not by mtime alone: an editor that
    restores the old mtime, or two edits in one second, are still noticed)."""

    def __init__(self, config: Path, fingerprint: str) -> None:
        self.config = config
        self.fingerprint = fingerprint

    def poll(self) -> PolicyChange | None:
        """None while the files are as last seen (valid or not)."""
        now = policy_fingerprint(self.config)
        if now == self.fingerprint:
            return None
        self.fingerprint = now
        try:
            return PolicyChange(now, load_policy(self.config))
        except PolicyInvalid as exc:
            return PolicyChange(now, None, tuple(exc.errors))


def next_expiry(policy: Policy, target: str, after: datetime) -> datetime | None:
    """The first access on ``target`` that expires after ``after``: a pass is due then."""
    expiries: Iterable[datetime] = (
        access.expires
        for identity in policy.identities.values()
        for access in identity.access
        if access.target == target and access.expires is not None and access.expires > after
    )
    return min(expiries, default=None)
