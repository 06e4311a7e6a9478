"""Access reviews as records: what a pass opens, settles and lifts, and people's decisions,
each written with its journal entries in one transaction (and, for an opened review, the
notification people get), so that a review never changes without its evidence.

Journal kinds: ``review_opened`` (with the trigger's evidence and the reviewers),
``review_overdue`` (and what ``rules.unreviewed`` did), ``review_decided`` (the person, how
they signed in, the reason), ``review_verified`` (how the removal was proven) and
``review_lifted`` (nothing left to hold back).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from lockstep.engine.review_decisions import ReviewRefused, decide
from lockstep.engine.review_enforcement import revocations
from lockstep.engine.review_model import (
    RULE,
    Decision,
    Review,
    ReviewStatus,
    Revocation,
    Subject,
    SubjectKey,
    keeps_account,
)
from lockstep.governance.errors import Conflict, Forbidden, GovernanceError, UnknownName
from lockstep.governance.notify import enqueue
from lockstep.governance.review_records import (
    journal_fields,
    review_json,
    review_of,
    review_row,
    subject_row,
)
from lockstep.governance.subject_cache import Versions, move_versions, read_subjects, written
from lockstep.journal import LOCK, Journal
from lockstep.model import Policy
from lockstep.store import Store
from lockstep.store.tables import access_requests, notifications, review_subjects, reviews

# Reviews a pass looks at: unanswered, being revoked, or holding something back.
_HELD = (ReviewStatus.OPEN, ReviewStatus.OVERDUE, ReviewStatus.REVOKING)
_GRANTS = ("approved", "active", "ending", "failed")
_CHUNK = 500


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReviewState:
    subjects: dict[SubjectKey, Subject]
    held: list[Review]

    def unanswered(self) -> list[Review]:
        return [r for r in self.held if r.status in (ReviewStatus.OPEN, ReviewStatus.OVERDUE)]


@dataclass
class Changes:
    """What one pass does to the reviews: each changed review with the journal kind that
    tells why (and what the entry adds), the reviews opened, what is remembered of access."""

    changed: list[tuple[Review, str, dict[str, Any]]] = field(default_factory=list)
    opened: list[Review] = field(default_factory=list)
    subjects: Mapping[SubjectKey, Subject] = field(default_factory=dict)
    gone: Sequence[SubjectKey] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.opened or self.subjects or self.gone)


class ReviewStore:
    def __init__(
        self, store: Store, journal: Journal, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = store
        self._journal = journal
        self._clock = clock

    # ------------------------------------------------------------ reading

    def revocations(self, targets: Collection[str] | None = None) -> list[Revocation]:
        """What reviews hold back from the desired state (of ``targets``, or everywhere)."""
        query = select(reviews).where(reviews.c.enforce.is_not(None), reviews.c.lifted_at.is_(None))
        if targets is not None:
            query = query.where(reviews.c.target.in_(sorted(targets)))
        with self._store.reading() as conn:
            return revocations(review_of(row) for row in conn.execute(query))

    def state(self, targets: Collection[str], agents: Collection[str]) -> ReviewState:
        """What a pass over ``targets`` needs: what is remembered of their access (and of
        every access of ``agents``, whose growth elsewhere counts), and the reviews held."""
        wanted = sorted(targets)
        with self._store.reading() as conn:
            subjects = read_subjects(self._store, conn, wanted, sorted(agents))
            held = [
                review_of(row)
                for row in conn.execute(
                    select(reviews).where(
                        reviews.c.target.in_(wanted),
                        or_(
                            reviews.c.status.in_([str(s) for s in _HELD]),
                            and_(reviews.c.enforce.is_not(None), reviews.c.lifted_at.is_(None)),
                        ),
                    )
                )
            ]
        return ReviewState(subjects, held)

    def requesters(self, targets: Collection[str]) -> dict[tuple[str, str], frozenset[str]]:
        """Who asked for the access granted on ``targets``: they never review it."""
        query = select(
            access_requests.c.target, access_requests.c.account, access_requests.c.requester
        ).where(
            access_requests.c.target.in_(sorted(targets)),
            access_requests.c.status.in_(_GRANTS),
        )
        found: dict[tuple[str, str], set[str]] = {}
        with self._store.reading() as conn:
            for row in conn.execute(query):
                found.setdefault((row.target, row.account), set()).add(row.requester)
        return {k: frozenset(v) for k, v in found.items()}

    def get(self, review_id: str) -> Review:
        with self._store.reading() as conn:
            row = conn.execute(select(reviews).where(reviews.c.id == review_id)).one_or_none()
        if row is None:
            raise UnknownName(f"no review {review_id!r} (lockstep reviews lists them)")
        return review_of(row)

    def list(
        self,
        statuses: Collection[str] | None = None,
        identity: str | None = None,
        target: str | None = None,
    ) -> list[Review]:
        """Reviews, the most urgent first (by due time)."""
        query = select(reviews).order_by(reviews.c.due_at, reviews.c.id)
        if statuses:
            query = query.where(reviews.c.status.in_(sorted(statuses)))
        if identity is not None:
            query = query.where(reviews.c.identity == identity)
        if target is not None:
            query = query.where(reviews.c.target == target)
        with self._store.reading() as conn:
            return [review_of(row) for row in conn.execute(query)]

    def page(
        self,
        statuses: Collection[str],
        identities: Collection[str] | None,
        excluded: Collection[str],
        offset: int,
        limit: int,
    ) -> tuple[Sequence[Review], int]:
        """One page of reviews in ``statuses`` (all when empty), the most urgent first, and
        how many match in all: those about ``identities`` (None: any) but ``excluded``."""
        where = []
        if statuses:
            where.append(reviews.c.status.in_(sorted(statuses)))
        if identities is not None:
            where.append(reviews.c.identity.in_(sorted(identities)))
        if excluded:
            where.append(reviews.c.identity.not_in(sorted(excluded)))
        rows = (
            select(reviews)
            .where(*where)
            .order_by(reviews.c.due_at, reviews.c.id)
            .offset(offset)
            .limit(limit)
        )
        count = select(func.count()).select_from(reviews).where(*where)
        with self._store.reading() as conn:
            total = int(conn.execute(count).scalar_one())
            return [review_of(row) for row in conn.execute(rows)], total

    # ------------------------------------------------------------ writing

    def record(self, changes: Changes, notify: bool) -> None:
        """Write one pass's changes and their journal entries in one transaction; with
        ``notify`` (governance.notify is set) each opened review is queued for people."""
        if not changes:
            return
        now = self._clock()
        entries: list[tuple[str, Mapping[str, Any]]] = []
        with self._store.writing(LOCK, reviews, review_subjects, notifications) as conn:
            opened = _new(conn, changes.opened)
            if opened:
                conn.execute(insert(reviews), [review_row(r, now) for r in opened])
            for r in opened:
                entries.append(
                    (
                        "review_opened",
                        {
                            **journal_fields(r),
                            "reviewers": list(r.reviewers),
                            "due": review_json(r)["due"],
                            "evidence": dict(r.evidence),
                        },
                    )
                )
                if notify:
                    body = {"event": "review_opened", "review": review_json(r)}
                    enqueue(conn, "review_opened", r.id, body, now)
            for r, kind, extra in changes.changed:
                _update(conn, r, now)
                entries.append((kind, {**journal_fields(r), **extra}))
            _save_subjects(conn, changes.subjects, changes.gone)
            moved = move_versions(conn, [k[1] for k in (*changes.subjects, *changes.gone)])
            self._journal.append_in(conn, entries)
        written(self._store, moved, changes.subjects, changes.gone)

    def decide(
        self,
        policy: Policy,
        review_id: str,
        person: str | None,
        via: str,
        decision: Decision,
        reason: str,
    ) -> Review:
        """A person's decision, checked against the policy in force and written with its
        journal entry; GovernanceError (with its HTTP status) when refused."""
        if person is None:
            raise Forbidden("the operator's token acts for nobody: a person decides a review")
        with self._store.writing(LOCK, reviews, review_subjects) as conn:
            row = conn.execute(select(reviews).where(reviews.c.id == review_id)).one_or_none()
            if row is None:
                raise UnknownName(f"no review {review_id!r} (lockstep reviews lists them)")
            review = review_of(row)
            asked = _requesters(conn, review.target, review.account)
            now = self._clock()
            try:
                decided = decide(policy, review, person, decision, reason, now, asked)
            except ReviewRefused as exc:
                raise _refusal(review, exc) from None
            _update(conn, decided, now)
            moved: Versions = {}
            if decision is Decision.KEEP and keeps_account(review):
                moved = move_versions(conn, [review.target])
                conn.execute(
                    update(review_subjects)
                    .where(
                        review_subjects.c.identity == review.identity,
                        review_subjects.c.target == review.target,
                        review_subjects.c.account == review.account,
                    )
                    .values(reviewed_at=now)
                )
            entry = {
                **journal_fields(decided),
                "decision": str(decision),
                "by": decided.decided_by,
                "via": via,
                "reason": decided.reason,
                "was": str(review.status),
                "lifted": review.enforce is not None and decided.lifted_at is not None,
            }
            self._journal.append_in(conn, [("review_decided", entry)])
        key = (review.identity, review.target, review.account)
        written(self._store, moved, touch=lambda s: replace(s, reviewed=now), touched=key)
        return decided


def _refusal(review: Review, exc: ReviewRefused) -> GovernanceError:
    text = str(exc)
    if review.status not in (ReviewStatus.OPEN, ReviewStatus.OVERDUE):
        return Conflict(text)
    if "needs a reason" in text:
        return GovernanceError(text)
    return Forbidden(text)


def _requesters(conn: Connection, target: str, account: str) -> frozenset[str]:
    rows = conn.execute(
        select(access_requests.c.requester).where(
            access_requests.c.target == target,
            access_requests.c.account == account,
            access_requests.c.status.in_(_GRANTS),
        )
    )
    return frozenset(r.requester for r in rows)


def _new(conn: Connection, opened: Sequence[Review]) -> list[Review]:
    """The reviews not there yet: an occurrence another writer opened first stays theirs."""
    ids = [r.id for r in opened]
    known: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        query = select(reviews.c.id).where(reviews.c.id.in_(ids[start : start + _CHUNK]))
        known.update(conn.execute(query).scalars())
    return [r for r in opened if r.id not in known]


_MUTABLE = ("status", "decision", "decided_by", "decided_at", "reason", "enforce",
            "verified_at", "lifted_at", "updated_at")  # fmt: skip
_UPDATE = (
    update(reviews)
    .where(reviews.c.id == bindparam("b_id"))
    .values(**{name: bindparam(f"b_{name}") for name in _MUTABLE})
)


def _update(conn: Connection, review: Review, now: datetime) -> None:
    row = review_row(review, now)
    conn.execute(_UPDATE, {"b_id": review.id, **{f"b_{n}": row[n] for n in _MUTABLE}})


_DELETE_SUBJECT = delete(review_subjects).where(
    review_subjects.c.identity == bindparam("b_identity"),
    review_subjects.c.target == bindparam("b_target"),
    review_subjects.c.account == bindparam("b_account"),
)


def _save_subjects(
    conn: Connection, subjects: Mapping[SubjectKey, Subject], gone: Iterable[SubjectKey]
) -> None:
    keys = [*subjects, *gone]
    if keys:
        conn.execute(
            _DELETE_SUBJECT,
            [{"b_identity": i, "b_target": t, "b_account": a} for i, t, a in keys],
        )
    if subjects:
        conn.execute(insert(review_subjects), [subject_row(s) for s in subjects.values()])


def rule_entry(review: Review, rule: str) -> dict[str, Any]:
    """What the journal adds when a review goes overdue: the rule and what it did."""
    did = {"report": "reported", "suspend": "account suspended until a keep"}.get(
        rule, "access revoked"
    )
    return {"due": review_json(review)["due"], "rule": rule, "did": did, "by": RULE}
