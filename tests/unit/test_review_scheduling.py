"""Review scheduling over random timelines (hypothesis): passes at random times, decisions,
owner changes and use in between. A review is never due twice for one trigger, an access
has one unanswered review per trigger at most, and an access kept recently is not reopened
by the periodic rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.engine.review_model import Decision, Review, Signals, Trigger
from lockstep.model import DEFAULT_ENVIRONMENT, Rules
from support.review_data import DAY, NOW, Ledger, identity, policy

PERIOD_DAYS = 30
RULES = Rules(review_every_s={DEFAULT_ENVIRONMENT: PERIOD_DAYS * DAY}, dormant_after_s=10 * DAY)


@dataclass(frozen=True)
class Step:
    days: float  # after the previous pass
    decide: bool  # decide every unanswered review at this pass
    revoke: bool  # ... by revoking rather than keeping
    owner: str
    used: bool  # use seen just before this pass


steps = st.lists(
    st.builds(
        Step,
        days=st.floats(min_value=0.01, max_value=40),
        decide=st.booleans(),
        revoke=st.booleans(),
        owner=st.sampled_from(["team", "team", "team", "other"]),
        used=st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


def replay(timeline: list[Step]) -> tuple[Ledger, list[tuple[datetime, Review]]]:
    ledger = Ledger()
    now = NOW
    last_use = NOW
    ledger.run(policy(identity(), rules=RULES), now)
    kept: list[tuple[datetime, Review]] = []
    for step in timeline:
        now += timedelta(days=step.days)
        if step.used:
            last_use = now - timedelta(minutes=1)
        pol = policy(identity(owner=step.owner), rules=RULES)
        signals = Signals(
            last_used={("db", "api"): (last_use, "observed")}, observable=frozenset({"db"})
        )
        ledger.run(pol, now, signals)
        if step.decide:
            for review in ledger.unanswered():
                decision = Decision.REVOKE if step.revoke else Decision.KEEP
                ledger.decide(pol, review, now, decision, by="root@example.com")
                if decision is Decision.KEEP:
                    kept.append((now, review))
    return ledger, kept


@settings(max_examples=200, deadline=None)
@given(steps)
def test_a_review_is_never_due_twice_for_one_trigger(timeline: list[Step]) -> None:
    ledger, _ = replay(timeline)  # Ledger.run fails on an id opened twice
    occurrences = [(r.slot, r.occurrence) for r in ledger.opened]
    assert len(occurrences) == len(set(occurrences))


@settings(max_examples=200, deadline=None)
@given(steps)
def test_one_unanswered_review_per_access_and_trigger(timeline: list[Step]) -> None:
    ledger, _ = replay(timeline)
    # replayed pass by pass: at every pass, the reviews unanswered have distinct slots
    open_at: dict[tuple[object, ...], list[tuple[datetime, datetime | None]]] = {}
    for r in ledger.reviews.values():
        open_at.setdefault(r.slot, []).append((r.opened, r.decided_at))
    for spans in open_at.values():
        spans.sort(key=lambda s: s[0])
        for (_, closed), (opened, _) in pairwise(spans):
            assert closed is not None and closed <= opened


@settings(max_examples=200, deadline=None)
@given(steps)
def test_an_access_kept_recently_is_not_reopened_by_the_periodic_rule(
    timeline: list[Step],
) -> None:
    ledger, kept = replay(timeline)
    periodic = [r for r in ledger.opened if r.trigger is Trigger.PERIODIC]
    for at, review in kept:
        if review.entitlement is not None:
            continue
        for r in periodic:
            assert not (at < r.opened < at + timedelta(days=PERIOD_DAYS)), (at, r.opened)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_periodic_reviews_open_on_schedule_and_never_early(timeline: list[Step]) -> None:
    ledger, _ = replay(timeline)
    for r in ledger.opened:
        if r.trigger is Trigger.PERIODIC:
            since = datetime.fromisoformat(r.evidence["since"])
            assert r.opened >= since + timedelta(days=PERIOD_DAYS)
            assert r.occurrence == (since + timedelta(days=PERIOD_DAYS)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
