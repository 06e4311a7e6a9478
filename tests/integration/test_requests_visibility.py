"""Who sees which requests over the API, decided by the same ``Authority`` the dashboard asks:
those who see the identity, the requester, the approvers the request's rules name, admins and
the operator; to anybody else a request does not exist. A dry run that a rule refuses files
nothing and journals nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep.governance.tokens import PersonTokens
from lockstep.journal import Journal
from lockstep.service.principals import OPERATOR as OPERATOR_NAME
from lockstep.service.principals import Kind, Principal
from support.governance import PEOPLE, POLICY, World, open_world

BOB = "bob@example.com"
OPERATOR = Principal(OPERATOR_NAME, Kind.OPERATOR, "operator:x", None)
WITH_BOB = (
    POLICY.replace(
        """identities:
""",
        """  search-team:
    contacts: [bob@example.com]
identities:
  search-indexer:
    owner: search-team
    purpose: Index orders for search
    access:
      - target: reports-db
        account: search_indexer
        entitlements: []
""",
    )
    + """\
rules:
  sod:
    - name: read-or-pay
      entitlements: ["orders-db/role:app_readonly", "orders-db/role:payer"]
"""
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    for world in open_world(tmp_path, WITH_BOB):
        tokens = PersonTokens(world.store, Journal(world.store), world.clock)
        world.tokens[BOB] = tokens.create(BOB, 86400)[1]
        yield world


def ids(world: World, person: str | None, path: str = "/v1/requests") -> list[str]:
    answer = world.call(person, "GET", path)
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["requests"]]


def test_a_request_is_seen_by_those_it_concerns_and_nobody_else(world: World) -> None:
    payments = world.file().json()["id"]
    search = world.file(BOB, identity="search-indexer", target="reports-db").json()["id"]
    assert sorted(ids(world, None)) == sorted([search, payments])  # the operator sees all
    assert sorted(ids(world, "root@example.com")) == sorted([search, payments])  # admins too
    assert ids(world, "alice@example.com") == [payments]  # the requester, an owner's contact
    assert ids(world, "sam@example.com") == [payments]  # an approver of its second stage
    assert ids(world, BOB) == [search]
    hidden = world.call(BOB, "GET", f"/v1/requests/{payments}")
    unknown = world.call(BOB, "GET", "/v1/requests/R-000000000000")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"] == f"unknown request {payments!r}"


def test_grants_are_listed_to_those_who_see_them(world: World) -> None:
    request = world.file().json()["id"]
    world.approve("amir@example.com", request)
    assert world.approve("sam@example.com", request).json()["status"] == "approved"
    assert ids(world, "alice@example.com", "/v1/grants") == [request]
    assert ids(world, BOB, "/v1/grants") == []


def test_deciding_a_request_one_cannot_see_is_refused(world: World) -> None:
    request = world.file().json()["id"]
    assert world.approve(BOB, request).status_code == 403
    assert world.deny(BOB, request).status_code == 403
    assert world.call(None, "GET", f"/v1/requests/{request}").json()["status"] == "pending"


def test_a_dry_run_a_rule_refuses_journals_nothing(world: World) -> None:
    answer = world.call(
        "alice@example.com", "POST", "/v1/requests?dry_run=true", identity="payments-api",
        target="orders-db", entitlements=["role:payer"], reason="check", **{"for": "1h"},
    )  # fmt: skip
    assert answer.status_code == 403 and "read-or-pay" in answer.json()["error"]
    assert world.journal("request_refused") == []
    assert world.file(entitlements=["role:payer"]).status_code == 403  # filing it for real
    assert len(world.journal("request_refused")) == 1


def test_a_page_of_requests_shows_what_the_list_shows(world: World) -> None:
    for _ in range(3):
        world.file()
    world.file(BOB, identity="search-indexer", target="reports-db")
    live = world.governance.live()
    assert live is not None
    people = [*PEOPLE, BOB]
    for who in [Principal(p, Kind.PERSON, "token t", None) for p in people] + [OPERATOR]:
        listed = [r.id for r in live.visible(who)]
        shown, total = live.page(who, None, 0, 100)
        assert [r.id for r in shown] == listed and total == len(listed), who.name
        second, _ = live.page(who, None, 1, 1)
        assert [r.id for r in second] == listed[1:2]
