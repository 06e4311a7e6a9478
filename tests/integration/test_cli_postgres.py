"""End to end: the ``lockstep`` command against a real PostgreSQL, as a user drives it."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lockstep.demo import localpg
from support import cli_project
from support.cli_project import ORDERS_TABLE, admin, create_orders_db, login, project_env, refused
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var


def policy(secrets: Path) -> Policy:
    """Two identities on orders-db, each owned by its own team and delivered to a sink file."""
    return Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"), environment="prod")},
        owners={
            "payments-team": Owner(["alice@example.com"], status="active"),
            "reporting-team": Owner(["bob@example.com"], status="active"),
        },
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                environment="prod",
                access=[
                    Access(
                        "orders-db",
                        "payments_api",
                        [
                            "role:app_readonly",
                            "SELECT on table public.orders",
                            "USAGE on schema billing",
                            "CONNECT on database orders",
                        ],
                    )
                ],
                credentials=Credentials(sink=f"file:{secrets / 'payments-api.json'}"),
            ),
            "reporting-job": Identity(
                owner="reporting-team",
                purpose="Nightly report",
                environment="prod",
                access=[Access("orders-db", "reporting_job", ["SELECT on table public.orders"])],
                credentials=Credentials(sink=f"file:{secrets / 'reporting-job.json'}"),
            ),
        },
        rules={"orphan_accounts": "report"},
    )


class Lockstep(cli_project.Lockstep):
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, env)
        self.policy = policy(workdir / "secrets")

    def write_policy(self) -> None:
        self.policy.write(self.workdir)

    def secret(self, identity: str) -> dict[str, Any]:
        text = (self.workdir / "secrets" / f"{identity}.json").read_text()
        loaded: dict[str, Any] = json.loads(text)
        return loaded


@pytest.fixture
def db(pg: localpg.LocalPostgres):
    return create_orders_db(
        pg,
        on_server=["CREATE ROLE app_readonly NOLOGIN"],
        in_orders=[ORDERS_TABLE, "CREATE SCHEMA billing"],
    )


@pytest.fixture
def lockstep(db: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))
    cli.write_policy()
    return cli


def ops(plan: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["op"], a["account"], a["entitlement"]) for a in plan["actions"]]


def assert_no_secret_leaked(cli: Lockstep, pg: localpg.LocalPostgres, *passwords: str) -> None:
    state = (cli.workdir / ".lockstep" / "state.db").read_bytes()
    text = "\n".join(cli.outputs)
    for secret in (pg.password.reveal(), *passwords):
        assert secret not in text
        assert secret.encode() not in state


def test_plan_apply_converges_and_verifies(lockstep: Lockstep, db):
    plan = lockstep.json("plan")
    assert ops(plan)[0] == ("create_account", "payments_api", None)
    assert ("grant", "payments_api", "CONNECT on database orders") in ops(plan)
    assert lockstep("plan", "--exit-code").returncode == 2

    applied = lockstep("apply", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    results = json.loads(applied.stdout)["results"]
    assert results and {r["status"] for r in results} == {"verified"}

    assert lockstep.json("plan")["actions"] == []
    assert lockstep("plan", "--exit-code").returncode == 0
    verified = lockstep("verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["in_sync"] is True

    secret = lockstep.secret("payments-api")
    assert secret["account"] == "payments_api" and secret["target"] == "orders-db"
    mode = (lockstep.workdir / "secrets" / "payments-api.json").stat().st_mode & 0o777
    assert mode == 0o600
    with login(db, "payments_api", secret["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)
    assert_no_secret_leaked(lockstep, db, secret["password"])


def test_out_of_band_drift_is_found_revoked_and_verified(lockstep: Lockstep, db):
    lockstep("apply", "--yes")
    with admin(db) as conn:
        conn.execute("GRANT DELETE ON public.orders TO payments_api")
        conn.execute("CREATE ROLE legacy_batch LOGIN PASSWORD 'legacy-pw-123'")

    plan = lockstep.json("plan")
    assert ops(plan) == [("revoke", "payments_api", "DELETE on table public.orders")]
    types = {(f["type"], f["account"]) for f in plan["findings"]}
    assert ("excess_entitlement", "payments_api") in types
    assert ("orphan_account", "legacy_batch") in types
    orphan = next(f for f in plan["findings"] if f["type"] == "orphan_account")
    assert orphan["owasp_nhi"] == ["NHI1"] and orphan["nist_csf"] == ["PR.AA-05"]
    assert orphan["first_seen"] and orphan["status"] == "open"
    assert lockstep("verify").returncode == 2

    lockstep.policy.rules["orphan_accounts"] = "suspend"
    lockstep.write_policy()
    assert lockstep("apply", "--yes").returncode == 0
    assert lockstep.json("plan")["actions"] == []
    assert refused(db, "legacy_batch", "legacy-pw-123")
    findings = lockstep.json("findings")["findings"]
    assert [f["type"] for f in findings] == ["orphan_account"]  # suspended, still undeclared


def test_a_departed_owner_suspends_the_account_and_its_old_password_is_refused(
    lockstep: Lockstep, db
):
    lockstep("apply", "--yes")
    old = lockstep.secret("reporting-job")["password"]
    session = login(db, "reporting_job", old)

    lockstep.policy.owners["reporting-team"].status = "departed"
    lockstep.write_policy()
    applied = lockstep.json("apply", "--yes")
    [result] = applied["results"]
    assert (result["op"], result["account"], result["status"]) == (
        "suspend_account",
        "reporting_job",
        "verified",
    )
    assert refused(db, "reporting_job", old)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    with admin(db) as conn:  # suspended, not deleted: fixing the policy restores it
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname='reporting_job'").fetchone()
    assert lockstep("verify").returncode == 0

    lockstep.policy.owners["reporting-team"].status = "active"
    lockstep.write_policy()
    assert lockstep("apply", "--yes").returncode == 0
    new = lockstep.secret("reporting-job")["password"]
    assert new != old
    login(db, "reporting_job", new).close()
    assert_no_secret_leaked(lockstep, db, old, new)


def test_the_journal_is_verified_and_tampering_is_named(lockstep: Lockstep):
    lockstep("apply", "--yes")
    ok = lockstep("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    with sqlite3.connect(lockstep.workdir / ".lockstep" / "state.db") as conn:
        (seq,) = conn.execute(
            "SELECT min(seq) FROM journal WHERE payload LIKE '%payments_api%' AND seq > 1"
        ).fetchone()
        conn.execute(
            "UPDATE journal SET payload = replace(payload, 'payments_api', 'x') WHERE seq = ?",
            (seq,),
        )
    broken = lockstep("audit", "verify")
    assert broken.returncode == 1
    assert f"entry {seq}" in broken.stderr


def test_an_unreachable_target_is_never_reported_clean(lockstep: Lockstep):
    lockstep.env["ORDERS_DB_DSN"] = f"postgresql://nobody:pw-x9@127.0.0.1:{localpg.free_port()}/x"
    plan = lockstep.json("plan")
    assert plan["actions"] == []
    assert plan["unreachable"] == ["orders-db"]
    assert [f["type"] for f in plan["findings"]] == ["target_unreachable"]
    human = lockstep("plan")
    assert "unreachable" in human.stdout and "No changes. Every target" not in human.stdout
    assert lockstep("verify").returncode == 2
    assert lockstep("apply", "--yes").returncode == 1
    assert "pw-x9" not in "\n".join(lockstep.outputs)


def test_apply_changes_nothing_when_the_journal_cannot_be_written(lockstep: Lockstep, db):
    lockstep("plan")  # creates the state store
    with sqlite3.connect(lockstep.workdir / ".lockstep" / "state.db") as conn:
        conn.execute(
            "CREATE TRIGGER no_journal BEFORE INSERT ON journal "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    proc = lockstep("apply", "--yes")
    assert proc.returncode == 1
    with admin(db) as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname='payments_api'").fetchone() is None
        )


def test_apply_without_yes_and_without_a_terminal_refuses(lockstep: Lockstep, db):
    proc = lockstep("apply")
    assert proc.returncode == 1 and "--yes" in proc.stderr
    with admin(db) as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname='payments_api'").fetchone() is None
        )


def test_the_blast_radius_guard_stops_a_mass_suspension(lockstep: Lockstep, db):
    with admin(db) as conn:
        for i in range(6):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"ghost{i}")))
    lockstep.policy.rules["orphan_accounts"] = "suspend"
    lockstep.write_policy()
    stopped = lockstep("apply", "--yes")
    assert stopped.returncode == 1 and "--allow-mass-change" in stopped.stderr
    with admin(db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'ghost%' AND rolcanlogin"
        ).fetchone() == (6,)
    assert lockstep("apply", "--yes", "--allow-mass-change").returncode == 0


def test_hostile_account_names_are_managed_exactly(lockstep: Lockstep, db):
    names = ['a"b', "x; DROP ROLE app_readonly; --", "Robert'); --", "søren-ü", "n" * 63]
    for i, name in enumerate(names):
        lockstep.policy.identities[f"hostile{i}"] = Identity(
            owner="payments-team",
            purpose="test",
            access=[Access("orders-db", name, ["role:app_readonly"])],
        )
    lockstep.write_policy()
    assert lockstep("apply", "--yes").returncode == 0
    assert lockstep.json("plan")["actions"] == []
    with admin(db) as conn:
        have = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    assert set(names) <= have and "app_readonly" in have


def test_a_crash_mid_apply_is_repaired_by_the_next_pass(lockstep: Lockstep, db):
    proc = lockstep.popen("apply", "--yes")
    journal = lockstep.workdir / ".lockstep" / "state.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists():
            try:
                with sqlite3.connect(journal) as conn:
                    count = conn.execute(
                        "SELECT count(*) FROM journal WHERE kind='result'"
                    ).fetchone()[0]
            except sqlite3.OperationalError:
                count = 0
            if count >= 2:
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lockstep("apply", "--yes").returncode == 0
    assert lockstep.json("plan")["actions"] == []
    assert lockstep("audit", "verify").returncode == 0


def test_state_can_live_in_postgresql(lockstep: Lockstep, db):
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE lockstep_state")
    lockstep.env["LOCKSTEP_STATE"] = db.dsn("lockstep_state")
    assert lockstep("apply", "--yes").returncode == 0
    assert lockstep("audit", "verify").returncode == 0
    with psycopg.connect(db.dsn("lockstep_state")) as conn:
        assert conn.execute("SELECT count(*) FROM journal").fetchone() not in (None, (0,))


def test_validate_reports_file_and_line(tmp_path: Path):
    bad = tmp_path / "lockstep.yaml"
    bad.write_text(
        textwrap.dedent("""\
        version: 1
        owners:
          team: {}
        identities:
          api:
            owner: nobody
            purpose: x
    """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "lockstep", "validate"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert f"{bad.name}:6: unknown owner 'nobody'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rotate_delivers_a_working_password_and_proves_the_old_one_refused(lockstep: Lockstep, db):
    lockstep("apply", "--yes")
    old = lockstep.secret("payments-api")["password"]
    rotated = lockstep.json("rotate", "payments-api", "--reason", "leaked")
    [result] = rotated["results"]
    assert (result["op"], result["status"]) == ("rotate_credential", "verified")
    new = lockstep.secret("payments-api")["password"]
    assert new != old
    assert refused(db, "payments_api", old)
    login(db, "payments_api", new).close()
    assert lockstep("rotate", "nobody").returncode == 1
    assert_no_secret_leaked(lockstep, db, old, new)


def test_a_changed_owner_rotates_the_identitys_credential(lockstep: Lockstep, db):
    lockstep("apply", "--yes")
    old = lockstep.secret("payments-api")["password"]
    lockstep.policy.identities["payments-api"].owner = "reporting-team"
    lockstep.write_policy()
    plan = lockstep.json("plan")
    assert ops(plan) == [("rotate_credential", "payments_api", None)]
    assert "owner changed" in plan["actions"][0]["reason"]
    assert lockstep("apply", "--yes").returncode == 0
    assert refused(db, "payments_api", old)
    assert lockstep.json("plan")["actions"] == []


def test_a_failed_delivery_leaves_the_workload_its_working_password(lockstep: Lockstep, db):
    lockstep("apply", "--yes")
    old = lockstep.secret("payments-api")["password"]
    blocked = lockstep.workdir / "secrets-blocked"
    blocked.write_text("a file where the sink's directory should be")
    sink = f"file:{blocked / 'payments-api.json'}"
    lockstep.policy.identities["payments-api"].credentials.sink = sink
    lockstep.write_policy()
    rotated = lockstep.json("rotate", "payments-api")
    [result] = rotated["results"]
    assert result["status"] == "failed"
    assert "previous credential restored and proven working" in result["detail"]
    login(db, "payments_api", old).close()


def test_a_credential_older_than_rotate_every_is_rotated(lockstep: Lockstep, db):
    lockstep.policy.identities["payments-api"].credentials.rotate_every = "1s"
    lockstep.write_policy()
    lockstep("apply", "--yes")
    old = lockstep.secret("payments-api")["password"]
    time.sleep(1.1)
    plan = lockstep.json("plan")
    assert ("rotate_credential", "payments_api", None) in ops(plan)
    assert any(f["type"] == "stale_credential" for f in plan["findings"])
    assert lockstep("apply", "--yes").returncode == 0
    assert refused(db, "payments_api", old)


def test_an_active_lease_is_neither_an_orphan_nor_drift(lockstep: Lockstep, db):
    lockstep("apply", "--yes")
    issued = lockstep("issue", "payments-api", "--target", "orders-db", "--ttl", "10m", "--json")
    assert issued.returncode == 0, issued.stderr
    lease = json.loads(issued.stdout)
    lockstep.outputs.remove(issued.stdout)  # the one place a lease's password is meant to go
    login(db, lease["username"], lease["password"]).close()
    assert lockstep.json("plan")["actions"] == []
    verified = lockstep("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert lockstep("revoke", lease["lease_id"]).returncode == 0
    assert refused(db, lease["username"], lease["password"])
    assert_no_secret_leaked(lockstep, db, lease["password"])


def test_a_leaked_secret_rotates_and_revokes_the_identitys_leases_in_one_pass(
    lockstep: Lockstep, db
):
    lockstep("apply", "--yes")
    old = lockstep.secret("payments-api")["password"]
    issued = lockstep("issue", "payments-api", "--target", "orders-db", "--json")
    lease = json.loads(issued.stdout)
    lockstep.outputs.remove(issued.stdout)

    leaked = lockstep.json("rotate", "payments-api", "--reason", "leaked")
    assert [r["status"] for r in leaked["results"]] == ["verified"]
    assert [(x["lease_id"], x["status"]) for x in leaked["leases"]] == [
        (lease["lease_id"], "revoked")
    ]
    assert refused(db, "payments_api", old)
    assert refused(db, lease["username"], lease["password"])
    assert_no_secret_leaked(lockstep, db, old, lease["password"])


def test_findings_name_their_owasp_nhi_risk(lockstep: Lockstep, db):
    with admin(db) as conn:
        conn.execute("CREATE ROLE stray LOGIN")
    [orphan] = lockstep.json("findings")["findings"]
    assert (orphan["type"], orphan["owasp_nhi"]) == ("orphan_account", ["NHI1"])
    assert orphan["owasp_nhi_titles"] == ["Improper Offboarding"]
