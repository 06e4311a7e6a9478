"""What makes a lease count: its credential tried, its account read back. Shared by issuing
and ending, which both fail with ``Unproven`` when the target cannot show it."""

from __future__ import annotations

from datetime import datetime, timedelta

from lockstep.connectors.base import Credential, IssuesLeases, ProbeResult, Session
from lockstep.engine.verify import Inconclusive, probe_until
from lockstep.leases.records import LeaseError

_EXPIRY_TOLERANCE = timedelta(seconds=1)  # targets may store expiry at a coarser precision


class Unproven(Exception):
    """The target did not show what a lease step needs shown (internal: becomes a failed
    lease, never a verified one)."""


def prove_works(session: Session, credential: Credential, window_s: float) -> None:
    """Raise Unproven unless the target accepts ``credential`` within ``window_s``."""
    try:
        got = probe_until(session, credential, ProbeResult.ACCEPTED, window_s)
    except Inconclusive as exc:
        raise Unproven(f"the new credential could not be tried: {exc}") from None
    if got is not ProbeResult.ACCEPTED:
        raise Unproven("the target refused the new credential")


def leasing_of(session: Session, target: str) -> IssuesLeases:
    if not isinstance(session, IssuesLeases):
        raise LeaseError(f"target {target!r} cannot issue short-lived credentials")
    return session


def check_native_expiry(leasing: IssuesLeases, account: str, expires_at: datetime) -> None:
    found = [a for a in leasing.list_leases(account) if a.name == account]
    if not found:
        raise Unproven(f"lease account {account} is missing")
    native = found[0].expires_at
    if native is not None and abs(native - expires_at) > _EXPIRY_TOLERANCE:
        raise Unproven(f"the target reports expiry {native.isoformat()}, not the new one")
