"""The HTML report in a real browser (Debian's Chromium through Playwright): it loads
nothing from anywhere, shows its charts, and prints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockstep.engine.plan import finding
from lockstep.evidence.frameworks import load_framework
from lockstep.evidence.html_report import render_html
from lockstep.evidence.journal_summary import JournalSummary, Ref
from lockstep.evidence.report import Gathered, build_report, finding_row
from lockstep.journal import ChainReport
from lockstep.model import Access, FindingType, Identity, Owner, OwnerStatus, Policy, Target
from lockstep.store.findings import FindingRecord
from support.browser import browser_fixture  # noqa: F401 - the fixture
from support.settings import NO_SETTINGS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ACCESS = Access("db", "api", frozenset(), None)


@pytest.fixture
def page_file(tmp_path: Path) -> Path:
    policy = Policy(
        {"db": Target("db", "postgres", "prod", frozenset(), False, NO_SETTINGS)},
        {"team": Owner("team", ("a@example.com",), OwnerStatus.ACTIVE)},
        {
            "api": Identity(
                "api", "team", "serve", "prod", (Access("db", "api", frozenset(), None),)
            )
        },
    )
    summary = JournalSummary(ChainReport(True, 3, None, "3 entries, chain intact", (3, "a" * 64)))
    summary.head_at = "2026-06-01T00:00:00.000000Z"
    for n, category in enumerate(("verification_in_sync", "removal_verified", "probe"), start=1):
        payload = '{"account":"api","op":"revoke","status":"verified","target":"db"}'
        summary.note(category, Ref(n, f"{n:064x}", summary.head_at, "result", payload))
    f = finding(FindingType.ORPHAN_ACCOUNT, "db", account="<script>alert(1)</script>")
    gathered = Gathered(
        policy,
        summary,
        [finding_row(FindingRecord(f, f.id, NOW, NOW, "open"))],
        {"db": NOW},
        {},
        {},
    )
    path = tmp_path / "report.html"
    path.write_text(render_html(build_report(load_framework("owasp-nhi-2025"), gathered, NOW)))
    return path


def test_the_report_loads_nothing_but_itself(browser, page_file: Path) -> None:
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(page_file.as_uri())
    assert requested == [page_file.as_uri()]
    assert page.evaluate("() => document.scripts.length") == 0
    page.close()


def test_the_charts_are_drawn_and_hostile_names_stay_text(browser, page_file: Path) -> None:
    page = browser.new_page()
    page.goto(page_file.as_uri())
    charts = page.locator("svg")
    assert charts.count() >= 5
    assert all(charts.nth(i).bounding_box()["width"] > 100 for i in range(charts.count()))
    assert page.get_by_text("<script>alert(1)</script>", exact=False).count() >= 1
    assert page.locator(".badge.not_satisfied").first.is_visible()
    page.close()


def test_the_report_prints(browser, page_file: Path) -> None:
    page = browser.new_page()
    page.goto(page_file.as_uri())
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    page.close()
