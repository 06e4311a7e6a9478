"""`lockstep report` for each framework and format, from a real estate's state store: every
control's status backed by evidence or saying what is missing, OSCAL valid against NIST's
schema, OCSF Compliance Findings, a self-contained HTML page, and the same bytes twice."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import regex
from jsonschema import Draft7Validator, ValidationError, validators
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding

from lockstep.demo import localpg
from lockstep.evidence.frameworks import FRAMEWORKS
from support.cli_project import Lockstep, create_orders_db, project_env
from support.estate_names import HOSTILE

pytest_plugins = ("support.evidence_estate",)

SCHEMA = Path(__file__).parent.parent / "schemas" / "oscal_complete_schema-1.2.3.json"
FORMATS = ("json", "html", "oscal", "ocsf")
EPOCH = {"SOURCE_DATE_EPOCH": "1798761600"}  # 2027-01-01T00:00:00Z

HEALTHY = """\
version: 1
targets:
  orders-db:
    type: postgres
    dsn: ${ORDERS_DB_DSN}
    environment: prod
owners:
  payments-team:
    contacts: [alice@example.com]
identities:
  payments-api:
    owner: payments-team
    purpose: Serve the payments API
    environment: prod
    access:
      - target: orders-db
        account: payments_api
        entitlements: [SELECT on table public.orders]
    credentials:
      rotate_every: 30d
