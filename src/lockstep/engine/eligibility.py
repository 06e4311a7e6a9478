"""Whether an identity may have a short-lived credential (a lease) on a target now, and on
what terms. Pure: the same rules as the desired state, for the identity's own access."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from lockstep.engine.desired import own_access
from lockstep.errors import LockstepError
from lockstep.model import Grant, Policy
from lockstep.policy.durations import format_duration

DEFAULT_TTL_S = 3600  # an identity's lease lifetime unless credentials.lease_ttl says otherwise
DEFAULT_MAX_TTL_S = 86400  # ... and the longest a lease may live, renewals included


class Ineligible(LockstepError):
    """The policy does not allow this lease now. One line naming the rule."""

    code = "lease_refused"


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    template: str  # the identity's declared account on the target
    entitlements: frozenset[str]  # its own, not those of identities sharing the account
    ttl_s: int
    max_ttl_s: int


def lease_terms(
    policy: Policy,
    identity: str,
    target: str,
    ttl_s: int | None,
    now: datetime,
    grants: Iterable[Grant] = (),
) -> LeaseTerms:
    """The terms of a lease ``identity`` asks for on ``target`` (``ttl_s`` None: the
    identity's default). Raises Ineligible whenever the identity itself may not use the
    target now, or asks for longer than it may have.

    ``grants``: the identity's active grants there. A lease holds what they give too, and
    never outlives the first of them to end."""
    declared = policy.identities.get(identity)
    if declared is None:
        raise Ineligible(f"unknown identity {identity!r}")
    if target not in policy.targets:
        raise Ineligible(f"unknown target {target!r}")
    access = next((a for a in declared.access if a.target == target), None)
    if access is None:
        raise Ineligible(f"identity {identity!r} has no access on target {target!r}")
    own = own_access(policy, declared, access, now)
    if access.expires is not None and access.expires <= now:
        raise Ineligible(
            f"identity {identity!r}'s access on {target!r} expired at {access.expires.isoformat()}"
        )
    if not own.active:
        raise Ineligible(f"identity {identity!r} is suspended: {own.suspend_reason}")
    credentials = declared.credentials
    allowed = credentials.lease_max_ttl_s or DEFAULT_MAX_TTL_S
    entitlements = own.entitlements
    bound: Grant | None = None  # the first to end of the grants the lease holds
    for grant in grants:
        extra = grant.entitlements - own.entitlements
        if grant.identity != identity or grant.account != access.account or not extra:
            continue
        if now < grant.ends_at:
            entitlements = entitlements | extra
            bound = grant if bound is None or grant.ends_at < bound.ends_at else bound
    left = int((bound.ends_at - now).total_seconds()) if bound is not None else allowed
    if bound is not None and left <= 0:
        raise Ineligible(f"the grant of request {bound.request} is ending")
    max_ttl = min(allowed, left)
    ttl = ttl_s if ttl_s is not None else min(credentials.lease_ttl_s or DEFAULT_TTL_S, max_ttl)
    if ttl <= 0:
        raise Ineligible("a lease's ttl must be at least 1s")
    if ttl > allowed:
        raise Ineligible(
            f"ttl {format_duration(ttl)} is longer than identity {identity!r} allows "
            f"(credentials.lease_max_ttl: {format_duration(allowed)})"
        )
    if bound is not None and ttl > left:
        raise Ineligible(
            f"ttl {format_duration(ttl)} would outlive the grant of request {bound.request} "
            f"(it ends in {format_duration(left)})"
        )
    return LeaseTerms(access.account, entitlements, ttl, max_ttl)
