"""Requests and approvals over the API: stages from governance.approvals, each k-of-n, every
one needed; the requester never approves, nobody approves two stages, a sponsor never
approves for their own agent; rules snapshotted when filed; every decision journaled with
the person; every refusal a clear error that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.governance import POLICY, World, open_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from open_world(tmp_path)


def test_a_two_stage_request_is_approved_once_every_stage_has_passed(world: World) -> None:
    filed = world.file()
    assert filed.status_code == 201, filed.text
    request = filed.json()
    assert request["status"] == "pending" and request["stage"] == 1
    assert request["entitlements"] == ["SELECT on table public.payments"]
    assert [s["people"] for s in request["stages"]] == [
        ["alice@example.com", "amir@example.com"],
        ["sam@example.com", "sue@example.com"],
    ]
    first = world.approve("amir@example.com", request["id"], "owner ok").json()
    assert first["status"] == "pending" and first["stage"] == 2 and world.rung == []
    second = world.approve("sam@example.com", request["id"]).json()
    assert second["status"] == "approved"
    assert second["approvals"][0]["by"] == "amir@example.com"
    assert second["approvals"][1]["stage"] == 2
    assert second["starts_at"] is not None and second["ends_at"] is not None
    assert world.rung == ["orders-db"]  # the service is told at once
    kinds = [e.kind for e in world.journal() if e.kind.startswith("request")]
    assert kinds == ["request_filed", "request_approval", "request_approval", "request_approved"]
    approved = world.journal("request_approved")[0].payload
    assert approved["by"] == "sam@example.com" and approved["request"] == request["id"]
    listed = world.call(None, "GET", "/v1/grants").json()["requests"]
    assert [r["id"] for r in listed] == [request["id"]]


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("alice@example.com", "you filed this request: another person must approve it"),
        ("sam@example.com", "you are not an approver of stage 1 (owner: alice@example.com, amir"),
    ],
)
def test_who_may_not_approve_is_refused_and_nothing_changes(
    world: World, who: str, message: str
) -> None:
    request = world.file().json()
    answer = world.approve(who, request["id"])
    assert answer.status_code == 403 and message in answer.json()["error"]
    assert world.call(None, "GET", f"/v1/requests/{request['id']}").json()["approvals"] == []
    [refused] = world.journal("request_refused")
    assert refused.payload["by"] == who and refused.payload["op"] == "approve"


def test_one_person_never_approves_two_stages(world: World) -> None:
    request = world.file().json()
    assert world.approve("root@example.com", request["id"]).status_code == 200  # an admin
    again = world.approve("root@example.com", request["id"])
    assert again.status_code == 403
    assert "you approved stage 1 of this request" in again.json()["error"]


def test_a_sponsor_never_approves_for_their_own_agent(world: World) -> None:
    request = world.file(
        "amir@example.com", identity="triage-agent", target="reports-db",
        entitlements=["role:triage"], reason="tickets",
    ).json()  # fmt: skip
    answer = world.approve("alice@example.com", request["id"])
    assert answer.status_code == 403
    assert "you sponsor this agent" in answer.json()["error"]
    assert world.approve("root@example.com", request["id"]).json()["status"] == "approved"


def test_a_sponsors_own_request_needs_another_person(world: World) -> None:
    request = world.file(
        "alice@example.com", identity="triage-agent", target="reports-db",
        entitlements=["role:triage"], reason="tickets",
    ).json()  # fmt: skip
    assert world.approve("alice@example.com", request["id"]).status_code == 403
    assert world.approve("amir@example.com", request["id"]).json()["status"] == "approved"


def test_a_decided_request_cannot_be_decided_again(world: World) -> None:
    request = world.file().json()
    assert world.deny("amir@example.com", request["id"], "not now").json()["status"] == "denied"
    again = world.approve("sam@example.com", request["id"])
    assert again.status_code == 409 and again.json()["error"].endswith("is denied already")
    assert world.deny("sue@example.com", request["id"]).status_code == 409
    [denied] = world.journal("request_denied")
    assert denied.payload == {
        "request": request["id"],
        "by": "amir@example.com",
        "via": denied.payload["via"],
        "reason": "not now",
    }


def test_a_request_left_pending_expires(world: World) -> None:
    request = world.file().json()
    world.clock.advance(hours=24, seconds=1)
    answer = world.approve("amir@example.com", request["id"])
    assert answer.status_code == 409 and "expired at" in answer.json()["error"]
    got = world.call(None, "GET", f"/v1/requests/{request['id']}").json()
    assert got["status"] == "expired" and got["approvals"] == []
    assert [e.payload["request"] for e in world.journal("request_expired")] == [request["id"]]


def test_the_service_chore_expires_pending_requests(world: World) -> None:
    request = world.file().json()
    world.clock.advance(hours=25)
    world.governance.expire()
    statuses = world.call(None, "GET", "/v1/requests?status=expired").json()["requests"]
    assert [r["id"] for r in statuses] == [request["id"]]


def test_rules_in_force_when_filed_decide_who_may_approve(world: World) -> None:
    request = world.file().json()
    world.reload(POLICY.replace("[group:security], required: 1", "[root@example.com], required: 1"))
    assert world.approve("amir@example.com", request["id"]).status_code == 200
    assert world.approve("sam@example.com", request["id"]).json()["status"] == "approved"
    later = world.file().json()
    assert later["stages"][1]["people"] == ["root@example.com"]


def test_the_operator_reads_but_acts_for_nobody(world: World) -> None:
    answer = world.file(None)
    assert answer.status_code == 403 and "acts for nobody" in answer.json()["error"]
    assert world.call(None, "GET", "/v1/requests").json() == {"requests": []}


@pytest.mark.parametrize(
    ("over", "status", "message"),
    [
        ({"identity": "nobody"}, 404, "unknown identity 'nobody'"),
        ({"target": "moon"}, 404, "unknown target 'moon'"),
        ({"target": "reports-db"}, 422, "identity 'payments-api' has no access on target"),
        ({"entitlements": ["FLY on moon x"]}, 422, "entitlement 'FLY on moon x'"),
        ({"entitlements": ["select on table a.b; DROP ROLE y"]}, 422, "unexpected '; DROP"),
        ({"entitlements": []}, 422, "entitlements"),
        ({"for": "0h"}, 422, "for: '0h' is not a duration"),
        ({"for": "soon"}, 422, "for: 'soon' is not a duration"),
        ({"for": "8d"}, 422, "8d is longer than governance.max_duration allows in prod (7d)"),
        ({"reason": " "}, 422, "a request needs a reason"),
        ({"extra": 1}, 422, "extra"),
    ],
)
def test_bad_requests_are_refused_and_file_nothing(
    world: World, over: dict[str, Any], status: int, message: str
) -> None:
    answer = world.file(**over)
    assert answer.status_code == status, answer.text
    assert message in answer.text
    assert world.call(None, "GET", "/v1/requests").json() == {"requests": []}
    assert world.journal("request_filed") == []


def test_a_person_not_allowed_to_ask_for_an_identity_is_refused(world: World) -> None:
    answer = world.file("sam@example.com")
    assert answer.status_code == 403
    assert "sam@example.com may not ask access for identity 'payments-api'" in answer.text


@pytest.mark.parametrize("path", ["/v1/requests/R-nothing/approve", "/v1/requests/R-x%27%3B/deny"])
def test_an_unknown_request_is_404(world: World, path: str) -> None:
    answer = world.call("sam@example.com", "POST", path, reason="r", comment="c")
    assert answer.status_code in (404, 422)
    assert world.journal("request_approval") == []


@pytest.mark.parametrize("header", [None, "Bearer lsp_000000000000_" + "A" * 43, "Bearer x.y.z"])
def test_calls_without_a_valid_token_are_401(world: World, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = world.client.get("/v1/requests", headers=headers)
    assert answer.status_code == 401 and "error" in answer.json()
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_dry_run_checks_and_files_nothing(world: World) -> None:
    answer = world.call(
        "alice@example.com", "POST", "/v1/requests?dry_run=true", identity="payments-api",
        target="orders-db", entitlements=["role:x"], reason="check", **{"for": "1h"},
    )  # fmt: skip
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    assert world.call(None, "GET", "/v1/requests").json() == {"requests": []}


def test_the_openapi_document_describes_the_request_routes(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert {"/v1/requests", "/v1/requests/{request_id}/approve", "/v1/grants"} <= set(paths)
