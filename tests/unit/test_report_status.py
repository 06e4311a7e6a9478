"""A control's status, as a pure function of the facts: never satisfied without evidence,
not satisfied while a finding against it is held, not assessed when unknown."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from lockstep.engine.plan import finding
from lockstep.evidence.frameworks import FRAMEWORKS, load_framework
from lockstep.evidence.journal_summary import JournalSummary, Ref
from lockstep.evidence.report import Gathered, build_report, finding_row
from lockstep.journal import ChainReport
from lockstep.model import (
    Access,
    FindingType,
    Identity,
    Owner,
    OwnerStatus,
    Policy,
    Target,
)
from lockstep.store.findings import FindingRecord
from support.settings import NO_SETTINGS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T = Target("db", "postgres", "prod", frozenset(), False, NO_SETTINGS)
POLICY = Policy(
    {"db": T},
    {"team": Owner("team", ("a@example.com",), OwnerStatus.ACTIVE)},
    {"api": Identity("api", "team", "serve", "prod", (Access("db", "api", frozenset(), None),))},
)
PAYLOAD = '{"account":"api","op":"revoke","status":"verified","target":"db"}'
CATEGORIES = ("verification", "verification_in_sync", "policy_in_force", "change_verified",
              "removal_verified", "probe", "verified", "service_started")  # fmt: skip


def journal(categories: tuple[str, ...] = CATEGORIES, ok: bool = True) -> JournalSummary:
    summary = JournalSummary(ChainReport(ok, 9, None if ok else 3, "ok" if ok else "broken"))
    summary.head_at = "2026-06-01T00:00:00.000000Z"
    for n, category in enumerate(categories, start=1):
        summary.note(category, Ref(n, f"{n:064x}", summary.head_at, "result", PAYLOAD))
    return summary


def record(type_: FindingType, status: str = "open") -> dict[str, object]:
    f = finding(type_, "db", account="api", identity="api")
    return finding_row(FindingRecord(f, f.id, NOW, NOW, status))


def statuses(gathered: Gathered, framework: str = "owasp-nhi-2025") -> dict[str, str]:
    built = build_report(load_framework(framework), gathered, NOW)
    return {c["id"]: c["status"] for c in built["controls"]}


def test_with_evidence_and_nothing_held_a_control_is_satisfied() -> None:
    gathered = Gathered(POLICY, journal(), [], {"db": NOW}, {("db", "api"): NOW}, {})
    assert statuses(gathered)["NHI9"] == "satisfied"


def test_without_any_journal_evidence_no_control_is_satisfied() -> None:
    for name in FRAMEWORKS:
        gathered = Gathered(POLICY, journal(()), [], {"db": NOW}, {}, {})
        assert "satisfied" not in statuses(gathered, name).values()


def test_a_held_finding_makes_its_controls_not_satisfied() -> None:
    gathered = Gathered(
        POLICY, journal(), [record(FindingType.SHARED_ACCOUNT)], {"db": NOW}, {}, {}
    )
    assert statuses(gathered)["NHI9"] == "not_satisfied"


def test_a_finding_once_verified_gone_no_longer_counts() -> None:
    gone = record(FindingType.SHARED_ACCOUNT, "verified")
    gathered = Gathered(POLICY, journal(), [gone], {"db": NOW}, {}, {})
    assert statuses(gathered)["NHI9"] == "satisfied"


def test_an_unreadable_target_leaves_nothing_satisfied() -> None:
    down = record(FindingType.TARGET_UNREACHABLE)
    gathered = Gathered(POLICY, journal(), [down], {"db": NOW}, {}, {})
    assert "satisfied" not in statuses(gathered).values()


def test_a_target_never_read_leaves_its_inventory_unassessed() -> None:
    gathered = Gathered(POLICY, journal(), [], {}, {}, {})
    assert statuses(gathered, "nist-800-53-r5")["IA-4"] == "not_assessed"


def test_a_broken_journal_makes_every_control_not_assessed() -> None:
    gathered = Gathered(POLICY, journal(ok=False), [], {"db": NOW}, {}, {})
    assert set(statuses(gathered).values()) == {"not_assessed"}


def test_a_removal_never_proven_fails_offboarding() -> None:
    summary = journal()
    summary.unproven[("db", "old", "None")] = Ref(7, "f" * 64, "x", "result", PAYLOAD)
    gathered = Gathered(POLICY, summary, [], {"db": NOW}, {}, {})
    assert statuses(gathered)["NHI1"] == "not_satisfied"


@given(
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=6).map(tuple),
    held=st.lists(st.sampled_from(list(FindingType)), max_size=3),
    read=st.booleans(),
    ok=st.booleans(),
    framework=st.sampled_from(FRAMEWORKS),
)
def test_satisfied_always_has_evidence_and_no_finding(
    categories: tuple[str, ...], held: list[FindingType], read: bool, ok: bool, framework: str
) -> None:
    gathered = Gathered(
        POLICY,
        journal(categories, ok),
        [record(t) for t in held],
        {"db": NOW} if read else {},
        {},
        {},
    )
    for control in build_report(load_framework(framework), gathered, NOW)["controls"]:
        if control["status"] == "satisfied":
            assert control["evidence"] and not control["findings"]
            assert ok and read
        if control["status"] == "not_assessed":
            assert control["needed"]
