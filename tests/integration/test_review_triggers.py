"""Each runtime trigger opens its review at once, with its evidence, on real PostgreSQL and
Redis: dormant (where use is observed), drift, owner_changed, sponsor_departed,
scope_changed, leaked; and what rules.unreviewed does to a review nobody answers."""

from __future__ import annotations

import pytest

from lockstep.engine.review_model import Decision, ReviewStatus, Trigger
from lockstep.engine.review_pass import leaked
from lockstep.model import FindingType
from support.review_project import T0, Project, days

pytest_plugins = ("support.review_estates",)


def test_dormant_access_is_reviewed_with_its_usage_record(review_project: Project) -> None:
    review_project.rules = "rules:\n  dormant_after: 10d\n"
    review_project.write(review_project.service())
    review_project.apply(T0)  # creates the account
    review_project.apply(T0 + days(1))  # first sees it: dormancy counts from here
    review_project.apply(T0 + days(10))
    assert review_project.reviews() == []
    review_project.apply(T0 + days(11))
    review = review_project.review()
    assert review.trigger is Trigger.DORMANT
    assert review.evidence["use"] == "observed"
    assert review.evidence["source"] == "first-seen"  # never seen in use since it began
    assert review.evidence["dormant_after"] == "10d"
    review_project.apply(T0 + days(12))
    assert len(review_project.reviews()) == 1  # one dormancy, one review


def test_an_excess_granted_again_after_its_removal_is_drift(review_project: Project) -> None:
    estate = review_project.estate
    review_project.write(review_project.service())
    review_project.apply(T0)
    estate.add_by_hand(estate.account, estate.extra)
    review_project.apply(T0 + days(1))  # revoked (rules.excess_entitlements: revoke) and verified
    review_project.apply(T0 + days(2))
    assert review_project.reviews() == []
    estate.add_by_hand(estate.account, estate.extra)
    review_project.apply(T0 + days(3))
    review = review_project.review()
    assert (review.trigger, review.entitlement) == (Trigger.DRIFT, estate.extra)
    assert review.evidence["before"] == "verified"
    assert review.evidence["finding"].startswith("F-")


def test_a_new_owner_reviews_what_they_inherit(review_project: Project) -> None:
    review_project.write(review_project.service())
    review_project.apply(T0)
    review_project.write(review_project.service(owner="support-team"))
    review_project.apply(T0 + days(1))
    review = review_project.review()
    assert review.trigger is Trigger.OWNER_CHANGED
    assert review.evidence == {"from": "payments-team", "to": "support-team"}
    assert review.reviewers == ("carol@example.com",)


def test_an_agent_whose_sponsor_departed_is_reviewed(review_project: Project) -> None:
    first, _ = review_project.estate.declared
    review_project.write(review_project.agent((first,)))
    review_project.apply(T0)
    review_project.write(review_project.agent((first,)), support_status="departed")
    review_project.apply(T0 + days(1))
    review = review_project.review()
    assert review.trigger is Trigger.SPONSOR_DEPARTED
    assert review.evidence["sponsor"] == "carol@example.com"
    assert review.reviewers == ("alice@example.com", "amir@example.com")


def test_a_leaked_credential_opens_a_review_of_the_account(review_project: Project) -> None:
    review_project.write(review_project.service())
    review_project.apply(T0)
    with review_project.ws(T0 + days(1)) as ws:
        entry = ws.journal.append("credential_leaked", {"identity": "payments-api"})
        [opened] = leaked(ws, "payments-api", None, T0 + days(1), entry.seq)
    review = review_project.review()
    assert (review.id, review.trigger) == (opened.id, Trigger.LEAKED)
    assert review.evidence["journal"] == entry.seq


def test_an_unanswered_review_is_overdue_and_reported(review_project: Project) -> None:
    review_project.rules = "rules:\n  review_every: {default: 30d}\n  review_grace: 2d\n"
    review_project.write(review_project.service())
    review_project.apply(T0)
    review_project.apply(T0 + days(30))
    review_project.apply(T0 + days(32))
    review = review_project.review()
    assert review.status is ReviewStatus.OVERDUE
    seen = review_project.plan(T0 + days(33))
    [late] = [f for f in seen.plan.findings if f.type is FindingType.REVIEW_OVERDUE]
    assert review.id in late.detail and late.account == review_project.estate.account
    assert seen.plan.actions == ()  # report: nothing more
    [entry] = review_project.journal("review_overdue")
    assert entry["rule"] == "report"


def test_unreviewed_suspend_suspends_the_account_until_a_keep(review_project: Project) -> None:
    review_project.rules = "rules:\n  review_every: {default: 30d}\n  review_grace: 2d\n" + (
        "  unreviewed: suspend\n"
    )
    review_project.write(review_project.service())
    review_project.apply(T0)
    username, password = review_project.credential()
    review_project.apply(T0 + days(30))
    review_project.apply(T0 + days(32))
    review = review_project.review()
    assert (review.status, review.enforce) == (ReviewStatus.OVERDUE, "suspend")
    assert review.verified_at == T0 + days(32)  # the suspension itself was proven
    account = review_project.account()
    assert account is not None and not account.enabled
    assert set(review_project.estate.declared) <= account.entitlements  # nothing deleted
    assert not review_project.estate.logs_in(username, password)
    review_project.decide(review, Decision.KEEP, T0 + days(33), by="amir@example.com")
    review_project.apply(T0 + days(33))
    account = review_project.account()
    assert account is not None and account.enabled
    assert review_project.estate.logs_in(
        *review_project.credential()
    )  # a new credential, delivered


@pytest.mark.parametrize("whole_account", [True, False])
def test_unreviewed_revoke_takes_the_access_away(
    review_project: Project, whole_account: bool
) -> None:
    review_project.rules = "rules:\n  review_grace: 2d\n  unreviewed: revoke\n"
    first, second = review_project.estate.declared
    if whole_account:
        review_project.rules += "  review_every: {default: 30d}\n"
        review_project.write(review_project.service())
    else:
        review_project.write(review_project.agent((first,)))
    review_project.apply(T0)
    if not whole_account:
        review_project.write(review_project.agent((first, second)))
    review_project.apply(T0 + days(30))
    review_project.apply(T0 + days(32))
    review = review_project.review()
    assert (review.status, review.decision, review.decided_by) == (
        ReviewStatus.REVOKED,
        "revoke",
        "rules.unreviewed",
    )
    account = review_project.account()
    assert account is not None
    if whole_account:
        assert not account.enabled
    else:
        assert second not in account.entitlements and account.enabled


def test_a_sod_conflict_found_in_the_target_is_reviewed(review_project: Project) -> None:
    estate = review_project.estate
    first, _ = estate.declared
    review_project.rules = (
        "rules:\n  excess_entitlements: report\n  sod:\n    - name: read-and-write\n"
        f'      entitlements: ["t/{first}", "t/{estate.extra}"]\n'
    )
    review_project.write(review_project.service(entitlements=(first,)))
    review_project.apply(T0)
    estate.add_by_hand(estate.account, estate.extra)
    review_project.apply(T0 + days(1))
    [review] = review_project.reviews(trigger=Trigger.SOD)
    assert review.identity == "payments-api" and review.account == estate.account
    assert review.entitlement in (first, estate.extra)
    assert review.evidence["finding"].startswith("F-")
    review_project.apply(T0 + days(2))
    assert len(review_project.reviews(trigger=Trigger.SOD)) == 1  # the same conflict, one review
