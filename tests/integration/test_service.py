"""`lockstep run` as platform teams run it: a real service process keeping a real PostgreSQL in
step with the policy, with no CLI call in between. Waits are bounded polls, never timings."""

from __future__ import annotations

import functools
import json
import signal
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg import sql

from lockstep.demo import localpg
from support.cli_project import Lockstep, admin, create_orders_db, project_env, refused
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var, Workload
from support.service_harness import Service, eventually, journal, row_counts


class Project:
    """A working directory with a policy, and the environment `lockstep` runs in."""

    def __init__(self, workdir: Path, pg: localpg.LocalPostgres) -> None:
        self.workdir = workdir
        self.pg = pg
        self.env = project_env(ORDERS_DB_DSN=pg.dsn("orders"))
        self.services: list[Service] = []

    @property
    def state(self) -> Path:
        return self.workdir / ".lockstep" / "state.db"

    def write_policy(
        self,
        orphan_rule: str = "report",
        entitlements: tuple[str, ...] = ("SELECT on table public.orders",),
        interval: str | None = None,
        expires: datetime | None = None,
        owner: str = "payments-team",
        workload: Workload | None = None,
    ) -> None:
        """payments-api on orders-db, its credential delivered to a sink file."""
        settings = {} if interval is None else {"interval": interval}
        sink = f"file:{self.workdir / 'secrets' / 'payments-api.json'}"
        Policy(
            targets={
                "orders-db": Target.postgres(Var("ORDERS_DB_DSN"), environment="prod", **settings)
            },
            owners={"payments-team": Owner(["alice@example.com"])},
            identities={
                "payments-api": Identity(
                    owner=owner,
                    purpose="Serve the payments API",
                    environment="prod",
                    access=[Access("orders-db", "payments_api", list(entitlements), expires)],
                    credentials=Credentials(sink=sink),
                    workload=workload,
                )
            },
            rules={"orphan_accounts": orphan_rule},
        ).write(self.workdir)

    def start(self, *args: str) -> Service:
        service = Service(self.workdir, self.env, *args, name=f"svc{len(self.services)}")
        self.services.append(service)
        return service.wait_ready()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return Lockstep(self.workdir, self.env)(*args)

    def password(self) -> str:
        password: str = json.loads((self.workdir / "secrets" / "payments-api.json").read_text())[
            "password"
        ]
        return password

    def results(self, **fields: object) -> list[dict[str, Any]]:
        if not self.state.exists():
            return []
        return [
            r
            for r in journal(self.state, "result")
            if all(r.get(k) == v for k, v in fields.items())
        ]


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg)


@pytest.fixture
def project(db: localpg.LocalPostgres, tmp_path: Path):
    project = Project(tmp_path, db)
    project.write_policy()
    yield project
    for service in project.services:
        if service.proc.poll() is None:
            service.kill()


def privileges(pg: localpg.LocalPostgres, role: str) -> set[str]:
    with admin(pg) as conn:
        rows = conn.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s AND table_name = 'orders'",
            (role,),
        ).fetchall()
    return {r for (r,) in rows}


def converged(project: Project) -> None:
    """The service created the declared account and proved it."""
    eventually(
        lambda: project.results(op="grant", account="payments_api", status="verified"),
        "the declared account to be created and granted",
    )


def test_healthz_and_metrics_describe_the_running_service(project: Project):
    service = project.start()
    converged(project)

    health = eventually(
        lambda: (h := service.health())["targets"].get("orders-db", {}).get("last_pass") and h,
        "a first pass in /healthz",
    )
    assert health["status"] == "ok"
    assert health["targets"]["orders-db"]["up"] is True
    assert service.metric("lockstep_target_up", target="orders-db") == 1
    assert (
        service.metric("lockstep_passes_total", target="orders-db", outcome="remediated") or 0
    ) >= 1
    assert service.metric("lockstep_actions_total", op="create_account", status="verified") == 1
    assert (service.metric("lockstep_time_to_remediate_seconds_count") or 0) >= 2
    exposition = service.get("/metrics").text
    for family in (
        "lockstep_drift_found_total",
        "lockstep_verification_failures_total",
        "lockstep_time_to_remediate_seconds_bucket",
        "lockstep_pass_duration_seconds_bucket",
    ):
        assert f"# TYPE {family.removesuffix('_total').removesuffix('_bucket')}" in exposition
    targets = service.get("/v1/targets").json()["targets"]
    assert [(t["name"], t["up"], t["interval_s"]) for t in targets] == [("orders-db", True, 30.0)]


def test_an_out_of_band_grant_is_revoked_and_verified_without_any_cli_call(project: Project, db):
    service = project.start()
    converged(project)
    with admin(db) as conn:
        conn.execute("GRANT DELETE ON public.orders TO payments_api")

    eventually(
        lambda: project.results(
            op="revoke", entitlement="DELETE on table public.orders", status="verified"
        ),
        "the out-of-band grant to be revoked and verified",
    )
    assert privileges(db, "payments_api") == {"SELECT"}
    assert service.metric("lockstep_actions_total", op="revoke", status="verified") == 1
    assert service.metric("lockstep_drift_found_total", type="excess_entitlement") == 1


