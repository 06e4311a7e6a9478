"""What the state store knows that the evidence needs, read once: the findings held, when
each target was last read in full, credential issue times, observed use, active leases, live
grants. Nothing is decrypted and nothing is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select

from lockstep.engine.catalog import HELD
from lockstep.governance.records import ENFORCED, iso, read_requests
from lockstep.model import Finding, FindingType, Severity
from lockstep.store import Store
from lockstep.store.findings import FindingRecord
from lockstep.store.tables import access_requests, credentials, leases, target_passes, usage
from lockstep.store.tables import findings as findings_table
from lockstep.store.usage import ACCOUNT, FIRST_SEEN

Key = tuple[str, str]
_FINDING_COLUMNS = ("id", "type", "severity", "target", "account", "entitlement", "identity",
                    "detail", "first_seen", "last_seen", "status")  # fmt: skip


@dataclass(frozen=True)
class LeaseFact:
    id: str
    identity: str
    target: str
    account: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class StoreFacts:
    findings: list[FindingRecord] = field(default_factory=list)  # held: open, remediated, accepted
    passes: dict[str, datetime] = field(default_factory=dict)  # target -> last full read
    issued: dict[Key, datetime] = field(default_factory=dict)  # the current credential's
    used: dict[Key, datetime] = field(default_factory=dict)  # last use seen (not first-seen)
    first_seen: dict[Key, datetime] = field(default_factory=dict)  # what dormancy counts from
    leases: list[LeaseFact] = field(default_factory=list)  # active
    # Grants in force by account (approved, active, ending, failed): who asked, who approved,
    # until when. Reviews are filled in by governance once they exist.
    grants: dict[Key, list[dict[str, object]]] = field(default_factory=dict)
    next_review: dict[Key, datetime] = field(default_factory=dict)

    @property
    def last_used(self) -> dict[Key, datetime]:
        """What the plan's dormancy reads: last use, else when first seen."""
        return {**self.first_seen, **self.used}


def read_store_facts(store: Store) -> StoreFacts:
    with store.reading() as conn:
        held = [
            FindingRecord(
                Finding(
                    FindingType(r.type),
                    Severity(r.severity),
                    r.target,
                    r.account,
                    r.entitlement,
                    r.identity,
                    r.detail,
                ),
                r.id,
                r.first_seen,
                r.last_seen,
                r.status,
            )
            for r in conn.execute(
                select(*(findings_table.c[c] for c in _FINDING_COLUMNS)).where(
                    findings_table.c.status.in_(HELD)
                )
            )
        ]
        passes = {r.target: r.at for r in conn.execute(select(target_passes))}
        issued = {
            (r.target, r.account): r.issued_at
            for r in conn.execute(
                select(credentials.c.target, credentials.c.account, credentials.c.issued_at).where(
                    credentials.c.status == "current"
                )
            )
        }
        used: dict[Key, datetime] = {}
        first: dict[Key, datetime] = {}
        for r in conn.execute(
            select(usage.c.target, usage.c.account, usage.c.last_seen, usage.c.source).where(
                usage.c.entitlement == ACCOUNT
            )
        ):
            (first if r.source == FIRST_SEEN else used)[(r.target, r.account)] = r.last_seen
        active = [
            LeaseFact(r.id, r.identity, r.target, r.account, r.issued_at, r.expires_at)
            for r in conn.execute(
                select(leases).where(leases.c.status == "active").order_by(leases.c.id)
            )
        ]
        grants = _grants(conn)
    lease_accounts = {(lease.target, lease.account) for lease in active}
    return StoreFacts(
        findings=held,
        passes=passes,
        # A lease's credential is the lease's: shown with the lease, not as the account's.
        issued={k: v for k, v in issued.items() if k not in lease_accounts},
        used=used,
        first_seen=first,
        leases=active,
        grants=grants,
    )


def _grants(conn: Connection) -> dict[Key, list[dict[str, object]]]:
    found: dict[Key, list[dict[str, object]]] = {}
    for request in read_requests(conn, [access_requests.c.status.in_([str(s) for s in ENFORCED])]):
        found.setdefault((request.target, request.account), []).append(
            {
                "id": request.id,
                "identity": request.identity,
                "entitlements": list(request.entitlements),
                "status": str(request.status),
                "requester": request.requester,
                "reason": request.reason,
                "approved_by": [a.by for a in request.approvals],
                "starts_at": iso(request.starts_at),
                "ends_at": iso(request.ends_at),
                "verified_at": iso(request.verified_at),
            }
        )
    for rows in found.values():
        rows.reverse()  # oldest first
    return found
