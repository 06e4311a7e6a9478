"""Leases: short-lived credentials, one account per lease, issued only once they log in and
ended only once the target refuses them, on real PostgreSQL, Redis and (emulated) AWS."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import redis
from sqlalchemy import delete

from lockstep.connectors.base import Credential
from lockstep.demo import localpg
from lockstep.demo.localpg import free_port
from lockstep.engine.workspace import Workspace
from lockstep.leases.manager import (
    DEFAULT_MAX_TTL_S,
    DEFAULT_TTL_S,
    LeaseError,
    LeaseManager,
    LeaseStatus,
)
from lockstep.leases.sessions import TargetSessions
from lockstep.model import LEASE_PREFIX
from lockstep.store.tables import leases as leases_table
from support.cli_project import Lockstep, create_orders_db, project_env
from support.cli_project import login as pg_login
from support.policies import Access, Credentials, Identity, Owner, Policy, Setting, Target, Var

if TYPE_CHECKING:
    from services.moto_server import MotoServer
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server", "services.moto_server")


def pg_policy(owner_status: str = "active", **settings: Setting) -> Policy:
    """Identities on orders-db: one with lease settings, one plain, one whose access has run
    out and one that wants a table that does not exist."""
    connect = "CONNECT on database orders"
    return Policy(
        targets={"orders-db": Target("postgres", {"dsn": Var("ORDERS_DB_DSN"), **settings})},
        owners={"payments-team": Owner(["alice@example.com"], status=owner_status)},
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                access=[
                    Access(
                        "orders-db",
                        "payments_api",
                        ["role:app_readonly", "SELECT on table public.orders", connect],
                    )
                ],
                credentials=Credentials(lease_ttl="10m", lease_max_ttl="1h"),
            ),
            "reporting-job": Identity(
                owner="payments-team",
                purpose="Nightly report",
                access=[
                    Access("orders-db", "reporting_job", ["SELECT on table public.orders", connect])
                ],
            ),
            "retired-job": Identity(
                owner="payments-team",
                purpose="Access that has run out",
                access=[
                    Access("orders-db", "retired_job", [connect], datetime(2020, 1, 1, tzinfo=UTC))
                ],
            ),
            "broken-job": Identity(
                owner="payments-team",
                purpose="Wants a table that does not exist",
                access=[Access("orders-db", "broken_job", ["SELECT on table public.missing"])],
            ),
        },
    )


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture
def db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg, on_server=["CREATE ROLE app_readonly NOLOGIN"])


@dataclass
class Project:
    """A lockstep project directory: its policy, environment and state."""

    workdir: Path
    env: dict[str, str]

    @property
    def state_db(self) -> Path:
        return self.workdir / ".lockstep" / "state.db"

    def write(self, policy: Policy) -> None:
        policy.write(self.workdir)

    @contextmanager
    def manager(self, clock: Callable[[], datetime] | None = None) -> Iterator[LeaseManager]:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            with Workspace.open(self.workdir / "lockstep.yaml") as ws:
                sessions = TargetSessions(ws.policy)
                manager = LeaseManager(
                    ws.policy, ws.store, ws.journal, ws.vault, sessions, clock or ws.clock
                )
                try:
                    yield manager
                finally:
                    manager.close()  # its issuing workers, then its sessions
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return Lockstep(self.workdir, self.env)(*args)

    def journal(self, kind: str | None = None) -> list[dict[str, Any]]:
        with sqlite3.connect(self.state_db) as conn:
            rows = conn.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
        return [{"kind": k, **json.loads(p)} for k, p in rows if kind is None or k == kind]


@pytest.fixture
def project(db: localpg.LocalPostgres, tmp_path: Path) -> Project:
    project = Project(tmp_path, project_env(ORDERS_DB_DSN=db.dsn("orders")))
    project.write(pg_policy())
    return project


def pg_refused(pg: localpg.LocalPostgres, user: str, password: str) -> bool:
    try:
        pg_login(pg, user, password).close()
    except psycopg.OperationalError as exc:
        text = str(exc)
        return any(
            reason in text
            for reason in ("authentication failed", "not permitted to log in", "does not exist")
        )
    return False


def pg_role(pg: localpg.LocalPostgres, name: str) -> tuple[Any, ...] | None:
    with psycopg.connect(pg.dsn("orders"), autocommit=True) as conn:
        return conn.execute(
            "SELECT rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = %s", (name,)
        ).fetchone()


def lease_roles(pg: localpg.LocalPostgres) -> list[str]:
    with psycopg.connect(pg.dsn("orders"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1", (LEASE_PREFIX + "%",)
        ).fetchall()
    return [r[0] for r in rows]


def assert_nothing_secret_in(project: Project, *secrets: str, texts: tuple[str, ...] = ()) -> None:
    state = project.state_db.read_bytes()
    for secret in secrets:
        assert secret.encode() not in state
        for text in texts:
            assert secret not in text


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

    capped = json.loads(project.cli("renew", lease["lease_id"], "--ttl", "5h", "--json").stdout)
    assert capped["expires_at"] == capped["max_expires_at"]
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


def test_leases_issued_from_many_threads_at_once_all_work(
    project: Project, db: localpg.LocalPostgres
) -> None:
    issued: list[Credential] = []
    errors: list[BaseException] = []

    def issue_some(manager: LeaseManager) -> None:
        try:
            for _ in range(4):
                issued.append(manager.issue("payments-api", "orders-db")[1])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with project.manager() as manager:
        threads = [threading.Thread(target=issue_some, args=(manager,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len({c.username for c in issued}) == 24
        for credential in issued[::6]:
            pg_login(db, credential.username, credential.secret.reveal()).close()
        ended = manager.revoke_where(identity="payments-api")
        assert all(e.verified for e in ended), [e.detail for e in ended if not e.verified]
    assert project.cli("audit", "verify").returncode == 0


def test_a_batch_whose_credential_cannot_be_tried_is_not_issued_and_its_accounts_go(
    project: Project, db: localpg.LocalPostgres
) -> None:
    project.write(pg_policy(probe_port=free_port()))
    with project.manager() as manager, pytest.raises(LeaseError, match="could not be tried"):
        manager.issue("payments-api", "orders-db")
    assert lease_roles(db) == []
    assert project.journal("lease_failed")[0]["op"] == "issue"


def test_a_connection_lost_before_a_batch_fails_it_clearly_and_the_next_issue_works(
    project: Project, db: localpg.LocalPostgres
) -> None:
    with project.manager() as manager:
        manager.issue("payments-api", "orders-db")  # the issuing session is now pooled
        with psycopg.connect(db.dsn("orders"), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = current_user AND pid <> pg_backend_pid()"
            )
        with pytest.raises(LeaseError, match=r"not issued: .*lost the connection"):
            manager.issue("payments-api", "orders-db")
        [failed] = [lease for lease in manager.list() if lease.status is not LeaseStatus.ACTIVE]
        assert failed.status is LeaseStatus.REVOKED  # nothing was made: absence is the proof
        assert failed.account not in lease_roles(db)
        _, credential = manager.issue("payments-api", "orders-db")
        pg_login(db, credential.username, credential.secret.reveal()).close()
    assert project.cli("audit", "verify").returncode == 0


def issue_in_thread(
    manager: LeaseManager, identity: str, outcomes: dict[str, list[object]]
) -> threading.Thread:
    def issue() -> None:
        try:
            outcome: object = manager.issue(identity, "orders-db")
        except LeaseError as exc:
            outcome = exc
        outcomes.setdefault(identity, []).append(outcome)

    thread = threading.Thread(target=issue)
    thread.start()
    return thread


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_leases_requested_together_are_issued_as_one_batch_and_a_bad_one_fails_alone(
    project: Project, db: localpg.LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes: dict[str, list[object]] = {}
    with project.manager() as manager:
        manager.issue("payments-api", "orders-db")  # the state store exists from here on
        issuer = manager._issuer("orders-db")
        queue, enqueue, enqueued = issuer._queue, issuer.enqueue, []

        def counted(item: Any) -> Any:
            enqueued.append(item)
            return enqueue(item)

        monkeypatch.setattr(issuer, "enqueue", counted)
        # Both issuing workers are held at their first commit by a writer outside lockstep,
        # so that what is requested meanwhile waits, and is then taken as one batch.
        blocker = sqlite3.connect(project.state_db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        threads = []

        def taken(n: int) -> bool:
            return len(enqueued) == n and queue.qsize() == 0

        for n in (1, 2):
            threads.append(issue_in_thread(manager, "payments-api", outcomes))
            wait_until(functools.partial(taken, n))
        for identity in ["reporting-job", "broken-job", "payments-api", "reporting-job"]:
            threads.append(issue_in_thread(manager, identity, outcomes))
        wait_until(lambda: len(enqueued) == 6 and queue.qsize() == 4)
        blocker.execute("COMMIT")
        blocker.close()
        for t in threads:
            t.join()

    [failed] = outcomes.pop("broken-job")
    assert isinstance(failed, LeaseError) and "public.missing" in str(failed)
    issued = [o for group in outcomes.values() for o in group]
    assert len(issued) == 5 and not any(isinstance(o, Exception) for o in issued)
    for outcome in issued:
        assert isinstance(outcome, tuple)
        _, credential = outcome
        pg_login(db, credential.username, credential.secret.reveal()).close()
    assert len(lease_roles(db)) == 6
    # A batch's intents are journaled in one transaction, at one time.
    with sqlite3.connect(project.state_db) as conn:
        rows = conn.execute("SELECT at, payload FROM journal WHERE kind = 'lease_intent'")
        intents = [(at, json.loads(payload)) for at, payload in rows.fetchall()]
    issues = [(at, e) for at, e in intents if e["op"] == "issue"]
    [(broken_at, broken)] = [(at, e) for at, e in issues if e["identity"] == "broken-job"]
    batch = sorted(e["identity"] for at, e in issues if at == broken_at)
    assert batch == ["broken-job", "payments-api", "reporting-job", "reporting-job"]
    assert [e["account"] for e in project.journal("lease_failed")] == [broken["account"]]
    assert project.cli("audit", "verify").returncode == 0


# ---------------------------------------------------------------- Redis


def redis_policy() -> Policy:
    return Policy(
        targets={"cache": Target.redis(Var("CACHE_URL"))},
        owners={"team": Owner(["team@example.com"])},
        identities={
            "payments-api": Identity(
                owner="team",
                purpose="Cache orders",
                access=[Access("cache", "payments_api", ["~orders:*", "+get", "+ping"])],
            )
        },
    )


@pytest.fixture
def redis_project(tmp_path: Path, redis_server: LocalRedis, redis_target: object) -> Project:
    project = Project(tmp_path, project_env(CACHE_URL=redis_server.url()))
    project.write(redis_policy())
    return project


def redis_refused(server: LocalRedis, credential: Credential) -> bool:
    client = redis.Redis(
        host="127.0.0.1",
        port=server.port,
        username=credential.username,
        password=credential.secret.reveal(),
        protocol=2,
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError:
        return True
    finally:
        client.close()
    return False


def test_a_redis_lease_is_an_acl_user_holding_the_identitys_rules(
    redis_project: Project, redis_server: LocalRedis
) -> None:
    with redis_project.manager() as manager:
        lease, credential = manager.issue("payments-api", "cache")
        assert not redis_refused(redis_server, credential)
        with redis_server.admin() as admin:
            rules = admin.acl_getuser(lease.account)
        assert "~orders:*" in rules["keys"]
        assert manager.revoke(lease.id).verified
    assert redis_refused(redis_server, credential)


def test_redis_leases_expire_through_the_reaper_since_redis_cannot(
    redis_project: Project, redis_server: LocalRedis
) -> None:
    with redis_project.manager() as manager:
        lease, credential = manager.issue("payments-api", "cache", ttl_s=60)
        renewed = manager.renew(lease.id, ttl_s=120)
        assert renewed.expires_at > lease.expires_at
        report = manager.reap(now=renewed.expires_at + timedelta(seconds=1))
        assert report.verified and manager.get(lease.id).status is LeaseStatus.EXPIRED
    assert redis_refused(redis_server, credential)


# ---------------------------------------------------------------- AWS (moto)


def aws_policy(region: str, endpoint_url: str, policy_arn: str) -> Policy:
    """etl takes role/etl, which holds the managed policy ``policy_arn``."""
    return Policy(
        targets={
            "aws": Target.aws(region, endpoint_url=endpoint_url, propagation_window=0),
        },
        owners={"team": Owner(["team@example.com"])},
        identities={
            "etl": Identity(
                owner="team",
                purpose="Nightly ETL",
                access=[Access("aws", "role/etl", [f"policy:{policy_arn}"])],
                credentials=Credentials(lease_ttl="20m", lease_max_ttl="1h"),
            )
        },
    )


ALLOW_LIST_USERS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
}


@pytest.fixture
def aws_project(tmp_path: Path, moto_server: MotoServer, aws_target: object) -> Project:
    """role/etl exists, may list users, and trusts the admin lockstep runs as."""
    iam = moto_server.client("iam")
    admin_arn = f"arn:aws:iam::123456789012:user/{moto_server.admin_user}"
    trust = {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}
    iam.create_role(
        RoleName="etl",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
    )
    arn = iam.create_policy(PolicyName="list-users", PolicyDocument=json.dumps(ALLOW_LIST_USERS))
    policy_arn = arn["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="etl", PolicyArn=policy_arn)
    env = dict(os.environ)  # aws_target put the admin key in the environment
    project = Project(tmp_path, env)
    project.write(aws_policy(moto_server.region, moto_server.endpoint_url, policy_arn))
    return project


def test_an_aws_lease_is_a_role_session_with_a_token_proven_refused_once_revoked(
    aws_project: Project, moto_server: MotoServer
) -> None:
    proc = aws_project.cli("issue", "etl", "--target", "aws", "--json")
    assert proc.returncode == 0, proc.stderr
    lease = json.loads(proc.stdout)
    assert lease["username"].startswith("ASIA") and lease["session_token"]
    [issued] = aws_project.journal("lease_issued")
    assert issued["username"] == lease["username"]

    revoked = aws_project.cli("revoke", lease["lease_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert_nothing_secret_in(
        aws_project, lease["password"], lease["session_token"], texts=(revoked.stdout,)
    )


def test_an_aws_lease_cannot_be_renewed_and_says_so(aws_project: Project) -> None:
    lease = json.loads(aws_project.cli("issue", "etl", "--target", "aws", "--json").stdout)
    proc = aws_project.cli("renew", lease["lease_id"])
    assert proc.returncode == 1 and "cannot be extended" in proc.stderr
