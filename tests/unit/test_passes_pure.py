"""The pure pieces of a pass: which targets a service pass covers, the rotate plan, and
whether an identity may have a lease now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lockstep.engine.eligibility import DEFAULT_MAX_TTL_S, DEFAULT_TTL_S, Ineligible, lease_terms
from lockstep.engine.rotation import NothingToRotate, rotation_plan
from lockstep.engine.scope import narrowed, pass_scope, without_rotations
from lockstep.model import (
    Access,
    Account,
    Action,
    CredentialPolicy,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Plan,
    Policy,
    RuleAction,
    Rules,
    Snapshot,
    Target,
    Unreachable,
)
from support.settings import NO_SETTINGS

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _identity(name: str, *targets: str, owner: str = "team", **credentials: Any) -> Identity:
    access = tuple(Access(t, name.replace("-", "_"), frozenset({"role:r"}), None) for t in targets)
    return Identity(name, owner, "test", None, access, CredentialPolicy(**credentials))


def _policy(*identities: Identity, owners: dict[str, OwnerStatus] | None = None) -> Policy:
    names = sorted({a.target for i in identities for a in i.access} | {"t1", "t2", "t3"})
    statuses = owners or {"team": OwnerStatus.ACTIVE}
    return Policy(
        targets={n: Target(n, "postgres", None, frozenset(), False, NO_SETTINGS) for n in names},
        owners={n: Owner(n, (), s) for n, s in statuses.items()},
        identities={i.name: i for i in identities},
    )


# ---------------------------------------------------------------- scope


def test_a_pass_covers_its_target_alone_when_nothing_waits() -> None:
    policy = _policy(_identity("a", "t1", "t2"))
    assert pass_scope(policy, "t1", []) == {"t1"}


def test_a_pending_rotation_joins_every_target_of_its_identity_transitively() -> None:
    policy = _policy(_identity("a", "t1", "t2"), _identity("b", "t2", "t3"))
    assert pass_scope(policy, "t1", ["a", "b"]) == {"t1", "t2", "t3"}
    assert pass_scope(policy, "t3", ["a"]) == {"t3"}


def test_a_narrowed_policy_keeps_the_scope_and_the_identities_on_it() -> None:
    policy = _policy(_identity("a", "t1"), _identity("b", "t2"))
    seen = narrowed(policy, frozenset({"t1"}))
    assert set(seen.targets) == {"t1"} and set(seen.identities) == {"a"}


def test_rotations_of_waiting_identities_are_dropped_and_nothing_else() -> None:
    policy = _policy(_identity("a", "t1"), _identity("b", "t1"))
    plan = Plan(
        (
            Action(Op.ROTATE_CREDENTIAL, "t1", "a", identity="a"),
            Action(Op.GRANT, "t1", "a", "role:x", "a"),
            Action(Op.ROTATE_CREDENTIAL, "t1", "b", identity="b"),
        ),
        (),
    )
    kept = without_rotations(plan, frozenset({"a"}), policy)
    assert [(a.op, a.account) for a in kept.actions] == [
        (Op.GRANT, "a"),
        (Op.ROTATE_CREDENTIAL, "b"),
    ]
    assert without_rotations(plan, frozenset(), policy) is plan


# ---------------------------------------------------------------- rotation plan


def test_rotate_plans_every_enabled_account_and_names_unread_targets() -> None:
    policy = _policy(_identity("a", "t1", "t2", "t3"))
    observed: dict[str, Snapshot | Unreachable] = {
        "t1": Snapshot("t1", {"a": Account("a", frozenset(), True)}),
        "t2": Snapshot("t2", {"a": Account("a", frozenset(), False)}),
        "t3": Unreachable("t3", "down"),
    }
    plan = rotation_plan(policy, observed, "a", None, "leaked")
    assert [(a.op, a.target, a.reason) for a in plan.actions] == [
        (Op.ROTATE_CREDENTIAL, "t1", "requested: leaked")
    ]
    assert plan.unreachable == ("t3",)


def test_rotate_refuses_an_unknown_identity_or_a_target_it_has_no_access_on() -> None:
    policy = _policy(_identity("a", "t1"))
    with pytest.raises(NothingToRotate, match="unknown identity 'x'"):
        rotation_plan(policy, {}, "x", None, "manual")
    with pytest.raises(NothingToRotate, match="no access on target 't2'"):
        rotation_plan(policy, {}, "a", "t2", "manual")


# ---------------------------------------------------------------- eligibility


def test_lease_terms_default_to_the_identity_ttl_within_its_maximum() -> None:
    policy = _policy(
        _identity("a", "t1"), _identity("b", "t1", lease_ttl_s=60, lease_max_ttl_s=120)
    )
    terms = lease_terms(policy, "a", "t1", None, NOW)
    assert (terms.ttl_s, terms.max_ttl_s) == (DEFAULT_TTL_S, DEFAULT_MAX_TTL_S)
    assert terms.template == "a" and terms.entitlements == {"role:r"}
    assert lease_terms(policy, "b", "t1", None, NOW).ttl_s == 60
    with pytest.raises(Ineligible, match="longer than identity 'b' allows"):
        lease_terms(policy, "b", "t1", 121, NOW)
    with pytest.raises(Ineligible, match="at least 1s"):
        lease_terms(policy, "b", "t1", 0, NOW)


def test_no_lease_for_expired_access_or_an_identity_whose_owner_left() -> None:
    expired = Identity(
        "e", "team", "test", None, (Access("t1", "e", frozenset(), NOW - timedelta(1)),)
    )
    policy = _policy(
        expired,
        _identity("gone", "t1", owner="left"),
        owners={"team": OwnerStatus.ACTIVE, "left": OwnerStatus.DEPARTED},
    )
    with pytest.raises(Ineligible, match="expired at"):
        lease_terms(policy, "e", "t1", None, NOW)
    with pytest.raises(Ineligible, match="suspended: owner departed"):
        lease_terms(policy, "gone", "t1", None, NOW)


def test_an_identity_whose_owner_left_keeps_leases_when_the_rule_only_reports() -> None:
    policy = _policy(_identity("gone", "t1", owner="left"), owners={"left": OwnerStatus.DEPARTED})
    reporting = Policy(
        policy.targets,
        policy.owners,
        policy.identities,
        Rules(ownerless_identities=RuleAction.REPORT),
    )
    assert lease_terms(reporting, "gone", "t1", None, NOW).ttl_s == DEFAULT_TTL_S


def test_no_lease_for_an_unknown_identity_target_or_access() -> None:
    policy = _policy(_identity("a", "t1"))
    for identity, target, why in (
        ("x", "t1", "unknown identity"),
        ("a", "nope", "unknown target"),
        ("a", "t2", "has no access on target 't2'"),
    ):
        with pytest.raises(Ineligible, match=why):
            lease_terms(policy, identity, target, None, NOW)
