"""Batches on a real PostgreSQL: many changes in one transaction; a change that fails fails
alone (the rest carried out all the same); the engine journals one intent and one result per
action, reads back once per batch and proves every suspension refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import cast

import pytest
from psycopg import sql

from lockstep.connectors.base import ActionFailed, Change, ConnectorType, Credential, ProbeResult
from lockstep.connectors.postgres import keys
from lockstep.connectors.postgres.connector import PostgresConnectorType
from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.credentials.vault import Vault
from lockstep.demo import localpg
from lockstep.engine.apply import Applier
from lockstep.journal import Journal
from lockstep.model import Action, Op, Owner, OwnerStatus, Plan, Policy, Status, Target
from lockstep.secret import Secret, generate_password
from lockstep.store import Store
from support.fake_target import NOW, kinds, state
from support.postgres_sessions import OpenSession, admin, login, query

pytest_plugins = ("support.postgres_sessions",)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Store, Journal, Vault]:
    return state(tmp_path)


def _tables(pg: localpg.LocalPostgres) -> None:
    admin(pg, "CREATE TABLE public.orders (id int)", "CREATE ROLE app_readonly NOLOGIN")


def test_a_batch_of_grants_with_one_bad_grant_fails_only_that_one(
    open_session: OpenSession, pg: localpg.LocalPostgres
) -> None:
    _tables(pg)
    session = open_session()
    created = session.apply_batch(
        [Change(Op.CREATE_ACCOUNT, f"svc{i}", None, generate_password()) for i in range(3)]
    )
    assert all(isinstance(c, Credential) for c in created)
    changes = [
        Change(Op.GRANT, "svc0", "SELECT on table public.orders"),
        Change(Op.GRANT, "svc1", "SELECT on table public.missing"),  # no such table
        Change(Op.GRANT, "svc2", "role:app_readonly"),
        Change(Op.GRANT, "nobody", "role:app_readonly"),  # no such role
        Change(Op.GRANT, "svc2", "not an entitlement"),
    ]
    outcomes = session.apply_batch(changes)
    assert outcomes[0] is None and outcomes[2] is None
    assert all(isinstance(o, ActionFailed) for o in (outcomes[1], outcomes[3], outcomes[4]))
    assert "public.missing" in str(outcomes[1]) or "missing" in str(outcomes[1])
    held = session.read_accounts(["svc0", "svc1", "svc2", "nobody"])
    assert held["nobody"] is None
    assert held["svc0"] is not None and held["svc0"].entitlements == {
        "SELECT on table public.orders"
    }
    assert held["svc1"] is not None and held["svc1"].entitlements == frozenset()
    assert held["svc2"] is not None and held["svc2"].entitlements == {"role:app_readonly"}


def test_a_batch_of_suspensions_refuses_every_password_and_ends_every_session(
    open_session: OpenSession, pg: localpg.LocalPostgres
) -> None:
    session = open_session()
    secrets = {f"svc{i}": generate_password() for i in range(4)}
    session.apply_batch([Change(Op.CREATE_ACCOUNT, n, None, s) for n, s in secrets.items()])
    workloads = [login(pg, name, secret) for name, secret in secrets.items()]
    suspension = {n: generate_password() for n in secrets}
    outcomes = session.apply_batch(
        [Change(Op.SUSPEND_ACCOUNT, n, None, s) for n, s in suspension.items()]
        + [Change(Op.SUSPEND_ACCOUNT, "lockstep_admin", None, generate_password())]
    )
    assert all(isinstance(o, Credential) for o in outcomes[:4])
    assert isinstance(outcomes[4], ActionFailed) and "excluded" in str(outcomes[4])
    for name in secrets:
        assert session.probe(Credential(name, secrets[name])) is ProbeResult.REFUSED
        assert session.probe(Credential(name, suspension[name])) is ProbeResult.REFUSED
    read = session.read_accounts(list(secrets))
    assert all(a is not None and not a.enabled and a.sessions == 0 for a in read.values())
    assert all(w.closed or w.broken or _dead(w) for w in workloads)


def _dead(conn: object) -> bool:
    try:
        conn.execute("SELECT 1")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any error means the session was ended
        return True
    return False


def test_a_batch_of_deletions_drops_the_roles_but_not_an_owner(
    open_session: OpenSession, pg: localpg.LocalPostgres
) -> None:
    _tables(pg)
    admin(
        pg,
        "CREATE ROLE gone1 LOGIN",
        "CREATE ROLE gone2 LOGIN",
        "GRANT SELECT ON public.orders TO gone1",
        "CREATE ROLE owner1 LOGIN",
        "CREATE TABLE public.owned (id int)",
        "ALTER TABLE public.owned OWNER TO owner1",
    )
    session = open_session()
    outcomes = session.apply_batch(
        [Change(Op.DELETE_ACCOUNT, n) for n in ("gone1", "owner1", "gone2")]
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ActionFailed) and "owns 1 object" in str(outcomes[1])
    names = ["gone1", "gone2", "owner1"]
    left = {r[0] for r in query(pg, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", names)}
    assert left == {"owner1"}


def test_the_engine_journals_each_action_of_a_batch_and_fails_only_the_bad_one(
    open_session: OpenSession, pg: localpg.LocalPostgres, world: tuple[Store, Journal, Vault]
) -> None:
    _tables(pg)
    store, journal, vault = world
    session = open_session()
    target = Target(
        "orders-db",
        "postgres",
        None,
        frozenset(),
        False,
        PostgresSettings.model_validate({"dsn": Secret(pg.dsn())}),
    )
    policy = Policy(
        targets={"orders-db": target},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={},
    )
    names = [f"svc{i}" for i in range(30)]
    actions = [Action(Op.CREATE_ACCOUNT, "orders-db", n, None, n) for n in names]
    actions += [Action(Op.GRANT, "orders-db", n, "SELECT on table public.orders", n) for n in names]
    actions[35] = Action(Op.GRANT, "orders-db", "svc5", "SELECT on table public.missing", "svc5")
    connector = cast(ConnectorType, PostgresConnectorType())
    applier = Applier(
        policy, {"orders-db": session}, {"orders-db": connector}, journal, vault, lambda: NOW
    )
    results = applier.apply(Plan(tuple(actions), ()))

    failed = [r for r in results if r.status is not Status.VERIFIED]
    assert [(r.action.account, r.action.entitlement) for r in failed] == [
        ("svc5", "SELECT on table public.missing")
    ], failed[0].detail if failed else ""
    entries = kinds(journal)
    intents = Counter(
        (p["op"], p["account"], p["entitlement"]) for k, p in entries if k == "intent"
    )
    outcomes = Counter(
        (p["op"], p["account"], p["entitlement"]) for k, p in entries if k == "result"
    )
    assert intents == outcomes and sum(intents.values()) == len(actions)
    assert all(v == 1 for v in intents.values())
    assert vault.pending() == []
    for name in names:
        stored = vault.current("orders-db", name)
        assert stored is not None
        login(pg, name, stored.secret).close()
    store.close()


def test_a_probe_with_the_kept_keys_only_ever_accepts_what_the_password_would(
    open_session: OpenSession, pg: localpg.LocalPostgres
) -> None:
    session = open_session()
    secret = generate_password()
    [made] = session.apply_batch([Change(Op.CREATE_ACCOUNT, "svc", None, secret)])
    assert isinstance(made, Credential)
    assert session.keys.login(secret) is not None or not keys.SUPPORTED
    assert session.probe(made) is ProbeResult.ACCEPTED
    # The same password set again elsewhere (another salt): the kept keys no longer match,
    # and the probe falls back to the password, which still works.
    admin(pg, sql.SQL("ALTER ROLE svc PASSWORD {}").format(sql.Literal(secret.reveal())))
    assert session.probe(made) is ProbeResult.ACCEPTED
    admin(pg, "ALTER ROLE svc PASSWORD 'someone-elses-password-0000'")
    assert session.probe(made) is ProbeResult.REFUSED
