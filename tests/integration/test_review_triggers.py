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


def test_dormant_access_is_reviewed_with_its_usage_record(project: Project) -> None:
    project.rules = "rules:\n  dormant_after: 10d\n"
    project.write(project.service())
    project.apply(T0)  # creates the account
    project.apply(T0 + days(1))  # first sees it: dormancy counts from here
    project.apply(T0 + days(10))
    assert project.reviews() == []
    project.apply(T0 + days(11))
    review = project.review()
    assert review.trigger is Trigger.DORMANT
    assert review.evidence["use"] == "observed"
    assert review.evidence["source"] == "first-seen"  # never seen in use since it began
    assert review.evidence["dormant_after"] == "10d"
    project.apply(T0 + days(12))
    assert len(project.reviews()) == 1  # one dormancy, one review


def test_an_excess_granted_again_after_its_removal_is_drift(project: Project) -> None:
    estate = project.estate
    project.write(project.service())
    project.apply(T0)
    estate.add_by_hand(estate.account, estate.extra)
    project.apply(T0 + days(1))  # revoked (rules.excess_entitlements: revoke) and verified
    project.apply(T0 + days(2))
    assert project.reviews() == []
    estate.add_by_hand(estate.account, estate.extra)
    project.apply(T0 + days(3))
    review = project.review()
    assert (review.trigger, review.entitlement) == (Trigger.DRIFT, estate.extra)
    assert review.evidence["before"] == "verified"
    assert review.evidence["finding"].startswith("F-")


def test_a_new_owner_reviews_what_they_inherit(project: Project) -> None:
    project.write(project.service())
    project.apply(T0)
    project.write(project.service(owner="support-team"))
    project.apply(T0 + days(1))
    review = project.review()
    assert review.trigger is Trigger.OWNER_CHANGED
    assert review.evidence == {"from": "payments-team", "to": "support-team"}
    assert review.reviewers == ("carol@example.com",)


def test_an_agent_whose_sponsor_departed_is_reviewed(project: Project) -> None:
    first, _ = project.estate.declared
    project.write(project.agent((first,)))
    project.apply(T0)
    project.write(project.agent((first,)), support_status="departed")
    project.apply(T0 + days(1))
    review = project.review()
    assert review.trigger is Trigger.SPONSOR_DEPARTED
    assert review.evidence["sponsor"] == "carol@example.com"
    assert review.reviewers == ("alice@example.com", "amir@example.com")


def test_a_leaked_credential_opens_a_review_of_the_account(project: Project) -> None:
    project.write(project.service())
    project.apply(T0)
    with project.ws(T0 + days(1)) as ws:
        entry = ws.journal.append("credential_leaked", {"identity": "payments-api"})
        [opened] = leaked(ws, "payments-api", None, T0 + days(1), entry.seq)
    review = project.review()
    assert (review.id, review.trigger) == (opened.id, Trigger.LEAKED)
    assert review.evidence["journal"] == entry.seq


def test_an_unanswered_review_is_overdue_and_reported(project: Project) -> None:
    project.rules = "rules:\n  review_every: {default: 30d}\n  review_grace: 2d\n"
    project.write(project.service())
    project.apply(T0)
    project.apply(T0 + days(30))
    project.apply(T0 + days(32))
    review = project.review()
    assert review.status is ReviewStatus.OVERDUE
    seen = project.plan(T0 + days(33))
    [late] = [f for f in seen.plan.findings if f.type is FindingType.REVIEW_OVERDUE]
    assert review.id in late.detail and late.account == project.estate.account
    assert seen.plan.actions == ()  # report: nothing more
    [entry] = project.journal("review_overdue")
    assert entry["rule"] == "report"


def test_unreviewed_suspend_suspends_the_account_until_a_keep(project: Project) -> None:
    project.rules = "rules:\n  review_every: {default: 30d}\n  review_grace: 2d\n" + (
        "  unreviewed: suspend\n"
    )
    project.write(project.service())
    project.apply(T0)
    username, password = project.credential()
    project.apply(T0 + days(30))
    project.apply(T0 + days(32))
    review = project.review()
    assert (review.status, review.enforce) == (ReviewStatus.OVERDUE, "suspend")
    assert review.verified_at == T0 + days(32)  # the suspension itself was proven
    account = project.account()
    assert account is not None and not account.enabled
    assert set(project.estate.declared) <= account.entitlements  # nothing deleted
    assert not project.estate.logs_in(username, password)
    project.decide(review, Decision.KEEP, T0 + days(33), by="amir@example.com")
    project.apply(T0 + days(33))
    account = project.account()
    assert account is not None and account.enabled
    assert project.estate.logs_in(*project.credential())  # a new credential, delivered


@pytest.mark.parametrize("whole_account", [True, False])
def test_unreviewed_revoke_takes_the_access_away(project: Project, whole_account: bool) -> None:
    project.rules = "rules:\n  review_grace: 2d\n  unreviewed: revoke\n"
    first, second = project.estate.declared
    if whole_account:
        project.rules += "  review_every: {default: 30d}\n"
        project.write(project.service())
    else:
        project.write(project.agent((first,)))
    project.apply(T0)
    if not whole_account:
        project.write(project.agent((first, second)))
    project.apply(T0 + days(30))
    project.apply(T0 + days(32))
    review = project.review()
    assert (review.status, review.decision, review.decided_by) == (
        ReviewStatus.REVOKED,
        "revoke",
        "rules.unreviewed",
    )
    account = project.account()
    assert account is not None
    if whole_account:
        assert not account.enabled
    else:
        assert second not in account.entitlements and account.enabled


def test_a_sod_conflict_found_in_the_target_is_reviewed(project: Project) -> None:
    estate = project.estate
    first, _ = estate.declared
    project.rules = (
        "rules:\n  excess_entitlements: report\n  sod:\n    - name: read-and-write\n"
        f'      entitlements: ["t/{first}", "t/{estate.extra}"]\n'
    )
    project.write(project.service(entitlements=(first,)))
    project.apply(T0)
    estate.add_by_hand(estate.account, estate.extra)
    project.apply(T0 + days(1))
    [review] = project.reviews(trigger=Trigger.SOD)
    assert review.identity == "payments-api" and review.account == estate.account
    assert review.entitlement in (first, estate.extra)
    assert review.evidence["finding"].startswith("F-")
    project.apply(T0 + days(2))
    assert len(project.reviews(trigger=Trigger.SOD)) == 1  # the same conflict, one review
