"""Findings as SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format), the log code
scanning tools read (GitHub code scanning among them): one rule per finding type with its
OWASP NHI and NIST CSF tags, one result per finding at the policy line it concerns (the
identity's entitlement, the identity, or the target it was found on). Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lockstep import __version__
from lockstep.engine.catalog import KINDS
from lockstep.model import Finding, FindingType, Location, Severity
from lockstep.store.findings import FindingRecord

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL: Mapping[Severity, str] = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}
# GitHub code scanning ranks security results by this CVSS-like score.
SECURITY_SEVERITY: Mapping[Severity, str] = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.0",
    Severity.LOW: "2.0",
}
Locate = Callable[[Finding], Location | None]  # where in the policy a finding belongs


def sarif_log(records: Iterable[FindingRecord], locate: Locate) -> dict[str, Any]:
    records = list(records)
    types = sorted({r.finding.type for r in records})
    index = {t: i for i, t in enumerate(types)}
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "lockstep",
                        "version": __version__,
                        "rules": [_rule(t) for t in types],
                    }
                },
                "results": [_result(r, index[r.finding.type], locate(r.finding)) for r in records],
            }
        ],
    }


def _rule(type_: FindingType) -> dict[str, Any]:
    kind = KINDS[type_]
    return {
        "id": str(type_),
        "name": "".join(part.capitalize() for part in str(type_).split("_")),
        "shortDescription": {"text": kind.summary},
        "defaultConfiguration": {"level": LEVEL[kind.severity]},
        "properties": {
            "tags": ["security", "non-human-identity", *kind.owasp_nhi, *kind.nist_csf],
            "security-severity": SECURITY_SEVERITY[kind.severity],
        },
    }


def _result(record: FindingRecord, rule: int, where: Location | None) -> dict[str, Any]:
    f = record.finding
    subject = f"{f.target}/{f.account or '*'}" + (f" {f.entitlement}" if f.entitlement else "")
    location: dict[str, Any] = {
        "logicalLocations": [{"name": subject, "kind": "resource"}],
    }
    if where is not None:
        location["physicalLocation"] = {
            "artifactLocation": {"uri": where.file},
            "region": {"startLine": max(where.line, 1)},
        }
    return {
        "ruleId": str(f.type),
        "ruleIndex": rule,
        "level": LEVEL[f.severity],
        "message": {
            "text": f"{f.type} {subject}: {f.detail}" if f.detail else f"{f.type} {subject}"
        },
        "locations": [location],
        "partialFingerprints": {"lockstepFindingId/v1": record.id},
        "properties": {
            "severity": str(f.severity),
            "status": record.status,
            "identity": f.identity,
            "firstSeen": record.first_seen.isoformat(),
        },
    }
