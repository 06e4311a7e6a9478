"""Leases on PostgreSQL: short-lived credentials, one account per lease, issued only once
they log in and ended only once the target refuses them, through the CLI and the manager
(batches: test_lease_batches.py; Redis and AWS: test_leases_redis_aws.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
import pytest
from sqlalchemy import delete

from lockstep.demo import localpg
from lockstep.demo.localpg import free_port
from lockstep.engine.workspace import Workspace
from lockstep.leases.manager import (
    DEFAULT_MAX_TTL_S,
    DEFAULT_TTL_S,
    LeaseError,
    LeaseStatus,
)
from lockstep.model import LEASE_PREFIX
from lockstep.store.tables import leases as leases_table
from support.cli_project import login as pg_login

if TYPE_CHECKING:
    pass
from support.lease_project import (
    Project,
    assert_nothing_secret_in,
    lease_roles,
    pg_policy,
    pg_refused,
    pg_role,
)

pytest_plugins = ("support.lease_project",)


# ------------------------------------------------ PostgreSQL: the CLI, as users drive it


def test_issue_prints_a_credential_that_works_holds_the_entitlements_and_expires_natively(
    project: Project, db: localpg.LocalPostgres
) -> None:
    proc = project.cli("issue", "payments-api", "--target", "orders-db", "--ttl", "15m", "--json")
    assert proc.returncode == 0, proc.stderr
    lease = json.loads(proc.stdout)
    assert {"lease_id", "username", "password", "expires_at"} <= set(lease)
    assert lease["username"] == LEASE_PREFIX + lease["lease_id"]

    with pg_login(db, lease["username"], lease["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)
        assert conn.execute("SELECT pg_has_role('app_readonly', 'member')").fetchone() == (True,)
    can_login, valid_until = pg_role(db, lease["username"]) or (None, None)
    assert can_login is True
    expires = datetime.fromisoformat(lease["expires_at"].replace("Z", "+00:00"))
    assert abs(valid_until - expires) < timedelta(seconds=1)
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)


def test_issue_and_revoke_journal_intent_and_result_with_a_fingerprint_never_the_secret(
    project: Project,
) -> None:
    lease = json.loads(
        project.cli("issue", "payments-api", "--target", "orders-db", "--json").stdout
    )
    revoked = project.cli("revoke", lease["lease_id"])
    kinds = [e["kind"] for e in project.journal() if e["kind"].startswith("lease_")]
    assert kinds == ["lease_intent", "lease_issued", "lease_intent", "lease_revoked"]
    [issued] = project.journal("lease_issued")
    assert issued["fingerprint"].startswith("sha256:") and issued["lease_id"] == lease["lease_id"]
    assert project.journal("lease_intent")[0]["op"] == "issue"
    assert project.journal("lease_intent")[1]["op"] == "revoke"
    assert_nothing_secret_in(project, lease["password"], texts=(revoked.stdout, revoked.stderr))
    assert project.cli("audit", "verify").returncode == 0


def test_revoke_exits_0_once_the_credential_is_refused_and_open_sessions_are_ended(
    project: Project, db: localpg.LocalPostgres
) -> None:
    lease = json.loads(
        project.cli("issue", "payments-api", "--target", "orders-db", "--json").stdout
    )
    session = pg_login(db, lease["username"], lease["password"])

    proc = project.cli("revoke", lease["lease_id"], "--json")
    assert proc.returncode == 0, proc.stderr
    [ended] = json.loads(proc.stdout)["ended"]
    assert ended["status"] == "revoked" and "refused" in ended["detail"]
    assert pg_refused(db, lease["username"], lease["password"])
    assert pg_role(db, lease["username"]) is None
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    assert project.cli("revoke", lease["lease_id"]).returncode == 0  # already revoked


def test_revoke_exits_1_when_the_refusal_cannot_be_proven_and_succeeds_later(
    project: Project, db: localpg.LocalPostgres
) -> None:
    lease = json.loads(
        project.cli("issue", "payments-api", "--target", "orders-db", "--json").stdout
    )
    working_dsn = project.env["ORDERS_DB_DSN"]
    project.env["ORDERS_DB_DSN"] = f"postgresql://nobody:pw-x9@127.0.0.1:{free_port()}/orders"
    failed = project.cli("revoke", lease["lease_id"])
    assert failed.returncode == 1
    assert "failed" in failed.stderr and "pw-x9" not in failed.stderr
    assert project.journal("lease_failed")[-1]["op"] == "revoke"
    listed = json.loads(project.cli("leases", "--json").stdout)["leases"]
    assert [entry["status"] for entry in listed] == ["failed"]

    project.env["ORDERS_DB_DSN"] = working_dsn
    assert project.cli("revoke", lease["lease_id"]).returncode == 0
    assert pg_refused(db, lease["username"], lease["password"])


def test_a_ttl_above_the_identitys_maximum_is_refused_and_nothing_is_made(
    project: Project, db: localpg.LocalPostgres
) -> None:
    proc = project.cli("issue", "payments-api", "--target", "orders-db", "--ttl", "2h", "--json")
    assert proc.returncode == 1
    assert "lease_max_ttl" in proc.stderr and proc.stdout == ""
    assert lease_roles(db) == []


def test_the_ttl_defaults_to_the_identitys_and_else_to_an_hour(project: Project) -> None:
    with project.manager() as manager:
        lease, _ = manager.issue("payments-api", "orders-db")
        assert lease.expires_at - lease.issued_at == timedelta(minutes=10)
        assert lease.max_expires_at - lease.issued_at == timedelta(hours=1)
        lease, _ = manager.issue("reporting-job", "orders-db")
        assert lease.expires_at - lease.issued_at == timedelta(seconds=DEFAULT_TTL_S)
        assert lease.max_expires_at - lease.issued_at == timedelta(seconds=DEFAULT_MAX_TTL_S)


def test_renew_extends_the_native_expiry_but_never_past_the_maximum(
    project: Project, db: localpg.LocalPostgres
) -> None:
    lease = json.loads(
        project.cli("issue", "payments-api", "--target", "orders-db", "--json").stdout
    )
    renewed = json.loads(project.cli("renew", lease["lease_id"], "--ttl", "30m", "--json").stdout)
    _, valid_until = pg_role(db, lease["username"]) or (None, None)
    expires = datetime.fromisoformat(renewed["expires_at"].replace("Z", "+00:00"))
    assert abs(valid_until - expires) < timedelta(seconds=1)
    assert renewed["expires_at"] > lease["expires_at"]

    # Longer than lease_max_ttl is refused, as issue refuses it; up to it, capped at the
    # lease's maximum lifetime, and said so.
    too_long = project.cli("renew", lease["lease_id"], "--ttl", "5h", "--json")
    assert too_long.returncode == 1 and "lease_max_ttl" in too_long.stderr
    capped = json.loads(project.cli("renew", lease["lease_id"], "--ttl", "1h", "--json").stdout)
    assert capped["expires_at"] == capped["max_expires_at"] and capped["capped"] is True
    assert [e["kind"] for e in project.journal() if e["kind"] == "lease_renewed"] == [
        "lease_renewed",
        "lease_renewed",
    ]


def test_leases_lists_what_was_issued_without_any_secret(project: Project) -> None:
    lease = json.loads(
        project.cli("issue", "payments-api", "--target", "orders-db", "--json").stdout
    )
    listed = project.cli("leases", "--json")
    [entry] = json.loads(listed.stdout)["leases"]
    assert entry["lease_id"] == lease["lease_id"] and entry["status"] == "active"
    assert lease["password"] not in listed.stdout
    human = project.cli("leases")
    assert lease["lease_id"] in human.stdout and lease["password"] not in human.stdout


# ------------------------------------------------ PostgreSQL: the lease manager


def test_revoke_by_identity_by_target_and_by_prefix_each_prove_refusal(
    project: Project, db: localpg.LocalPostgres
) -> None:
    with project.manager() as manager:
        pay = [manager.issue("payments-api", "orders-db") for _ in range(2)]
        rep = manager.issue("reporting-job", "orders-db")

        by_identity = manager.revoke_where(identity="payments-api")
        assert sorted(e.lease_id or "" for e in by_identity) == sorted(lease.id for lease, _ in pay)
        assert all(e.verified for e in by_identity)
        for _, credential in pay:
            assert pg_refused(db, credential.username, credential.secret.reveal())
        assert not pg_refused(db, rep[1].username, rep[1].secret.reveal())

        more = manager.issue("reporting-job", "orders-db")
        by_prefix = manager.revoke_where(prefix=more[0].id[:12])
        assert [e.lease_id for e in by_prefix] == [more[0].id] and by_prefix[0].verified

        by_target = manager.revoke_where(target="orders-db")
        assert [e.lease_id for e in by_target] == [rep[0].id] and by_target[0].verified
        assert lease_roles(db) == []
        with pytest.raises(LeaseError, match="name an identity"):
            manager.revoke_where()


def test_the_reaper_ends_leases_past_expiry_and_marks_them_expired_after_proof(
    project: Project, db: localpg.LocalPostgres
) -> None:
    with project.manager() as manager:
        old, old_credential = manager.issue("payments-api", "orders-db")
        young, young_credential = manager.issue("payments-api", "orders-db", ttl_s=3600)
        report = manager.reap(now=old.expires_at + timedelta(seconds=1))
        assert report.verified and [e.lease_id for e in report.ended] == [old.id]
        assert manager.get(old.id).status is LeaseStatus.EXPIRED
        assert manager.get(young.id).status is LeaseStatus.ACTIVE
    assert pg_refused(db, old_credential.username, old_credential.secret.reveal())
    assert not pg_refused(db, young_credential.username, young_credential.secret.reveal())


def test_expiry_holds_while_lockstep_is_not_running(
    project: Project, db: localpg.LocalPostgres
) -> None:
    # Issue times are whole seconds (a lease ends early rather than late): a 3 s lease lives
    # more than 2 s, time enough to be proven before it expires.
    with project.manager() as manager:
        lease, credential = manager.issue("payments-api", "orders-db", ttl_s=3)
    time.sleep(max(0.0, (lease.expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
    assert pg_refused(db, credential.username, credential.secret.reveal())


def test_a_lease_that_expires_before_it_is_proven_is_not_issued_and_says_why(
    project: Project, db: localpg.LocalPostgres
) -> None:
    # Issued "3 s ago" for 1 s: expired at the target before its proof login.
    start = datetime.now(UTC) - timedelta(seconds=3)
    times = iter([start])
    with (
        project.manager(clock=lambda: next(times, start + timedelta(seconds=5))) as manager,
        pytest.raises(LeaseError, match="it had expired already: ask for a longer ttl"),
    ):
        manager.issue("payments-api", "orders-db", ttl_s=1)
    assert lease_roles(db) == []


def test_the_reaper_removes_lease_accounts_whose_record_was_lost(
    project: Project, db: localpg.LocalPostgres
) -> None:
    with project.manager() as manager:
        lost, credential = manager.issue("payments-api", "orders-db")
        kept, _ = manager.issue("payments-api", "orders-db")
        with Workspace.open(project.workdir / "lockstep.yaml") as ws, ws.store.engine.begin() as c:
            c.execute(delete(leases_table).where(leases_table.c.id == lost.id))
        report = manager.reap()
    assert report.verified
    assert [(e.account, e.status) for e in report.ended] == [(lost.account, LeaseStatus.REVOKED)]
    assert pg_refused(db, credential.username, credential.secret.reveal())
    assert lease_roles(db) == [kept.account]
    [reaped] = project.journal("lease_reaped")
    assert reaped["account"] == lost.account and reaped["reason"] == "no lease record"


def test_the_reaper_finds_a_lease_account_left_by_a_crash_before_its_record(
    project: Project, db: localpg.LocalPostgres
) -> None:
    orphan = LEASE_PREFIX + "deadbeefdeadbeef"
    with psycopg.connect(db.dsn("orders"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{orphan}\" LOGIN PASSWORD 'left-behind-pw'")
    with project.manager() as manager:
        report = manager.reap()
    assert report.verified and [e.account for e in report.ended] == [orphan]
    assert lease_roles(db) == []


def test_a_lease_that_cannot_be_made_leaves_no_account_and_says_why(
    project: Project, db: localpg.LocalPostgres
) -> None:
    with project.manager() as manager, pytest.raises(LeaseError, match="not issued") as caught:
        manager.issue("broken-job", "orders-db")
    assert "public.missing" in str(caught.value)
    assert lease_roles(db) == []
    assert project.journal("lease_failed")[0]["op"] == "issue"


@pytest.mark.parametrize(
    ("identity", "target", "message"),
    [
        ("nobody", "orders-db", "unknown identity"),
        ("payments-api", "nowhere", "unknown target"),
        ("retired-job", "orders-db", "access on 'orders-db' expired"),
    ],
)
def test_a_lease_for_an_unknown_identity_or_target_or_expired_access_is_refused(
    project: Project, identity: str, target: str, message: str
) -> None:
    with project.manager() as manager, pytest.raises(LeaseError, match=message):
        manager.issue(identity, target)
    assert project.journal("lease_intent") == []


def test_an_identity_whose_owner_departed_gets_no_lease(
    project: Project, db: localpg.LocalPostgres
) -> None:
    project.write(pg_policy(owner_status="departed"))
    with project.manager() as manager, pytest.raises(LeaseError, match="owner departed"):
        manager.issue("payments-api", "orders-db")
    assert lease_roles(db) == []


def test_the_reaper_revokes_leases_of_an_identity_whose_owner_departed(
    project: Project, db: localpg.LocalPostgres
) -> None:
    with project.manager() as manager:
        lease, credential = manager.issue("payments-api", "orders-db")
    project.write(pg_policy(owner_status="departed"))
    with project.manager() as manager:
        with pytest.raises(LeaseError, match="owner departed"):
            manager.renew(lease.id)
        report = manager.reap()
        assert report.verified and manager.get(lease.id).status is LeaseStatus.REVOKED
    assert pg_refused(db, credential.username, credential.secret.reveal())
    [intent] = [e for e in project.journal("lease_intent") if e["op"] == "revoke"]
    assert "owner departed" in intent["reason"]
