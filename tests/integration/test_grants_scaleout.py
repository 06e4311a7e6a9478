"""Two `lockstep run` services on one PostgreSQL state store: a grant approved through the
service that does not reconcile its target is enforced by the one that does, at once,
exactly once, and ended exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lockstep.demo import localpg
from support.cli_project import create_orders_db
from support.governance_project import (
    PAYMENTS_WRITE,
    SETUP,
    GovernedProject,
    governed_policy,
    table_privileges,
)
from support.service_harness import Service, eventually


@pytest.fixture
def project(pg: localpg.LocalPostgres, tmp_path: Path) -> Iterator[GovernedProject]:
    create_orders_db(pg, in_orders=SETUP)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE lockstep_state")
    governed_policy().write(tmp_path)
    project = GovernedProject(tmp_path, pg, state=pg.dsn("lockstep_state"))
    yield project
    for service in project.services:
        if service.proc.poll() is None:
            service.kill()


def entries(pg: localpg.LocalPostgres, kind: str) -> list[dict[str, Any]]:
    with psycopg.connect(pg.dsn("lockstep_state")) as conn:
        rows = conn.execute(
            "SELECT payload FROM journal WHERE kind = %s ORDER BY seq", (kind,)
        ).fetchall()
    return [json.loads(p) for (p,) in rows]


def holder(service: Service) -> str | None:
    [row] = service.get("/v1/targets").json()["targets"]
    held: str | None = row["holder"]
    return held


def test_a_grant_is_enforced_and_ended_exactly_once_by_two_services(
    project: GovernedProject,
) -> None:
    first, second = project.start(), project.start()
    instances = {first.health()["instance"]: first, second.health()["instance"]: second}
    owner = eventually(lambda: holder(first), "one service to hold orders-db")
    other = next(s for i, s in instances.items() if i != owner)
    eventually(
        lambda: "SELECT on orders" in table_privileges(project.pg, "payments_api"),
        "the declared access to be enforced",
    )
    request_id = project.request(PAYMENTS_WRITE, duration="10s")
    for person in ("amir@example.com", "sam@example.com"):
        done = project.as_person(person, "approve", request_id, service=other)
        assert done.returncode == 0, done.stderr
    eventually(lambda: project.status(request_id) == "active", "the grant to become active")
    assert "INSERT on payments" in table_privileges(project.pg, "payments_api")
    eventually(lambda: project.status(request_id) == "ended", "the grant to end")
    assert "INSERT on payments" not in table_privileges(project.pg, "payments_api")

    mine = [r for r in entries(project.pg, "result") if r.get("request") == request_id]
    assert [(r["op"], r["status"]) for r in mine] == [("grant", "verified"), ("revoke", "verified")]
    for kind in ("request_approved", "grant_active", "grant_ending", "grant_ended"):
        assert [e["request"] for e in entries(project.pg, kind)] == [request_id], kind
