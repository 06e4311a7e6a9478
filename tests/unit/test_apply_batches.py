"""Applying in batches over an in-memory target: every action of a batch keeps its own intent,
result, read-back and probes; one that fails fails alone; a target lost mid-batch leaves its
changes staged; probes run side by side, never more at once than the target takes."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import cast

import pytest

from lockstep.connectors.base import ConnectorType, Session
from lockstep.credentials.vault import Vault
from lockstep.engine.apply import Applier
from lockstep.engine.batches import BATCH_SIZE, batches
from lockstep.journal import Journal
from lockstep.model import (
    Access,
    Action,
    CredentialPolicy,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Plan,
    Policy,
    Status,
)
from lockstep.secret import Secret
from lockstep.store import Store
from support.fake_target import NOW, FakeAccount, FakeConnector, FakeTarget, kinds

pytest_plugins = ("support.fake_target",)


def _policy(target: FakeTarget, accounts: list[str], sink_dir: Path | None = None) -> Policy:
    identities = {
        name: Identity(
            name,
            "team",
            "test",
            None,
            (Access(target.name, name, frozenset(), None),),
            CredentialPolicy(sink=f"file:{sink_dir / name}.json" if sink_dir else None),
        )
        for name in accounts
    }
    return Policy(
        targets={target.name: target.target()},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities=identities,
    )


def _applier(session: Session, policy: Policy, journal: Journal, vault: Vault) -> Applier:
    connector = cast(ConnectorType, FakeConnector())
    return Applier(policy, {"db": session}, {"db": connector}, journal, vault, lambda: NOW)


def _creates_and_grants(names: list[str]) -> Plan:
    creates = [Action(Op.CREATE_ACCOUNT, "db", n, None, n) for n in names]
    grants = [Action(Op.GRANT, "db", n, f"role:{r}", n) for n in names for r in ("a", "b")]
    return Plan((*creates, *grants), ())


# ---------------------------------------------------------------- grouping


def test_batches_group_consecutive_actions_of_one_target_and_operation() -> None:
    plan = [
        Action(Op.CREATE_ACCOUNT, "a", "x"),
        Action(Op.CREATE_ACCOUNT, "a", "y"),
        Action(Op.GRANT, "a", "x", "role:r"),
        Action(Op.GRANT, "a", "x", "role:s"),
        Action(Op.ROTATE_CREDENTIAL, "a", "x"),
        Action(Op.ROTATE_CREDENTIAL, "a", "y"),
        Action(Op.GRANT, "b", "x", "role:r"),
    ]
    assert [[(a.target, a.op, a.account) for a in b] for b in batches(plan)] == [
        [("a", Op.CREATE_ACCOUNT, "x"), ("a", Op.CREATE_ACCOUNT, "y")],
        [("a", Op.GRANT, "x"), ("a", Op.GRANT, "x")],
        [("a", Op.ROTATE_CREDENTIAL, "x")],
        [("a", Op.ROTATE_CREDENTIAL, "y")],
        [("b", Op.GRANT, "x")],
    ]


def test_a_batch_holds_at_most_the_batch_size_and_one_staged_change_per_account() -> None:
    many = [Action(Op.GRANT, "a", f"u{i}", "role:r") for i in range(BATCH_SIZE + 1)]
    assert [len(b) for b in batches(many)] == [BATCH_SIZE, 1]
    twice = [Action(Op.SUSPEND_ACCOUNT, "a", "x"), Action(Op.SUSPEND_ACCOUNT, "a", "x")]
    assert [len(b) for b in batches(twice)] == [1, 1]


# ---------------------------------------------------------------- one intent, one result


@pytest.mark.parametrize("batching", [True, False], ids=["batch capability", "one at a time"])
def test_each_action_of_a_batch_has_one_intent_before_its_effect_and_one_result(
    world: tuple[Store, Journal, Vault], tmp_path: Path, batching: bool
) -> None:
    _, journal, vault = world
    names = [f"svc{i}" for i in range(20)]
    target = FakeTarget()
    session = target.batching_session() if batching else target.session()
    plan = _creates_and_grants(names)

    results = _applier(session, _policy(target, names, tmp_path), journal, vault).apply(plan)

    assert [r.status for r in results] == [Status.VERIFIED] * len(plan.actions)
    entries = kinds(journal)
    key = lambda p: (p["op"], p["account"], p["entitlement"])  # noqa: E731
    intents = Counter(key(p) for k, p in entries if k == "intent")
    outcomes = Counter(key(p) for k, p in entries if k == "result")
    planned = Counter((str(a.op), a.account, a.entitlement) for a in plan.actions)
    assert intents == outcomes == planned
    assert sum(k == "delivery" for k, _ in entries) == len(names)
    # Each batch's intents commit together before it, and its deliveries and results
    # together after: one action's intent always comes before its result.
    order = [(k, key(p)) for k, p in entries if k in ("intent", "result")]
    for action in plan.actions:
        mine = [
            k for k, which in order if which == (str(action.op), action.account, action.entitlement)
        ]
        assert mine == ["intent", "result"]
    commits = [k for k, _ in itertools.groupby(k for k, _ in entries)]
    # The grants went while the new credentials were being proven.
    assert commits == ["intent", "delivery", "result"]
    assert vault.pending() == []
    assert all(vault.current("db", n) is not None for n in names)
    assert target.probes == len(names)  # each new credential proven accepted
    if batching:
        assert target.reads == 2  # one read-back per batch
        assert [len(b) for b in session.batches] == [20, 40]  # type: ignore[attr-defined]


def test_a_failing_action_of_a_batch_fails_alone(world: tuple[Store, Journal, Vault]) -> None:
    _, journal, vault = world
    names = ["one", "bad", "three"]
    target = FakeTarget(refuse={"bad"})
    session = target.batching_session()
    results = _applier(session, _policy(target, names), journal, vault).apply(
        _creates_and_grants(names)
    )
    by = {(r.action.op, r.action.account, r.action.entitlement): r for r in results}
    failed = {k for k, r in by.items() if r.status is not Status.VERIFIED}
    assert failed == {
        (Op.CREATE_ACCOUNT, "bad", None),
        (Op.GRANT, "bad", "role:a"),
        (Op.GRANT, "bad", "role:b"),
    }
    assert "refused by db" in by[Op.CREATE_ACCOUNT, "bad", None].detail
    assert target.accounts["one"].entitlements == target.accounts["three"].entitlements
    assert sum(k == "result" for k, _ in kinds(journal)) == 9
    assert vault.pending() == []  # a refused change changed nothing: nothing to settle


def test_a_target_lost_mid_batch_leaves_its_changes_staged_and_the_rest_not_attempted(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, journal, vault = world
    names = ["one", "two"]
    target = FakeTarget()
    session = target.batching_session()
    applier = _applier(session, _policy(target, names), journal, vault)
    original = session.create_account

    def create_then_vanish(account: str, secret: Secret) -> object:
        made = original(account, secret)
        target.down = True  # the connection goes after the first account is made
        return made

    session.create_account = create_then_vanish  # type: ignore[assignment, method-assign]
    results = applier.apply(_creates_and_grants(names))

    assert all(r.status is not Status.VERIFIED for r in results)
    assert results[0].status is Status.UNVERIFIED  # made, but it could not be read back
    assert "target unreachable" in results[1].detail
    assert all(r.detail.startswith("not attempted") for r in results[2:])
    assert {p.account for p in vault.pending()} == {"two"}  # the unknown outcome
    assert sum(k == "intent" for k, _ in kinds(journal)) == 2


# ---------------------------------------------------------------- proofs


def test_each_suspension_of_a_batch_proves_its_password_and_the_previous_one_refused(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, journal, vault = world
    names = [f"svc{i}" for i in range(6)]
    target = FakeTarget(accounts={n: FakeAccount([f"old-password-{n}"], sessions=2) for n in names})
    for n in names:
        vault.put("db", n, n, n, Secret(f"old-password-{n}"), NOW)
    session = target.batching_session(slots=3)
    target.probe_delay_s = 0.02
    plan = Plan(tuple(Action(Op.SUSPEND_ACCOUNT, "db", n, None, n) for n in names), ())

    results = _applier(session, _policy(target, []), journal, vault).apply(plan)

    assert [r.status for r in results] == [Status.VERIFIED] * len(names), results[0].detail
    for result in results:
        expected = [c.expected for c in result.checks]
        assert expected == [
            "suspended",
            "0 open sessions",
            "suspension password refused",
            "previous credential refused",
        ]
    assert target.probes == 2 * len(names)
    assert 1 < target.most_at_once <= 3  # side by side, never more than the target takes


def test_a_session_without_parallel_probes_is_probed_one_at_a_time(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, journal, vault = world
    names = [f"svc{i}" for i in range(4)]
    target = FakeTarget(accounts={n: FakeAccount([f"old-password-{n}"]) for n in names})
    target.probe_delay_s = 0.01
    plan = Plan(tuple(Action(Op.SUSPEND_ACCOUNT, "db", n, None, n) for n in names), ())
    results = _applier(target.session(), _policy(target, []), journal, vault).apply(plan)
    assert all(r.status is Status.VERIFIED for r in results)
    assert target.most_at_once == 1
