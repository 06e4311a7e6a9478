"""A report against a framework, from the state store alone: each control ``satisfied``,
``not_satisfied`` or ``not_assessed``, with the findings behind it, its evidence (journal
entries with their hashes) and figures. Building is pure; ``gather`` reads the store.

Never satisfied without evidence: a control is satisfied only when no finding of a type
that defeats it is held, every target was read, the journal verifies, and each of its
checks passed on journal entries. A control lockstep cannot observe is not assessed, and
says what would be needed. Times are measured at ``as_of`` (the newest entry or target
read), so the same state gives the same report but for ``generated_at``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lockstep.engine.catalog import HELD, VERIFIED
from lockstep.engine.review_model import Review
from lockstep.evidence.checks import CHECK_FUNCTIONS, FAIL, UNKNOWN, CheckResult, Facts
from lockstep.evidence.frameworks import ControlSpec, FrameworkSpec
from lockstep.evidence.journal_summary import JournalSummary, Ref, summarise
from lockstep.evidence.reviews import read_review_facts, timeliness
from lockstep.evidence.times import iso_micro
from lockstep.model import FindingType, OwnerStatus, Policy
from lockstep.store import Store
from lockstep.store.findings import FindingRecord
from lockstep.store.tables import credentials, target_passes, usage
from lockstep.store.usage import ACCOUNT, FIRST_SEEN

SATISFIED, NOT_SATISFIED, NOT_ASSESSED = "satisfied", "not_satisfied", "not_assessed"
EVIDENCE_SHOWN = 20
_DAY_S = 86400.0


class Gathered:
    """What the report reads from the store and the policy, once. ``findings`` are rows of
    the findings ledger in the report's shape, plus ``verified_at`` and ``_first_seen``
    (datetimes) for the figures."""

    def __init__(
        self,
        policy: Policy,
        journal: JournalSummary,
        findings: list[dict[str, Any]],
        passes: dict[str, datetime],
        issued: dict[tuple[str, str], datetime],
        used: dict[tuple[str, str], datetime],
        reviews: list[Review] | None = None,
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.findings = findings
        self.passes = passes
        self.issued = issued
        self.used = used
        self.reviews = reviews or []


def finding_row(record: FindingRecord) -> dict[str, Any]:
    """A ledger record as ``Gathered.findings`` holds it."""
    f = record.finding
    return _row(
        record.id, str(f.type), str(f.severity), f.target, f.account, f.entitlement,
        f.identity, record.status, record.first_seen, f.detail, record.verified_at,
    )  # fmt: skip


def _row(
    fid: str,
    type_: str,
    severity: str,
    target: str,
    account: str | None,
    entitlement: str | None,
    identity: str | None,
    status: str,
    first_seen: datetime,
    detail: str,
    verified_at: datetime | None,
) -> dict[str, Any]:
    return {
        "id": fid,
        "type": type_,
        "severity": severity,
        "target": target,
        "account": account,
        "entitlement": entitlement,
        "identity": identity,
        "status": status,
        "first_seen": _iso(first_seen),
        "detail": detail,
        "verified_at": verified_at,
        "_first_seen": first_seen,
    }


def gather(policy: Policy, store: Store) -> Gathered:
    from sqlalchemy import select

    from lockstep.store.tables import findings as table

    with store.reading() as conn:
        rows = [
            _row(
                r.id,
                r.type,
                r.severity,
                r.target,
                r.account,
                r.entitlement,
                r.identity,
                r.status,
                r.first_seen,
                r.detail,
                r.verified_at,
            )
            for r in conn.execute(select(table).order_by(table.c.id))
        ]
        journal = summarise(conn)
        passes = {r.target: r.at for r in conn.execute(select(target_passes))}
        issued = {
            (r.target, r.account): r.issued_at
            for r in conn.execute(
                select(credentials.c.target, credentials.c.account, credentials.c.issued_at).where(
                    credentials.c.status == "current"
                )
            )
        }
        used = {
            (r.target, r.account): r.last_seen
            for r in conn.execute(
                select(usage.c.target, usage.c.account, usage.c.last_seen).where(
                    usage.c.entitlement == ACCOUNT, usage.c.source != FIRST_SEEN
                )
            )
        }
        reviewed = read_review_facts(conn).reviews
    return Gathered(policy, journal, rows, passes, issued, used, reviewed)


def build_report(
    framework: FrameworkSpec, gathered: Gathered, generated_at: datetime
) -> dict[str, Any]:
    held = [r for r in gathered.findings if r["status"] in HELD]
    as_of = _as_of(gathered)
    figures = compute_figures(gathered, held, as_of)
    # Unknown is not compliant: a target that could not be read, or never was, leaves every
    # control it bears on unassessed at best.
    unreachable = frozenset(
        r["target"] for r in held if r["type"] == FindingType.TARGET_UNREACHABLE
    ) | (frozenset(gathered.policy.targets) - frozenset(gathered.passes))
    facts = Facts(
        gathered.policy,
        gathered.journal,
        gathered.passes,
        unreachable,
        gathered.issued,
        gathered.used,
        {f["id"]: f["value"] for f in figures},
        gathered.reviews,
    )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(held, key=_finding_order):
        by_type.setdefault(row["type"], []).append(row)
    controls = [_control(c, facts, by_type, figures) for c in framework.controls]
    cited = {fid for c in controls for fid in c["findings"]}
    listed = sorted(
        (
            {k: v for k, v in row.items() if k not in ("verified_at", "_first_seen")}
            for rows in by_type.values()
            for row in rows
            if row["id"] in cited
        ),
        key=_finding_order,
    )
    summary = {
        s: sum(c["status"] == s for c in controls) for s in (SATISFIED, NOT_SATISFIED, NOT_ASSESSED)
    }
    chain = gathered.journal.chain
    return {
        "framework": framework.id,
        "framework_title": framework.title,
        "framework_version": framework.version,
        "framework_source": framework.source,
        "generated_at": _iso(generated_at),
        "as_of": as_of,
        "journal_head": {
            "seq": chain.last[0],
            "hash": chain.last[1],
            "at": gathered.journal.head_at,
        },
        "journal": {"intact": chain.ok, "entries": chain.entries, "reason": chain.reason},
        "summary": summary,
        "figures": figures,
        "controls": controls,
        "findings": listed,  # each once; a control lists the ids of those behind it
    }


def _finding_order(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["target"], row["type"], row["account"] or "", row["id"])


def _control(
    spec: ControlSpec,
    facts: Facts,
    by_type: dict[str, list[dict[str, Any]]],
    figures: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    records = [r for t in sorted(set(spec.findings)) for r in by_type.get(t, [])]
    results = [CHECK_FUNCTIONS[name](facts) for name in spec.checks]
    status, reason = _status(spec, facts, records, results)
    evidence = _evidence(results)
    wanted = {fid for r in results for fid in r.figures}
    return {
        "id": spec.id,
        "oscal_id": spec.oscal_id,
        "title": spec.title,
        "description": spec.description,
        "status": status,
        "reason": reason,
        "needed": _needed(spec, results) if status == NOT_ASSESSED else None,
        "checks": [{"name": r.name, "status": r.status, "detail": r.detail} for r in results],
        "findings": sorted(r["id"] for r in records),
        "evidence": [ref.json() for ref in evidence[:EVIDENCE_SHOWN]],
        "evidence_total": len(evidence),
        "figures": [f for f in figures if f["id"] in wanted],
    }


def _status(
    spec: ControlSpec,
    facts: Facts,
    records: Sequence[dict[str, Any]],
    results: Sequence[CheckResult],
) -> tuple[str, str]:
    if not facts.journal.chain.ok:
        return (
            NOT_ASSESSED,
            f"the journal does not verify ({facts.journal.chain.reason}): "
            "no evidence can be trusted",
        )
    if records:
        return NOT_SATISFIED, f"{len(records)} finding(s) held"
    failed = [r for r in results if r.status == FAIL]
    if failed:
        return NOT_SATISFIED, "; ".join(f"{r.name}: {r.detail}" for r in failed)
    if not results:
        return NOT_ASSESSED, "lockstep cannot observe this control"
    if facts.unreachable:
        unread = ", ".join(sorted(facts.unreachable))
        return NOT_ASSESSED, f"target(s) not read, their state unknown: {unread}"
    unknown = [r for r in results if r.status == UNKNOWN]
    if unknown:
        return NOT_ASSESSED, "; ".join(f"{r.name}: {r.detail}" for r in unknown)
    return SATISFIED, "; ".join(r.detail for r in results)


def _needed(spec: ControlSpec, results: Sequence[CheckResult]) -> str:
    parts = [r.detail for r in results if r.status == UNKNOWN]
    if spec.needs:
        parts.append(spec.needs)
    return "; ".join(parts) or "every target read, and the journal intact"


def _evidence(results: Sequence[CheckResult]) -> list[Ref]:
    seen: dict[int, Ref] = {}
    for result in results:
        for ref in result.evidence:
            seen.setdefault(ref.seq, ref)
    return [seen[s] for s in sorted(seen, reverse=True)]


def compute_figures(
    gathered: Gathered, held: Sequence[dict[str, Any]], as_of: str | None
) -> list[dict[str, Any]]:
    policy = gathered.policy
    journal = gathered.journal
    identities = list(policy.identities.values())
    active = {n for n, o in policy.owners.items() if o.status is OwnerStatus.ACTIVE}
    owned = sum(i.owner in active for i in identities)
    declared = {(a.target, a.account) for i in identities for a in i.access}
    now = _parse(as_of)
    ages = sorted(
        (now - at).total_seconds() / _DAY_S
        for key, at in gathered.issued.items()
        if key in declared and now is not None
    )
    remediation = sorted(
        (r["verified_at"] - r["_first_seen"]).total_seconds()
        for r in gathered.findings
        if r["status"] == VERIFIED and r["verified_at"] is not None
    )
    agents = [i for i in identities if str(getattr(i, "kind", "service")) == "agent"]
    contacts = {c for n in active for c in policy.owners[n].contacts}
    sponsored = sum(str(getattr(i, "sponsor", None)) in contacts for i in agents)
    excess = sum(r["type"] == FindingType.EXCESS_ENTITLEMENT for r in held)
    return [
        _fig("identities", "Identities in the policy", len(identities), "count"),
        _fig("nhi_accounts", "Accounts the policy declares", len(declared), "count"),
        _fig(
            "owner_active_share",
            "Identities with an active owner",
            _share(owned, len(identities)),
            "share",
        ),
        _fig(
            "identities_without_active_owner",
            "Identities without an active owner",
            len(identities) - owned,
            "count",
        ),
        _fig(
            "sponsor_active_share",
            "Agents with an active sponsor",
            _share(sponsored, len(agents)),
            "share",
        ),
        _fig("credential_age_p50_d", "Credential age, median", _pct(ages, 50), "days"),
        _fig("credential_age_p95_d", "Credential age, p95", _pct(ages, 95), "days"),
        _fig(
            "credential_age_max_d",
            "Credential age, max",
            round(ages[-1], 2) if ages else None,
            "days",
        ),
        _fig(
            "credentials_unknown_age",
            "Declared accounts without a lockstep-issued credential",
            len(declared - set(gathered.issued)),
            "count",
        ),
        _fig(
            "revocations_verified", "Removals verified", journal.count("removal_verified"), "count"
        ),
        _fig(
            "revocations_attempted",
            "Removals attempted",
            journal.count("removal_attempted"),
            "count",
        ),
        _fig(
            "rotations_verified", "Rotations verified", journal.count("rotation_verified"), "count"
        ),
        _fig(
            "leases_ended", "Leases ended and proven refused", journal.count("lease_ended"), "count"
        ),
        _fig(
            "remediation_p50_s",
            "Drift to verified remediation, median",
            _pct(remediation, 50),
            "seconds",
        ),
        _fig(
            "remediation_p99_s",
            "Drift to verified remediation, p99",
            _pct(remediation, 99),
            "seconds",
        ),
        _fig("findings_open", "Findings held", len(held), "count"),
        _fig("excess_entitlements", "Excess entitlements held", excess, "count"),
        _fig(
            "targets_read",
            "Targets read in full",
            len(set(gathered.passes) & set(policy.targets)),
            "count",
        ),
        _fig("targets_total", "Targets in the policy", len(policy.targets), "count"),
        _fig(
            "accounts_with_observed_use",
            "Accounts whose use was observed",
            len(gathered.used),
            "count",
        ),
        _fig(
            "reviewed_on_time_share",
            "Access reviewed on time",
            timeliness(gathered.reviews, now).share if now else None,
            "share",
        ),
        _fig("verifications", "lockstep verify runs", journal.count("verification"), "count"),
        _fig("journal_entries", "Journal entries", journal.chain.entries, "count"),
    ]


def _fig(fid: str, label: str, value: float | int | None, unit: str) -> dict[str, Any]:
    return {"id": fid, "label": label, "value": value, "unit": unit}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _pct(values: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile, rounded: the same values give the same figure."""
    if not values:
        return None
    rank = max(1, math.ceil(p / 100 * len(values)))
    return round(values[rank - 1], 2)


def _as_of(gathered: Gathered) -> str | None:
    times = [t for t in (gathered.journal.head_at,) if t]
    times += [_iso(at) for at in gathered.passes.values()]
    return max(times) if times else None


def _parse(text: str | None) -> datetime | None:
    from datetime import UTC

    if text is None:
        return None
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _iso(at: datetime) -> str:
    return iso_micro(at)
