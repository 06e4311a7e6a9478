"""A credential change survives a crash at any step: lockstep is killed (SIGKILL, through the
fault-injection hook) at each step of create, rotate, restore, suspend and delete against a
real PostgreSQL, and one more pass leaves the delivered credential working, the journal
intact and nothing half-done."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from lockstep.engine.faults import FAULT_ENV, POINTS
from support import cli_project
from support.cli_project import admin, create_orders_db, login, project_env, refused
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var


def _policy(secrets: Path, orphans: str = "report") -> Policy:
    return Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
        owners={"payments-team": Owner(["alice@example.com"], status="active")},
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                access=[Access("orders-db", "payments_api", ["CONNECT on database orders"])],
                credentials=Credentials(sink=f"file:{secrets / 'payments-api.json'}"),
            )
        },
        rules={"orphan_accounts": orphans},
    )


class Lockstep(cli_project.Lockstep):
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, env)
        self.policy = _policy(workdir / "secrets")
        self.policy.write(workdir)

    def killed_at(self, step: str, *args: str) -> None:
        """Run a command that the hook kills at ``step``; it must die of SIGKILL there."""
        self.env[FAULT_ENV] = step
        try:
            proc = self(*args)
        finally:
            del self.env[FAULT_ENV]
        assert proc.returncode == -signal.SIGKILL, (step, proc.returncode, proc.stderr)

    def password(self) -> str:
        path = self.workdir / "secrets" / "payments-api.json"
        return str(json.loads(path.read_text())["password"])

    def journal(self) -> list[tuple[str, dict[str, Any]]]:
        with sqlite3.connect(self.workdir / ".lockstep" / "state.db") as conn:
            rows = conn.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
            self.pending = conn.execute("SELECT count(*) FROM pending_credentials").fetchone()[0]
        return [(kind, json.loads(payload)) for kind, payload in rows]


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg)


@pytest.fixture
def lockstep(db: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    return Lockstep(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))


def assert_settled(cli: Lockstep) -> None:
    """One more pass, then: in sync, journal intact, nothing pending, every intent closed."""
    again = cli("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    verified = cli("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert cli("audit", "verify").returncode == 0
    assert cli.json("plan")["actions"] == []
    entries = cli.journal()
    assert cli.pending == 0
    open_intents: list[tuple[str, str]] = []
    for kind, payload in entries:
        key = (payload.get("target", ""), payload.get("account", ""))
        if kind == "intent":
            open_intents.append(key)
        elif kind in ("result", "recovery_result") and key in open_intents:
            open_intents.remove(key)
    assert open_intents == [], "an intent was never closed by a result or a recovery"


def assert_delivered_works(cli: Lockstep, db: localpg.LocalPostgres) -> str:
    password = cli.password()
    login(db, "payments_api", password).close()
    return password


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_creating_an_account_is_settled_by_the_next_pass(
    lockstep: Lockstep, db: localpg.LocalPostgres, point: str
) -> None:
    lockstep.killed_at(f"create_account:{point}", "apply", "--yes")
    unsettled = lockstep("verify", "--json")
    assert unsettled.returncode == 2
    assert "no unfinished credential change" in unsettled.stdout
    assert_settled(lockstep)
    assert_delivered_works(lockstep, db)


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_rotating_leaves_the_delivered_credential_working(
    lockstep: Lockstep, db: localpg.LocalPostgres, point: str
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    before = lockstep.password()
    lockstep.killed_at(f"rotate_credential:{point}", "rotate", "payments-api")
    assert_settled(lockstep)
    now = assert_delivered_works(lockstep, db)
    if now != before:
        assert refused(db, "payments_api", before)


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_restoring_a_suspended_account_is_settled(
    lockstep: Lockstep, db: localpg.LocalPostgres, point: str
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    lockstep.policy.owners["payments-team"].status = "departed"
    lockstep.policy.write(lockstep.workdir)
    assert lockstep("apply", "--yes").returncode == 0
    lockstep.policy.owners["payments-team"].status = "active"
    lockstep.policy.write(lockstep.workdir)
    lockstep.killed_at(f"restore_account:{point}", "apply", "--yes")
    assert_settled(lockstep)
    assert_delivered_works(lockstep, db)


@pytest.mark.parametrize("point", ["staged", "target_changed", "promoted"])
def test_a_crash_while_suspending_leaves_the_account_suspended_after_the_next_pass(
    lockstep: Lockstep, db: localpg.LocalPostgres, point: str
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    old = lockstep.password()
    lockstep.policy.owners["payments-team"].status = "departed"
    lockstep.policy.write(lockstep.workdir)
    lockstep.killed_at(f"suspend_account:{point}", "apply", "--yes")
    assert_settled(lockstep)
    assert refused(db, "payments_api", old)


@pytest.mark.parametrize("point", ["staged", "target_changed"])
def test_a_crash_while_deleting_an_orphan_is_settled(
    lockstep: Lockstep, db: localpg.LocalPostgres, point: str
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    with admin(db) as conn:
        conn.execute("CREATE ROLE legacy_batch LOGIN PASSWORD 'legacy-pw-123'")
    lockstep.policy = _policy(lockstep.workdir / "secrets", orphans="delete")
    lockstep.policy.write(lockstep.workdir)
    lockstep.killed_at(f"delete_account:{point}", "apply", "--yes")
    assert_settled(lockstep)
    with admin(db) as conn:
        gone = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'legacy_batch'").fetchone()
    assert gone is None
    assert_delivered_works(lockstep, db)
