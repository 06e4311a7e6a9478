"""Reviews in a real browser (Debian's Chromium through Playwright, headless) against a real
`lockstep run` over a real PostgreSQL, whose periodic reviews come due every few seconds: an
owner's contact revokes one with a reason and sees it become `revoked` once the service has
proven the old password refused in PostgreSQL; another reviewer keeps theirs; a person sees
no buttons on a review that is not theirs to decide, and a decision without a reason is
refused. Screenshots are kept under the test's temp dir (its path is printed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep.demo import localpg
from support.browser import browser_fixture, sign_in  # noqa: F401 - the fixture
from support.cli_project import refused
from support.dashboard_estate import OUTSIDER, PERSON, DashboardEstate, estate_on
from support.service_harness import eventually

RULES: dict[str, object] = {"review_every": {"default": "3s"}}


@pytest.fixture(scope="module")
def estate(
    pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardEstate]:
    folder = tmp_path_factory.mktemp("dashboard-browser-reviews")
    with estate_on(pg_server, folder, rules=RULES) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-review-screenshots")
    print(f"dashboard review screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any, estate: DashboardEstate) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=estate.url)
    yield ctx.new_page()
    ctx.close()


def open_review(estate: DashboardEstate, person: str, identity: str) -> dict[str, Any]:
    def found() -> list[dict[str, Any]]:
        answer = estate.api(person, "GET", f"/v1/reviews?identity={identity}&status=open")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["reviews"])

    return eventually(found, f"a periodic review of {identity} to open")[0]


def status_of(estate: DashboardEstate, review_id: str, person: str = OUTSIDER) -> str:
    answer = estate.api(person, "GET", f"/v1/reviews/{review_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def test_a_revoke_in_the_browser_is_shown_revoked_once_proven_in_postgres(
    page: Any, estate: DashboardEstate, shots: Path
) -> None:
    review = open_review(estate, PERSON, "payments-api")
    password = json.loads((estate.workdir / "secrets" / "payments-api.json").read_text())
    assert not refused(estate.pg, "payments_api", password["password"])
    sign_in(page, estate.tokens[PERSON])
    page.get_by_role("link", name="Reviews").click()
    page.wait_for_url("**/reviews")
    row = page.locator(f"#review-{review['id']}")
    page.screenshot(path=shots / "reviews-assigned.png", full_page=True)
    row.get_by_text("Revoke…").click()
    row.get_by_label("Reason", exact=True).last.fill("unused since the migration")
    row.get_by_role("button", name=f"Revoke the access of review {review['id']}").click()
    page.get_by_role("status").filter(has_text=f"Review {review['id']}: revoke recorded").wait_for()

    def shown_revoked() -> bool:
        page.goto("/reviews?show=all")
        return "revoked" in page.locator(f"#review-{review['id']} .badge.revoked").all_inner_texts()

    eventually(shown_revoked, "the review to read revoked", 60)
    assert refused(estate.pg, "payments_api", password["password"])
    shown = page.locator(f"#review-{review['id']}").inner_text()
    assert "unused since the migration" in shown and "removal verified" in shown
    page.screenshot(path=shots / "reviews-revoked.png", full_page=True)


def test_a_reviewer_keeps_access_and_others_see_no_buttons(
    page: Any, estate: DashboardEstate, shots: Path
) -> None:
    review = open_review(estate, OUTSIDER, "search-indexer")
    sign_in(page, estate.tokens[PERSON])
    page.goto("/reviews?show=all")
    assert page.locator(f"#review-{review['id']}").count() == 0  # not an identity alice sees

    page.context.clear_cookies()
    sign_in(page, estate.tokens[OUTSIDER])
    page.goto("/reviews")
    row = page.locator(f"#review-{review['id']}")
    button = row.get_by_role("button", name=f"Keep the access of review {review['id']}")
    button.click()  # no reason: the browser will not send it
    assert status_of(estate, review["id"]) == "open"
    row.locator(f"#keep-{review['id']}").fill("still indexes the orders")
    button.click()
    page.get_by_role("status").filter(
        has_text=f"Review {review['id']}: the access is kept"
    ).wait_for()
    assert status_of(estate, review["id"]) == "kept"
    page.screenshot(path=shots / "reviews-kept.png", full_page=True)


def test_a_decision_without_the_session_token_is_refused(estate: DashboardEstate) -> None:
    review = open_review(estate, OUTSIDER, "search-indexer")
    with estate.signed_in(estate.tokens[OUTSIDER]) as client:
        answer = client.post(f"/reviews/{review['id']}/keep", data={"reason": "no csrf"})
        assert answer.status_code == 403
    assert status_of(estate, review["id"]) == "open"
