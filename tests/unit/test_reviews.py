"""Access reviews, the pure core: each trigger opens its review once, with its evidence and
reviewers; who may decide; what a decision holds back from the plan."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from lockstep.engine.review_decisions import ReviewRefused, decide, may_review
from lockstep.engine.review_model import (
    Decision,
    Leak,
    Recurrence,
    ReviewStatus,
    Signals,
    Trigger,
)
from lockstep.model import (
    DEFAULT_ENVIRONMENT,
    Finding,
    FindingType,
    IdentityKind,
    OwnerStatus,
    Rules,
    Severity,
)
from support.review_data import DAY, NOW, Ledger, identity, policy

AGENT = identity("bot", "bot", ("role:a",), kind=IdentityKind.AGENT, sponsor="carol@example.com")


def test_a_periodic_review_opens_once_review_every_has_passed_since_the_access_began() -> None:
    pol, ledger = policy(identity()), Ledger()
    assert ledger.run(pol, NOW) == []
    assert ledger.run(pol, NOW + timedelta(days=89)) == []
    [review] = ledger.run(pol, NOW + timedelta(days=90))
    assert (review.trigger, review.entitlement, review.status) == (Trigger.PERIODIC, None, "open")
    assert review.reviewers == ("alice@example.com", "bob@example.com")
    assert review.due == NOW + timedelta(days=97)  # rules.review_grace: 7d
    assert review.evidence["use"] == "not observable on target db"
    assert ledger.run(pol, NOW + timedelta(days=91)) == []  # one open review per trigger


def test_a_keep_pushes_the_next_periodic_review_out() -> None:
    pol, ledger = policy(identity()), Ledger()
    ledger.run(pol, NOW)
    [review] = ledger.run(pol, NOW + timedelta(days=95))
    ledger.decide(pol, review, NOW + timedelta(days=96))
    assert ledger.run(pol, NOW + timedelta(days=185)) == []
    [again] = ledger.run(pol, NOW + timedelta(days=186))
    assert again.evidence["since"] == "2027-03-04T12:00:00Z"


def test_without_review_every_nothing_is_reviewed_periodically() -> None:
    pol, ledger = policy(identity(), rules=Rules()), Ledger()
    ledger.run(pol, NOW)
    assert ledger.run(pol, NOW + timedelta(days=1000)) == []


def test_the_environment_of_the_target_picks_the_period() -> None:
    rules = Rules(review_every_s={"prod": 10 * DAY, DEFAULT_ENVIRONMENT: 100 * DAY})
    pol, ledger = policy(identity(), rules=rules), Ledger()
    ledger.run(pol, NOW)
    [review] = ledger.run(pol, NOW + timedelta(days=10))
    assert review.evidence["review_every"] == "10d"


def test_dormant_access_is_reviewed_where_use_is_observed() -> None:
    pol = policy(identity(), rules=Rules(dormant_after_s=30 * DAY))
    ledger = Ledger()
    used = {("db", "api"): (NOW - timedelta(days=31), "pg_stat_activity")}
    [review] = ledger.run(pol, NOW, Signals(last_used=used, observable=frozenset({"db"})))
    assert review.trigger is Trigger.DORMANT
    assert review.evidence == {
        "use": "observed",
        "last_used": "2026-10-28T12:00:00Z",
        "source": "pg_stat_activity",
        "dormant_after": "30d",
    }
    ledger.decide(pol, review, NOW)
    # kept: the same dormancy is not reviewed again, a new one is
    assert ledger.run(pol, NOW + timedelta(days=5), Signals(used, frozenset({"db"}))) == []
    later = {("db", "api"): (NOW + timedelta(days=1), "pg_stat_activity")}
    assert ledger.run(pol, NOW + timedelta(days=30), Signals(later, frozenset({"db"}))) == []
    [again] = ledger.run(pol, NOW + timedelta(days=31), Signals(later, frozenset({"db"})))
    assert again.trigger is Trigger.DORMANT


def test_where_use_cannot_be_observed_nothing_is_called_unused() -> None:
    pol = policy(identity(), rules=Rules(dormant_after_s=30 * DAY))
    used = {("db", "api"): (NOW - timedelta(days=300), "first-seen")}
    assert Ledger().run(pol, NOW, Signals(last_used=used, observable=frozenset())) == []


def test_an_excess_found_again_after_remediation_is_drift() -> None:
    pol, ledger = policy(identity()), Ledger()
    excess = Finding(
        FindingType.EXCESS_ENTITLEMENT, Severity.HIGH, "db", "api", "role:x", "api", "again"
    )
    first = Signals(findings=[Recurrence(excess, None)])
    assert ledger.run(pol, NOW, first) == []  # the first sighting is a finding, not drift
    again = Signals(findings=[Recurrence(excess, "verified", NOW, NOW)])
    [review] = ledger.run(pol, NOW + timedelta(hours=1), again)
    assert (review.trigger, review.entitlement) == (Trigger.DRIFT, "role:x")
    assert review.evidence["finding"] == excess.id
    assert review.evidence["before"] == "verified"


def test_a_sod_conflict_found_in_a_target_is_reviewed() -> None:
    pol, ledger = policy(identity()), Ledger()
    conflict = Finding(FindingType.SOD_VIOLATION, Severity.HIGH, "db", "api", "role:a", "api")
    [review] = ledger.run(pol, NOW, Signals(findings=[Recurrence(conflict, None)]))
    assert (review.trigger, review.entitlement) == (Trigger.SOD, "role:a")
    held = Signals(findings=[Recurrence(conflict, "open")])
    assert ledger.run(pol, NOW + timedelta(hours=1), held) == []


def test_a_new_owner_reviews_the_access_they_inherit() -> None:
    ledger = Ledger()
    ledger.run(policy(identity()), NOW)
    moved = policy(identity(owner="other"))
    [review] = ledger.run(moved, NOW + timedelta(days=1))
    assert review.trigger is Trigger.OWNER_CHANGED
    assert review.evidence == {"from": "team", "to": "other"}
    assert review.reviewers == ("carol@example.com",)
    assert ledger.run(moved, NOW + timedelta(days=2)) == []


def test_a_departed_sponsor_opens_one_review_of_the_agent() -> None:
    ledger = Ledger()
    pol = policy(AGENT)
    assert ledger.run(pol, NOW) == []
    gone = policy(
        AGENT,
        owners={
            "team": (("alice@example.com",), OwnerStatus.ACTIVE),
            "other": (("carol@example.com",), OwnerStatus.DEPARTED),
        },
    )
    [review] = ledger.run(gone, NOW + timedelta(days=1))
    assert review.trigger is Trigger.SPONSOR_DEPARTED
    assert review.evidence["sponsor"] == "carol@example.com"
    ledger.decide(gone, review, NOW + timedelta(days=1))
    assert ledger.run(gone, NOW + timedelta(days=2)) == []


def test_every_growth_of_an_agents_declared_access_is_reviewed() -> None:
    ledger = Ledger()
    ledger.run(policy(AGENT), NOW)
    grown = replace(
        AGENT,
        access=(replace(AGENT.access[0], entitlements=frozenset({"role:a", "role:b", "role:c"})),),
    )
    opened = ledger.run(policy(grown), NOW + timedelta(hours=1))
    assert [(r.trigger, r.entitlement) for r in opened] == [
        (Trigger.SCOPE_CHANGED, "role:b"),
        (Trigger.SCOPE_CHANGED, "role:c"),
    ]
    assert opened[0].evidence == {"added": "role:b", "before": ["role:a"]}
    # the sponsor never reviews the agent: the owner's contacts do
    assert opened[0].reviewers == ("alice@example.com", "bob@example.com")
    assert ledger.run(policy(grown), NOW + timedelta(hours=2)) == []


def test_a_service_growing_its_access_opens_no_scope_review() -> None:
    ledger = Ledger()
    ledger.run(policy(identity()), NOW)
    assert ledger.run(policy(identity(ents=("role:a", "role:b"))), NOW + timedelta(hours=1)) == []


def test_a_leaked_credential_reviews_each_account_of_the_identity() -> None:
    ledger = Ledger()
    pol = policy(identity())
    [review] = ledger.run(pol, NOW, Signals(leaks=[Leak("api", None, NOW, 42)]))
    assert review.trigger is Trigger.LEAKED
    assert review.evidence == {"rotation": "leaked", "at": "2026-11-28T12:00:00Z", "journal": 42}


def test_reviews_of_an_unread_target_are_not_opened() -> None:
    pol, ledger = policy(identity()), Ledger()
    ledger.run(pol, NOW)
    assert ledger.run(pol, NOW + timedelta(days=100), read=()) == []


def test_reviewers_fall_back_to_the_admins_when_the_owner_has_nobody() -> None:
    pol = policy(
        identity(),
        owners={"team": (("alice@example.com",), OwnerStatus.DEPARTED)},
    )
    [review] = Ledger().run(pol, NOW, Signals(leaks=[Leak("api", None, NOW)]))
    assert review.reviewers == ("root@example.com",)


@pytest.mark.parametrize(
    ("person", "why"),
    [
        ("mallory@example.com", "may not review"),
        ("carol@example.com", "sponsors agent 'bot'"),
        ("bot", "an NHI never reviews"),
    ],
)
def test_only_the_owners_contacts_and_admins_decide(person: str, why: str) -> None:
    pol = policy(
        AGENT, owners={"team": (("alice@example.com", "carol@example.com"), OwnerStatus.ACTIVE)}
    )
    [review] = Ledger().run(pol, NOW, Signals(leaks=[Leak("bot", None, NOW)]))
    with pytest.raises(ReviewRefused, match=why):
        may_review(pol, person, review)
    may_review(pol, "Alice@Example.com", review)
    may_review(pol, "root@example.com", review)


def test_a_requester_never_reviews_what_they_asked_for() -> None:
    pol = policy(identity())
    [review] = Ledger().run(pol, NOW, Signals(leaks=[Leak("api", None, NOW)]))
    with pytest.raises(ReviewRefused, match="requested this access"):
        may_review(pol, "bob@example.com", review, {"bob@example.com"})


def test_a_decision_needs_a_reason_and_is_taken_once() -> None:
    pol = policy(identity())
    [review] = Ledger().run(pol, NOW, Signals(leaks=[Leak("api", None, NOW)]))
    with pytest.raises(ReviewRefused, match="needs a reason"):
        decide(pol, review, "alice@example.com", Decision.KEEP, "  ", NOW)
    kept = decide(pol, review, "alice@example.com", Decision.KEEP, "still needed", NOW)
    assert (kept.status, kept.decided_by, kept.reason) == (
        "kept",
        "alice@example.com",
        "still needed",
    )
    with pytest.raises(ReviewRefused, match="decided already"):
        decide(pol, kept, "bob@example.com", Decision.REVOKE, "no", NOW)
    revoked = decide(pol, review, "bob@example.com", Decision.REVOKE, "unused", NOW)
    assert (revoked.status, revoked.enforce) == (ReviewStatus.REVOKING, "revoke")


def test_an_access_dropped_and_declared_again_begins_again() -> None:
    ledger = Ledger()
    ledger.run(policy(identity()), NOW)
    ledger.run(policy(identity("other", "other")), NOW + timedelta(days=50))
    assert ("api", "db", "api") not in ledger.subjects
    ledger.run(policy(identity()), NOW + timedelta(days=60))
    assert ledger.subjects["api", "db", "api"].began == NOW + timedelta(days=60)
    assert ledger.run(policy(identity()), NOW + timedelta(days=91)) == []
