"""Reviews as evidence, on a real target: every review, decision and proven outcome in the
journal with its person and the trigger's evidence; the inventory's next review; explain's
reviews; and the report's share of access reviewed on time, AC-6(7) resting on it."""

from __future__ import annotations

import json
from typing import Any

from lockstep.engine.review_model import Decision
from lockstep.evidence.times import iso_seconds
from support.cli_project import Lockstep, project_env
from support.review_project import T0, Project, days

pytest_plugins = ("support.review_estates",)

RULES = "rules:\n  review_every: {default: 30d}\n  review_grace: 2d\n"


def cli(review_project: Project, *args: str) -> Any:
    done = Lockstep(review_project.workdir, project_env())(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def control(report: dict[str, Any], control_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in report["controls"] if c["id"] == control_id]
    assert len(found) == 1
    return found[0]


def test_reviews_decided_on_time_are_evidence_and_late_ones_are_findings(
    review_project: Project,
) -> None:
    review_project.rules = RULES
    review_project.write(review_project.service())
    review_project.apply(T0)
    review_project.apply(T0 + days(30))
    review = review_project.review()
    review_project.decide(review, Decision.KEEP, T0 + days(31))

    [mine] = [a for a in cli(review_project, "inventory", "--json")["accounts"] if a["identity"]]
    assert mine["next_review"] == iso_seconds(T0 + days(61))
    explained = cli(review_project, "explain", "payments-api", "--json")
    [shown] = explained["accounts"][0]["reviews"]
    assert (shown["id"], shown["decision"], shown["decided_by"]) == (
        review.id,
        "keep",
        "alice@example.com",
    )
    assert shown["evidence"]["review_every"] == "30d"
    report = cli(review_project, "report", "--framework", "nist-800-53-r5", "--format", "json")
    ac67 = control(report, "AC-6(7)")
    assert ac67["status"] == "satisfied", ac67
    [share] = [f for f in ac67["figures"] if f["id"] == "reviewed_on_time_share"]
    assert share["value"] == 1.0
    assert any(e["kind"] == "review_decided" for e in ac67["evidence"])

    review_project.apply(T0 + days(61))  # the next review opens...
    review_project.apply(T0 + days(64))  # ...and nobody answers it in time
    report = cli(review_project, "report", "--framework", "nist-800-53-r5", "--format", "json")
    ac67 = control(report, "AC-6(7)")
    assert ac67["status"] == "not_satisfied"
    [share] = [f for f in ac67["figures"] if f["id"] == "reviewed_on_time_share"]
    assert share["value"] == 0.5
    [late] = [f for f in report["findings"] if f["type"] == "review_overdue"]
    assert late["id"] in ac67["findings"]
    owasp = cli(review_project, "report", "--framework", "owasp-nhi-2025", "--format", "json")
    assert late["id"] in control(owasp, "NHI1")["findings"]


def test_the_journal_holds_each_review_decision_and_proof(review_project: Project) -> None:
    review_project.rules = RULES
    review_project.write(review_project.service())
    review_project.apply(T0)
    review_project.apply(T0 + days(30))
    review = review_project.review()
    review_project.decide(review, Decision.REVOKE, T0 + days(30), reason="no longer used")
    review_project.apply(T0 + days(30))
    [opened] = review_project.journal("review_opened")
    assert opened["trigger"] == "periodic" and opened["reviewers"] == [
        "alice@example.com",
        "amir@example.com",
    ]
    assert opened["evidence"]["since"] == iso_seconds(T0)
    [decided] = review_project.journal("review_decided")
    assert (decided["by"], decided["decision"], decided["reason"]) == (
        "alice@example.com",
        "revoke",
        "no longer used",
    )
    [verified] = review_project.journal("review_verified")
    assert verified["status"] == "revoked" and verified["op"] == "suspend_account"
    results = [r for r in review_project.journal("result") if r.get("review") == review.id]
    assert [r["status"] for r in results] == ["verified"]
    assert Lockstep(review_project.workdir, project_env())("audit", "verify").returncode == 0
