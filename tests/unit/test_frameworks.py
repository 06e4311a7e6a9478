"""The framework mappings are data files with a schema; every finding type counts against
at least one control of every framework."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from lockstep.engine.catalog import OWASP_NHI_2025
from lockstep.evidence.frameworks import (
    FRAMEWORKS,
    GOVERNANCE_FINDINGS,
    FrameworkSpec,
    framework_text,
    load_framework,
)
from lockstep.model import FindingType


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_each_mapping_file_conforms_to_the_schema(name: str) -> None:
    spec = load_framework(name)
    assert spec.id == name and spec.controls


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("finding", [*map(str, FindingType), *GOVERNANCE_FINDINGS])
def test_every_finding_type_maps_to_a_control_of_every_framework(name: str, finding: str) -> None:
    assert any(finding in c.findings for c in load_framework(name).controls)


def test_the_owasp_risks_are_the_2025_top_ten_with_their_titles() -> None:
    controls = load_framework("owasp-nhi-2025").controls
    assert {c.id: c.title for c in controls} == dict(OWASP_NHI_2025)


def test_csf_uses_the_2_0_identifiers() -> None:
    ids = [c.id for c in load_framework("nist-csf-2.0").controls]
    assert all(i.split(".")[0] in ("GV", "ID", "PR", "DE", "RS", "RC") for i in ids)
    assert not any(i.startswith(("PR.AC", "PR.IP", "DE.CM-7")) for i in ids)  # CSF 1.1 IDs


def base() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(framework_text("owasp-nhi-2025"))
    return loaded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["controls"][0]["findings"].append("no_such_finding"), "unknown finding"),
        (lambda d: d["controls"][0]["checks"].append("no_such_check"), "unknown checks"),
        (lambda d: d["controls"][2].pop("needs"), "must say what it needs"),
        (lambda d: d["controls"][1].update(id="NHI1"), "two controls share an id"),
        (lambda d: d["controls"][0].update(colour="red"), "Extra inputs"),
    ],
)
def test_a_mapping_that_breaks_the_schema_is_refused(change, message: str) -> None:
    data = base()
    change(data)
    with pytest.raises(ValidationError, match=message):
        FrameworkSpec.model_validate(data)
