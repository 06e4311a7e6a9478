"""The engine's effects over an in-memory target: apply fails closed when the journal goes,
a rotation whose delivery fails puts the previous credential back as a journaled and proven
action, a shared account's credential reaches every workload, and probes wait out a
propagation window without sleeping on the wall clock."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection

from lockstep.connectors.base import ConnectorType, Credential, ProbeResult
from lockstep.credentials.vault import Vault
from lockstep.engine.apply import Applier
from lockstep.engine.audit import probe_checks
from lockstep.engine.desired import desired_state
from lockstep.engine.verify import Evidence, Timer, verify_action
from lockstep.journal import Journal, JournalError
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
from support.fake_target import NOW, FakeAccount, FakeClock, FakeConnector, FakeTarget, kinds

pytest_plugins = ("support.fake_target",)


def _policy(target: FakeTarget, *identities: Identity) -> Policy:
    return Policy(
        targets={target.name: target.target()},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={i.name: i for i in identities},
    )


def _identity(name: str, account: str, sink: str | None = None) -> Identity:
    return Identity(
        name,
        "team",
        "test",
        None,
        (Access("db", account, frozenset(), None),),
        CredentialPolicy(sink=sink),
    )


def _applier(
    target: FakeTarget,
    policy: Policy,
    journal: Journal,
    vault: Vault,
    window_s: float = 0.0,
    clock: FakeClock | None = None,
) -> Applier:
    connector = cast(ConnectorType, FakeConnector(window_s))
    timer = clock or FakeClock()
    return Applier(
        policy,
        {target.name: target.session()},
        {target.name: connector},
        journal,
        vault,
        lambda: NOW,
        timer=Timer(timer.monotonic, timer.sleep),
    )


def _file_sink(path: Path) -> str:
    return f"file:{path}"


def _delivered(path: Path) -> str:
    password: str = json.loads(path.read_text())["password"]
    return password


# ---------------------------------------------------------------- fail closed


class _JournalThatFails(Journal):
    """The real journal, until it has written ``budget`` entries (each batch's intents, and
    its results, are written together)."""

    def __init__(self, store: Store, budget: int) -> None:
        super().__init__(store, clock=lambda: NOW)
        self.budget = budget

    def append_in(self, conn: Connection, items: Sequence[tuple[str, Mapping[str, Any]]]) -> Any:
        if len(items) > self.budget:
            raise JournalError("cannot write the journal: disk full")
        self.budget -= len(items)
        return super().append_in(conn, items)


def test_when_the_journal_cannot_be_written_nothing_more_is_changed(
    world: tuple[Store, Journal, Vault],
) -> None:
    store, _, vault = world
    target = FakeTarget(accounts={"app": FakeAccount(["pw-app-0000"], {"role:c"}, sessions=1)})
    policy = _policy(target, _identity("app", "app"))
    journal = _JournalThatFails(store, budget=2)  # the grants' intents
    grants = tuple(Action(Op.GRANT, "db", "app", f"role:{n}", "app") for n in ("a", "b"))
    later = (
        Action(Op.REVOKE, "db", "app", "role:c", "app"),
        Action(Op.END_SESSIONS, "db", "app", None, "app"),
    )
    results = _applier(target, policy, journal, vault).apply(Plan(grants + later, ()))
    assert [r.status for r in results] == [Status.FAILED] * 4
    assert all("journal unavailable" in r.detail for r in results)
    assert results[3].detail.startswith("not attempted: journal unavailable")
    # The grants, whose intents were journaled, were made; nothing after them was.
    assert target.accounts["app"].entitlements == {"role:a", "role:b", "role:c"}
    assert target.accounts["app"].sessions == 1


# ---------------------------------------------------------------- delivery and rollback


def test_a_rotation_whose_delivery_fails_restores_the_previous_credential_and_proves_it(
    world: tuple[Store, Journal, Vault], tmp_path: Path
) -> None:
    _, journal, vault = world
    (tmp_path / "blocker").write_text("a file where the sink wants a directory")
    sink = _file_sink(tmp_path / "blocker" / "app.json")
    target = FakeTarget(accounts={"app": FakeAccount(["previous-password"])})
    policy = _policy(target, _identity("app", "app", sink))
    vault.put("db", "app", "app", "app", Secret("previous-password"), NOW)
    action = Action(Op.ROTATE_CREDENTIAL, "db", "app", None, "app", "requested")

    [result] = _applier(target, policy, journal, vault).apply(Plan((action,), ()))

    assert result.status is Status.FAILED
    assert "previous credential restored and proven working" in result.detail
    assert target.accounts["app"].passwords == ["previous-password"]
    entries = kinds(journal)
    rollback = [p for k, p in entries if k == "rollback_intent"]
    outcome = [p for k, p in entries if k == "rollback_result"]
    assert len(rollback) == 1 and rollback[0]["op"] == "restore_previous_credential"
    assert outcome[0]["status"] == "verified"
    assert [c["expected"] for c in outcome[0]["checks"]][-2:] == [
        "new credential accepted",
        "undelivered credential refused",
    ]
    assert [k for k, _ in entries].index("rollback_intent") < [k for k, _ in entries].index(
        "rollback_result"
    )


def test_a_rollback_that_cannot_be_made_says_so(
    world: tuple[Store, Journal, Vault], tmp_path: Path
) -> None:
    _, journal, vault = world
    (tmp_path / "blocker").write_text("")
    target = FakeTarget(accounts={"app": FakeAccount(["previous-password"])})
    policy = _policy(target, _identity("app", "app", _file_sink(tmp_path / "blocker" / "x")))
    action = Action(Op.ROTATE_CREDENTIAL, "db", "app", None, "app")
    [result] = _applier(target, policy, journal, vault).apply(Plan((action,), ()))
    assert result.status is Status.FAILED
    assert "previous credential is unknown to lockstep" in result.detail


def test_a_shared_accounts_new_credential_reaches_every_identitys_sink(
    world: tuple[Store, Journal, Vault], tmp_path: Path
) -> None:
    _, journal, vault = world
    target = FakeTarget(accounts={"shared": FakeAccount(["old-password"])})
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    policy = _policy(
        target,
        _identity("first", "shared", _file_sink(first)),
        _identity("second", "shared", _file_sink(second)),
    )
    action = Action(Op.ROTATE_CREDENTIAL, "db", "shared", None, "first")
    [result] = _applier(target, policy, journal, vault).apply(Plan((action,), ()))
    assert result.status is Status.VERIFIED, result.detail
    assert _delivered(first) == _delivered(second) == target.accounts["shared"].passwords[0]
    assert sum(kind == "delivery" for kind, _ in kinds(journal)) == 2


def test_when_one_of_a_shared_accounts_sinks_fails_the_others_get_the_previous_one_back(
    world: tuple[Store, Journal, Vault], tmp_path: Path
) -> None:
    _, journal, vault = world
    (tmp_path / "blocker").write_text("")
    target = FakeTarget(accounts={"shared": FakeAccount(["old-password"])})
    ok = tmp_path / "ok.json"
    policy = _policy(
        target,
        _identity("a", "shared", _file_sink(ok)),
        _identity("b", "shared", _file_sink(tmp_path / "blocker" / "b.json")),
    )
    vault.put("db", "shared", "a", "shared", Secret("old-password"), NOW)
    action = Action(Op.ROTATE_CREDENTIAL, "db", "shared", None, "a")
    [result] = _applier(target, policy, journal, vault).apply(Plan((action,), ()))
    assert result.status is Status.FAILED
    assert target.accounts["shared"].passwords == ["old-password"]
    assert _delivered(ok) == "old-password"


# ---------------------------------------------------------------- propagation window


def test_a_removed_credential_still_accepted_within_the_window_is_reprobed_until_refused(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, journal, vault = world
    clock = FakeClock()
    target = FakeTarget(accounts={"app": FakeAccount(["pw-0000-old"])}, lingering=3)
    policy = _policy(target, _identity("app", "app"))
    vault.put("db", "app", "app", "app", Secret("pw-0000-old"), NOW)
    action = Action(Op.ROTATE_CREDENTIAL, "db", "app", None, "app")
    [result] = _applier(target, policy, journal, vault, window_s=10.0, clock=clock).apply(
        Plan((action,), ())
    )
    assert result.status is Status.VERIFIED, result.detail
    assert clock.slept == [0.25, 0.5, 1.0]  # backoff, and never a real second


def test_a_removed_credential_accepted_past_the_window_fails_the_action(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, journal, vault = world
    clock = FakeClock()
    target = FakeTarget(accounts={"app": FakeAccount(["pw-0000-old"])}, lingering=100)
    policy = _policy(target, _identity("app", "app"))
    vault.put("db", "app", "app", "app", Secret("pw-0000-old"), NOW)
    action = Action(Op.SUSPEND_ACCOUNT, "db", "app", None, "app")
    [result] = _applier(target, policy, journal, vault, window_s=2.0, clock=clock).apply(
        Plan((action,), ())
    )
    assert result.status is Status.FAILED
    assert "previous credential refused" in result.detail
    assert sum(clock.slept) <= 2.0


def test_a_probe_that_cannot_reach_the_target_leaves_the_action_unverified() -> None:
    target = FakeTarget(accounts={"app": FakeAccount(["pw-0000-now"])})
    session = target.session()
    target.down = True
    status, detail, _ = verify_action(
        session,
        Action(Op.GRANT, "db", "app", "role:a"),
        Evidence(),
        0.0,
    )
    assert status is Status.UNVERIFIED and "could not read back" in detail


# ---------------------------------------------------------------- audit


def test_verify_proves_retired_credentials_refused_and_the_current_one_working(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, _, vault = world
    target = FakeTarget(accounts={"app": FakeAccount(["current-pw-1"])})
    policy = _policy(target, _identity("app", "app"))
    vault.put("db", "app", "app", "app", Secret("retired-pw-0"), NOW)
    vault.put("db", "app", "app", "app", Secret("current-pw-1"), NOW)
    session = target.session()
    observed = {"db": session.read()}
    checks = probe_checks({"db": session}, vault, desired_state(policy, NOW), observed, {})
    assert [(c.expected.split()[-1], c.ok) for c in checks] == [
        ("accepted", True),
        ("refused", True),
    ]
    target.accounts["app"].passwords.append("retired-pw-0")  # someone put it back
    checks = probe_checks({"db": session}, vault, desired_state(policy, NOW), observed, {})
    assert [c.ok for c in checks] == [True, False]


def test_a_suspended_accounts_current_credential_must_be_refused(
    world: tuple[Store, Journal, Vault],
) -> None:
    _, _, vault = world
    target = FakeTarget(accounts={"gone": FakeAccount(["still-works"], enabled=True)})
    policy = _policy(target)  # nothing declares "gone"
    vault.put("db", "gone", None, "gone", Secret("still-works"), NOW)
    session = target.session()
    checks = probe_checks(
        {"db": session}, vault, desired_state(policy, NOW), {"db": session.read()}, {}
    )
    assert [(c.expected.endswith("refused"), c.ok) for c in checks] == [(True, False)]
    assert session.probe(Credential("gone", Secret("still-works"))) is ProbeResult.ACCEPTED
