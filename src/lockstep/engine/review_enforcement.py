"""What reviews hold back from the desired state, when a removal they asked for counts as
proven, and when there is nothing left for them to hold back. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from lockstep.engine.review_model import (
    AccessKey,
    Enforcement,
    Review,
    ReviewStatus,
    Revocation,
    SubjectKey,
)
from lockstep.model import Observation, Op, Policy, Result, Snapshot, Status

_PROVING_OPS = frozenset({Op.REVOKE, Op.SUSPEND_ACCOUNT, Op.DELETE_ACCOUNT})


def revocations(reviews: Iterable[Review]) -> list[Revocation]:
    """What the reviews in force hold back from the desired state."""
    held = []
    for r in reviews:
        if not r.in_force:
            continue
        account_wide = r.enforce is Enforcement.SUSPEND or r.entitlement is None
        proven = r.verified_at is not None
        held.append(
            Revocation(
                r.id,
                r.target,
                r.account,
                None if account_wide else r.entitlement,
                proven,
                restorable=r.enforce is Enforcement.SUSPEND,
            )
        )
    return held


def proven(
    reviews: Iterable[Review],
    observed: Mapping[str, Observation],
    results: Sequence[Result],
    now: datetime,
) -> list[tuple[Review, dict[str, Any]]]:
    """Reviews in force whose removal is now proven, with how: an action of theirs verified
    (read back; for an account, the old credential refused and its sessions ended), or the
    target read without it before any action was needed."""
    done: dict[str, Result] = {}
    for r in results:
        if r.action.review and r.status is Status.VERIFIED and r.action.op in _PROVING_OPS:
            done.setdefault(r.action.review, r)
    tried = {r.action.review for r in results if r.action.review}
    settled = []
    for review in reviews:
        if not review.in_force or review.verified_at is not None:
            continue
        result = done.get(review.id)
        how: dict[str, Any]
        if result is not None:
            how = {
                "op": str(result.action.op),
                "detail": result.detail,
                "checks": [
                    {"entitlement": c.entitlement, "expected": c.expected, "actual": c.actual}
                    for c in result.checks
                ],
            }
        elif review.id not in tried and _absent(review, observed.get(review.target)):
            how = {"op": None, "detail": "read back without it: nothing left to remove"}
        else:
            continue
        status = ReviewStatus.REVOKED if review.enforce is Enforcement.REVOKE else review.status
        settled.append((replace(review, status=status, verified_at=now), how))
    return settled


def _absent(review: Review, obs: Observation | None) -> bool:
    if not isinstance(obs, Snapshot):
        return False
    account = obs.accounts.get(review.account)
    if account is None:
        return True
    if review.entitlement is None or review.enforce is Enforcement.SUSPEND:
        return False  # an account that exists is proven suspended by its own action only
    return review.entitlement not in account.entitlements


def lifted(
    policy: Policy, reviews: Iterable[Review], targets_read: Collection[str], now: datetime
) -> list[Review]:
    """Revocations with nothing left to hold back: the policy no longer declares the access
    (an undeclared entitlement's once its removal is proven)."""
    read = set(targets_read)
    reviews = [r for r in reviews if r.in_force and r.target in read]
    if not reviews:
        return []
    declared: dict[AccessKey, set[str]] = defaultdict(set)
    holders: set[SubjectKey] = set()
    for identity in policy.identities.values():
        for a in identity.access:
            declared[a.target, a.account] |= a.entitlements
            holders.add((identity.name, a.target, a.account))
    done = []
    for r in reviews:
        if not r.in_force or r.target not in read:
            continue
        held = (r.identity, r.target, r.account) in holders
        if r.enforce is Enforcement.REVOKE and r.entitlement is not None:
            held = r.entitlement in declared.get(r.access, set()) or r.verified_at is None
        if not held:
            done.append(replace(r, lifted_at=now))
    return done