def test_a_new_orphan_account_is_suspended_when_the_rule_says_so(project: Project, db):
    project.write_policy(orphan_rule="suspend")
    project.start()
    converged(project)
    with admin(db) as conn:
        conn.execute("CREATE ROLE legacy_batch LOGIN PASSWORD 'legacy-pw-4711'")

    eventually(
        lambda: project.results(op="suspend_account", account="legacy_batch", status="verified"),
        "the orphan to be suspended and verified",
    )
    assert refused(db, "legacy_batch", "legacy-pw-4711")
    with admin(db) as conn:  # suspended, not deleted
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'legacy_batch'").fetchone()


def test_a_policy_edit_starts_a_pass_at_once(project: Project, db):
    project.write_policy(interval="1h")
    service = project.start()
    converged(project)

    project.write_policy(
        interval="1h",
        entitlements=("SELECT on table public.orders", "INSERT on table public.orders"),
    )
    eventually(
        lambda: privileges(db, "payments_api") == {"SELECT", "INSERT"},
        "the newly granted entitlement",
    )
    eventually(
        lambda: any("policy" in e["reasons"] for e in service.events("pass", target="orders-db")),
        "a pass that names the policy edit as its reason",
    )
    assert journal(project.state, "policy_loaded")


def test_an_expiry_starts_a_pass_when_it_is_reached(project: Project, db):
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    project.write_policy(interval="1h", expires=expires)
    service = project.start()
    converged(project)

    eventually(
        lambda: project.results(op="suspend_account", account="payments_api", status="verified"),
        "the expired access to be suspended",
    )
    eventually(
        lambda: any("expiry" in e["reasons"] for e in service.events("pass", target="orders-db")),
        "a pass that names the expiry as its reason",
    )


def test_lockstep_reconcile_asks_the_service_for_a_pass(project: Project):
    project.write_policy(interval="1h")
    service = project.start()
    converged(project)
    eventually(lambda: service.passes("orders-db") >= 1, "the first pass")
    before = service.passes("orders-db")

    proc = project.cli("reconcile", "--listen", f"127.0.0.1:{service.port}", "--wait")
    assert proc.returncode == 0, proc.stderr
    assert "orders-db: unchanged" in proc.stdout
    assert service.passes("orders-db") > before
    assert any("requested" in e["reasons"] for e in service.events("pass", target="orders-db"))


def test_lockstep_reconcile_without_a_service_says_so(project: Project):
    proc = project.cli("reconcile", "--listen", f"127.0.0.1:{localpg.free_port()}")
    assert proc.returncode == 1
    assert "no lockstep service answers" in proc.stderr


def test_sigterm_stops_the_service_with_exit_0(project: Project):
    service = project.start()
    converged(project)
    assert service.stop(signal.SIGTERM) == 0
    assert [e["status"] for e in service.events("service stopped")] == ["stopped"]
    assert [e["clean"] for e in journal(project.state, "service_stopped")] == [True]


def test_a_pass_with_nothing_to_change_writes_only_the_heartbeat(project: Project):
    project.write_policy(interval="1h")
    service = project.start()
    converged(project)
    reconcile = ("reconcile", "--listen", f"127.0.0.1:{service.port}", "--wait")
    assert project.cli(*reconcile).returncode == 0  # settles what the first pass changed
    tables = ("journal", "findings", "credentials", "identity_states", "usage", "leases")
    before = row_counts(project.state, *tables)
    beat = row_counts(project.state, "heartbeats")

    for _ in range(3):
        assert "orders-db: unchanged" in project.cli(*reconcile).stdout
    assert row_counts(project.state, *tables) == before
    assert row_counts(project.state, "heartbeats") == beat


def test_an_invalid_policy_edit_keeps_the_last_good_policy_in_force(project: Project, db):
    service = project.start()
    converged(project)
    project.write_policy(owner="nobody")

    invalid = eventually(
        lambda: service.events("policy invalid: the last valid policy stays in force"),
        "the invalid policy to be reported",
    )
    assert any("lockstep.yaml:" in e and "nobody" in e for e in invalid[0]["errors"])
    with admin(db) as conn:
        conn.execute("GRANT DELETE ON public.orders TO payments_api")
    eventually(
        lambda: privileges(db, "payments_api") == {"SELECT"},
        "drift to be repaired under the last good policy",
    )
    assert service.health()["status"] == "ok"


def test_an_unreachable_target_is_down_and_never_reported_in_sync(project: Project):
    project.env["ORDERS_DB_DSN"] = f"postgresql://nobody:pw-x9y8@127.0.0.1:{localpg.free_port()}/x"
    service = project.start()

    eventually(
        lambda: service.metric("lockstep_target_up", target="orders-db") == 0,
        "the target to be reported down",
    )
    assert service.health()["targets"]["orders-db"]["up"] is False
    findings = service.get("/v1/findings").json()["findings"]
    assert [f["type"] for f in findings] == ["target_unreachable"]
    assert (
        service.metric("lockstep_passes_total", target="orders-db", outcome="unreachable") or 0
    ) >= 1
    assert not service.metric("lockstep_passes_total", target="orders-db", outcome="unchanged")
    assert "pw-x9y8" not in service.text()


