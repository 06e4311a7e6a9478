"""Requests in a real browser (Debian's Chromium through Playwright, headless) against a real
`lockstep run` over a real PostgreSQL: a two-stage request approved, its first stage with the
keyboard alone, then seen active on the grants page with the privilege present in
PostgreSQL; another denied with a reason; a request asked for through the form, its
separation-of-duties check shown before it is sent; a person signed in through a local OIDC
issuer. Screenshots are kept under the test's temp dir (its path is printed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from support.browser import (
    browser_fixture,  # noqa: F401 - the fixture
    sign_in,
    tab_to,
)
from support.dashboard_estate import (
    APPROVER,
    PAY,
    PERSON,
    SECURITY,
    DashboardEstate,
    estate_on,
)
from support.governance_project import table_privileges
from support.oidc import Issuer, new_key
from support.service_harness import eventually


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    started = Issuer([new_key("ES256", "people-1")], login_as=SECURITY).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def estate(
    pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory, issuer: Issuer
) -> Iterator[DashboardEstate]:
    port = localpg.free_port()
    people: dict[str, object] = {
        "issuer": issuer.url,
        "audience": "lockstep",
        "client_id": issuer.client_id,  # a public client: PKCE alone
        "redirect_uri": f"http://127.0.0.1:{port}/signin/oidc/callback",
    }
    folder = tmp_path_factory.mktemp("dashboard-browser-requests")
    with estate_on(pg_server, folder, people, port) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-request-screenshots")
    print(f"dashboard request screenshots: {folder}")
    return folder


@pytest.fixture
def context(browser: Any, estate: DashboardEstate) -> Iterator[Any]:
    """A browser for each person of a test: ``context()`` opens one more."""
    opened: list[Any] = []

    def new() -> Any:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=estate.url)
        opened.append(ctx)
        return ctx.new_page()

    yield new
    for ctx in opened:
        ctx.close()


def status_of(estate: DashboardEstate, request_id: str) -> str:
    return str(estate.api(SECURITY, "GET", f"/v1/requests/{request_id}").json()["status"])


def test_a_two_stage_request_approved_with_the_keyboard_becomes_active_in_postgres(
    context: Any, estate: DashboardEstate, shots: Path
) -> None:
    request_id = estate.file_request(PAY)
    owner = context()
    owner.goto("/signin?next=/requests")
    owner.keyboard.type(estate.tokens[APPROVER])  # the Token field has the focus
    owner.keyboard.press("Enter")
    owner.wait_for_url("**/requests")
    owner.screenshot(path=shots / "requests-pending.png", full_page=True)
    tab_to(owner, f"Approve request {request_id}")
    owner.keyboard.press("Enter")
    owner.get_by_role("status").filter(has_text=f"approval of request {request_id}").wait_for()
    assert status_of(estate, request_id) == "pending"

    security = context()
    sign_in(security, estate.tokens[SECURITY])
    security.goto("/requests")
    security.get_by_role("button", name=f"Approve request {request_id}").click()
    security.get_by_role("status").filter(has_text="every stage has passed").wait_for()
    security.goto("/grants")
    grant = security.locator(f"#grant-{request_id}")
    grant.locator(".badge.active").wait_for(timeout=60_000)  # the page refreshes itself
    assert "INSERT on payments" in table_privileges(estate.pg, "payments_api")
    security.screenshot(path=shots / "grants-active.png", full_page=True)


def test_a_request_is_denied_with_a_reason(
    context: Any, estate: DashboardEstate, shots: Path
) -> None:
    request_id = estate.file_request(PAY)
    page = context()
    sign_in(page, estate.tokens[SECURITY])
    page.goto("/requests")
    row = page.locator(f"#request-{request_id}")
    row.get_by_text("Deny…").click()
    row.get_by_label("Reason").fill("not during the change freeze")
    row.get_by_role("button", name=f"Deny request {request_id}").click()
    page.get_by_role("status").filter(has_text=f"Request {request_id} denied").wait_for()
    assert status_of(estate, request_id) == "denied"
    page.goto("/requests?status=denied")
    assert "not during the change freeze" in page.locator(f"#request-{request_id}").inner_text()
    page.screenshot(path=shots / "requests-denied.png", full_page=True)


def test_the_request_form_shows_the_sod_check_before_it_is_sent(
    context: Any, estate: DashboardEstate, shots: Path
) -> None:
    page = context()
    sign_in(page, estate.tokens[PERSON])
    page.goto("/identities/payments-api")
    page.get_by_role("link", name="Ask for more access on orders-db…").click()
    page.get_by_label("Entitlements").fill("role:approver")
    page.get_by_label("For", exact=True).fill("4h")  # a change: the check runs
    alert = page.get_by_role("alert")
    alert.filter(has_text="read-or-approve").wait_for()
    page.screenshot(path=shots / "request-form-refused.png", full_page=True)
    page.get_by_label("Entitlements").fill(PAY)
    page.get_by_label("Reason").fill("month-end payments run")
    page.get_by_role("status").filter(has_text="Checked: no separation-of-duties").wait_for()
    page.get_by_role("button", name="Submit request").click()
    filed = page.get_by_role("status").filter(has_text="filed: it is pending until")
    filed.wait_for()
    request_id = filed.get_by_role("link").inner_text()
    eventually(lambda: status_of(estate, request_id) == "pending", "the request to be filed", 10)
    page.screenshot(path=shots / "request-filed.png", full_page=True)


def test_the_requests_page_in_every_state_is_kept_as_a_screenshot(
    context: Any, estate: DashboardEstate, shots: Path
) -> None:
    waiting = estate.file_request(PAY, duration="4h")
    assert estate.api(APPROVER, "POST", f"/v1/requests/{waiting}/approve", comment="ok").is_success
    estate.file_request(PAY, duration="2h")
    page = context()
    sign_in(page, estate.tokens[SECURITY])
    page.goto("/requests?status=all")
    assert page.get_by_role("button", name=f"Approve request {waiting}").is_visible()
    page.screenshot(path=shots / "requests.png", full_page=True)


def test_a_person_signs_in_through_the_identity_provider(
    context: Any, estate: DashboardEstate, issuer: Issuer, shots: Path
) -> None:
    page = context()
    page.goto("/requests")  # asks to sign in first, and comes back here
    page.get_by_role("link", name=f"Sign in with {issuer.url}").click()
    page.wait_for_url("**/requests")
    assert page.locator(".who").inner_text() == SECURITY
    assert issuer.authorizations[-1]["code_challenge_method"] == "S256"
    page.screenshot(path=shots / "signed-in-through-oidc.png", full_page=True)
