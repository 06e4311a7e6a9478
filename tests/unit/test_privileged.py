"""Privileged accounts (a superuser, the admin's own group, full access) that no identity
declares are reported as ``privileged_orphan`` and never acted on, whatever the orphan rule;
declared, they are managed like any other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockstep.engine.audit import state_checks
from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import (
    Access,
    Account,
    FindingType,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Policy,
    RuleAction,
    Rules,
    Severity,
    Snapshot,
    Target,
)
from support.settings import NO_SETTINGS

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ROOT = Account("root", frozenset(), True, sessions=2, privileged="superuser")


def policy(
    rule: RuleAction, declared: bool = False, owner: OwnerStatus = OwnerStatus.ACTIVE
) -> Policy:
    access = (Access("db", "root", frozenset(), None),) if declared else ()
    identities = {"ops": Identity("ops", "team", "ops", None, access)} if declared else {}
    return Policy(
        targets={"db": Target("db", "postgres", None, frozenset(), False, NO_SETTINGS)},
        owners={"team": Owner("team", (), owner)},
        identities=identities,
        rules=Rules(orphan_accounts=rule),
    )


def plan(p: Policy, *accounts: Account):
    observed = {"db": Snapshot("db", {a.name: a for a in accounts})}
    return make_plan(p, desired_state(p, NOW), observed, NOW)


@pytest.mark.parametrize("rule", [RuleAction.REPORT, RuleAction.SUSPEND, RuleAction.DELETE])
def test_a_privileged_orphan_is_reported_critical_and_never_acted_on(rule: RuleAction) -> None:
    p = plan(policy(rule), ROOT, Account("stray", frozenset(), True))
    (privileged,) = [f for f in p.findings if f.type is FindingType.PRIVILEGED_ORPHAN]
    assert privileged.account == "root" and privileged.severity is Severity.CRITICAL
    assert "superuser" in privileged.detail
    assert not any(a.account == "root" for a in p.actions)
    assert not any(f.type is FindingType.ORPHAN_ACCOUNT and f.account == "root" for f in p.findings)
    # An ordinary orphan beside it still gets the rule.
    assert any(a.account == "stray" for a in p.actions) == (rule is not RuleAction.REPORT)


def test_a_privileged_account_an_identity_declares_is_managed() -> None:
    p = plan(policy(RuleAction.REPORT, declared=True, owner=OwnerStatus.DEPARTED), ROOT)
    assert not any(f.type is FindingType.PRIVILEGED_ORPHAN for f in p.findings)
    assert [(a.op, a.account) for a in p.actions] == [(Op.SUSPEND_ACCOUNT, "root")]


def test_verify_finds_a_privileged_orphan_left_alone_in_step() -> None:
    p = policy(RuleAction.SUSPEND)
    observed = {"db": Snapshot("db", {"root": ROOT})}
    (check,) = state_checks(p, desired_state(p, NOW), observed)
    assert check.ok and check.account == "root"
