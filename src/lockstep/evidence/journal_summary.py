"""The journal read once for a report: its chain checked while the entries that serve as
evidence are picked out, counted, and the latest of each kind kept with seq and hash."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from lockstep.journal import ChainReport, RawEntry, check_chain, raw_entries, read_head

KEEP = 20  # latest evidence entries kept per category
REMOVALS = frozenset({"revoke", "suspend_account", "delete_account", "end_sessions"})
_LEASE_ENDS = {"lease_revoked": "revoked", "lease_expired": "expired", "lease_reaped": "reaped"}


@dataclass
class Ref:
    seq: int
    hash: str
    at: str
    kind: str
    summary: str

    def json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "kind": self.kind,
            "summary": self.summary,
        }


@dataclass
class JournalSummary:
    chain: ChainReport
    head_at: str | None = None
    first_at: str | None = None
    latest: dict[str, deque[Ref]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # The last removal of each (target, account, entitlement) not proven: what no later
    # verified removal of the same thing settled.
    unproven: dict[tuple[str, str, str], Ref] = field(default_factory=dict)

    def refs(self, *categories: str) -> list[Ref]:
        return [ref for c in categories for ref in self.latest.get(c, ())]

    def count(self, *categories: str) -> int:
        return sum(self.counts.get(c, 0) for c in categories)

    def note(self, category: str, ref: Ref) -> None:
        self.counts[category] = self.counts.get(category, 0) + 1
        kept = self.latest.get(category)
        if kept is None:
            kept = self.latest[category] = deque(maxlen=KEEP)
        kept.append(ref)


def summarise(conn: Connection) -> JournalSummary:
    summary = JournalSummary(ChainReport(True, 0, None, ""))
    head = read_head(conn)
    summary.chain = check_chain(_watched(raw_entries(conn), summary), head)
    return summary


def _watched(rows: Iterable[RawEntry], summary: JournalSummary) -> Iterator[RawEntry]:
    for row in rows:
        yield row
        seq, at, kind, payload, _, digest = row
        if summary.first_at is None:
            summary.first_at = at
        summary.head_at = at
        summary.counts["entries"] = seq
        if kind in _KINDS:
            try:
                body = json.loads(payload)
            except ValueError:
                continue  # the chain check names this entry
            if isinstance(body, dict):
                _KINDS[kind](summary, Ref(seq, digest, at, kind, ""), body)


def _result(summary: JournalSummary, ref: Ref, body: dict[str, Any]) -> None:
    op, status = str(body.get("op")), body.get("status")
    what = f"{op} {body.get('entitlement') or ''} on {body.get('target')}/{body.get('account')}"
    ref.summary = f"{' '.join(what.split())}: {status}"
    verified = status == "verified"
    probed = any(
        isinstance(c, dict) and "credential" in str(c.get("expected", ""))
        for c in body.get("checks") or []
    )
    if op in REMOVALS:
        key = (str(body.get("target")), str(body.get("account")), str(body.get("entitlement")))
        summary.note("removal_attempted", ref)
        if verified:
            summary.note("removal_verified", ref)
            summary.unproven.pop(key, None)
            if "expired" in str(body.get("reason", "")):
                summary.note("expiry_enforced", ref)
        else:
            summary.unproven[key] = ref
    elif op == "rotate_credential":
        summary.note("rotation_attempted", ref)
        if verified:
            summary.note("rotation_verified", ref)
    elif verified:
        summary.note("change_verified", ref)
    if verified and probed:
        summary.note("probe", ref)
    if verified:
        summary.note("verified", ref)


def _verification(summary: JournalSummary, ref: Ref, body: dict[str, Any]) -> None:
    in_sync = body.get("in_sync") is True
    ref.summary = f"lockstep verify: {body.get('checks')} checks, " + (
        "in sync" if in_sync else f"{len(body.get('failed') or [])} failed"
    )
    summary.note("verification", ref)
    if in_sync:
        summary.note("verification_in_sync", ref)


def _lease(summary: JournalSummary, ref: Ref, body: dict[str, Any]) -> None:
    ended = _LEASE_ENDS.get(ref.kind)
    ref.summary = f"lease {body.get('lease_id', '')} of {body.get('identity', '?')}: {ref.kind}"
    if ref.kind == "lease_issued":
        summary.note("lease_issued", ref)
        if body.get("workload"):
            summary.note("workload_lease", ref)
    elif ended is not None:
        summary.note("removal_attempted", ref)
        summary.note("removal_verified", ref)
        summary.note("lease_ended", ref)
        if ended == "expired":
            summary.note("expiry_enforced", ref)
        summary.note("probe", ref)
    elif ref.kind == "lease_failed" and body.get("op") in ("revoke", "expire", "reap"):
        summary.note("removal_attempted", ref)
        key = (str(body.get("target")), str(body.get("account")), "lease")
        summary.unproven[key] = ref


def _service(summary: JournalSummary, ref: Ref, body: dict[str, Any]) -> None:
    ref.summary = f"{ref.kind.replace('_', ' ')}: {', '.join(body.get('targets') or [])}"
    summary.note("policy_in_force", ref)
    if ref.kind == "service_started":
        summary.note("service_started", ref)


def _plan(summary: JournalSummary, ref: Ref, body: dict[str, Any]) -> None:
    ref.summary = f"plan of {len(body.get('actions') or [])} action(s)"
    summary.note("policy_in_force", ref)


_KINDS = {
    "result": _result,
    "verification": _verification,
    "lease_issued": _lease,
    "lease_revoked": _lease,
    "lease_expired": _lease,
    "lease_reaped": _lease,
    "lease_failed": _lease,
    "service_started": _service,
    "policy_loaded": _service,
    "plan": _plan,
}
