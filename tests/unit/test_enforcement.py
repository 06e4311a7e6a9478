"""Identities spanning several targets are enforced as a unit, or reported as partial."""

from __future__ import annotations

from lockstep.engine.enforcement import Enforcement, enforcement
from lockstep.model import (
    Access,
    Action,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Plan,
    Policy,
    Result,
    Status,
    Target,
)
from support.settings import NO_SETTINGS


def policy() -> Policy:
    targets = {
        n: Target(n, "postgres", None, frozenset(), False, NO_SETTINGS) for n in ("db", "cache")
    }
    access = (
        Access("db", "api", frozenset(), None),
        Access("cache", "api", frozenset(), None),
    )
    return Policy(
        targets=targets,
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={"api": Identity("api", "team", "x", None, access)},
    )


GRANT_DB = Action(Op.GRANT, "db", "api", "role:a", "api")
GRANT_CACHE = Action(Op.GRANT, "cache", "api", "+get", "api")


def test_an_identity_with_nothing_to_do_everywhere_is_enforced():
    [e] = enforcement(policy(), Plan((), ())).values()
    assert e.status is Enforcement.ENFORCED and e.lagging == ()


def test_one_unreachable_target_makes_the_identity_partially_enforced():
    [e] = enforcement(policy(), Plan((GRANT_DB,), (), unreachable=("cache",))).values()
    assert e.status is Enforcement.PARTIAL and e.lagging == ("cache", "db")


def test_after_apply_a_failed_target_leaves_it_partial_and_verified_ones_count():
    plan = Plan((GRANT_DB, GRANT_CACHE), ())
    results = [Result(GRANT_DB, Status.VERIFIED, ""), Result(GRANT_CACHE, Status.FAILED, "down")]
    [e] = enforcement(policy(), plan, results).values()
    assert e.status is Enforcement.PARTIAL and e.lagging == ("cache",)


def test_unverified_is_never_enforced():
    plan = Plan((GRANT_DB, GRANT_CACHE), ())
    results = [Result(a, Status.UNVERIFIED, "") for a in plan.actions]
    [e] = enforcement(policy(), plan, results).values()
    assert e.status is Enforcement.UNKNOWN


def test_pending_changes_on_readable_targets_are_pending():
    [e] = enforcement(policy(), Plan((GRANT_DB,), ())).values()
    assert e.status is Enforcement.PENDING
