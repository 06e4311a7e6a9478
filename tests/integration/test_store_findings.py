"""The findings ledger keeps each finding's history across passes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from lockstep.model import Finding, FindingType, Severity
from lockstep.store import Store
from lockstep.store import findings as findings_ledger
from lockstep.store.findings import FindingLedger, FindingRecord

pytest_plugins = ("support.stores",)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)

ORPHAN = Finding(FindingType.ORPHAN_ACCOUNT, Severity.HIGH, "orders-db", account="legacy_etl")
EXCESS = Finding(
    FindingType.EXCESS_ENTITLEMENT,
    Severity.MEDIUM,
    "orders-db",
    account="payments_api",
    entitlement="role:app_admin",
    identity="payments-api",
)
LDAP_ORPHAN = Finding(FindingType.ORPHAN_ACCOUNT, Severity.HIGH, "corp-ldap", account="svc-old")


@pytest.fixture
def ledger(state_url: str) -> Iterator[FindingLedger]:
    with Store.open(state_url) as store:
        yield FindingLedger(store)


def by_id(records: list[FindingRecord]) -> dict[str, FindingRecord]:
    return {r.id: r for r in records}


def test_a_new_finding_is_open_and_first_seen_now(ledger: FindingLedger) -> None:
    [record] = ledger.record([ORPHAN], {"orders-db"}, T0)
    assert record == FindingRecord(ORPHAN, ORPHAN.id, T0, T0, "open")
    assert ledger.current() == [record]


def test_a_finding_seen_again_keeps_its_first_seen(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN], {"orders-db"}, T0)
    [record] = ledger.record([ORPHAN], {"orders-db"}, T1)
    assert (record.first_seen, record.last_seen, record.status) == (T0, T1, "open")
    assert ledger.current() == [record]


def test_a_finding_gone_from_a_read_target_is_resolved(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN, EXCESS], {"orders-db"}, T0)
    ledger.record([EXCESS], {"orders-db"}, T1)
    assert [r.id for r in ledger.current()] == [EXCESS.id]
    resolved = ledger.current(status="resolved")
    assert [(r.id, r.first_seen, r.last_seen) for r in resolved] == [(ORPHAN.id, T0, T0)]


def test_findings_of_an_unreadable_target_are_never_resolved(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN, LDAP_ORPHAN], {"orders-db", "corp-ldap"}, T0)
    ledger.record([], {"orders-db"}, T1)  # corp-ldap could not be read this pass
    assert [r.id for r in ledger.current()] == [LDAP_ORPHAN.id]


def test_a_resolved_finding_that_returns_is_reopened_as_a_new_occurrence(
    ledger: FindingLedger,
) -> None:
    ledger.record([ORPHAN], {"orders-db"}, T0)
    ledger.record([], {"orders-db"}, T1)
    [record] = ledger.record([ORPHAN], {"orders-db"}, T2)
    assert (record.first_seen, record.last_seen, record.status) == (T2, T2, "open")
    assert by_id(ledger.current())[ORPHAN.id] == record


def test_a_later_sighting_refreshes_severity_and_detail(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN], {"orders-db"}, T0)
    worse = Finding(
        ORPHAN.type, Severity.CRITICAL, ORPHAN.target, ORPHAN.account, detail="now superuser"
    )
    ledger.record([worse], {"orders-db"}, T1)
    [stored] = ledger.current()
    assert stored.finding == worse and stored.first_seen == T0


def test_all_findings_are_listed_with_no_status_filter(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN, EXCESS], {"orders-db"}, T0)
    ledger.record([EXCESS], {"orders-db"}, T1)
    statuses = {r.id: r.status for r in ledger.current(status=None)}
    assert statuses == {ORPHAN.id: "resolved", EXCESS.id: "open"}


def test_records_come_back_in_the_order_given(ledger: FindingLedger) -> None:
    records = ledger.record([EXCESS, ORPHAN, EXCESS], {"orders-db"}, T0)
    assert [r.id for r in records] == [EXCESS.id, ORPHAN.id, EXCESS.id]


def test_many_findings_are_recorded_past_one_lookup_chunk(
    ledger: FindingLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(findings_ledger, "_CHUNK", 7)
    many = [
        Finding(FindingType.ORPHAN_ACCOUNT, Severity.LOW, "orders-db", account=f"svc_{i}")
        for i in range(30)
    ]
    ledger.record(many, {"orders-db"}, T0)
    again = ledger.record(many[:20], {"orders-db"}, T1)
    assert all(r.first_seen == T0 and r.last_seen == T1 for r in again)
    assert len(ledger.current()) == 20
    assert len(ledger.current(status="resolved")) == 10