"""


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# The schema's patterns use Unicode classes (\p{L}) that Python's re does not know.
OscalValidator = validators.extend(Draft7Validator, {"pattern": _pattern})


def report(cli: Lockstep, framework: str, fmt: str, **env: str) -> str:
    saved = dict(cli.env)
    cli.env.update(env)
    try:
        proc = cli("report", "--framework", framework, "--format", fmt)
    finally:
        cli.env = saved
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def healthy(pg_server: localpg.LocalPostgres, tmp_path_factory: pytest.TempPathFactory):
    """One target read, applied and verified: what a control needs to be satisfied."""
    from conftest import _reset_cluster

    _reset_cluster(pg_server)
    create_orders_db(pg_server)
    workdir = tmp_path_factory.mktemp("healthy")
    (workdir / "lockstep.yaml").write_text(HEALTHY)
    cli = Lockstep(workdir, project_env(ORDERS_DB_DSN=pg_server.dsn("orders")))
    assert cli("apply", "--yes").returncode == 0
    assert cli("verify").returncode == 0
    yield cli
    _reset_cluster(pg_server)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_control_has_a_status_and_none_is_satisfied_without_evidence(
    healthy: Lockstep, framework: str
) -> None:
    data = json.loads(report(healthy, framework, "json"))
    assert {"framework", "generated_at", "journal_head", "controls"} <= set(data)
    assert data["framework"] == framework and data["journal"]["intact"]
    for control in data["controls"]:
        assert {"id", "title", "status", "findings", "evidence", "figures"} <= set(control)
        assert control["status"] in ("satisfied", "not_satisfied", "not_assessed")
        if control["status"] == "satisfied":
            assert control["evidence"] and all(len(e["hash"]) == 64 for e in control["evidence"])
        if control["status"] == "not_assessed":
            assert control["needed"]


def test_owasp_report_covers_all_ten_risks_and_satisfies_what_was_proven(
    healthy: Lockstep,
) -> None:
    data = json.loads(report(healthy, "owasp-nhi-2025", "json"))
    status = {c["id"]: c["status"] for c in data["controls"]}
    assert list(status) == [f"NHI{i}" for i in range(1, 11)]
    assert status["NHI9"] == "satisfied"  # no account shared, verified
    assert status["NHI3"] == "not_assessed"  # third parties: not observable
    assert status["NHI10"] == "not_assessed"


@pytest.mark.parametrize(
    ("framework", "wanted"),
    [
        ("nist-csf-2.0", ["GV.PO-01", "GV.RR-02", "GV.RR-04", "PR.AA-01", "PR.AA-02",
                          "PR.AA-03", "PR.AA-04", "PR.AA-05", "DE.CM-09"]),
        ("nist-800-53-r5", ["AC-2", "AC-2(1)", "AC-2(2)", "AC-2(3)", "AC-2(4)", "AC-2(7)",
                            "AC-2(12)", "AC-6", "IA-5"]),
        ("nist-ai-rmf", ["GOVERN 1.6", "GOVERN 1.7", "GOVERN 2.1", "GOVERN 3.2"]),
    ],
)  # fmt: skip
def test_each_framework_has_the_controls_it_promises(
    healthy: Lockstep, framework: str, wanted: list[str]
) -> None:
    ids = [c["id"] for c in json.loads(report(healthy, framework, "json"))["controls"]]
    assert set(wanted) <= set(ids)


def test_a_report_carries_the_figures(healthy: Lockstep) -> None:
    figures = {f["id"]: f for f in json.loads(report(healthy, "nist-csf-2.0", "json"))["figures"]}
    assert figures["owner_active_share"]["value"] == 1.0
    assert figures["credential_age_p50_d"]["value"] is not None
    assert figures["revocations_attempted"]["value"] >= figures["revocations_verified"]["value"]
    assert figures["reviewed_on_time_share"]["value"] is None  # reviews: governance


def test_with_an_unreachable_target_no_control_is_satisfied(estate) -> None:
    cli, _, _ = estate
    for framework in FRAMEWORKS:
        data = json.loads(report(cli, framework, "json"))
        assert all(c["status"] != "satisfied" for c in data["controls"]), framework


def test_findings_behind_a_control_are_listed(estate) -> None:
    cli, _, _ = estate
    data = json.loads(report(cli, "owasp-nhi-2025", "json"))
    nhi1 = next(c for c in data["controls"] if c["id"] == "NHI1")
    assert nhi1["status"] == "not_satisfied"
    by_id = {f["id"]: f for f in data["findings"]}
    types = {by_id[i]["type"] for i in nhi1["findings"]}
    assert {"orphan_account", "ownerless_identity", "target_unreachable"} <= types


@pytest.mark.parametrize("fmt", FORMATS)
def test_rerunning_a_report_on_the_same_state_gives_the_same_bytes(
    healthy: Lockstep, fmt: str
) -> None:
    assert report(healthy, "nist-800-53-r5", fmt, **EPOCH) == report(
        healthy, "nist-800-53-r5", fmt, **EPOCH
    )


def test_without_a_fixed_time_only_generated_at_differs(healthy: Lockstep) -> None:
    first = json.loads(report(healthy, "owasp-nhi-2025", "json"))
    second = json.loads(report(healthy, "owasp-nhi-2025", "json"))
    first.pop("generated_at"), second.pop("generated_at")
    assert first == second


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_oscal_is_valid_assessment_results_against_nists_schema(
    estate, healthy: Lockstep, framework: str
) -> None:
    validator = OscalValidator(json.loads(SCHEMA.read_text()))
    for cli in (estate[0], healthy):
        document = json.loads(report(cli, framework, "oscal"))
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
        assert document["assessment-results"]["metadata"]["oscal-version"] == "1.2.3"


def test_the_oscal_validator_does_reject_an_invalid_document(healthy: Lockstep) -> None:
    validator = OscalValidator(json.loads(SCHEMA.read_text()))
    document = json.loads(report(healthy, "owasp-nhi-2025", "oscal"))
    document["assessment-results"]["results"][0]["observations"][0]["props"][0]["name"] = "1 x"
    assert list(validator.iter_errors(document))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ocsf_lines_are_compliance_findings(estate, framework: str) -> None:
    cli, _, _ = estate
    lines = report(cli, framework, "ocsf").splitlines()
    assert lines
    for line in lines:
        event = json.loads(line)
        ComplianceFinding.model_validate(event)
        assert (event["class_uid"], event["category_uid"], event["type_uid"]) == (2003, 2, 200301)
        assert event["metadata"]["version"] and event["metadata"]["product"]["vendor_name"]
        assert event["compliance"]["standards"] and event["compliance"]["status_id"] in (1, 2, 3)
        assert event["finding_info"]["uid"] and event["finding_info"]["title"]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "srcset", "data") or (tag == "link" and name == "href"):
                self.loads.append(f"{tag} {name}={value}")


def test_html_is_one_self_contained_page_with_charts_and_escaped_names(estate) -> None:
    cli, _, _ = estate
    page = report(cli, "owasp-nhi-2025", "html")
    parser = _Assets()
    parser.feed(page)
    assert parser.loads == [] and "script" not in parser.tags and "url(" not in page
    assert parser.tags.count("svg") >= 5
    assert HOSTILE not in page
    assert "o&#x27;brien;&quot;&lt;b&gt;x&lt;/b&gt;" in page
    assert "@media print" in page
