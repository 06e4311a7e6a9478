"""``lockstep findings`` for CI gates and tools: ``--severity`` filters, ``--fail-on`` exits 1
on a finding that bad or worse, ``--format sarif`` is a SARIF 2.1.0 log with each finding at
its policy line, ``--format csv`` one row per finding. A target nobody listens on gives a
``target_unreachable`` finding (high) without any server."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

POLICY = """\
version: 1
targets:
  cache: {type: redis, url: "redis://127.0.0.1:1/0"}
owners:
  team: {contacts: [a@example.com]}
"""


def findings(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    return subprocess.run(
        [sys.executable, "-m", "lockstep", "findings", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lockstep.yaml").write_text(POLICY)
    return tmp_path


def test_severity_filters_and_fail_on_gates(project: Path) -> None:
    high = json.loads(findings(project, "--json", "--severity", "high").stdout)["findings"]
    assert [f["type"] for f in high] == ["target_unreachable"]
    assert json.loads(findings(project, "--json", "--severity", "low").stdout)["findings"] == []
    assert findings(project, "--fail-on", "high").returncode == 1
    assert findings(project, "--fail-on", "medium").returncode == 1
    assert findings(project, "--fail-on", "critical").returncode == 0
    assert findings(project, "--fail-on", "catastrophic").returncode == 64


def test_sarif_is_a_2_1_0_log_with_each_finding_at_its_policy_line(project: Path) -> None:
    ran = findings(project, "--format", "sarif")
    assert ran.returncode == 0, ran.stderr
    log = json.loads(ran.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == "lockstep"
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    (result,) = run["results"]
    assert result["ruleId"] == "target_unreachable" and result["level"] == "error"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    assert rules["target_unreachable"]["properties"]["security-severity"] == "8.0"
    assert result["message"]["text"].startswith("target_unreachable cache/*")
    physical = result["locations"][0]["physicalLocation"]
    assert physical == {"artifactLocation": {"uri": "lockstep.yaml"}, "region": {"startLine": 3}}
    assert result["partialFingerprints"]["lockstepFindingId/v1"].startswith("F-")


def test_csv_has_a_header_and_a_row_per_finding(project: Path) -> None:
    ran = findings(project, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(ran.stdout)))
    assert [(r["type"], r["severity"], r["target"]) for r in rows] == [
        ("target_unreachable", "high", "cache")
    ]
    assert rows[0]["nist_csf"] == "DE.CM-09" and rows[0]["id"].startswith("F-")
