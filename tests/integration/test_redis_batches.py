"""Batches on a real Redis: ACL SETUSERs pipelined; a change Redis refuses fails alone, and
so does a change to a user that is not there; the engine journals one intent and one result
per action and proves every suspension refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import cast

from lockstep.connectors.base import ActionFailed, Change, ConnectorType, Credential, ProbeResult
from lockstep.connectors.redis.connector import RedisConnectorType, RedisSession
from lockstep.engine.apply import Applier
from lockstep.model import Action, Op, Owner, OwnerStatus, Plan, Policy, Status, Target
from lockstep.secret import generate_password
from services.redis_server import LocalRedis
from support.fake_target import NOW, kinds, state

pytest_plugins = ("services.redis_server", "support.redis_sessions")


def _create(session: RedisSession, *names: str) -> dict[str, Credential]:
    made = session.apply_batch(
        [Change(Op.CREATE_ACCOUNT, n, None, generate_password()) for n in names]
    )
    assert all(isinstance(m, Credential) for m in made)
    return {n: cast(Credential, m) for n, m in zip(names, made, strict=True)}


def test_a_pipelined_batch_with_a_refused_rule_fails_only_that_change(
    session: RedisSession,
) -> None:
    _create(session, "svc0", "svc1")
    outcomes = session.apply_batch(
        [
            Change(Op.GRANT, "svc0", "~orders:*"),
            Change(Op.GRANT, "svc0", "+get"),
            Change(Op.GRANT, "svc1", "+get"),
            Change(Op.GRANT, "svc1", "+nosuchcommand"),  # Redis refuses it
            Change(Op.GRANT, "ghost", "+get"),  # no such user: never created by a grant
        ]
    )
    assert outcomes[:3] == [None, None, None]
    assert isinstance(outcomes[3], ActionFailed) and "nosuchcommand" in str(outcomes[3])
    assert isinstance(outcomes[4], ActionFailed) and "no ACL user" in str(outcomes[4])
    read = session.read_accounts(["svc0", "svc1", "ghost"])
    assert read["ghost"] is None
    assert read["svc0"] is not None and read["svc0"].entitlements == {"~orders:*", "+get"}
    assert read["svc1"] is not None and read["svc1"].entitlements == {"+get"}


def test_a_batch_of_suspensions_kills_connections_and_refuses_every_password(
    session: RedisSession, redis_server: LocalRedis
) -> None:
    made = _create(session, "svc0", "svc1", "svc2")
    suspension = {n: generate_password() for n in made}
    outcomes = session.apply_batch(
        [Change(Op.SUSPEND_ACCOUNT, n, None, s) for n, s in suspension.items()]
        + [Change(Op.SUSPEND_ACCOUNT, redis_server.admin_user, None, generate_password())]
    )
    assert all(isinstance(o, Credential) for o in outcomes[:3])
    assert isinstance(outcomes[3], ActionFailed) and "excluded" in str(outcomes[3])
    for name, credential in made.items():
        assert session.probe(credential) is ProbeResult.REFUSED
        assert session.probe(Credential(name, suspension[name])) is ProbeResult.REFUSED
    read = session.read_accounts(list(made))
    assert all(a is not None and not a.enabled for a in read.values())


def test_the_engine_journals_each_action_of_a_batch_and_fails_only_the_bad_one(
    session: RedisSession, redis_target: Target, tmp_path: Path
) -> None:
    store, journal, vault = state(tmp_path)
    policy = Policy(
        targets={"cache": redis_target},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={},
    )
    names = [f"svc{i}" for i in range(25)]
    actions = [Action(Op.CREATE_ACCOUNT, "cache", n, None, n) for n in names]
    actions += [Action(Op.GRANT, "cache", n, "~orders:*", n) for n in names]
    actions[30] = Action(Op.GRANT, "cache", "svc5", "+nosuchcommand", "svc5")
    connector = cast(ConnectorType, RedisConnectorType())
    applier = Applier(policy, {"cache": session}, {"cache": connector}, journal, vault, lambda: NOW)

    results = applier.apply(Plan(tuple(actions), ()))

    failed = [
        (r.action.account, r.action.entitlement) for r in results if r.status is not Status.VERIFIED
    ]
    assert failed == [("svc5", "+nosuchcommand")]
    entries = kinds(journal)
    key = lambda p: (p["op"], p["account"], p["entitlement"])  # noqa: E731
    intents = Counter(key(p) for k, p in entries if k == "intent")
    outcomes = Counter(key(p) for k, p in entries if k == "result")
    assert intents == outcomes and set(intents.values()) == {1}
    assert sum(intents.values()) == len(actions)
    for name in names:
        stored = vault.current("cache", name)
        assert stored is not None
        assert session.probe(Credential(name, stored.secret)) is ProbeResult.ACCEPTED
    store.close()
