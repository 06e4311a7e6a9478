"""Reviews tied to runtime, on real PostgreSQL and Redis: a review opens by itself when the
calendar or the target gives a reason, and a decision is enforced and proven there (a
revoke is `revoked` only once the removal is read back and, for an account, its old
credential refused and its sessions gone)."""

from __future__ import annotations

from lockstep.engine.review_model import Decision, ReviewStatus, Trigger
from support.review_project import T0, Project, days

pytest_plugins = ("support.review_estates",)

PERIODIC = "rules:\n  review_every: {default: 30d}\n"


def test_a_periodic_review_opens_once_the_access_is_due(project: Project) -> None:
    project.rules = PERIODIC
    project.write(project.service())
    project.apply(T0)
    project.apply(T0 + days(29))
    assert project.reviews() == []
    project.apply(T0 + days(30))
    review = project.review()
    assert (review.trigger, review.status, review.entitlement) == (Trigger.PERIODIC, "open", None)
    assert review.reviewers == ("alice@example.com", "amir@example.com")
    assert review.evidence["use"] == "observed"  # both targets show use
    [opened] = project.journal("review_opened")
    assert opened["review"] == review.id and opened["evidence"]["review_every"] == "30d"


def test_a_keep_is_recorded_and_pushes_the_next_review_out(project: Project) -> None:
    project.rules = PERIODIC
    project.write(project.service())
    project.apply(T0)
    project.apply(T0 + days(31))
    kept = project.decide(project.review(), Decision.KEEP, T0 + days(32))
    assert (kept.status, kept.decision, kept.decided_by) == ("kept", "keep", "alice@example.com")
    project.apply(T0 + days(61))
    assert len(project.reviews()) == 1  # 30 days after the keep, not after the access began
    project.apply(T0 + days(62))
    assert len(project.reviews(status=ReviewStatus.OPEN)) == 1
    [decided] = project.journal("review_decided")
    assert decided["by"] == "alice@example.com" and decided["reason"] == "checked with the team"


def test_revoking_an_account_suspends_it_and_proves_its_credential_refused(
    project: Project,
) -> None:
    project.rules = PERIODIC
    project.write(project.service())
    project.apply(T0)
    username, password = project.credential()
    assert project.estate.logs_in(username, password)
    project.apply(T0 + days(30))
    review = project.decide(project.review(), Decision.REVOKE, T0 + days(30))
    assert review.status is ReviewStatus.REVOKING
    plan = project.plan(T0 + days(30)).plan
    [suspend] = [a for a in plan.actions if a.review == review.id]
    assert suspend.op == "suspend_account" and review.id in suspend.reason
    assert [h.review for h in plan.held_back] == [review.id]  # declared, yet revoked
    project.apply(T0 + days(30))
    done = project.review()
    assert (done.status, done.verified_at) == (ReviewStatus.REVOKED, T0 + days(30))
    assert not project.estate.logs_in(username, password)
    assert project.estate.sessions(project.estate.account) == 0
    account = project.account()
    assert account is not None and not account.enabled
    [verified] = project.journal("review_verified")
    assert verified["review"] == review.id and verified["op"] == "suspend_account"
    assert any(c["actual"] == "previous credential refused" for c in verified["checks"])
    # the policy still declares it: the next pass keeps it removed and says why
    again = project.plan(T0 + days(31)).plan
    assert again.actions == () and [h.review for h in again.held_back] == [review.id]


def test_revoking_a_grown_entitlement_removes_it_while_the_policy_declares_it(
    project: Project,
) -> None:
    first, second = project.estate.declared
    project.write(project.agent((first,)))
    project.apply(T0)
    project.write(project.agent((first, second)))
    project.apply(T0 + days(1))
    review = project.review()
    assert (review.trigger, review.entitlement) == (Trigger.SCOPE_CHANGED, second)
    assert review.reviewers == ("alice@example.com", "amir@example.com")  # not the sponsor
    account = project.account()
    assert account is not None and second in account.entitlements
    project.decide(review, Decision.REVOKE, T0 + days(1), reason="the agent does not need it")
    project.apply(T0 + days(1))
    account = project.account()
    assert account is not None and second not in account.entitlements and account.enabled
    done = project.review()
    assert done.status is ReviewStatus.REVOKED
    plan = project.plan(T0 + days(2)).plan
    assert plan.actions == ()
    assert [(h.entitlement, h.review) for h in plan.held_back] == [(second, review.id)]
    # once the policy drops it, the revocation has nothing left to hold back
    project.write(project.agent((first,)))
    project.apply(T0 + days(3))
    assert project.review().lifted_at == T0 + days(3)
    assert project.plan(T0 + days(3)).plan.held_back == ()
