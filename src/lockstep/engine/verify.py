"""Done means verified: read back after each action, and prove removed credentials refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from lockstep.connectors.base import (
    ConnectorType,
    Credential,
    ProbeResult,
    Session,
    TargetUnreachable,
)
from lockstep.model import Account, Action, Check, Op, Status, Target
from lockstep.secret import redact

_FIRST_BACKOFF_S = 0.25


@dataclass(frozen=True)
class Timer:
    """Where code that waits reads the time and sleeps: the machine's by default, a fake one
    in tests (so that a propagation window is tested without waiting it out)."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


REAL_TIME = Timer()


@dataclass(frozen=True)
class Evidence:
    """The credentials an action's verification tries."""

    issued: Credential | None = None  # must be accepted
    refused: Sequence[tuple[str, Credential]] = ()  # (what it is, credential): must be refused


def propagation_window(target: Target, connector: ConnectorType) -> float:
    """How long a removed credential may still work on ``target``, as its connector reads
    the target's settings (an AWS account's ``propagation_window``)."""
    return connector.propagation_window(target.settings)


class Inconclusive(Exception):
    """The target could not be asked: the action is unverified, never verified."""


def probe_until(
    session: Session,
    credential: Credential,
    want: ProbeResult,
    window_s: float,
    timer: Timer = REAL_TIME,
) -> ProbeResult:
    """Probe, re-probing with backoff while the answer is not ``want`` and the propagation
    window lasts (some providers keep accepting a deleted key for seconds)."""
    deadline = timer.monotonic() + window_s
    delay = _FIRST_BACKOFF_S
    while True:
        try:
            result = session.probe(credential)
        except TargetUnreachable as exc:
            raise Inconclusive(redact(str(exc))) from exc
        if result is want or timer.monotonic() + delay > deadline:
            return result
        timer.sleep(delay)
        delay *= 2


@dataclass(frozen=True)
class Proof:
    """One probe an action's verification makes: of what (``what``), and the answer it
    needs."""

    what: str  # "new credential", or the label of a credential that must be refused
    credential: Credential
    want: ProbeResult

    def check(self, action: Action, got: ProbeResult) -> Check:
        return _check(action, f"{self.what} {self.want}", f"{self.what} {got}")


def proofs(evidence: Evidence) -> list[Proof]:
    """The probes ``evidence`` calls for: the issued credential accepted, then each removed
    one refused."""
    wanted = []
    if evidence.issued is not None:
        wanted.append(Proof("new credential", evidence.issued, ProbeResult.ACCEPTED))
    wanted += [Proof(label, old, ProbeResult.REFUSED) for label, old in evidence.refused]
    return wanted


def verify_action(
    session: Session,
    action: Action,
    evidence: Evidence,
    window_s: float,
    timer: Timer = REAL_TIME,
) -> tuple[Status, str, tuple[Check, ...]]:
    try:
        account = session.read_account(action.account)
        checks = read_back_checks(action, account)
        checks += [
            p.check(action, probe_until(session, p.credential, p.want, window_s, timer))
            for p in proofs(evidence)
        ]
    except TargetUnreachable as exc:
        return Status.UNVERIFIED, f"could not read back: {redact(str(exc))}", ()
    except Inconclusive as exc:
        return Status.UNVERIFIED, f"could not probe the credential: {exc}", ()
    return verdict(checks)


def verdict(checks: Sequence[Check]) -> tuple[Status, str, tuple[Check, ...]]:
    """An action's status and detail from its checks: verified only when every one holds."""
    failed = [c for c in checks if not c.ok]
    if failed:
        detail = "; ".join(f"expected {c.expected}, found {c.actual}" for c in failed)
        return Status.FAILED, detail, tuple(checks)
    return Status.VERIFIED, "; ".join(f"{c.expected}" for c in checks), tuple(checks)


def _check(action: Action, expected: str, actual: str, entitlement: str | None = None) -> Check:
    return Check(action.target, action.account, entitlement, expected, actual, expected == actual)


def _presence(account: Account | None) -> str:
    if account is None:
        return "absent"
    return "enabled" if account.enabled else "suspended"


def read_back_checks(action: Action, account: Account | None) -> list[Check]:
    """What reading ``account`` back (None: absent) says about ``action``."""
    return list(_state_checks(action, account))


def _state_checks(action: Action, account: Account | None) -> Iterable[Check]:
    op = action.op
    if op is Op.DELETE_ACCOUNT:
        yield _check(action, "absent", _presence(account))
        return
    expected = "suspended" if op in (Op.SUSPEND_ACCOUNT, Op.END_SESSIONS) else "enabled"
    if op in (Op.GRANT, Op.REVOKE):
        expected = _presence(account) if account is not None else "present"
    yield _check(action, expected, _presence(account))
    if account is None:
        return
    if op is Op.GRANT and action.entitlement:
        held = "granted" if action.entitlement in account.entitlements else "absent"
        yield _check(action, "granted", held, action.entitlement)
    if op is Op.REVOKE and action.entitlement:
        held = "granted" if action.entitlement in account.entitlements else "absent"
        yield _check(action, "absent", held, action.entitlement)
    if op in (Op.SUSPEND_ACCOUNT, Op.END_SESSIONS, Op.DELETE_ACCOUNT) and account.sessions >= 0:
        yield _check(action, "0 open sessions", f"{account.sessions} open sessions")
