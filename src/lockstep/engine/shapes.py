"""The JSON shapes of CONTRACT.md that more than one front end answers with (the CLI's
``--json`` and the service's API), built from the engine's data. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lockstep.engine.catalog import KINDS, OWASP_NHI_2025, owasp_nhi
from lockstep.model import Finding
from lockstep.store.findings import FindingRecord


def finding_json(f: Finding, record: FindingRecord | None = None) -> dict[str, Any]:
    kind = KINDS[f.type]
    return {
        "id": f.id,
        "type": str(f.type),
        "severity": str(f.severity),
        "target": f.target,
        "account": f.account,
        "entitlement": f.entitlement,
        "identity": f.identity,
        "detail": f.detail,
        "owasp_nhi": list(owasp_nhi(f)),
        "owasp_nhi_titles": [OWASP_NHI_2025[i] for i in owasp_nhi(f)],
        "nist_csf": list(kind.nist_csf),
        "first_seen": record.first_seen.isoformat() if record else None,
        "last_seen": record.last_seen.isoformat() if record else None,
        "status": record.status if record else "open",
    }


def finding_record_json(record: FindingRecord, owner: str | None) -> dict[str, Any]:
    """The contract's finding keys, plus its lifecycle and the owner answerable for it."""
    return {
        **finding_json(record.finding, record),
        "owner": owner,
        "remediated_at": _iso(record.remediated_at),
        "verified_at": _iso(record.verified_at),
        "accepted_by": record.accepted_by,
        "accepted_reason": record.accepted_reason,
        "accepted_until": _iso(record.accepted_until),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
