"""Plain data for the pure review tests: a small policy, snapshots, and one review pass
assembled from the pure functions the way the reconcile pass does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from lockstep.engine.desired import desired_state
from lockstep.engine.review_decisions import decide
from lockstep.engine.review_enforcement import revocations
from lockstep.engine.review_model import (
    Decision,
    Review,
    Signals,
    Subject,
    SubjectKey,
    keeps_account,
)
from lockstep.engine.reviews import open_reviews, past_due
from lockstep.model import (
    DEFAULT_ENVIRONMENT,
    Access,
    Account,
    Governance,
    Identity,
    IdentityKind,
    Owner,
    OwnerStatus,
    Policy,
    Rules,
    Snapshot,
    Target,
)
from support.settings import NO_SETTINGS

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = 86400


def target(name: str = "db", environment: str | None = "prod") -> Target:
    return Target(name, "postgres", environment, frozenset(), False, NO_SETTINGS)


def identity(
    name: str = "api",
    account: str = "api",
    ents: Iterable[str] = ("role:a",),
    *,
    owner: str = "team",
    kind: IdentityKind = IdentityKind.SERVICE,
    sponsor: str | None = None,
    target: str = "db",
) -> Identity:
    return Identity(
        name=name,
        owner=owner,
        purpose="test",
        environment="prod",
        access=(Access(target, account, frozenset(ents), None),),
        kind=kind,
        sponsor=sponsor,
    )


def policy(
    *identities: Identity,
    rules: Rules | None = None,
    owners: Mapping[str, tuple[tuple[str, ...], OwnerStatus]] | None = None,
    admins: tuple[str, ...] = ("root@example.com",),
) -> Policy:
    owners = owners or {
        "team": (("alice@example.com", "bob@example.com"), OwnerStatus.ACTIVE),
        "other": (("carol@example.com",), OwnerStatus.ACTIVE),
    }
    return Policy(
        targets={"db": target()},
        owners={n: Owner(n, contacts, status) for n, (contacts, status) in owners.items()},
        identities={i.name: i for i in identities},
        rules=rules or Rules(review_every_s={DEFAULT_ENVIRONMENT: 90 * DAY}),
        governance=Governance(admins=admins),
    )


def snapshot(accounts: Mapping[str, Iterable[str]], name: str = "db") -> Snapshot:
    return Snapshot(name, {a: Account(a, frozenset(e), True) for a, e in accounts.items()})


@dataclass
class Ledger:
    """The store, as plain dicts: what one review pass after another leaves behind."""

    subjects: dict[SubjectKey, Subject] = field(default_factory=dict)
    reviews: dict[str, Review] = field(default_factory=dict)
    opened: list[Review] = field(default_factory=list)

    def unanswered(self) -> list[Review]:
        return [r for r in self.reviews.values() if r.status in ("open", "overdue")]

    def run(
        self,
        pol: Policy,
        now: datetime,
        signals: Signals | None = None,
        read: Sequence[str] = ("db",),
    ) -> list[Review]:
        """One pass: overdue first, then the triggers; returns the reviews it opened."""
        for r in past_due(pol, self.reviews.values(), now):
            self.reviews[r.id] = r
        desired = desired_state(pol, now, revocations=revocations(self.reviews.values()))
        opened = open_reviews(
            pol, desired, read, self.subjects, self.unanswered(), signals or Signals(), now
        )
        for r in opened.reviews:
            assert r.id not in self.reviews, f"{r.id} opened twice"
            self.reviews[r.id] = r
        self.subjects.update(opened.subjects)
        for key in opened.gone:
            del self.subjects[key]
        self.opened.extend(opened.reviews)
        return opened.reviews

    def decide(
        self,
        pol: Policy,
        review: Review,
        now: datetime,
        decision: Decision = Decision.KEEP,
        by: str = "alice@example.com",
    ) -> Review:
        decided = decide(pol, self.reviews[review.id], by, decision, "checked", now)
        self.reviews[review.id] = decided
        key = (review.identity, review.target, review.account)
        if decision is Decision.KEEP and keeps_account(review) and key in self.subjects:
            self.subjects[key] = replace(self.subjects[key], reviewed=now)
        return decided
