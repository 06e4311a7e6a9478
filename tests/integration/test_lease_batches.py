"""Leases requested at once: from many threads, in batches the manager groups, a bad one
failing alone, a lost connection failing its batch clearly, on a real PostgreSQL."""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from lockstep.connectors.base import Credential
from lockstep.demo import localpg
from lockstep.demo.localpg import free_port
from lockstep.leases.manager import (
    LeaseError,
    LeaseManager,
    LeaseStatus,
)
from support.cli_project import login as pg_login

if TYPE_CHECKING:
    pass
from support.lease_project import (
    Project,
    lease_roles,
    pg_policy,
)

pytest_plugins = ("support.lease_project",)


# ------------------------------------------------ PostgreSQL: leases issued at once


def test_leases_issued_from_many_threads_at_once_all_work(
    project: Project, db: localpg.LocalPostgres
) -> None:
    issued: list[Credential] = []
    errors: list[BaseException] = []

    def issue_some(manager: LeaseManager) -> None:
        try:
            for _ in range(2):  # 5 threads x 2: the identity's quota of 10 live leases
                issued.append(manager.issue("payments-api", "orders-db")[1])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with project.manager() as manager:
        threads = [threading.Thread(target=issue_some, args=(manager,)) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len({c.username for c in issued}) == 10
        for credential in issued[::3]:
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
