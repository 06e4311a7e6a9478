"""What the evidence says of access reviews: when each account is next reviewed, the reviews
of an account (for ``explain``), and the share of access reviewed on time (for reports).

A review counts as on time when a person decided it by its due time; one that went past due
(whatever ``rules.unreviewed`` then did) counts as late. Reviews still open and not yet due
are not counted either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from lockstep.engine.review_model import RULE, UNANSWERED, Review, Subject, SubjectKey
from lockstep.engine.reviews import review_period
from lockstep.governance.review_records import review_json, review_of, subject_of
from lockstep.model import Policy
from lockstep.store.tables import review_subjects, reviews

Key = tuple[str, str]


@dataclass(frozen=True)
class ReviewFacts:
    reviews: list[Review]
    subjects: dict[SubjectKey, Subject]

    def of(self, target: str, account: str) -> list[dict[str, Any]]:
        """The reviews of one account, as ``lockstep reviews --json`` shows them."""
        return [review_json(r) for r in self.reviews if r.access == (target, account)]


def read_review_facts(conn: Connection) -> ReviewFacts:
    found = [review_of(row) for row in conn.execute(select(reviews).order_by(reviews.c.due_at))]
    subjects = {
        (s.identity, s.target, s.account): s
        for s in map(subject_of, conn.execute(select(review_subjects)))
    }
    return ReviewFacts(found, subjects)


def next_reviews(policy: Policy, facts: ReviewFacts) -> dict[Key, datetime]:
    """When each account's access is next to be decided: an unanswered review's due time,
    else when the periodic rule opens the next one."""
    due: dict[Key, datetime] = {}

    def note(key: Key, at: datetime) -> None:
        if key not in due or at < due[key]:
            due[key] = at

    for r in facts.reviews:
        if r.status in UNANSWERED:
            note(r.access, r.due)
    for s in facts.subjects.values():
        identity = policy.identities.get(s.identity)
        period = review_period(policy, identity, s.target) if identity is not None else None
        if period is not None:
            anchor = max(s.began, s.reviewed or s.began)
            note((s.target, s.account), anchor + timedelta(seconds=period))
    return due


@dataclass(frozen=True)
class Timeliness:
    on_time: int
    late: int

    @property
    def share(self) -> float | None:
        counted = self.on_time + self.late
        return round(self.on_time / counted, 4) if counted else None


def timeliness(found: Iterable[Review], now: datetime) -> Timeliness:
    on_time = late = 0
    for r in found:
        by_person = r.decided_at is not None and r.decided_by not in (None, RULE)
        if by_person and r.decided_at is not None and r.decided_at <= r.due:
            on_time += 1
        elif by_person or r.due <= now:
            late += 1
    return Timeliness(on_time, late)


def figures(found: Iterable[Review], now: datetime) -> Mapping[str, Any]:
    t = timeliness(found, now)
    return {"share": t.share, "on_time": t.on_time, "late": t.late}
