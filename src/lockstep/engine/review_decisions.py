"""Who reviews an access, and a person's decision on a review. Pure: the policy decides who
may; the store records what they decided."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from lockstep.engine.review_model import (
    UNANSWERED,
    Decision,
    Enforcement,
    Review,
    ReviewStatus,
)
from lockstep.errors import LockstepError
from lockstep.governance.people import admins, owner_contacts
from lockstep.model import Identity, Policy
from lockstep.policy.governance import normal_person


class ReviewRefused(LockstepError):
    """A decision that cannot be taken: one line naming why. Nothing changed."""

    code = "review_refused"


def reviewers(
    policy: Policy, identity: Identity, excluded: Collection[str] = frozenset()
) -> tuple[str, ...]:
    """The owner's contacts, or the admins when the owner has none active; never the agent's
    sponsor nor who requested the access."""
    barred = set(excluded) | ({identity.sponsor} if identity.sponsor else set())
    people = owner_contacts(policy, identity) - barred
    if not people:
        people = admins(policy) - barred
    return tuple(sorted(people))


def may_review(
    policy: Policy, person: str, review: Review, requesters: Collection[str] = frozenset()
) -> None:
    """Raise ReviewRefused unless ``person`` may decide ``review``: a contact of the
    identity's owner, or an admin; never an NHI, the agent's sponsor, nor who asked for it."""
    who = normal_person(person)
    if who in policy.identities or person in policy.identities:
        raise ReviewRefused(f"{person} is an identity: an NHI never reviews access")
    identity = policy.identities.get(review.identity)
    if identity is None:
        raise ReviewRefused(f"identity {review.identity!r} is no longer in the policy")
    if identity.sponsor == who:
        raise ReviewRefused(
            f"{who} sponsors agent {identity.name!r}: somebody else reviews its access"
        )
    if who in requesters:
        raise ReviewRefused(f"{who} requested this access: somebody else reviews it")
    if who in owner_contacts(policy, identity) or who in admins(policy):
        return
    raise ReviewRefused(
        f"{who} may not review {review.id}: reviewers are the contacts of owner "
        f"{identity.owner!r} and the admins"
    )


def decide(
    policy: Policy,
    review: Review,
    person: str,
    decision: Decision,
    reason: str,
    now: datetime,
    requesters: Collection[str] = frozenset(),
) -> Review:
    """The review once ``person`` decided it; ReviewRefused when they may not, or it is
    decided already. ``keep`` lifts a suspension an overdue review brought; ``revoke`` takes
    the access away until the policy no longer declares it."""
    if review.status not in UNANSWERED:
        raise ReviewRefused(f"review {review.id} is {review.status}: it was decided already")
    if not reason.strip():
        raise ReviewRefused("a decision needs a reason (--reason)")
    may_review(policy, person, review, requesters)
    decided = replace(
        review,
        decision=decision,
        decided_by=normal_person(person),
        decided_at=now,
        reason=reason.strip(),
    )
    if decision is Decision.KEEP:
        lifted = now if review.enforce is not None else None
        return replace(decided, status=ReviewStatus.KEPT, lifted_at=lifted)
    return replace(
        decided, status=ReviewStatus.REVOKING, enforce=Enforcement.REVOKE, verified_at=None
    )
