"""What a report reads off the journal: removals attempted and proven, and which were never
proven, from the canonical payloads as lockstep writes them."""

from __future__ import annotations

import json
from typing import Any

from lockstep.evidence.journal_summary import JournalSummary, Ref, _watched
from lockstep.journal import ChainReport


def summary_of(*entries: tuple[str, dict[str, Any]]) -> JournalSummary:
    summary = JournalSummary(ChainReport(True, 0, None, ""))
    rows = [
        (n, "2026-06-01T00:00:00.000000Z", kind, json.dumps(body, sort_keys=True,
         separators=(",", ":")), "0" * 64, f"{n:064x}")
        for n, (kind, body) in enumerate(entries, start=1)
    ]  # fmt: skip
    for _ in _watched(rows, summary):
        pass
    return summary


def removal(status: str, account: str = 'o"dd', op: str = "revoke") -> tuple[str, dict[str, Any]]:
    return (
        "result",
        {"account": account, "checks": [], "entitlement": "SELECT on table t", "op": op,
         "reason": "not granted by the policy", "status": status, "target": "db"},
    )  # fmt: skip


def test_a_failed_removal_stays_unproven_until_a_later_one_is_verified() -> None:
    failed = summary_of(removal("failed"))
    assert list(failed.unproven) == [("db", 'o"dd', "SELECT on table t")]
    settled = summary_of(removal("failed"), removal("verified"))
    assert settled.unproven == {} and settled.unproven_accounts == {}
    assert (settled.count("removal_attempted"), settled.count("removal_verified")) == (2, 1)


def test_a_verified_removal_of_another_account_settles_nothing() -> None:
    summary = summary_of(removal("failed", "a"), removal("verified", "b"))
    assert list(summary.unproven) == [("db", "a", "SELECT on table t")]


def test_evidence_refs_say_what_the_entry_says() -> None:
    summary = summary_of(removal("verified"), ("verification", {"checks": 4, "failed": [],
                                                               "in_sync": True}))  # fmt: skip
    [ref] = summary.refs("removal_verified")
    assert ref.json()["summary"] == 'revoke SELECT on table t on db/o"dd: verified'
    assert summary.refs("verification_in_sync")[0].summary == "lockstep verify: 4 checks, in sync"
    assert isinstance(ref, Ref)
