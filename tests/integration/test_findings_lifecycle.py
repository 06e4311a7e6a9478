"""A finding's lifecycle in the ledger: open, remediated, verified, accepted, resolved.

Each transition is its own test, on SQLite and on PostgreSQL, and a pass in which nothing
changed is shown to write no finding at all (the database itself counts the row writes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from lockstep.model import Action, Finding, FindingType, Op, Result, Severity, Status
from lockstep.store import Store
from lockstep.store.findings import (
    FindingLedger,
    FindingLedgerError,
    FindingRecord,
    Transition,
    remediated_ids,
)

pytest_plugins = ("support.stores",)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)
T3 = T0 + timedelta(minutes=15)
DB = "orders-db"
LDAP = "corp-ldap"

ORPHAN = Finding(FindingType.ORPHAN_ACCOUNT, Severity.HIGH, DB, account="legacy_etl")
EXCESS = Finding(
    FindingType.EXCESS_ENTITLEMENT,
    Severity.HIGH,
    DB,
    account="payments_api",
    entitlement="role:app_admin",
    identity="payments-api",
)
STALE = Finding(
    FindingType.STALE_CREDENTIAL,
    Severity.MEDIUM,
    DB,
    account="payments_api",
    identity="payments-api",
)
LDAP_ORPHAN = Finding(FindingType.ORPHAN_ACCOUNT, Severity.HIGH, LDAP, account="svc-old")
LDAP_DOWN = Finding(FindingType.TARGET_UNREACHABLE, Severity.HIGH, LDAP, detail="timed out")


@pytest.fixture
def ledger(store: Store) -> FindingLedger:
    return FindingLedger(store)


def row_writes(store: Store, table: str) -> Callable[[], int]:
    """Have the database count every row inserted, updated or deleted in ``table``."""
    # Trigger bodies cannot take bind parameters; the names are this module's own.
    bump = f"UPDATE row_writes SET n = n + 1 WHERE tbl = '{table}'"  # noqa: S608
    if store.dialect == "sqlite":
        triggers = [
            f"CREATE TRIGGER count_{table}_{event} AFTER {event} ON {table} BEGIN {bump}; END"
            for event in ("INSERT", "UPDATE", "DELETE")
        ]
    else:
        triggers = [
            f"CREATE FUNCTION count_{table}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {bump}; RETURN NULL; END $$",
            f"CREATE TRIGGER count_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION count_{table}()",
        ]
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS row_writes (tbl TEXT PRIMARY KEY, n INT)"))
        conn.execute(text("INSERT INTO row_writes VALUES (:t, 0)"), {"t": table})
        for ddl in triggers:
            conn.execute(text(ddl))

    def count() -> int:
        with store.engine.connect() as conn:
            query = text("SELECT n FROM row_writes WHERE tbl = :t")
            return int(conn.execute(query, {"t": table}).scalar_one())

    return count


def verified(op: Op, account: str, entitlement: str | None = None) -> Result:
    return Result(Action(op, DB, account, entitlement), Status.VERIFIED, "verified")


# ---------------------------------------------------------------- open


def test_a_new_finding_is_open_and_first_seen_now(ledger: FindingLedger) -> None:
    [record] = ledger.record([ORPHAN], {DB}, T0)
    assert record == FindingRecord(ORPHAN, ORPHAN.id, T0, T0, "open")
    assert ledger.get(ORPHAN.id) == record


def test_an_open_finding_seen_again_stays_open_with_its_first_seen(
    ledger: FindingLedger,
) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    ledger.record([ORPHAN], {DB}, T1)
    record = ledger.get(ORPHAN.id)
    assert (record.status, record.first_seen, record.last_seen) == ("open", T0, T1)


# ---------------------------------------------------------------- remediated, verified


def test_a_finding_an_action_addressed_is_remediated(ledger: FindingLedger) -> None:
    ledger.record([EXCESS], {DB}, T0)
    assert ledger.remediated([EXCESS.id], T1) == 1
    record = ledger.get(EXCESS.id)
    assert (record.status, record.remediated_at, record.last_seen) == ("remediated", T1, T0)


def test_a_remediated_finding_gone_from_a_later_read_is_verified(ledger: FindingLedger) -> None:
    ledger.record([EXCESS], {DB}, T0)
    ledger.remediated([EXCESS.id], T1)
    ledger.record([], {DB}, T2)
    record = ledger.get(EXCESS.id)
    assert (record.status, record.remediated_at, record.verified_at) == ("verified", T1, T2)
    assert record.last_seen == T0  # the last read that still found it


def test_a_remediated_finding_still_seen_on_a_later_read_is_open_again(
    ledger: FindingLedger,
) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    ledger.remediated([ORPHAN.id], T1)
    ledger.record([ORPHAN], {DB}, T2)
    record = ledger.get(ORPHAN.id)
    assert (record.status, record.first_seen, record.remediated_at) == ("open", T0, None)


def test_only_a_current_finding_can_be_remediated(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    ledger.record([], {DB}, T1)
    assert ledger.remediated([ORPHAN.id, "F-unknown"], T2) == 0
    assert ledger.get(ORPHAN.id).status == "resolved"


# ---------------------------------------------------------------- resolved, reopened


def test_an_open_finding_gone_without_an_action_is_resolved(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN, EXCESS], {DB}, T0)
    ledger.record([ORPHAN], {DB}, T1)
    ledger.record([], {DB}, T2)
    excess, orphan = ledger.get(EXCESS.id), ledger.get(ORPHAN.id)
    assert (excess.status, excess.last_seen) == ("resolved", T0)
    assert (orphan.status, orphan.last_seen) == ("resolved", T1)


def test_a_resolved_finding_seen_again_reopens_as_a_new_occurrence(
    ledger: FindingLedger,
) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    ledger.record([], {DB}, T1)
    [record] = ledger.record([ORPHAN], {DB}, T2)
    assert (record.status, record.first_seen, record.last_seen) == ("open", T2, T2)
    assert ledger.get(ORPHAN.id) == record


def test_a_verified_finding_seen_again_reopens_as_a_new_occurrence(
    ledger: FindingLedger,
) -> None:
    ledger.record([EXCESS], {DB}, T0)
    ledger.remediated([EXCESS.id], T1)
    ledger.record([], {DB}, T2)
    ledger.record([EXCESS], {DB}, T3)
    record = ledger.get(EXCESS.id)
    assert (record.status, record.first_seen) == ("open", T3)
    assert (record.remediated_at, record.verified_at) == (None, None)


def test_findings_of_a_target_that_could_not_be_read_keep_their_status(
    ledger: FindingLedger,
) -> None:
    ledger.record([ORPHAN, LDAP_ORPHAN], {DB, LDAP}, T0)
    ledger.remediated([LDAP_ORPHAN.id], T1)
    ledger.record([LDAP_DOWN], {DB}, T2)
    assert ledger.get(LDAP_ORPHAN.id).status == "remediated"
    assert ledger.get(ORPHAN.id).status == "resolved"


# ---------------------------------------------------------------- accepted


def test_an_accepted_finding_still_seen_stays_accepted_until_it_expires(
    ledger: FindingLedger,
) -> None:
    ledger.record([EXCESS], {DB}, T0)
    accepted = ledger.accept(EXCESS.id, "payments-team", "vendor needs it", T2, T1)
    [record] = ledger.record([EXCESS], {DB}, T1 + timedelta(minutes=1))
    assert record.status == accepted.status == "accepted"
    assert (record.accepted_by, record.accepted_reason, record.accepted_until) == (
        "payments-team",
        "vendor needs it",
        T2,
    )


def test_an_accepted_finding_still_seen_after_its_expiry_reopens(ledger: FindingLedger) -> None:
    ledger.record([EXCESS], {DB}, T0)
    ledger.accept(EXCESS.id, "payments-team", "vendor needs it", T2, T1)
    [record] = ledger.record([EXCESS], {DB}, T2)
    assert (record.status, record.first_seen, record.accepted_until) == ("open", T0, None)


def test_an_accepted_finding_that_disappears_is_resolved(ledger: FindingLedger) -> None:
    ledger.record([EXCESS], {DB}, T0)
    ledger.accept(EXCESS.id, "payments-team", "vendor needs it", T3, T1)
    ledger.record([], {DB}, T2)
    assert ledger.get(EXCESS.id).status == "resolved"


def test_accepting_an_unknown_finding_is_a_clear_error(ledger: FindingLedger) -> None:
    with pytest.raises(FindingLedgerError, match="no finding 'F-000000000000'"):
        ledger.accept("F-000000000000", "payments-team", "why", T2, T1)


@pytest.mark.parametrize(
    ("by", "reason", "until", "message"),
    [
        ("payments-team", "  ", T2, "needs a reason"),
        (" ", "vendor needs it", T2, "needs the owner"),
        ("payments-team", "vendor needs it", T1, "must expire in the future"),
        ("payments-team", "vendor needs it", T1 + timedelta(days=366), "at most 365 days"),
    ],
)
def test_an_acceptance_needs_an_owner_a_reason_and_an_expiry_within_a_year(
    ledger: FindingLedger, by: str, reason: str, until: datetime, message: str
) -> None:
    ledger.record([EXCESS], {DB}, T0)
    with pytest.raises(FindingLedgerError, match=message):
        ledger.accept(EXCESS.id, by, reason, until, T1)
    assert ledger.get(EXCESS.id).status == "open"


def test_a_finding_that_is_gone_cannot_be_accepted(ledger: FindingLedger) -> None:
    ledger.record([EXCESS], {DB}, T0)
    ledger.record([], {DB}, T1)
    with pytest.raises(FindingLedgerError, match="is resolved: only a current finding"):
        ledger.accept(EXCESS.id, "payments-team", "why", T3, T2)


# ---------------------------------------------------------------- writes and last seen


def test_a_pass_in_which_nothing_changed_writes_no_finding(
    ledger: FindingLedger, store: Store
) -> None:
    ledger.record([ORPHAN, EXCESS, LDAP_ORPHAN], {DB, LDAP}, T0)
    findings_written, passes_written = (
        row_writes(store, "findings"),
        row_writes(store, "target_passes"),
    )
    ledger.record([ORPHAN, EXCESS, LDAP_ORPHAN], {DB, LDAP}, T1)
    assert findings_written() == 0
    assert passes_written() == 2  # the heartbeat: one row per target read


def test_a_held_finding_is_last_seen_at_the_last_read_of_its_target(
    ledger: FindingLedger,
) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    ledger.record([ORPHAN], {DB}, T1)
    ledger.record([ORPHAN], {DB}, T2)
    [current] = ledger.current()
    assert (current.first_seen, current.last_seen) == (T0, T2)


def test_an_unreachable_target_finding_is_dated_by_its_own_row(ledger: FindingLedger) -> None:
    ledger.record([LDAP_DOWN], set(), T0)
    ledger.record([LDAP_DOWN], set(), T1)
    record = ledger.get(LDAP_DOWN.id)
    assert (record.status, record.first_seen, record.last_seen) == ("open", T0, T1)


def test_a_changed_detail_is_written_and_keeps_first_seen(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    worse = Finding(ORPHAN.type, Severity.CRITICAL, DB, ORPHAN.account, detail="now superuser")
    ledger.record([worse], {DB}, T1)
    record = ledger.get(ORPHAN.id)
    assert (record.finding, record.first_seen) == (worse, T0)


def test_a_pass_time_never_moves_backwards(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN], {DB}, T0)
    ledger.mark_pass([DB], T2)
    ledger.mark_pass([DB], T1)
    assert ledger.get(ORPHAN.id).last_seen == T2


# ---------------------------------------------------------------- transitions and queries


def test_a_pass_reports_each_change_of_status_for_the_journal(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN, EXCESS], {DB}, T0)
    ledger.remediated([EXCESS.id], T1)
    outcome = ledger.reconcile([STALE], {DB}, T2)
    changes = {(t.id, t.before, t.after) for t in outcome.transitions}
    assert changes == {
        (STALE.id, None, "open"),
        (ORPHAN.id, "open", "resolved"),
        (EXCESS.id, "remediated", "verified"),
    }
    assert Transition(ORPHAN.id, ORPHAN, "open", "resolved") in outcome.transitions


def test_current_filters_by_status_type_target_and_identity(ledger: FindingLedger) -> None:
    ledger.record([ORPHAN, EXCESS, STALE, LDAP_ORPHAN], {DB, LDAP}, T0)
    ledger.accept(STALE.id, "payments-team", "rotated by hand", T3, T1)

    def ids(records: list[FindingRecord]) -> set[str]:
        return {r.id for r in records}

    assert ids(ledger.current(["open", "accepted"], types=["orphan_account"])) == {
        ORPHAN.id,
        LDAP_ORPHAN.id,
    }
    assert ids(ledger.current(None, targets=[LDAP])) == {LDAP_ORPHAN.id}
    assert ids(ledger.current(None, identities=["payments-api"])) == {EXCESS.id, STALE.id}
    assert ids(ledger.current("accepted")) == {STALE.id}


def test_verified_actions_remediate_the_findings_they_address() -> None:
    results = [
        verified(Op.REVOKE, "payments_api", "role:app_admin"),
        verified(Op.SUSPEND_ACCOUNT, "legacy_etl"),
        Result(Action(Op.ROTATE_CREDENTIAL, DB, "payments_api"), Status.FAILED, "refused"),
    ]
    assert remediated_ids(results, [ORPHAN, EXCESS, STALE, LDAP_ORPHAN]) == [ORPHAN.id, EXCESS.id]


def test_an_action_on_an_account_does_not_remediate_an_unrelated_finding() -> None:
    rotated = [verified(Op.ROTATE_CREDENTIAL, "payments_api")]
    suspended = [verified(Op.SUSPEND_ACCOUNT, "payments_api")]
    assert remediated_ids(rotated, [EXCESS, STALE]) == [STALE.id]
    assert remediated_ids(suspended, [EXCESS, STALE]) == []
