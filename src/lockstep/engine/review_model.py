"""The data of access reviews: what a review is, what reviews remember of each access, and
the runtime signals their triggers read. Plain frozen data; no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from lockstep.model import Finding


class Trigger(StrEnum):
    PERIODIC = "periodic"  # rules.review_every has passed since the access began or was kept
    DORMANT = "dormant"  # unused for rules.dormant_after, where use can be observed
    DRIFT = "drift"  # the same excess entitlement found again after it was remediated
    OWNER_CHANGED = "owner_changed"
    SPONSOR_DEPARTED = "sponsor_departed"  # an agent's sponsor is no active owner's contact
    SCOPE_CHANGED = "scope_changed"  # an agent's declared access grew
    SOD = "sod"  # a sod_violation found in a target
    LEAKED = "leaked"  # lockstep rotate --reason leaked


# Triggers about the whole account (a review with no entitlement): a keep of one of them is a
# review of all the account's access, which moves the periodic review out.
ACCOUNT_TRIGGERS = frozenset(
    {
        Trigger.PERIODIC,
        Trigger.DORMANT,
        Trigger.OWNER_CHANGED,
        Trigger.SPONSOR_DEPARTED,
        Trigger.LEAKED,
    }
)


class ReviewStatus(StrEnum):
    OPEN = "open"
    KEPT = "kept"
    REVOKING = "revoking"  # decided revoke; the removal is not proven yet
    REVOKED = "revoked"  # the removal was read back (and credential, sessions proven gone)
    OVERDUE = "overdue"  # unanswered past its due time


UNANSWERED = (ReviewStatus.OPEN, ReviewStatus.OVERDUE)
STATUSES = tuple(ReviewStatus)


class Decision(StrEnum):
    KEEP = "keep"
    REVOKE = "revoke"


class Enforcement(StrEnum):
    """What a review holds back from the desired state until lifted."""

    REVOKE = "revoke"  # the entitlement (for a review of a whole account: the account)
    SUSPEND = "suspend"  # the account, until a later keep (rules.unreviewed: suspend)


RULE = "rules.unreviewed"  # who decided when nobody did in time

SubjectKey = tuple[str, str, str]  # identity, target, account
AccessKey = tuple[str, str]  # target, account


@dataclass(frozen=True, slots=True)
class Revocation:
    """What a review's decision (or ``rules.unreviewed``) holds back from the desired state."""

    review: str
    target: str
    account: str
    entitlement: str | None  # None: the whole account is suspended
    proven: bool  # the removal was read back (and, for an account, credential and sessions)
    restorable: bool = False  # an overdue review's suspension, lifted by a later keep


@dataclass(frozen=True, slots=True)
class HeldBack:
    """Access the policy still declares that a review revoked: shown by every plan until the
    policy drops it."""

    target: str
    account: str
    entitlement: str | None  # None: the whole account
    identities: tuple[str, ...]
    review: str


@dataclass(frozen=True, slots=True)
class Subject:
    """What reviews remember of one identity's declared access to one account."""

    identity: str
    target: str
    account: str
    began: datetime  # first seen declared
    reviewed: datetime | None  # last kept by a review of the whole account
    owner: str
    sponsor_ok: bool | None = None  # agents: the sponsor was an active owner's contact
    scope: frozenset[str] | None = None  # agents: the entitlements declared when last seen
    dormant: str | None = None  # the last use a dormant review was opened for

    @property
    def key(self) -> SubjectKey:
        return (self.identity, self.target, self.account)


@dataclass(frozen=True, slots=True)
class Review:
    id: str
    identity: str
    target: str
    account: str
    entitlement: str | None  # None: the whole account
    trigger: Trigger
    occurrence: str  # what tells this occurrence of the trigger from another
    reviewers: tuple[str, ...]
    opened: datetime
    due: datetime
    status: ReviewStatus
    evidence: Mapping[str, Any] = field(default_factory=dict)
    decision: Decision | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    enforce: Enforcement | None = None
    verified_at: datetime | None = None
    lifted_at: datetime | None = None

    @property
    def access(self) -> AccessKey:
        return (self.target, self.account)

    @property
    def slot(self) -> tuple[str, str, str, str | None, Trigger]:
        """At most one unanswered review per access, entitlement and trigger."""
        return (self.identity, self.target, self.account, self.entitlement, self.trigger)

    @property
    def in_force(self) -> bool:
        return self.enforce is not None and self.lifted_at is None


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def review_id(
    identity: str,
    target: str,
    account: str,
    entitlement: str | None,
    trigger: Trigger,
    occurrence: str,
) -> str:
    """Derived from what the review is about, so that one occurrence of a trigger can only
    ever open one review, whoever opens it and however often."""
    key = "\x1f".join((identity, target, account, entitlement or "", trigger, occurrence))
    return "RV-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A finding this pass holds, with its status before the pass (None: never seen)."""

    finding: Finding
    before: str | None
    remediated_at: datetime | None = None
    verified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Leak:
    """``lockstep rotate IDENTITY --reason leaked``: every account of it is reviewed."""

    identity: str
    target: str | None  # None: every target
    at: datetime
    journal_seq: int | None = None


@dataclass(frozen=True)
class Signals:
    """What runtime showed this pass, for the triggers."""

    # (target, account) -> (last use seen, or first seen when never, and its source)
    last_used: Mapping[AccessKey, tuple[datetime, str]] = field(default_factory=dict)
    observable: frozenset[str] = frozenset()  # targets whose use was observed this pass
    findings: Sequence[Recurrence] = ()
    leaks: Sequence[Leak] = ()
    # Who asked for each access (the requesters of grants): they never review it.
    requesters: Mapping[AccessKey, frozenset[str]] = field(default_factory=dict)


def keeps_account(review: Review) -> bool:
    """A keep of this review is a review of all the account's access."""
    return review.trigger in ACCOUNT_TRIGGERS and review.entitlement is None