def test_a_plan_that_trips_the_blast_radius_guard_is_not_applied(project: Project, db):
    with admin(db) as conn:
        for i in range(6):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"ghost{i}")))
    project.write_policy(orphan_rule="suspend")
    service = project.start()

    eventually(
        lambda: service.metric("lockstep_plan_blocked", target="orders-db") == 1,
        "the guard to stop the plan",
    )
    assert service.events(
        "plan not applied: it trips the blast-radius guard (rules.mass_change_limit)"
    )
    with admin(db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'ghost%' AND rolcanlogin"
        ).fetchone() == (6,)


def test_the_logs_hold_no_secret(project: Project, db):
    service = project.start()
    converged(project)
    with admin(db) as conn:
        conn.execute("GRANT DELETE ON public.orders TO payments_api")
    eventually(lambda: project.results(op="revoke", status="verified"), "a revocation")
    assert service.stop() == 0

    issued = project.password()
    text = service.text()
    assert service.events("action", op="create_account", status="verified")
    for secret in (issued, db.password.reveal()):
        assert secret not in text
    for event in service.logs():
        assert {"target", "op", "status"} <= event.keys(), event


def test_a_second_service_on_the_same_sqlite_state_is_refused(project: Project):
    project.start()
    proc = project.cli("run", "--listen", f"127.0.0.1:{localpg.free_port()}")
    assert proc.returncode == 1
    assert "another `lockstep run` already uses the state store" in proc.stderr


def two_targets(owner: str, secrets: Path) -> Policy:
    """settlement on orders-db and ledger-db, each target excluding the other's account."""
    return Policy(
        targets={
            "orders-db": Target.postgres(
                Var("ORDERS_DB_DSN"), interval="1h", exclude=["ledger_worker"]
            ),
            "ledger-db": Target.postgres(
                Var("LEDGER_DB_DSN"), interval="1h", exclude=["orders_worker"]
            ),
        },
        owners={"team-a": Owner(["a@example.com"]), "team-b": Owner(["b@example.com"])},
        identities={
            "settlement": Identity(
                owner=owner,
                purpose="Settle orders into the ledger",
                access=[
                    Access("orders-db", "orders_worker", ["SELECT on table public.orders"]),
                    Access("ledger-db", "ledger_worker", ["CONNECT on database ledger"]),
                ],
                credentials=Credentials(sink=f"file:{secrets / 'settlement-{target}.json'}"),
            )
        },
    )


def test_an_owner_change_rotates_an_identity_on_every_one_of_its_targets(project: Project, db):
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ledger")
    project.env["LEDGER_DB_DSN"] = db.dsn("ledger")
    two_targets("team-a", project.workdir / "secrets").write(project.workdir)
    service = project.start()

    def owner() -> str | None:
        with sqlite3.connect(f"file:{project.state}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT owner FROM identity_states WHERE identity = 'settlement'"
            ).fetchone()
        return row[0] if row else None

    eventually(lambda: owner() == "team-a", "the identity's owner to be recorded")
    sinks = {
        t: project.workdir / "secrets" / f"settlement-{t}.json" for t in ("orders-db", "ledger-db")
    }
    old = {t: json.loads(path.read_text())["password"] for t, path in sinks.items()}

    two_targets("team-b", project.workdir / "secrets").write(project.workdir)
    for account in ("orders_worker", "ledger_worker"):
        eventually(
            functools.partial(
                project.results, op="rotate_credential", account=account, status="verified"
            ),
            f"{account}'s credential to be rotated",
        )
    eventually(lambda: owner() == "team-b", "the owner change to be recorded as enforced")
    assert refused(db, "orders_worker", old["orders-db"])
    assert refused(db, "ledger_worker", old["ledger-db"])
    joint = [e for e in service.events("pass") if e["scope"] == ["ledger-db", "orders-db"]]
    assert {e["target"] for e in joint} == {"orders-db", "ledger-db"}  # one pass, both targets
    assert len(project.results(op="rotate_credential")) == 2  # once each, not once per pass


def test_a_workload_gets_a_working_lease_from_the_running_service(project: Project, db):
    issuer, subject = "https://issuer.example.test", "spiffe://example.test/payments"
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.get_algorithm_by_name("ES256").to_jwk(key.public_key()))
    jwks = project.workdir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "k1", "alg": "ES256", "use": "sig"}]}))
    project.write_policy(workload=Workload(issuer, subject, audience="lockstep"))
    service = project.start("--jwks", f"{issuer}=file:{jwks}")
    converged(project)

    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": "lockstep",
        "iat": now,
        "exp": now + 300,
        "jti": "lease-1",
    }
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
    answer = service.http.post(
        "/v1/credentials",
        json={"identity": "payments-api", "target": "orders-db", "ttl": "5m"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201, answer.text
    lease = answer.json()
    with psycopg.connect(
        host="127.0.0.1",
        port=db.port,
        dbname="orders",
        user=lease["username"],
        password=lease["password"],
    ) as conn:
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)
    assert lease["password"] not in service.text()
    assert token not in service.text()
