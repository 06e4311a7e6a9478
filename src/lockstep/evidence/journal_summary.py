"""The journal read once for a report: its chain checked while the entries that serve as
evidence are picked out, counted, and the latest of each kind kept with seq and hash.

Payloads are canonical JSON (sorted keys, no spaces), so what a report needs of most entries
(their op and status) is read off the text; only the few entries kept as evidence, and the
removals, whose target and account matter, are parsed.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from lockstep.journal import ChainReport, RawEntry, check_chain, raw_entries, read_head

KEEP = 20  # latest evidence entries kept per category
REMOVALS = frozenset({"revoke", "suspend_account", "delete_account", "end_sessions"})
_OP = re.compile(r'"op":"([a-z_]+)"')
_LEASE_ENDS = {"lease_revoked": "revoked", "lease_expired": "expired", "lease_reaped": "reaped"}


@dataclass
class Ref:
    """A journal entry kept as evidence; what it says is read from its payload when shown."""

    seq: int
    hash: str
    at: str
    kind: str
    payload: str = field(repr=False)

    @property
    def summary(self) -> str:
        body: Any = json.loads(self.payload)
        return _SUMMARIES.get(self.kind, _other)(self.kind, body if isinstance(body, dict) else {})

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

    unproven_accounts: dict[str, int] = field(default_factory=dict)

    def fail(self, key: tuple[str, str, str], ref: Ref, account_json: str) -> None:
        if key not in self.unproven:
            self.unproven_accounts[account_json] = self.unproven_accounts.get(account_json, 0) + 1
        self.unproven[key] = ref
        self._accounts[key] = account_json

    def settle(self, key: tuple[str, str, str]) -> None:
        if self.unproven.pop(key, None) is not None:
            account_json = self._accounts.pop(key)
            left = self.unproven_accounts[account_json] - 1
            if left:
                self.unproven_accounts[account_json] = left
            else:
                del self.unproven_accounts[account_json]

    _accounts: dict[tuple[str, str, str], str] = field(default_factory=dict, repr=False)

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
    first = True
    at = None
    for row in rows:
        yield row
        seq, at, kind, payload, _, digest = row
        if first:
            summary.first_at, first = at, False
        handle = _KINDS.get(kind)
        if handle is not None:
            handle(summary, Ref(seq, digest, at, kind, payload))
    summary.head_at = at


def _result(summary: JournalSummary, ref: Ref) -> None:
    text = ref.payload
    found = _OP.search(text)
    op = found.group(1) if found else ""
    verified = '"status":"verified"' in text
    if op in REMOVALS:
        summary.note("removal_attempted", ref)
        if verified:
            summary.note("removal_verified", ref)
            # Most removals are proven at once: only one of an account with an unproven
            # removal on record needs its payload parsed.
            if summary.unproven and _account_json(text) in summary.unproven_accounts:
                summary.settle(_removal_key(text))
            if '"reason":"access expired"' in text:
                summary.note("expiry_enforced", ref)
        else:
            summary.fail(_removal_key(text), ref, _account_json(text))
    elif op == "rotate_credential":
        summary.note("rotation_attempted", ref)
        if verified:
            summary.note("rotation_verified", ref)
    elif verified:
        summary.note("change_verified", ref)
    if verified:
        summary.note("verified", ref)
        if 'credential accepted"' in text or 'credential refused"' in text:
            summary.note("probe", ref)


def _account_json(text: str) -> str:
    """The account as it is written in an action's canonical payload, whose first key it is
    ("account" sorts before every other key of an action)."""
    if not text.startswith('{"account":'):
        return ""
    try:
        _, end = json.decoder.scanstring(text, 12)  # type: ignore[attr-defined]
    except ValueError:
        return ""
    return text[11:end]


def _removal_key(text: str) -> tuple[str, str, str]:
    body = json.loads(text)
    return (str(body.get("target")), str(body.get("account")), str(body.get("entitlement")))


def _verification(summary: JournalSummary, ref: Ref) -> None:
    summary.note("verification", ref)
    if '"in_sync":true' in ref.payload:
        summary.note("verification_in_sync", ref)


def _lease(summary: JournalSummary, ref: Ref) -> None:
    ended = _LEASE_ENDS.get(ref.kind)
    if ref.kind == "lease_issued":
        summary.note("lease_issued", ref)
        if '"workload":null' not in ref.payload:
            summary.note("workload_lease", ref)
    elif ended is not None:
        for category in ("removal_attempted", "removal_verified", "lease_ended", "probe"):
            summary.note(category, ref)
        if summary.unproven:
            body = json.loads(ref.payload)
            summary.settle((str(body.get("target")), str(body.get("account")), "lease"))
        if ended == "expired":
            summary.note("expiry_enforced", ref)
    elif ref.kind == "lease_failed":
        body = json.loads(ref.payload)
        if body.get("op") in ("revoke", "expire", "reap"):
            summary.note("removal_attempted", ref)
            key = (str(body.get("target")), str(body.get("account")), "lease")
            summary.fail(key, ref, "")


def _service(summary: JournalSummary, ref: Ref) -> None:
    summary.note("policy_in_force", ref)
    if ref.kind == "service_started":
        summary.note("service_started", ref)


def _plan(summary: JournalSummary, ref: Ref) -> None:
    summary.note("policy_in_force", ref)


def _review(summary: JournalSummary, ref: Ref) -> None:
    summary.note(ref.kind, ref)  # review_decided, review_verified


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
    "review_decided": _review,
    "review_verified": _review,
}


def _result_summary(kind: str, body: dict[str, Any]) -> str:
    what = f"{body.get('op')} {body.get('entitlement') or ''} on {body.get('target')}/"
    return f"{' '.join(what.split())}{body.get('account')}: {body.get('status')}"


def _verification_summary(kind: str, body: dict[str, Any]) -> str:
    said = "in sync" if body.get("in_sync") is True else f"{len(body.get('failed') or [])} failed"
    return f"lockstep verify: {body.get('checks')} checks, {said}"


def _lease_summary(kind: str, body: dict[str, Any]) -> str:
    return f"lease {body.get('lease_id', '')} of {body.get('identity', '?')}: {kind}"


def _service_summary(kind: str, body: dict[str, Any]) -> str:
    return f"{kind.replace('_', ' ')}: {', '.join(map(str, body.get('targets') or []))}"


def _plan_summary(kind: str, body: dict[str, Any]) -> str:
    return f"plan of {len(body.get('actions') or [])} action(s)"


def _review_summary(kind: str, body: dict[str, Any]) -> str:
    if kind == "review_decided":
        return f"review {body.get('review')}: {body.get('decision')} by {body.get('by')}"
    return f"review {body.get('review')}: removal proven ({body.get('op') or 'read back'})"


def _other(kind: str, body: dict[str, Any]) -> str:
    return kind


_SUMMARIES = {
    "result": _result_summary,
    "verification": _verification_summary,
    "service_started": _service_summary,
    "policy_loaded": _service_summary,
    "plan": _plan_summary,
    "review_decided": _review_summary,
    "review_verified": _review_summary,
    **dict.fromkeys(
        ("lease_issued", "lease_revoked", "lease_expired", "lease_reaped", "lease_failed"),
        _lease_summary,
    ),
}
