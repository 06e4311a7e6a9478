"""The dashboard in a real browser (Debian's Chromium through Playwright, headless) against a
real `lockstep run` over a real PostgreSQL: sign in, a wrong token refused, a hostile account
name from the target rendered inert, no request leaving the service's origin, a lease
revoked with the keyboard alone and proven gone from PostgreSQL, a risk accepted. Each page's
screenshot is kept under the test's temp dir (its path is printed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
    HOSTILE,
    OPERATOR_TOKEN,
    DashboardEstate,
    estate_on,
    has_role,
)
from support.service_harness import eventually

PAGES = ("/", "/inventory", "/findings", "/leases", "/reports", "/identities/payments-api")


@pytest.fixture(scope="module")
def estate(
    pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardEstate]:
    with estate_on(pg_server, tmp_path_factory.mktemp("dashboard-browser")) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"dashboard screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any, estate: DashboardEstate) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=estate.url)
    opened = context.new_page()
    yield opened
    context.close()


def test_signing_in_shows_the_overview_and_its_charts(page: Any, shots: Path) -> None:
    sign_in(page)
    assert page.get_by_role("heading", name="Overview").is_visible()
    charts = page.locator("svg.chart")
    assert charts.count() >= 5
    assert all(charts.nth(i).bounding_box()["width"] > 100 for i in range(charts.count()))
    page.screenshot(path=shots / "overview.png", full_page=True)


def test_a_wrong_token_is_refused(page: Any, shots: Path) -> None:
    sign_in_page = page.goto("/signin")
    assert sign_in_page.ok
    page.get_by_label("Token").fill("a-wrong-token")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That token is not valid")
    page.screenshot(path=shots / "signin-refused.png")
    page.goto("/inventory")
    assert "/signin" in page.url


def test_a_hostile_account_name_is_shown_as_text_and_never_runs(page: Any, shots: Path) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in(page)
    page.goto("/inventory")
    page.get_by_label("Search").fill("onerror")  # htmx swaps the results in, under the CSP
    page.get_by_text("of 1 accounts").wait_for()
    assert page.get_by_text(HOSTILE, exact=True).is_visible()
    page.screenshot(path=shots / "inventory-hostile.png", full_page=True)
    page.goto("/findings")
    assert page.get_by_text(f"orders-db/{HOSTILE}", exact=True).is_visible()
    assert page.evaluate("() => document.querySelectorAll('main img, main script').length") == 0
    assert dialogs == []


def test_no_request_leaves_the_services_origin(page: Any, estate: DashboardEstate) -> None:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    sign_in(page)
    for path in PAGES:
        page.goto(path)
        page.wait_for_load_state("networkidle")
    assert seen
    assert all(url.startswith(estate.url + "/") for url in seen), sorted(set(seen))


def test_a_lease_is_revoked_with_the_keyboard_alone_and_gone_from_postgres(
    page: Any, estate: DashboardEstate, shots: Path
) -> None:
    account = f"lockstep_lease_{estate.lease_id}"
    assert has_role(estate.pg, account)
    page.on("dialog", lambda d: d.accept())
    page.goto("/signin")
    page.keyboard.type(OPERATOR_TOKEN)  # the Token field has the focus
    page.keyboard.press("Enter")
    page.wait_for_url("**/")
    tab_to(page, "Leases")
    page.keyboard.press("Enter")
    page.wait_for_url("**/leases")
    page.screenshot(path=shots / "leases.png", full_page=True)
    tab_to(page, f"Revoke lease {estate.lease_id}")
    page.keyboard.press("Enter")
    page.get_by_text("its credential is proven refused").wait_for()
    assert not has_role(estate.pg, account)
    page.screenshot(path=shots / "lease-revoked.png", full_page=True)


def test_a_risk_is_accepted_with_a_reason_and_an_expiry(page: Any, shots: Path) -> None:
    sign_in(page)
    page.goto("/findings")
    row = page.locator("tr", has_text=HOSTILE)
    row.get_by_text("Accept risk…").click()
    row.get_by_label("Reason").fill("a test fixture, kept on purpose")
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    row.get_by_label("Accepted until").fill(until)
    row.get_by_role("button", name="Accept risk").click()
    page.get_by_role("status").filter(has_text="accepted until").wait_for()
    assert page.locator(".badge.accepted").count() == 1
    page.screenshot(path=shots / "findings-accepted.png", full_page=True)


def test_every_page_renders_and_is_kept_as_a_screenshot(page: Any, shots: Path) -> None:
    sign_in(page)
    for path in PAGES:
        answer = page.goto(path)
        assert answer.ok, path
        name = path.strip("/").replace("/", "-") or "overview"
        page.screenshot(path=shots / f"page-{name}.png", full_page=True)
    assert page.get_by_role("heading", name="payments-api").is_visible()


def test_keyboard_focus_is_visible_and_skip_link_first(page: Any) -> None:
    sign_in(page)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    eventually(
        lambda: page.evaluate("() => document.activeElement.id") == "main", "focus on main", 5
    )
