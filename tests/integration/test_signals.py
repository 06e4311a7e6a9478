"""SIGINT and SIGTERM stop `apply`, `rotate`, `issue` and `revoke` cleanly: the action in
flight finishes, verified and journaled, the command stops before the next one with exit
128 + the signal, and the journal says it was interrupted. The signal is delivered by the
fault-injection hook at a chosen step, so the test does not race the command."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from lockstep.engine.faults import FAULT_ENV, SIGNAL_ENV
from support import cli_project
from support.cli_project import create_orders_db, login, project_env, refused
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var


class Lockstep(cli_project.Lockstep):
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, env)
        secrets = workdir / "secrets"
        Policy(
            targets={"orders-db": Target.postgres(Var("DSN"))},
            owners={"team": Owner(["alice@example.com"], status="active")},
            identities={
                name: Identity(
                    owner="team",
                    purpose="tests",
                    access=[
                        Access("orders-db", name.replace("-", "_"), ["CONNECT on database orders"])
                    ],
                    credentials=Credentials(sink=f"file:{secrets / name}.json"),
                )
                for name in ("app-a", "app-b", "app-c")
            },
        ).write(workdir)

    def signalled(self, step: str, sig: signal.Signals, *args: str) -> str:
        self.env.update({FAULT_ENV: step, SIGNAL_ENV: sig.name.removeprefix("SIG")})
        try:
            proc = self(*args)
        finally:
            del self.env[FAULT_ENV], self.env[SIGNAL_ENV]
        assert proc.returncode == 128 + sig, (proc.returncode, proc.stdout, proc.stderr)
        assert "finishes the action in flight" in proc.stderr
        return proc.stdout

    def journal(self) -> list[tuple[str, dict[str, Any]]]:
        with sqlite3.connect(self.workdir / ".lockstep" / "state.db") as conn:
            rows = conn.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
            pending = conn.execute("SELECT count(*) FROM pending_credentials").fetchone()[0]
        assert pending == 0, "a change was left half-done"
        return [(kind, json.loads(payload)) for kind, payload in rows]

    def password(self, name: str) -> str:
        return str(json.loads((self.workdir / "secrets" / f"{name}.json").read_text())["password"])


@pytest.fixture
def lockstep(pg: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    create_orders_db(pg)
    return Lockstep(tmp_path, project_env(DSN=pg.dsn("orders")))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_apply_finishes_the_action_in_flight_then_stops(
    lockstep: Lockstep, pg: localpg.LocalPostgres, sig: signal.Signals
) -> None:
    # The creations run as one batch: the signal comes during it, the batch finishes, and
    # the grants that would follow are not started.
    lockstep.signalled("create_account:target_changed", sig, "apply", "--yes")
    entries = lockstep.journal()
    results = [p for kind, p in entries if kind == "result"]
    assert {(r["op"], r["status"]) for r in results} == {("create_account", "verified")}
    assert len(results) == 3
    [interrupted] = [p for kind, p in entries if kind == "interrupted"]
    assert interrupted["done"] == 3
    intents = [p for kind, p in entries if kind == "intent"]
    assert {i["op"] for i in intents} == {"create_account"}  # no grant was started
    login(pg, "app_a", lockstep.password("app-a")).close()
    assert lockstep("audit", "verify").returncode == 0
    assert lockstep("apply", "--yes").returncode == 0  # the rest, on the next run
    assert lockstep("verify").returncode == 0


def test_rotate_finishes_the_rotation_in_flight_then_stops(
    lockstep: Lockstep, pg: localpg.LocalPostgres
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    before = lockstep.password("app-a")
    lockstep.signalled("rotate_credential:target_changed", signal.SIGTERM, "rotate", "app-a")
    entries = lockstep.journal()
    last = [p for kind, p in entries if kind == "result"][-1]
    assert (last["op"], last["status"]) == ("rotate_credential", "verified")
    assert refused(pg, "app_a", before)
    login(pg, "app_a", lockstep.password("app-a")).close()
    assert lockstep("verify").returncode == 0


def test_issue_and_revoke_finish_the_lease_in_flight_then_stop(
    lockstep: Lockstep, pg: localpg.LocalPostgres
) -> None:
    assert lockstep("apply", "--yes").returncode == 0
    printed = lockstep.signalled(
        "issue:created", signal.SIGTERM, "issue", "app-a", "--target", "orders-db", "--json"
    )
    lease = json.loads(printed)
    login(pg, lease["username"], lease["password"]).close()  # issued, proven, and shown
    lockstep.signalled("revoke:removed", signal.SIGINT, "revoke", lease["lease_id"])
    assert refused(pg, lease["username"], lease["password"])
    kinds = [(k, p.get("command")) for k, p in lockstep.journal() if k == "interrupted"]
    assert kinds == [("interrupted", "issue"), ("interrupted", "revoke")]
    assert lockstep("audit", "verify").returncode == 0
