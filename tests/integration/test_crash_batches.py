"""A crash in the middle of a batch is settled by the next pass: lockstep is killed (SIGKILL,
through the fault-injection hook) while a batch of creates, grants or suspensions on a real
PostgreSQL is between two of its steps, with every action of the batch under way at once;
one more pass then leaves every account as the policy says, every delivered credential
working, every suspended password refused, the journal intact, nothing pending and no
intent without its result."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from lockstep.engine.faults import FAULT_ENV, POINTS
from support import cli_project
from support.cli_project import admin, create_orders_db, login, project_env, refused
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var

NAMES = [f"svc{i}" for i in range(6)]
ORPHANS = {f"legacy{i}": f"legacy-password-{i:04d}" for i in range(6)}


def _policy(secrets: Path, orphans: str = "report") -> Policy:
    return Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": Owner(["team@example.com"], status="active")},
        identities={
            name: Identity(
                owner="team",
                purpose="crash trials in a batch",
                access=[
                    Access(
                        "orders-db",
                        name,
                        ["CONNECT on database orders", "SELECT on table public.orders"],
                    )
                ],
                credentials=Credentials(sink=f"file:{secrets / name}.json"),
            )
            for name in NAMES
        },
        rules={"orphan_accounts": orphans},
    )


class Lockstep(cli_project.Lockstep):
    def killed_at(self, step: str, *args: str) -> None:
        self.env[FAULT_ENV] = step
        try:
            proc = self(*args)
        finally:
            del self.env[FAULT_ENV]
        assert proc.returncode == -signal.SIGKILL, (step, proc.returncode, proc.stderr)

    def password(self, name: str) -> str:
        path = self.workdir / "secrets" / f"{name}.json"
        return str(json.loads(path.read_text())["password"])

    def journal(self) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        with sqlite3.connect(self.workdir / ".lockstep" / "state.db") as conn:
            rows = conn.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
            (pending,) = conn.execute("SELECT count(*) FROM pending_credentials").fetchone()
        return [(kind, json.loads(payload)) for kind, payload in rows], int(pending)


@pytest.fixture
def lockstep(pg: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    db = create_orders_db(pg)
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))
    _policy(tmp_path / "secrets").write(tmp_path)
    return cli


def _open_intents(entries: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    open_: list[tuple[str, str, str]] = []
    for kind, p in entries:
        key = (p.get("op", ""), p.get("account", ""), p.get("entitlement") or "")
        if kind == "intent":
            open_.append(key)
        elif kind == "result" and key in open_:
            open_.remove(key)
        elif kind == "recovery_result":
            open_ = [k for k in open_ if k[1] != key[1] or k[0] != key[0]]
    return open_


def assert_settled(
    cli: Lockstep,
    pg: localpg.LocalPostgres,
    interrupted: Sequence[tuple[str, str, str]] = (),
) -> None:
    """In sync, intact, nothing pending; every intent closed but ``interrupted``: grants and
    revokes a crash cut off, which stage nothing and which the next plan finds done (or does
    again, under an intent of its own)."""
    again = cli("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    verified = cli("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert cli("audit", "verify").returncode == 0
    assert cli.json("plan")["actions"] == []
    entries, pending = cli.journal()
    assert pending == 0
    assert _open_intents(entries) == list(interrupted), "an intent was never closed"
    for name in NAMES:
        login(pg, name, cli.password(name)).close()


def _under_way(cli: Lockstep, op: str) -> int:
    """How many actions of ``op`` had their intent journaled, and no result, at the kill."""
    entries, _ = cli.journal()
    return sum(1 for o, _, _ in _open_intents(entries) if o == op)


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_in_a_batch_of_creates_is_settled_for_every_account(
    lockstep: Lockstep, pg: localpg.LocalPostgres, point: str
) -> None:
    lockstep.killed_at(f"create_account:{point}", "apply", "--yes")
    assert _under_way(lockstep, "create_account") == len(NAMES)
    assert_settled(lockstep, pg)


def test_a_crash_in_a_batch_of_grants_is_settled(
    lockstep: Lockstep, pg: localpg.LocalPostgres
) -> None:
    lockstep.killed_at("grant:target_changed", "apply", "--yes")
    # The creates' probes may still have been under way (they overlap the grants): their
    # changes are staged, and the next pass settles them like any other.
    interrupted = [i for i in _open_intents(lockstep.journal()[0]) if i[0] == "grant"]
    assert len(interrupted) == 2 * len(NAMES)
    assert_settled(lockstep, pg, interrupted)
    for name in NAMES:
        with login(pg, name, lockstep.password(name)) as conn:
            conn.execute("SELECT count(*) FROM public.orders")


@pytest.mark.parametrize("point", ["staged", "target_changed", "promoted"])
def test_a_crash_in_a_batch_of_suspensions_leaves_every_orphan_suspended(
    lockstep: Lockstep, pg: localpg.LocalPostgres, point: str
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    with admin(pg) as conn:
        for name, password in ORPHANS.items():
            conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    _policy(lockstep.workdir / "secrets", orphans="suspend").write(lockstep.workdir)
    lockstep.killed_at(f"suspend_account:{point}", "apply", "--yes", "--allow-mass-change")
    assert _under_way(lockstep, "suspend_account") == len(ORPHANS)
    again = lockstep("apply", "--yes", "--allow-mass-change")
    assert again.returncode == 0, again.stdout + again.stderr
    assert_settled(lockstep, pg)
    for name, password in ORPHANS.items():
        assert refused(pg, name, password)
