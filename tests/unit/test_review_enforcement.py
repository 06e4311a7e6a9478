"""What reviews do to the desired state and the plan: unanswered reviews under each
``rules.unreviewed``, a revoke taken away while the policy still declares it, and a removal
proven only by its verified action or a read without it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.engine.review_decisions import decide
from lockstep.engine.review_enforcement import lifted, proven, revocations
from lockstep.engine.review_model import (
    RULE,
    Decision,
    HeldBack,
    Leak,
    Review,
    ReviewStatus,
    Signals,
)
from lockstep.engine.reviews import overdue_findings, past_due
from lockstep.model import (
    Account,
    Action,
    Check,
    FindingType,
    Op,
    Result,
    RuleAction,
    Rules,
    Snapshot,
    Status,
)
from support.review_data import NOW, Ledger, identity, policy, snapshot

API = identity(ents=("role:a", "role:b"))


def leaked_review(rules: Rules | None = None) -> tuple[Review, Ledger]:
    ledger = Ledger()
    [review] = ledger.run(policy(API, rules=rules), NOW, Signals(leaks=[Leak("api", None, NOW)]))
    return review, ledger


def test_an_unanswered_review_is_overdue_and_a_finding() -> None:
    review, _ = leaked_review()
    assert past_due(policy(API), [review], NOW + timedelta(days=6)) == []
    [late] = past_due(policy(API), [review], NOW + timedelta(days=7))
    assert (late.status, late.enforce) == (ReviewStatus.OVERDUE, None)
    [found] = overdue_findings(policy(API), [late])
    assert (found.type, found.account, found.identity) == (FindingType.REVIEW_OVERDUE, "api", "api")
    assert review.id in found.detail and "rule: unreviewed: report" in found.detail
    assert found.id == overdue_findings(policy(API), [late])[0].id  # stable across passes


def test_unreviewed_suspend_suspends_the_account_until_a_keep() -> None:
    rules = Rules(unreviewed=RuleAction.SUSPEND)
    review, _ = leaked_review(rules)
    pol = policy(API, rules=rules)
    [late] = past_due(pol, [review], NOW + timedelta(days=8))
    assert (late.status, late.enforce) == (ReviewStatus.OVERDUE, "suspend")
    want = desired_state(pol, NOW, revocations=revocations([late])).accounts["db", "api"]
    assert not want.active and want.review == review.id
    assert "rules.unreviewed: suspend" in (want.suspend_reason or "")
    assert want.entitlements == {"role:a", "role:b"}  # nothing deleted
    kept = decide(pol, late, "alice@example.com", Decision.KEEP, "needed", NOW)
    assert kept.lifted_at == NOW and revocations([kept]) == []
    assert desired_state(pol, NOW, revocations=revocations([kept])).accounts["db", "api"].active


def test_unreviewed_revoke_revokes_on_the_rules_behalf() -> None:
    rules = Rules(unreviewed=RuleAction.REVOKE)
    review, _ = leaked_review(rules)
    [late] = past_due(policy(API, rules=rules), [review], NOW + timedelta(days=8))
    assert (late.status, late.decision, late.decided_by) == ("revoking", "revoke", RULE)
    assert overdue_findings(policy(API, rules=rules), [late])  # reported until proven


def test_a_revoked_entitlement_is_removed_while_the_policy_still_declares_it() -> None:
    review, _ = leaked_review()
    pol = policy(API)
    review = replace(review, entitlement="role:b")
    revoking = decide(pol, review, "alice@example.com", Decision.REVOKE, "not needed", NOW)
    desired = desired_state(pol, NOW, revocations=revocations([revoking]))
    held = {"db": snapshot({"api": ["role:a", "role:b"]})}
    plan = make_plan(pol, desired, held, NOW)
    assert plan.actions == (
        Action(
            Op.REVOKE,
            "db",
            "api",
            "role:b",
            "api",
            f"revoked by review {review.id}",
            review=review.id,
        ),
    )
    assert plan.held_back == (HeldBack("db", "api", "role:b", ("api",), review.id),)
    assert not [f for f in plan.findings if f.type is FindingType.EXCESS_ENTITLEMENT]
    # once gone, nothing to do: the plan still shows it held back, with the review's id
    gone = make_plan(pol, desired, {"db": snapshot({"api": ["role:a"]})}, NOW)
    assert gone.actions == () and gone.held_back == plan.held_back


def test_a_revoked_account_is_suspended_and_proven_even_if_it_looks_disabled() -> None:
    review, _ = leaked_review()
    pol = policy(API)
    revoking = decide(pol, review, "alice@example.com", Decision.REVOKE, "leaked", NOW)
    desired = desired_state(pol, NOW, revocations=revocations([revoking]))
    disabled = {"db": Snapshot("db", {"api": Account("api", frozenset({"role:a"}), False)})}
    [action] = make_plan(pol, desired, disabled, NOW).actions
    assert (action.op, action.review) == (Op.SUSPEND_ACCOUNT, review.id)
    done = replace(revoking, status=ReviewStatus.REVOKED, verified_at=NOW)
    settled = desired_state(pol, NOW, revocations=revocations([done]))
    assert make_plan(pol, settled, disabled, NOW).actions == ()


def test_a_removal_is_proven_by_its_verified_action_or_a_read_without_it() -> None:
    review, _ = leaked_review()
    pol = policy(API)
    account_wide = decide(pol, review, "alice@example.com", Decision.REVOKE, "x", NOW)
    suspend = Action(Op.SUSPEND_ACCOUNT, "db", "api", None, "api", "r", review=review.id)
    check = Check("db", "api", None, "refused", "refused", True)
    observed = {"db": snapshot({"api": ["role:a"]})}
    failed = Result(suspend, Status.FAILED, "no")
    assert proven([account_wide], observed, [failed], NOW) == []
    [(done, how)] = proven(
        [account_wide], observed, [Result(suspend, Status.VERIFIED, "ok", (check,))], NOW
    )
    assert (done.status, done.verified_at) == (ReviewStatus.REVOKED, NOW)
    assert how["op"] == "suspend_account" and how["checks"][0]["actual"] == "refused"
    one = decide(
        pol, replace(review, entitlement="role:b"), "alice@example.com", Decision.REVOKE, "x", NOW
    )
    [(done, how)] = proven([one], observed, [], NOW)
    assert done.status is ReviewStatus.REVOKED and how["op"] is None
    assert proven([one], {"db": snapshot({"api": ["role:b"]})}, [], NOW) == []


def test_a_revocation_lasts_until_the_policy_no_longer_declares_the_access() -> None:
    review, _ = leaked_review()
    pol = policy(API)
    one = decide(
        pol, replace(review, entitlement="role:b"), "alice@example.com", Decision.REVOKE, "x", NOW
    )
    done = replace(one, status=ReviewStatus.REVOKED, verified_at=NOW)
    assert lifted(pol, [done], ["db"], NOW) == []
    dropped = policy(identity(ents=("role:a",)))
    [ended] = lifted(dropped, [done], ["db"], NOW)
    assert ended.lifted_at == NOW
    assert lifted(dropped, [done], [], NOW) == []  # an unread target: nothing concluded
    # an undeclared entitlement (drift) is held back until its removal is proven
    assert lifted(dropped, [one], ["db"], NOW) == []
