"""The inventory: every NHI account in every target, managed or not, from one read of the
targets and what the store knows. Pure: the caller reads the targets and the store.

A row's ``status``: ``managed`` (declared, and can log in), ``suspended`` (declared, cannot
log in), ``orphan`` (no identity declares it), ``lease`` (a short-lived credential's own
account), ``excluded`` (``manage.exclude`` or lockstep's own admin: never read), and two that
say what lockstep does not know: ``absent`` (declared, not in the target) and
``unreachable`` (its target could not be read: nothing about it is known, and it is never
shown as empty).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from lockstep.engine.inert import inert, inert_json
from lockstep.evidence.facts import LeaseFact, StoreFacts
from lockstep.evidence.streams import TextSink
from lockstep.evidence.times import iso_seconds
from lockstep.model import (
    LEASE_PREFIX,
    Account,
    Desired,
    Finding,
    Identity,
    Observation,
    Policy,
    Snapshot,
)
from lockstep.store.findings import FindingRecord

COLUMNS = (
    "target",
    "account",
    "identity",
    "kind",
    "owner",
    "sponsor",
    "purpose",
    "environment",
    "status",
    "entitlements",
    "credential_issued_at",
    "last_used_at",
    "grants",
    "findings",
    "next_review",
)
Row = dict[str, Any]


Key = tuple[str, str]


def identity_kind(identity: Identity) -> str:
    """``service`` unless governance's ``kind`` says otherwise."""
    return str(getattr(identity, "kind", None) or "service")


def identity_sponsor(identity: Identity) -> str | None:
    sponsor = getattr(identity, "sponsor", None)
    return None if sponsor is None else str(sponsor)


def build_inventory(
    policy: Policy,
    desired: Desired,
    observed: Mapping[str, Observation],
    facts: StoreFacts,
    live: Sequence[Finding],
) -> dict[str, Any]:
    """``live``: the findings of a plan over ``observed`` (their status comes from the
    ledger when it knows them); an unreadable target keeps the findings last recorded."""
    findings = _findings_by_account(observed, facts.findings, live)
    leases = {(lease.target, lease.account): lease for lease in facts.leases}
    rows: list[Row] = []
    targets = []
    for name in sorted(policy.targets):
        target = policy.targets[name]
        obs = observed.get(name)
        wants = desired.for_target(name)
        if isinstance(obs, Snapshot):
            targets.append(_target(name, "read", None, len(obs.accounts), facts.passes.get(name)))
            rows += _read_rows(policy, name, obs, wants, facts, findings, leases)
        else:
            error = obs.error if obs is not None else "not read"
            targets.append(_target(name, "unreachable", error, None, facts.passes.get(name)))
            rows += _unreachable_rows(policy, name, wants, facts, findings, error)
        for account in sorted(target.exclude):
            rows.append(_blank(name, account, "excluded"))
    rows.sort(key=lambda r: (r["target"], r["account"] or "", r["status"]))
    return {"accounts": rows, "targets": targets, "summary": _summary(rows)}


def _read_rows(
    policy: Policy,
    name: str,
    obs: Snapshot,
    wants: Mapping[str, Any],
    facts: StoreFacts,
    findings: Mapping[Key, list[dict[str, Any]]],
    leases: Mapping[Key, LeaseFact],
) -> Iterable[Row]:
    for account, actual in obs.accounts.items():
        key = (name, account)
        want = wants.get(account)
        if want is not None:
            status = "managed" if actual.enabled else "suspended"
            yield _declared(policy, key, status, want.identities, actual, facts, findings)
        elif account.startswith(LEASE_PREFIX) or key in leases:
            yield _lease(policy, key, actual, leases.get(key), facts, findings)
        else:
            row = _blank(name, account, "orphan")
            row.update(_observed(key, actual, facts, findings))
            yield row
    for account in sorted(set(wants) - set(obs.accounts)):
        key = (name, account)
        yield _declared(policy, key, "absent", wants[account].identities, None, facts, findings)
    for (target, account), lease in sorted(leases.items()):
        # A lease with no account of its own in the target (an AWS role session).
        if target == name and account not in obs.accounts:
            yield _lease(policy, (target, account), None, lease, facts, findings)


def _unreachable_rows(
    policy: Policy,
    name: str,
    wants: Mapping[str, Any],
    facts: StoreFacts,
    findings: Mapping[Key, list[dict[str, Any]]],
    error: str,
) -> Iterable[Row]:
    if not wants:
        row = _blank(name, None, "unreachable")
        row["detail"] = error
        row["findings"] = findings.get((name, ""), [])
        yield row
    for account, want in sorted(wants.items()):
        row = _declared(
            policy, (name, account), "unreachable", want.identities, None, facts, findings
        )
        row["detail"] = error
        yield row


