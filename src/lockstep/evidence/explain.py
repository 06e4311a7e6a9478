"""``lockstep explain``: why an identity holds each of its accounts and entitlements, when
each was enforced and last verified and how; or why an account no identity declares is an
orphan. Built from the policy (file, line, git commit), one read of the targets, and the
journal."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lockstep.engine.workspace import Workspace
from lockstep.errors import LockstepError
from lockstep.evidence.facts import StoreFacts
from lockstep.evidence.history import History, read_history
from lockstep.evidence.inventory import identity_kind, identity_sponsor
from lockstep.evidence.policy_lines import (
    Blame,
    PolicyDocuments,
    identity_places,
    last_change_mentioning,
)
from lockstep.evidence.times import iso_seconds
from lockstep.model import (
    LEASE_PREFIX,
    Access,
    Desired,
    Finding,
    Location,
    Observation,
    Snapshot,
)

Key = tuple[str, str]
AccountFindings = Mapping[Key, list[dict[str, Any]]]


@dataclass
class Known:
    """What a caller that explains many names over one read keeps between calls (the
    dashboard): git blame and the parsed policy files, the findings grouped by account
    (``account_findings`` of that read) and where the journal's history comes from. Each is
    built afresh for one call otherwise."""

    findings: AccountFindings
    history: Callable[[Collection[Key]], History]
    blame: Blame = field(default_factory=Blame)
    documents: PolicyDocuments = field(default_factory=PolicyDocuments)


class UnknownName(LockstepError):
    """Neither an identity nor an account lockstep can see."""

    code = "unknown_identity"
    default_hint = "lockstep inventory lists every identity and account"


def explain_identity(
    ws: Workspace,
    name: str,
    desired: Desired,
    observed: Mapping[str, Observation],
    facts: StoreFacts,
    live: Sequence[Finding],
    known: Known | None = None,
) -> dict[str, Any]:
    policy = ws.policy
    identity = policy.identities[name]
    known = known or _afresh(ws, facts, live, observed)
    places = identity_places(ws.loaded, name, known.documents)
    blame = known.blame
    keys = {(a.target, a.account) for a in identity.access}
    history = known.history(keys)
    findings = known.findings
    owner = policy.owners.get(identity.owner)
    now = ws.clock()
    accounts = []
    for access, where in zip(identity.access, places.access, strict=True):
        key = (access.target, access.account)
        obs = observed.get(access.target)
        actual = obs.accounts.get(access.account) if isinstance(obs, Snapshot) else None
        want = desired.accounts.get(key)
        status = _status(obs, actual is not None, actual.enabled if actual else False)
        held = set(actual.entitlements) if actual is not None else None
        mine = findings.get(key, [])
        accounts.append(
            {
                "target": access.target,
                "account": access.account,
                "status": status,
                "declared": blame.place(where.access),
                "expires": _iso(access.expires),
                "shared_with": [n for n in (want.identities if want else ()) if n != name],
                "enforced": history.enforced(key),
                "last_verified": history.last_verified(key),
                "last_read_at": _iso(facts.passes.get(access.target)),
                "credential": _credential(key, facts, history),
                "last_used_at": _iso(facts.used.get(key)),
                "entitlements": _entitlements(
                    access,
                    (where.access, where.entitlements),
                    held,
                    blame,
                    history,
                    key,
                    mine,
                    now,
                    facts.grants.get(key, []),
                ),
                "findings": [f for f in mine if f.get("entitlement") is None],
                "grants": list(facts.grants.get(key, [])),
                "reviews": [],
                "history": history.trail(key),
            }
        )
    return {
        "identity": name,
        "kind": identity_kind(identity),
        "owner": identity.owner,
        "owner_status": None if owner is None else str(owner.status),
        "owner_contacts": list(owner.contacts) if owner is not None else [],
        "sponsor": identity_sponsor(identity),
        "purpose": identity.purpose,
        "environment": identity.environment,
        "declared": blame.place(places.identity),
        "accounts": accounts,
    }


def _entitlements(
    access: Access,
    places: tuple[Location, Mapping[str, Location]],
    held: set[str] | None,
    blame: Blame,
    history: History,
    key: Key,
    findings: Sequence[dict[str, Any]],
    now: datetime,
    grants: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    expired = access.expires is not None and access.expires <= now
    access_line, lines = places
    declared = set(access.entitlements)
    granted: dict[str, list[dict[str, Any]]] = {}
    for g in grants:
        for ent in g["entitlements"]:
            granted.setdefault(ent, []).append(g)
    rows = []
    for ent in sorted(declared | (held or set()) | granted.keys()):
        why_not = None
        because = []
        if ent in declared:
            because.append({"source": "policy", **blame.place(lines.get(ent, access_line))})
            if expired and ent not in granted:
                why_not = f"granted until {_iso(access.expires)}: expired, to be revoked"
        because += [_grant_reason(g) for g in granted.get(ent, [])]
        if not because:
            why_not = "not granted by the policy: an excess entitlement"
        rows.append(
            {
                "entitlement": ent,
                "held": None if held is None else ent in held,
                "because": because,
                "why_not": why_not,
                "enforced": history.enforced(key, ent),
                "last_verified": history.last_verified(key, ent),
                "findings": [f for f in findings if f.get("entitlement") == ent],
            }
        )
    return rows


def _grant_reason(grant: Mapping[str, Any]) -> dict[str, Any]:
    """An entitlement a request gives: the request, who asked and why, who approved it,
    and its window."""
    return {
        "source": "request",
        "request": grant["id"],
        "status": grant["status"],
        "requester": grant["requester"],
        "reason": grant["reason"],
        "approved_by": list(grant["approved_by"]),
        "starts_at": grant["starts_at"],
        "ends_at": grant["ends_at"],
        "verified_at": grant["verified_at"],
    }


def explain_account(
    ws: Workspace,
    name: str,
    desired: Desired,
    observed: Mapping[str, Observation],
    facts: StoreFacts,
    live: Sequence[Finding],
    known: Known | None = None,
) -> dict[str, Any]:
    """An account by TARGET/ACCOUNT or by name: an identity's (explained as the identity),
    or an orphan, with why."""
    target, _, account = name.rpartition("/")
    candidates = [
        (t, account)
        for t in sorted(ws.policy.targets)
        if (not target or t == target)
        and (
            (t, account) in desired.accounts or account in getattr(observed.get(t), "accounts", {})
        )
    ]
    if not candidates:
        names = ", ".join(sorted(ws.policy.identities)) or "none"
        raise UnknownName(f"no identity and no account named {name!r} (identities: {names})")
    key = candidates[0]
    want = desired.accounts.get(key)
    if want is not None:
        return explain_identity(ws, want.identities[0], desired, observed, facts, live, known)
    snapshot = observed[key[0]]
    assert isinstance(snapshot, Snapshot)
    actual = snapshot.accounts[key[1]]
    known = known or _afresh(ws, facts, live, observed)
    history = known.history({key})
    findings = known.findings.get(key, [])
    return {
        "target": key[0],
        "account": key[1],
        "identity": None,
        "status": "lease" if key[1].startswith(LEASE_PREFIX) else "orphan",
        "enabled": actual.enabled,
        "entitlements": sorted(actual.entitlements),
        "why": _orphan_reasons(ws, key, history, findings),
        "findings": findings,
        "first_seen": _iso(facts.first_seen.get(key)),
        "last_used_at": _iso(facts.used.get(key)),
        "policy_history": last_change_mentioning(ws.loaded, key[1]),
        "history": history.trail(key),
    }


def _orphan_reasons(
    ws: Workspace, key: Key, history: History, findings: Sequence[dict[str, Any]]
) -> list[str]:
    target, account = key
    policy = ws.policy
    why = [f"no identity in the policy declares account {account!r} on target {target!r}"]
    if account.startswith(LEASE_PREFIX):
        why.append(
            f"its name carries lockstep's lease prefix {LEASE_PREFIX!r} but no lease on record "
            "holds it: a lease whose record was lost; lockstep reap ends it"
        )
    elsewhere = sorted(
        f"{identity.name} on {a.target}"
        for identity in policy.identities.values()
        for a in identity.access
        if a.account == account and a.target != target
    )
    if elsewhere:
        why.append(f"an account of that name is declared elsewhere: {', '.join(elsewhere)}")
    for event in reversed(history.actions.get(key, [])):
        if event.kind == "result" and event.payload.get("identity"):
            why.append(
                f"lockstep last acted on it for identity {event.payload['identity']!r} at "
                f"journal entry {event.seq} ({event.payload.get('op')}, "
                f"{event.payload.get('status')}); the policy no longer declares it"
            )
            break
    change = last_change_mentioning(ws.loaded, account)
    if change is not None:
        why.append(
            f"the last policy change mentioning it: commit {change['id'][:12]} by "
            f"{change['author']} on {change['date']}: {change['summary']}"
        )
    rule = policy.rules.orphan_accounts
    why.append(
        f"rule orphan_accounts: {rule} "
        + {
            "report": "(reported only)",
            "suspend": "(lockstep suspends it)",
            "delete": "(lockstep deletes it)",
        }.get(str(rule), "")
    )
    for f in findings:
        why.append(f"finding {f['id']} ({f['type']}) is {f['status']}")
    return why


def _credential(key: Key, facts: StoreFacts, history: History) -> dict[str, Any] | None:
    issued = facts.issued.get(key)
    proved = history.credential(key)
    if issued is None and proved is None:
        return None
    return {"issued_at": _iso(issued), "issued": proved}


def _status(obs: Observation | None, present: bool, enabled: bool) -> str:
    if not isinstance(obs, Snapshot):
        return "unreachable"
    if not present:
        return "absent"
    return "managed" if enabled else "suspended"


def _afresh(
    ws: Workspace, facts: StoreFacts, live: Sequence[Finding], observed: Mapping[str, Observation]
) -> Known:
    return Known(account_findings(facts, live, observed), lambda keys: read_history(ws.store, keys))


def account_findings(
    facts: StoreFacts, live: Sequence[Finding], observed: Mapping[str, Observation]
) -> dict[Key, list[dict[str, Any]]]:
    """Every finding by account: the live ones of a read target, with the ledger's status,
    and the ledger's own for a target that could not be read."""
    status = {r.id: r.status for r in facts.findings}
    read = {n for n, o in observed.items() if isinstance(o, Snapshot)}
    found: dict[Key, dict[str, dict[str, Any]]] = {}
    pairs = [(f, f.id, status.get(f.id, "open")) for f in live if f.target in read]
    pairs += [(r.finding, r.id, r.status) for r in facts.findings if r.finding.target not in read]
    for f, fid, state in pairs:
        found.setdefault((f.target, f.account or ""), {})[fid] = {
            "id": fid,
            "type": str(f.type),
            "severity": str(f.severity),
            "status": state,
            "entitlement": f.entitlement,
            "detail": f.detail,
        }
    return {k: [v[i] for i in sorted(v)] for k, v in found.items()}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso_seconds(at)
