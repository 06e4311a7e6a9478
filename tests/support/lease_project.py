"""A lockstep project on the suite's PostgreSQL for the lease tests: its policy, its
environment, a lease manager opened as the service opens one, and what the target and the
journal show."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from lockstep.demo import localpg
from lockstep.engine.workspace import Workspace
from lockstep.leases.manager import (
    LeaseManager,
)
from lockstep.leases.sessions import TargetSessions
from lockstep.model import LEASE_PREFIX
from support.cli_project import Lockstep, create_orders_db, project_env
from support.cli_project import login as pg_login
from support.policies import Access, Credentials, Identity, Owner, Policy, Setting, Target, Var

if TYPE_CHECKING:
    pass


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