def _declared(
    policy: Policy,
    key: Key,
    status: str,
    names: Sequence[str],
    actual: Account | None,
    facts: StoreFacts,
    findings: Mapping[Key, list[dict[str, Any]]],
) -> Row:
    identity = policy.identities[names[0]]
    owner = policy.owners.get(identity.owner)
    issued, used, review = facts.issued.get(key), facts.used.get(key), facts.next_review.get(key)
    # One literal per row: the inventory of 100k accounts is built in about a second.
    return {
        "target": key[0],
        "account": key[1],
        "identity": identity.name,
        "kind": identity_kind(identity),
        "owner": identity.owner,
        "sponsor": identity_sponsor(identity),
        "purpose": identity.purpose,
        "environment": identity.environment,
        "status": status,
        "entitlements": sorted(actual.entitlements) if actual is not None else None,
        "credential_issued_at": None if issued is None else _iso(issued),
        "last_used_at": None if used is None else _iso(used),
        "grants": list(facts.grants.get(key, ())),
        "findings": findings.get(key, []),
        "next_review": None if review is None else _iso(review),
        "identities": list(names),
        "enabled": actual.enabled if actual is not None else None,
        "owner_status": None if owner is None else str(owner.status),
    }


def _lease(
    policy: Policy,
    key: Key,
    actual: Account | None,
    lease: LeaseFact | None,
    facts: StoreFacts,
    findings: Mapping[Key, list[dict[str, Any]]],
) -> Row:
    identity = policy.identities.get(lease.identity) if lease is not None else None
    row = _blank(*key, "lease")
    if identity is not None:
        row.update(
            identity=identity.name,
            identities=[identity.name],
            kind=identity_kind(identity),
            owner=identity.owner,
            sponsor=identity_sponsor(identity),
            purpose=identity.purpose,
            environment=identity.environment,
        )
    elif lease is not None:
        row.update(identity=lease.identity, identities=[lease.identity])
    row.update(_observed(key, actual, facts, findings))
    if lease is not None:
        row.update(
            lease_id=lease.id,
            credential_issued_at=_iso(lease.issued_at),
            expires_at=_iso(lease.expires_at),
        )
    else:
        row["detail"] = "a lease account with no lease on record: lockstep reap ends it"
    return row


def _observed(
    key: Key,
    actual: Account | None,
    facts: StoreFacts,
    findings: Mapping[Key, list[dict[str, Any]]],
) -> Row:
    return {
        "entitlements": sorted(actual.entitlements) if actual is not None else None,
        "enabled": actual.enabled if actual is not None else None,
        "credential_issued_at": _iso(facts.issued.get(key)),
        "last_used_at": _iso(facts.used.get(key)),
        "findings": findings.get(key, []),
    }


def _blank(target: str, account: str | None, status: str) -> Row:
    row: Row = dict.fromkeys(COLUMNS)
    row.update(target=target, account=account, status=status, grants=[], findings=[])
    row["identities"] = []
    row["enabled"] = None
    return row


def _findings_by_account(
    observed: Mapping[str, Observation],
    held: Sequence[FindingRecord],
    live: Sequence[Finding],
) -> dict[Key, list[dict[str, Any]]]:
    status = {record.id: record.status for record in held}
    read = {name for name, obs in observed.items() if isinstance(obs, Snapshot)}
    by_key: dict[Key, dict[str, dict[str, Any]]] = {}

    def add(f: Finding, fid: str, state: str) -> None:
        entry = {"id": fid, "type": str(f.type), "severity": str(f.severity), "status": state}
        if f.entitlement is not None:
            entry["entitlement"] = f.entitlement
        by_key.setdefault((f.target, f.account or ""), {})[fid] = entry

    for f in live:
        if f.target in read:
            add(f, f.id, status.get(f.id, "open"))
    for record in held:
        if record.finding.target not in read:
            add(record.finding, record.id, record.status)
    return {key: [found[i] for i in sorted(found)] for key, found in by_key.items()}


def _target(
    name: str, status: str, error: str | None, accounts: int | None, last_read: datetime | None
) -> dict[str, Any]:
    return {
        "target": name,
        "status": status,
        "error": error,
        "accounts": accounts,
        "last_read_at": _iso(last_read),
    }


def _summary(rows: Sequence[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return dict(sorted(counts.items()))


def write_inventory_json(inventory: Mapping[str, Any], out: TextSink) -> None:
    """The inventory as JSON with one account per line: valid JSON, written as it goes
    (100k accounts need not be one string in memory), and readable in a diff."""
    rows = inventory["accounts"]
    out.write('{"accounts": [')
    for i, row in enumerate(rows):
        out.write(("\n" if i == 0 else ",\n") + inert_json(json.dumps(row, ensure_ascii=False)))
    out.write("\n],\n" if rows else "],\n")
    for key in ("targets", "summary"):
        end = ",\n" if key == "targets" else "}\n"
        encoded = inert_json(json.dumps(inventory[key], ensure_ascii=False))
        out.write(f'"{key}": {encoded}{end}')


def write_inventory_csv(inventory: Mapping[str, Any], out: TextSink) -> None:
    """The rows as CSV, one column per contract key; lists joined with ``;``."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in inventory["accounts"]:
        writer.writerow([_cell(column, row.get(column)) for column in COLUMNS])


def _cell(column: str, value: object) -> str:
    if value is None:
        return ""
    if column in ("findings", "grants") and isinstance(value, list):
        return ";".join(
            str(item.get("id")) if isinstance(item, dict) else str(item) for item in value
        )
    if isinstance(value, list):
        return _defused(";".join(str(v) for v in value))
    return _defused(str(value))


def _defused(text: str) -> str:
    """A cell a spreadsheet would run as a formula (=, +, -, @) is quoted with a leading ';
    control characters (escapes, line breaks) are shown escaped."""
    text = inert(text)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso_seconds(at)
