"""Accepting a finding's risk: checked, journaled with who accepted it, then recorded in the
findings ledger. The CLI (`lockstep findings accept`) and the dashboard both come here."""

from __future__ import annotations

from datetime import datetime

from lockstep.journal import Journal
from lockstep.store.findings import FindingLedger, FindingRecord, check_acceptance


def accept_risk(
    journal: Journal,
    ledger: FindingLedger,
    record: FindingRecord,
    by: str,
    reason: str,
    until: datetime,
    now: datetime,
) -> FindingRecord:
    """Raises FindingLedgerError when the acceptance is not allowed (nothing journaled)."""
    check_acceptance(record, by, reason, until, now)
    journal.append(
        "risk_acceptance",
        {
            "finding": record.id,
            "type": str(record.finding.type),
            "target": record.finding.target,
            "account": record.finding.account,
            "entitlement": record.finding.entitlement,
            "identity": record.finding.identity,
            "status_before": record.status,
            "accepted_by": by.strip(),
            "reason": reason.strip(),
            "until": until,
        },
    )
    return ledger.accept(record.id, by, reason, until, now)
