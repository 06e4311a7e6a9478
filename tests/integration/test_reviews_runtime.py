"""Reviews tied to runtime, on real PostgreSQL and Redis: a review opens by itself when the
calendar or the target gives a reason, and a decision is enforced and proven there (a
revoke is `revoked` only once the removal is read back and, for an account, its old
credential refused and its sessions gone)."""

from __future__ import annotations

from lockstep.engine.review_model import Decision, ReviewStatus, Trigger
from support.review_project import T0, Project, days

pytest_plugins = ("support.review_estates",)

PERIODIC = "rules:\n  review_every: {default: 30d}\n"


def test_a_periodic_review_opens_once_the_access_is_due(review_project: Project) -> None:
    review_project.rules = PERIODIC
    review_project.write(review_project.service())
    review_project.apply(T0)
    review_project.apply(T0 + days(29))
    assert review_project.reviews() == []
    review_project.apply(T0 + days(30))
    review = review_project.review()
    assert (review.trigger, review.status, review.entitlement) == (Trigger.PERIODIC, "open", None)
    assert review.reviewers == ("alice@example.com", "amir@example.com")
    assert review.evidence["use"] == "observed"  # both targets show use
    [opened] = review_project.journal("review_opened")
    assert opened["review"] == review.id and opened["evidence"]["review_every"] == "30d"


def test_a_keep_is_recorded_and_pushes_the_next_review_out(review_project: Project) -> None:
    review_project.rules = PERIODIC
    review_project.write(review_project.service())
    review_project.apply(T0)
    review_project.apply(T0 + days(31))
    kept = review_project.decide(review_project.review(), Decision.KEEP, T0 + days(32))
    assert (kept.status, kept.decision, kept.decided_by) == ("kept", "keep", "alice@example.com")
    review_project.apply(T0 + days(61))
    assert len(review_project.reviews()) == 1  # 30 days after the keep, not after the access began
    review_project.apply(T0 + days(62))
    assert len(review_project.reviews(status=ReviewStatus.OPEN)) == 1
    [decided] = review_project.journal("review_decided")
    assert decided["by"] == "alice@example.com" and decided["reason"] == "checked with the team"


def test_revoking_an_account_suspends_it_and_proves_its_credential_refused(
    review_project: Project,
) -> None:
    review_project.rules = PERIODIC
    review_project.write(review_project.service())
    review_project.apply(T0)
    username, password = review_project.credential()
    assert review_project.estate.logs_in(username, password)
    review_project.apply(T0 + days(30))
    review = review_project.decide(review_project.review(), Decision.REVOKE, T0 + days(30))
    assert review.status is ReviewStatus.REVOKING
    plan = review_project.plan(T0 + days(30)).plan
    [suspend] = [a for a in plan.actions if a.review == review.id]
    assert suspend.op == "suspend_account" and review.id in suspend.reason
    assert [h.review for h in plan.held_back] == [review.id]  # declared, yet revoked
    review_project.apply(T0 + days(30))
    done = review_project.review()
    assert (done.status, done.verified_at) == (ReviewStatus.REVOKED, T0 + days(30))
    assert not review_project.estate.logs_in(username, password)
    assert review_project.estate.sessions(review_project.estate.account) == 0
    account = review_project.account()
    assert account is not None and not account.enabled
    [verified] = review_project.journal("review_verified")
    assert verified["review"] == review.id and verified["op"] == "suspend_account"
    assert any(c["actual"] == "previous credential refused" for c in verified["checks"])
    # the policy still declares it: the next pass keeps it removed and says why
    again = review_project.plan(T0 + days(31)).plan
    assert again.actions == () and [h.review for h in again.held_back] == [review.id]


def test_revoking_a_grown_entitlement_removes_it_while_the_policy_declares_it(
    review_project: Project,
) -> None:
    first, second = review_project.estate.declared
    review_project.write(review_project.agent((first,)))
    review_project.apply(T0)
    review_project.write(review_project.agent((first, second)))
    review_project.apply(T0 + days(1))
    review = review_project.review()
    assert (review.trigger, review.entitlement) == (Trigger.SCOPE_CHANGED, second)
    assert review.reviewers == ("alice@example.com", "amir@example.com")  # not the sponsor
    account = review_project.account()
    assert account is not None and second in account.entitlements
    review_project.decide(
        review, Decision.REVOKE, T0 + days(1), reason="the agent does not need it"
    )
    review_project.apply(T0 + days(1))
    account = review_project.account()
    assert account is not None and second not in account.entitlements and account.enabled
    done = review_project.review()
    assert done.status is ReviewStatus.REVOKED
    plan = review_project.plan(T0 + days(2)).plan
    assert plan.actions == ()
    assert [(h.entitlement, h.review) for h in plan.held_back] == [(second, review.id)]
    # once the policy drops it, the revocation has nothing left to hold back
    review_project.write(review_project.agent((first,)))
    review_project.apply(T0 + days(3))
    assert review_project.review().lifted_at == T0 + days(3)
    assert review_project.plan(T0 + days(3)).plan.held_back == ()
