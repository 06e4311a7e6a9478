"""What makes a target's pass start before its interval is up: a request, a policy change,
an access expiry. Passes are level-triggered, so an event only ever makes one sooner."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from lockstep.connectors.base import TargetUnreachable, WatchesChanges
from lockstep.engine.observe import Observer
from lockstep.model import Desired, Policy
from lockstep.policy.errors import PolicyError, PolicyInvalid
from lockstep.policy.load import LoadedPolicy, load_policy, policy_files

WATCH_PERIOD_S = 1.0  # how often a target's change token is asked for
HELD_RECHECK_S = 1.0  # how often a target another service holds is looked at again
SKIPPED = "skipped"  # the outcome of a ring for a target another service holds


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


class WorkerHost(Protocol):
    @property
    def stopping(self) -> bool: ...

    def holds(self, target: str) -> bool: ...

    def run_pass(self, worker: TargetWorker) -> None: ...


class TargetWorker:
    """One target's schedule, on a thread of its own: waits for a reason to pass (its
    interval, a ring of its doorbell, an expiry, its change token moving), then asks the
    host for the pass. It keeps the target's observer, and so its session, between passes."""

    def __init__(self, name: str, host: WorkerHost) -> None:
        self.name = name
        self.bell = Doorbell()
        self._host = host
        self._observer: Observer | None = None
        self._observer_generation = -1
        self._token: str | None = None
        self._due_at = 0.0  # monotonic; 0 means at once
        self._expiry_at = math.inf
        self._watch_at = 0.0
        self._retired = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lockstep-{name}", daemon=True)

    def retire(self) -> None:
        """The target left the policy: stop after the pass under way."""
        self._retired.set()
        self.bell.close()

    def _run(self) -> None:
        host = self._host
        try:
            while not (host.stopping or self._retired.is_set()):
                if not host.holds(self.name):
                    self._forget()
                    if self.bell.rung():  # answered, so that nobody waits for it in vain
                        ticket, _ = self.bell.begin()
                        self.bell.finish(ticket, SKIPPED)
                    self.bell.wait(HELD_RECHECK_S)
                elif self._pass_due():
                    host.run_pass(self)
        finally:
            self._forget()

    def _pass_due(self) -> bool:
        """True when a pass is due now; otherwise sleeps until the next thing to check."""
        now = time.monotonic()
        if self.bell.rung():
            return True
        if now >= self._due_at:
            self.bell.ring("interval")
            return True
        if now >= self._expiry_at:
            self.bell.ring("expiry")
            return True
        if now >= self._watch_at:
            self._watch_at = now + WATCH_PERIOD_S
            if self._moved():
                self.bell.ring("change")
                return True
        self.bell.wait(min(self._due_at, self._expiry_at, self._watch_at) - now)
        return False

    def _moved(self) -> bool:
        """Whether the target changed since the last pass read it, by its change token."""
        try:
            token = self.read_token()
        except TargetUnreachable:
            return True  # a pass says so, as a finding, at once
        if token is None or self._token is None:
            self._token = token
            return False
        return token != self._token

    def token_before_pass(self) -> str | None:
        try:
            return self.read_token()
        except TargetUnreachable:
            return None  # the read that follows says so

    def read_token(self) -> str | None:
        """The target's change token, or None when it offers none or no session is open."""
        session = self._observer.sessions.get(self.name) if self._observer else None
        if not isinstance(session, WatchesChanges):
            return None
        return session.change_token()

    def observer(self, policy: Policy, desired: Desired, generation: int) -> Observer:
        """The target's observer, kept open between passes; a new one after a policy edit
        (the accounts in scope, or the target's own settings, may have changed)."""
        if self._observer is None or self._observer_generation != generation:
            self._forget()
            self._observer = Observer(policy, desired)
            self._observer_generation = generation
        return self._observer

    def passed(
        self, token: str | None, interval_s: float, policy: Policy, started: datetime
    ) -> None:
        """Schedule the next pass. ``token`` was read before the pass read the target, so a
        change made during the pass (its own actions included) triggers one more. An access
        that expired after the pass's ``started`` was not yet expired for it: due at once."""
        now = time.monotonic()
        self._due_at = now + interval_s
        try:
            self._token = token if token is not None else self.read_token()
        except TargetUnreachable:
            self._token = None
        wall = datetime.now(UTC)
        expiry = next_expiry(policy, self.name, started)
        self._expiry_at = now + (expiry - wall).total_seconds() if expiry else math.inf

    def _forget(self) -> None:
        if self._observer is not None:
            self._observer.close()
        self._observer = None
        self._token = None
        self._due_at = 0.0
