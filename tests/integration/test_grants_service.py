"""Time-bound grants enforced by a real `lockstep run` on a real PostgreSQL: applied at once
when the last stage approves (the target's interval is 10 minutes), active only once read
back, ended only once the removal is read back, counted, and failed (a finding, retried)
when the target cannot hold it. Waits are bounded polls, never timings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from support.cli_project import admin, create_orders_db
from support.governance_project import (
    ORDERS_READ,
    PAYMENTS_WRITE,
    SETUP,
    GovernedProject,
    governed_policy,
    table_privileges,
)
from support.service_harness import eventually


@pytest.fixture
def project(pg: localpg.LocalPostgres, tmp_path: Path) -> Iterator[GovernedProject]:
    create_orders_db(pg, in_orders=SETUP)
    governed_policy().write(tmp_path)
    project = GovernedProject(tmp_path, pg)
    yield project
    for service in project.services:
        if service.proc.poll() is None:
            service.kill()


def started(project: GovernedProject) -> None:
    project.start()
    eventually(
        lambda: "SELECT on orders" in table_privileges(project.pg, "payments_api"),
        "the declared access to be enforced",
    )


def test_an_approved_grant_is_enforced_at_once_proven_and_ended_on_time(
    project: GovernedProject,
) -> None:
    started(project)
    request_id = project.request(PAYMENTS_WRITE, duration="15s")
    assert project.status(request_id) == "pending"
    assert "INSERT on payments" not in table_privileges(project.pg, "payments_api")
    project.approve_both_stages(request_id)
    eventually(lambda: project.status(request_id) == "active", "the grant to become active")
    assert "INSERT on payments" in table_privileges(project.pg, "payments_api")
    grant = project.grant(request_id)
    assert grant["verified_at"] is not None and grant["approvals"][1]["by"] == "sam@example.com"
    [active] = project.journal("grant_active")
    results = {r["seq"]: r for r in _results(project)}
    assert active["request"] == request_id and active["results"]
    assert all(results[s]["request"] == request_id for s in active["results"])
    assert all(results[s]["status"] == "verified" for s in active["results"])

    eventually(lambda: project.status(request_id) == "ended", "the grant to end")
    assert "INSERT on payments" not in table_privileges(project.pg, "payments_api")
    assert "SELECT on orders" in table_privileges(project.pg, "payments_api")
    [ended] = project.journal("grant_ended")
    assert ended["request"] == request_id and ended["kept"] == []
    revoke = results_by_seq(project)[ended["results"][0]]
    assert revoke["op"] == "revoke" and revoke["status"] == "verified"
    assert [e["request"] for e in project.journal("grant_ending")] == [request_id]


def results_by_seq(project: GovernedProject) -> dict[int, dict[str, Any]]:
    return {int(r["seq"]): r for r in _results(project)}


def _results(project: GovernedProject) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{project.state}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT seq, payload FROM journal WHERE kind = 'result'").fetchall()
    return [{"seq": seq, **json.loads(payload)} for seq, payload in rows]


def test_overlapping_grants_are_counted(project: GovernedProject) -> None:
    started(project)
    short = project.request(PAYMENTS_WRITE, ORDERS_READ, duration="8s")
    long = project.request(PAYMENTS_WRITE, duration="1h")
    project.approve_both_stages(short)
    project.approve_both_stages(long)
    eventually(lambda: project.status(long) == "active", "the long grant to be active")
    eventually(lambda: project.status(short) == "ended", "the short grant to end")
    # Its end removed nothing: the other grant holds INSERT, the policy SELECT.
    assert {"INSERT on payments", "SELECT on orders"} <= table_privileges(
        project.pg, "payments_api"
    )
    ended = next(e for e in project.journal("grant_ended") if e["request"] == short)
    assert ended["kept"] == sorted([PAYMENTS_WRITE, ORDERS_READ])
    assert project.status(long) == "active"
    assert not [r for r in _results(project) if r.get("op") == "revoke"]


def test_a_grant_the_target_cannot_hold_fails_is_reported_and_is_retried(
    project: GovernedProject,
) -> None:
    started(project)
    request_id = project.request("role:auditors", duration="1h")
    project.approve_both_stages(request_id)
    eventually(lambda: project.status(request_id) == "failed", "the grant to fail")
    assert "role:auditors" in project.grant(request_id)["detail"]
    findings = json.loads(project.cli("findings", "--json").stdout)["findings"]
    [failed] = [f for f in findings if f["type"] == "grant_failed"]
    assert failed["entitlement"] == "role:auditors" and request_id in failed.get(
        "detail", request_id
    )
    # The role does not exist: plan holds the grant back and says so (unknown_object).
    plan = json.loads(project.cli("plan", "--json").stdout)
    assert plan["actions"] == []
    [unknown] = [f for f in plan["findings"] if f["type"] == "unknown_object"]
    assert unknown["entitlement"] == "role:auditors" and "no role auditors" in unknown["detail"]
    project.services[0].stop()  # the service would retry on its own as soon as it sees it
    with admin(project.pg) as conn:
        conn.execute("CREATE ROLE auditors NOLOGIN")
    planned = json.loads(project.cli("plan", "--json").stdout)["actions"]
    assert [(a["op"], a["entitlement"], a["request"]) for a in planned] == [
        ("grant", "role:auditors", request_id)
    ]
    project.start()
    eventually(lambda: project.status(request_id) == "active", "the retried grant to be active")


def test_a_lease_issued_under_a_grant_never_outlives_it(project: GovernedProject) -> None:
    started(project)
    request_id = project.request(PAYMENTS_WRITE, duration="15s")
    project.approve_both_stages(request_id)
    eventually(lambda: project.status(request_id) == "active", "the grant to become active")
    ends_at = datetime.fromisoformat(project.grant(request_id)["ends_at"])
    issued = project.cli("issue", "payments-api", "--target", "orders-db", "--json")
    assert issued.returncode == 0, issued.stderr
    lease = json.loads(issued.stdout)
    assert datetime.fromisoformat(lease["expires_at"]) <= ends_at
    assert "INSERT on payments" in table_privileges(project.pg, lease["username"])
    refused_longer = project.cli("issue", "payments-api", "--target", "orders-db", "--ttl", "1h")
    assert refused_longer.returncode == 1
    assert f"would outlive the grant of request {request_id}" in refused_longer.stderr

    eventually(lambda: project.status(request_id) == "ended", "the grant to end")
    kinds = [(e["kind"], e.get("lease_id") or e.get("request")) for e in _entries(project)]
    expired = kinds.index(("lease_expired", lease["lease_id"]))
    assert expired < kinds.index(("grant_ended", request_id))
    assert not _role_exists(project, lease["username"])


def _entries(project: GovernedProject) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{project.state}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT kind, payload FROM journal ORDER BY seq").fetchall()
    return [{"kind": kind, **json.loads(payload)} for kind, payload in rows]


def _role_exists(project: GovernedProject, role: str) -> bool:
    with admin(project.pg) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            is not None
        )


def test_explain_and_inventory_name_the_request_and_its_approvers(
    project: GovernedProject,
) -> None:
    started(project)
    request_id = project.request(PAYMENTS_WRITE, duration="1h")
    project.approve_both_stages(request_id)
    eventually(lambda: project.status(request_id) == "active", "the grant to become active")
    explained = json.loads(project.cli("explain", "payments-api", "--json").stdout)
    [account] = explained["accounts"]
    [row] = [e for e in account["entitlements"] if e["entitlement"] == PAYMENTS_WRITE]
    assert row["held"] is True and row["why_not"] is None
    [because] = row["because"]
    assert because["source"] == "request" and because["request"] == request_id
    assert because["requester"] == "alice@example.com"
    assert because["approved_by"] == ["amir@example.com", "sam@example.com"]
    assert [g["id"] for g in account["grants"]] == [request_id]
    text = project.cli("explain", "payments-api").stdout
    assert f"request {request_id} by alice@example.com" in text
    inventory = json.loads(project.cli("inventory", "--json").stdout)["accounts"]
    [mine] = [a for a in inventory if a["account"] == "payments_api"]
    assert [g["id"] for g in mine["grants"]] == [request_id]
    assert request_id in project.cli("inventory", "--csv").stdout
