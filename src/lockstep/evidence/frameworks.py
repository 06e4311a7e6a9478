"""The framework mappings: one YAML data file per framework in ``frameworks/``, each a
``FrameworkSpec``. A control names the finding types that defeat it and the checks that
assess it; a control lockstep cannot observe names no check and says what would be needed.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lockstep.errors import LockstepError
from lockstep.evidence.checks import CHECK_FUNCTIONS
from lockstep.model import FindingType

FRAMEWORKS = ("owasp-nhi-2025", "nist-csf-2.0", "nist-800-53-r5", "nist-ai-rmf")
# Finding types of the contract that governance brings (requests, reviews, paths): mapped
# already, so that a report counts them the day they appear.
GOVERNANCE_FINDINGS = ("review_overdue",)
FINDING_TYPES = frozenset({str(t) for t in FindingType} | set(GOVERNANCE_FINDINGS))
# What lockstep can assess: the checks of ``lockstep.evidence.checks``.
CHECKS = frozenset(CHECK_FUNCTIONS)
Text = Annotated[str, Field(min_length=1)]


class FrameworkError(LockstepError):
    code = "framework_unknown"


class ControlSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Text
    oscal_id: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9._-]*$")]
    title: Text
    description: Text
    findings: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)
    needs: Text | None = None

    @model_validator(mode="after")
    def _known(self) -> ControlSpec:
        unknown = set(self.findings) - FINDING_TYPES
        if unknown:
            raise ValueError(f"{self.id}: unknown finding types {sorted(unknown)}")
        if set(self.checks) - CHECKS:
            raise ValueError(f"{self.id}: unknown checks {sorted(set(self.checks) - CHECKS)}")
        if not self.checks and self.needs is None:
            raise ValueError(f"{self.id}: a control with no check must say what it needs")
        return self


class FrameworkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Text
    title: Text
    version: Text
    source: Text
    controls: Annotated[list[ControlSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> FrameworkSpec:
        for attr in ("id", "oscal_id"):
            values = [getattr(c, attr) for c in self.controls]
            if len(set(values)) != len(values):
                raise ValueError(f"two controls share an {attr}")
        return self


def framework_text(name: str) -> str:
    if name not in FRAMEWORKS:
        raise FrameworkError(f"unknown framework {name!r} (known: {', '.join(FRAMEWORKS)})")
    return (
        resources.files("lockstep.evidence")
        .joinpath("frameworks", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )


@cache
def load_framework(name: str) -> FrameworkSpec:
    try:
        spec = FrameworkSpec.model_validate(yaml.safe_load(framework_text(name)))
    except (ValidationError, yaml.YAMLError) as exc:
        raise FrameworkError(f"the mapping of {name} is invalid: {exc}") from None
    if spec.id != name:
        raise FrameworkError(f"the mapping file {name}.yaml says it is {spec.id!r}")
    return spec
