"""Grants in the desired state and what a pass proves about them, as pure functions over
plain data: counted grants, ends that keep what others hold, active only once read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lockstep.engine.desired import desired_state
from lockstep.engine.eligibility import Ineligible, lease_terms
from lockstep.engine.grants import GrantState, grant_findings, transitions
from lockstep.engine.plan import make_plan
from lockstep.model import (
    Access,
    Account,
    Action,
    FindingType,
    Grant,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Policy,
    RequestStatus,
    Result,
    Snapshot,
    Status,
    Target,
)
from lockstep.policy.durations import parse_duration
from support.settings import NO_SETTINGS

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
READ = "SELECT on table public.orders"
WRITE = "INSERT on table public.payments"


def policy(*entitlements: str) -> Policy:
    return Policy(
        targets={"db": Target("db", "postgres", None, frozenset(), False, NO_SETTINGS)},
        owners={"team": Owner("team", ("alice@example.com",), OwnerStatus.ACTIVE)},
        identities={
            "app": Identity(
                "app", "team", "serve", None, (Access("db", "app", frozenset(entitlements), None),)
            )
        },
    )


def grant(request: str, *ents: str, ends_in: str = "1h") -> Grant:
    return Grant(
        request,
        "app",
        "db",
        "app",
        frozenset(ents),
        NOW + timedelta(seconds=parse_duration(ends_in)),
    )


def snapshot(*held: str, enabled: bool = True) -> dict[str, Snapshot]:
    return {"db": Snapshot("db", {"app": Account("app", frozenset(held), enabled)})}


def test_a_live_grant_adds_its_entitlements_and_the_plan_names_its_request() -> None:
    p = policy(READ)
    desired = desired_state(p, NOW, [grant("R-1", WRITE)])
    want = desired.accounts["db", "app"]
    assert want.entitlements == {READ, WRITE} and want.granted == {WRITE: ("R-1",)}
    plan = make_plan(p, desired, snapshot(READ), NOW)
    assert plan.actions == (
        Action(Op.GRANT, "db", "app", WRITE, "app", "granted by request R-1", "R-1"),
    )
    assert not [f for f in plan.findings if f.type is FindingType.MISSING_ENTITLEMENT]


def test_an_ended_grant_is_revoked_whatever_the_rules_say() -> None:
    p = policy(READ)
    desired = desired_state(p, NOW, [grant("R-1", WRITE, ends_in="1s")])
    later = desired_state(p, NOW + timedelta(seconds=5), [grant("R-1", WRITE, ends_in="1s")])
    assert WRITE in desired.accounts["db", "app"].entitlements
    want = later.accounts["db", "app"]
    assert WRITE not in want.entitlements and want.grant_ended == {WRITE: ("R-1",)}
    plan = make_plan(p, later, snapshot(READ, WRITE), NOW + timedelta(seconds=5))
    assert [(a.op, a.entitlement, a.request) for a in plan.actions] == [(Op.REVOKE, WRITE, "R-1")]
    assert not [f for f in plan.findings if f.type is FindingType.EXPIRED_ACCESS]


def test_the_end_of_one_grant_never_removes_what_another_or_the_policy_holds() -> None:
    p = policy(READ)
    grants = [grant("R-1", WRITE, READ, ends_in="1s"), grant("R-2", WRITE, ends_in="2h")]
    later = NOW + timedelta(seconds=5)
    want = desired_state(p, later, grants).accounts["db", "app"]
    assert want.entitlements == {READ, WRITE} and want.expired == frozenset()
    assert make_plan(p, desired_state(p, later, grants), snapshot(READ, WRITE), later).actions == ()


def test_a_grant_on_an_access_the_policy_does_not_declare_counts_for_nothing() -> None:
    stray = Grant("R-9", "app", "db", "someone_else", frozenset({WRITE}), NOW + timedelta(hours=1))
    assert ("db", "someone_else") not in desired_state(policy(READ), NOW, [stray]).accounts


def states(*grants: tuple[Grant, RequestStatus]) -> list[GrantState]:
    return [GrantState(g, s) for g, s in grants]


def result(op: Op, ent: str, status: Status, seq: int) -> Result:
    return Result(Action(op, "db", "app", ent, "app", "", "R-1"), status, "why", (), seq)


def test_a_grant_is_active_only_once_read_back_held() -> None:
    g = grant("R-1", WRITE)
    desired = desired_state(policy(READ), NOW, [g])
    pending = states((g, RequestStatus.APPROVED))
    assert transitions(pending, desired, snapshot(READ), [], NOW) == []
    [move] = transitions(
        pending, desired, snapshot(READ), [result(Op.GRANT, WRITE, Status.VERIFIED, 7)], NOW
    )
    assert move.status is RequestStatus.ACTIVE and move.results == (7,)
    [failed] = transitions(
        pending, desired, snapshot(READ), [result(Op.GRANT, WRITE, Status.UNVERIFIED, 8)], NOW
    )
    assert failed.status is RequestStatus.FAILED and "why" in failed.detail


def test_a_grant_ends_only_once_its_removal_is_read_back() -> None:
    g = grant("R-1", WRITE, ends_in="1s")
    later = NOW + timedelta(seconds=2)
    desired = desired_state(policy(READ), later, [g])
    active = states((g, RequestStatus.ACTIVE))
    moves = transitions(active, desired, snapshot(READ, WRITE), [], later)
    assert [m.status for m in moves] == [RequestStatus.ENDING]
    revoked = [result(Op.REVOKE, WRITE, Status.VERIFIED, 9)]
    moves = transitions(active, desired, snapshot(READ, WRITE), revoked, later)
    assert [m.status for m in moves] == [RequestStatus.ENDING, RequestStatus.ENDED]
    assert moves[1].results == (9,)
    ending = states((g, RequestStatus.ENDING))
    failed = [result(Op.REVOKE, WRITE, Status.FAILED, 10)]
    assert transitions(ending, desired, snapshot(READ, WRITE), failed, later) == []


def test_an_end_kept_by_the_policy_or_another_grant_ends_at_once_and_says_so() -> None:
    g1, g2 = grant("R-1", WRITE, READ, ends_in="1s"), grant("R-2", WRITE, ends_in="2h")
    later = NOW + timedelta(seconds=2)
    desired = desired_state(policy(READ), later, [g1, g2])
    moves = transitions(
        states((g1, RequestStatus.ENDING), (g2, RequestStatus.ACTIVE)),
        desired,
        snapshot(READ, WRITE),
        [],
        later,
    )
    assert [(m.request, m.status, m.kept) for m in moves] == [
        ("R-1", RequestStatus.ENDED, (WRITE, READ))
    ]


def test_a_grant_whose_account_is_suspended_fails_with_the_reason() -> None:
    p = policy(READ)
    p.owners["team"] = Owner("team", (), OwnerStatus.DEPARTED)  # type: ignore[index]
    g = grant("R-1", WRITE)
    [move] = transitions(
        states((g, RequestStatus.APPROVED)), desired_state(p, NOW, [g]), snapshot(READ), [], NOW
    )
    assert move.status is RequestStatus.FAILED and "owner departed" in move.detail
    failed = [GrantState(g, RequestStatus.FAILED, move.detail)]
    assert transitions(failed, desired_state(p, NOW, [g]), snapshot(READ), [], NOW) == []
    [finding] = grant_findings(failed, ["db"])
    assert finding.type is FindingType.GRANT_FAILED and "R-1" in finding.detail
    assert grant_findings(failed, []) == []


def test_a_lease_holds_what_an_active_grant_gives_and_never_outlives_it() -> None:
    p = policy(READ)
    g = grant("R-1", WRITE, ends_in="10m")
    terms = lease_terms(p, "app", "db", None, NOW, [g])
    assert terms.entitlements == {READ, WRITE}
    assert terms.ttl_s == terms.max_ttl_s == 600
    with pytest.raises(Ineligible, match="would outlive the grant of request R-1"):
        lease_terms(p, "app", "db", 601, NOW, [g])
    assert lease_terms(p, "app", "db", None, NOW, []).entitlements == {READ}
    redundant = grant("R-2", READ, ends_in="1m")  # gives nothing the policy does not
    assert lease_terms(p, "app", "db", None, NOW, [redundant]).max_ttl_s > 60


def test_a_grant_with_a_live_lease_ends_only_once_the_lease_has() -> None:
    g = grant("R-1", WRITE, ends_in="1s")
    later = NOW + timedelta(seconds=2)
    desired = desired_state(policy(READ), later, [g])
    ending = states((g, RequestStatus.ENDING))
    assert transitions(ending, desired, snapshot(READ), [], later, {"R-1"}) == []
    [ended] = transitions(ending, desired, snapshot(READ), [], later, set())
    assert ended.status is RequestStatus.ENDED


def test_a_grant_naming_an_object_the_target_lacks_fails_with_what_is_missing() -> None:
    g = grant("R-1", "role:auditors")
    desired = desired_state(policy(READ), NOW, [g])
    read = {
        "db": Snapshot(
            "db",
            {"app": Account("app", frozenset({READ}), True)},
            unknown={"role:auditors": "no role auditors"},
        )
    }
    [move] = transitions(states((g, RequestStatus.APPROVED)), desired, read, [], NOW)
    assert move.status is RequestStatus.FAILED
    assert move.detail == "role:auditors: no role auditors"
