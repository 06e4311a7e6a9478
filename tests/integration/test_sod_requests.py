"""Separation of duties when people ask and approve: a request is refused at once, in one
line naming the rule and where the conflicting access comes from (policy FILE:LINE or a
request id), counting the policy, approved and active grants, and what the identity held
within the rule's window; an approval is checked again. At pass time the targets' real
state is checked (a sod_violation finding)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from lockstep.demo import localpg
from lockstep.store.tables import access_requests
from support.cli_project import Lockstep, admin, create_orders_db, project_env
from support.governance import POLICY, World, open_world

SOD = (
    POLICY.replace(
        """        entitlements: [role:app_readonly]
""",
        """        entitlements: [role:app_readonly]
      - target: reports-db
        account: payments_api
""",
    )
    + """\
rules:
  sod:
    - name: read-orders-or-pay
      entitlements: ["orders-db/role:app_readonly", "reports-db/role:payer"]
    - name: pay-or-approve
      entitlements: ["orders-db/INSERT on table public.payments", "orders-db/role:approver"]
      within: 30d
"""
)
PAY = "INSERT on table public.payments"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from open_world(tmp_path, SOD)


def granted(world: World, *entitlements: str) -> str:
    request = world.file(entitlements=list(entitlements)).json()
    world.approve("amir@example.com", request["id"])
    assert world.approve("sam@example.com", request["id"]).json()["status"] == "approved"
    return str(request["id"])


def test_a_request_conflicting_with_the_policys_own_access_names_its_line(
    world: World, tmp_path: Path
) -> None:
    answer = world.file(target="reports-db", entitlements=["role:payer"])
    assert answer.status_code == 403
    assert answer.json()["error"] == (
        "request refused: sod rule 'read-orders-or-pay': reports-db/role:payer may not be "
        "held together with orders-db/role:app_readonly; orders-db/role:app_readonly comes "
        f"from policy {tmp_path / 'lockstep.yaml'}:21"
    )
    assert world.call(None, "GET", "/v1/requests").json() == {"requests": []}
    [refused] = world.journal("request_refused")
    assert refused.payload["op"] == "file" and "read-orders-or-pay" in refused.payload["reason"]


def test_a_request_conflicting_with_an_approved_grant_names_the_request(world: World) -> None:
    first = granted(world, PAY)
    answer = world.file(entitlements=["role:approver"])
    assert answer.status_code == 403
    assert answer.json()["error"].endswith(
        f"orders-db/INSERT on table public.payments comes from request {first}"
    )


@pytest.mark.parametrize(("days_ago", "refused"), [(10, True), (31, False)])
def test_a_grant_ended_within_the_window_still_counts(
    world: World, days_ago: int, refused: bool
) -> None:
    first = granted(world, PAY)
    with world.store.engine.begin() as conn:
        conn.execute(
            update(access_requests)
            .where(access_requests.c.id == first)
            .values(status="ended", ended_at=world.clock.now - timedelta(days=days_ago))
        )
    answer = world.file(entitlements=["role:approver"])
    assert (answer.status_code == 403) is refused, answer.text
    if refused:
        assert "within 30d" in answer.json()["error"]


def test_an_approval_is_checked_again(world: World) -> None:
    pay = world.file(entitlements=[PAY]).json()
    approver = world.file(entitlements=["role:approver"]).json()  # fine: nothing granted yet
    granted_id = pay["id"]
    world.approve("amir@example.com", granted_id)
    world.approve("sam@example.com", granted_id)
    answer = world.approve("amir@example.com", approver["id"])
    assert answer.status_code == 403
    assert answer.json()["error"].startswith("approval refused: sod rule 'pay-or-approve'")
    got = world.call(None, "GET", f"/v1/requests/{approver['id']}").json()
    assert got["status"] == "pending" and got["approvals"] == []


def test_asking_for_both_sides_at_once_is_refused(world: World) -> None:
    answer = world.file(entitlements=[PAY, "role:approver"])
    assert answer.status_code == 403 and "pay-or-approve" in answer.json()["error"]


def test_a_pass_reports_an_identity_the_targets_show_breaking_a_rule(
    pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    create_orders_db(pg, on_server=["CREATE ROLE auditors NOLOGIN"])
    (tmp_path / "lockstep.yaml").write_text("""\
version: 1
targets:
  orders-db: {type: postgres, dsn: "${ORDERS_DB_DSN}"}
owners:
  team: {contacts: [alice@example.com]}
identities:
  payments-api:
    owner: team
    purpose: Serve payments
    access:
      - {target: orders-db, account: payments_api, entitlements: ["SELECT on table public.orders"]}
rules:
  excess_entitlements: report
  sod:
    - name: read-or-audit
      entitlements: ["orders-db/SELECT on table public.orders", "orders-db/role:auditors"]
""")
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))
    assert cli("apply", "--yes").returncode == 0
    with admin(pg) as conn:
        conn.execute("GRANT auditors TO payments_api")  # by hand, behind lockstep's back
    findings = json.loads(cli("plan", "--json").stdout)["findings"]
    [violation] = [f for f in findings if f["type"] == "sod_violation"]
    assert violation["identity"] == "payments-api" and violation["account"] == "payments_api"
    assert "read-or-audit" in violation.get("detail", "read-or-audit")
    assert violation["owasp_nhi"] == ["NHI5"] and violation["nist_csf"] == ["PR.AA-05"]
