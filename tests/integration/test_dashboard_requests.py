"""The dashboard's requests, request form and grants over HTTP, against a real `lockstep run`
over a real PostgreSQL: who sees a request and who gets its "Approve" and "Deny"; decisions
journaled exactly as the API journals them; a two-stage approval enforced in PostgreSQL; a
denial needs a reason; the separation-of-duties check shown before a request is sent, and
filing nothing; every decision behind the session and its CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from lockstep.demo import localpg
from support.dashboard_estate import (
    APPROVER,
    OUTSIDER,
    PAY,
    PERSON,
    SECURITY,
    DashboardEstate,
    estate_on,
)
from support.governance_project import table_privileges
from support.service_harness import eventually, journal

HOSTILE_REASON = "<script>alert('reason')</script>"


@pytest.fixture(scope="module")
def estate(
    pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardEstate]:
    with estate_on(pg_server, tmp_path_factory.mktemp("dashboard-requests")) as running:
        yield running


def row(page: str, request_id: str) -> str:
    found = re.search(rf'<tr id="request-{request_id}">.*?</tr>', page, re.S)
    return found.group(0) if found else ""


def post(client: httpx.Client, path: str, **data: str) -> httpx.Response:
    return client.post(path, data={"csrf": client.cookies["lockstep_csrf"], **data})


def status_of(estate: DashboardEstate, request_id: str) -> str:
    return str(estate.api(SECURITY, "GET", f"/v1/requests/{request_id}").json()["status"])


def test_a_request_shows_approve_and_deny_only_to_who_may_decide_it(
    estate: DashboardEstate,
) -> None:
    request_id = estate.file_request(PAY)
    with estate.signed_in(estate.tokens[APPROVER]) as client:
        mine = row(client.get("/requests").text, request_id)
        assert f'aria-label="Approve request {request_id}"' in mine
        assert f'aria-label="Deny request {request_id}"' in mine
        assert "stage 1 of 2: owner" in mine
    with estate.signed_in(estate.tokens[PERSON]) as client:  # the requester
        theirs = row(client.get("/requests").text, request_id)
        assert theirs and "Approve" not in theirs and "not yours to decide" in theirs
    with estate.signed_in(estate.tokens[OUTSIDER]) as client:
        assert request_id not in client.get("/requests?status=all").text
        refused = post(client, f"/requests/{request_id}/approve")
        assert refused.status_code == 403
    with estate.signed_in() as client:  # the operator sees it and acts for nobody
        shown = row(client.get("/requests").text, request_id)
        assert shown and "Approve" not in shown
    assert status_of(estate, request_id) == "pending"


def test_two_stages_approved_in_the_dashboard_are_enforced_in_postgres(
    estate: DashboardEstate,
) -> None:
    request_id = estate.file_request(PAY)
    with estate.signed_in(estate.tokens[APPROVER]) as client:
        first = post(client, f"/requests/{request_id}/approve", comment="owner ok")
        assert first.status_code == 200
        assert f"Your approval of request {request_id} is recorded" in first.text
        assert "stage 2 of 2: group:security" in first.text
    with estate.signed_in(estate.tokens[SECURITY]) as client:
        second = post(client, f"/requests/{request_id}/approve")
        assert f"Request {request_id} approved: every stage has passed" in second.text
        eventually(lambda: status_of(estate, request_id) == "active", "the grant to be active")
        grants = client.get("/grants").text
        assert re.search(rf'id="grant-{request_id}">.*?badge active', grants, re.S)
    assert "INSERT on payments" in table_privileges(estate.pg, "payments_api")
    decided = [
        e for e in journal(estate.workdir / ".lockstep" / "state.db")
        if e.get("request") == request_id and e["kind"] in ("request_approval", "request_approved")
    ]  # fmt: skip
    assert [(e["kind"], e["by"]) for e in decided] == [
        ("request_approval", APPROVER),
        ("request_approval", SECURITY),
        ("request_approved", SECURITY),
    ]
    assert decided[0]["via"].startswith("token ") and decided[0]["comment"] == "owner ok"


def test_a_denial_needs_a_reason_and_then_ends_the_request(estate: DashboardEstate) -> None:
    request_id = estate.file_request(PAY)
    with estate.signed_in(estate.tokens[SECURITY]) as client:  # a later stage's approver
        empty = post(client, f"/requests/{request_id}/deny", reason="  ")
        assert empty.status_code == 422 and "a denial needs a reason" in empty.text
        assert status_of(estate, request_id) == "pending"
        denied = post(client, f"/requests/{request_id}/deny", reason="not during the freeze")
        assert f"Request {request_id} denied" in denied.text
        again = post(client, f"/requests/{request_id}/approve")
        assert again.status_code == 409 and "denied already" in again.text
    assert status_of(estate, request_id) == "denied"


def test_decisions_need_the_csrf_token_and_a_same_site_request(estate: DashboardEstate) -> None:
    request_id = estate.file_request(PAY)
    with estate.signed_in(estate.tokens[APPROVER]) as client:
        path = f"/requests/{request_id}/approve"
        assert client.post(path, data={}).status_code == 403
        assert client.post(path, data={"csrf": "forged"}).status_code == 403
        csrf = client.cookies["lockstep_csrf"]
        cross = client.post(path, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
    assert status_of(estate, request_id) == "pending"


def test_the_form_shows_the_sod_check_before_anything_is_filed(estate: DashboardEstate) -> None:
    fields = {"identity": "payments-api", "target": "orders-db", "duration": "8h", "reason": ""}
    before = len(journal(estate.workdir / ".lockstep" / "state.db"))
    with estate.signed_in(estate.tokens[PERSON]) as client:
        form = client.get("/requests/new?identity=payments-api").text
        assert '<label for="ask-entitlements">Entitlements</label>' in form
        refused = post(client, "/requests/check", entitlements="role:approver", **fields)
        assert refused.status_code == 200
        assert "read-or-approve" in refused.text and 'role="alert"' in refused.text
        too_long = post(client, "/requests/check", **{**fields, "duration": "30d"},
                        entitlements=PAY)  # fmt: skip
        assert "max_duration" in too_long.text
        fine = post(client, "/requests/check", entitlements=PAY, **fields)
        assert "Checked: no separation-of-duties rule" in fine.text
        assert "owner: 1 approval(s) from amir@example.com</li>" in fine.text  # not alice
        assert len(journal(estate.workdir / ".lockstep" / "state.db")) == before
        filed = post(client, "/requests/new", entitlements=PAY,
                     **{**fields, "reason": HOSTILE_REASON})  # fmt: skip
        assert filed.status_code == 201 and "filed: it is pending until" in filed.text
        request_id = re.search(r"Request <a[^>]*>(R-[0-9a-f]+)</a> filed", filed.text).group(1)  # type: ignore[union-attr]
        listed = client.get("/requests").text
        assert HOSTILE_REASON not in listed and "&lt;script&gt;" in row(listed, request_id)
    assert status_of(estate, request_id) == "pending"


def test_the_operator_and_an_outsider_cannot_ask(estate: DashboardEstate) -> None:
    fields = {"identity": "payments-api", "target": "orders-db", "duration": "1h",
              "reason": "x", "entitlements": PAY}  # fmt: skip
    with estate.signed_in() as client:
        assert "acts for nobody" in client.get("/requests/new").text
        assert post(client, "/requests/new", **fields).status_code == 403
    with estate.signed_in(estate.tokens[OUTSIDER]) as client:
        refused = post(client, "/requests/new", **fields)
        assert refused.status_code == 403 and "may not ask access" in refused.text
