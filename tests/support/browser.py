"""The browser the browser tests drive: Debian's Chromium through Playwright (which cannot
download one here), headless, so that the suite runs on a machine without a display."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import unavailable
from support.dashboard_estate import OPERATOR_TOKEN

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def sign_in(page: Any, token: str = OPERATOR_TOKEN) -> None:
    """Sign in to the dashboard at the page's base URL, landing on the overview."""
    page.goto("/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def tab_to(page: Any, name: str, limit: int = 60) -> None:
    """Press Tab until the focused element is named ``name`` (its text or aria-label)."""

    def focused() -> str:
        return str(
            page.evaluate(
                "() => document.activeElement.getAttribute('aria-label')"
                " || document.activeElement.innerText || ''"
            )
        ).strip()

    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused() == name:
            return
    raise AssertionError(f"{name!r} cannot be reached with the Tab key")
