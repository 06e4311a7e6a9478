"""Runtime use kept compactly: one last-seen time per account and entitlement, written only
when it moves forward, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from lockstep.connectors.base import Usage
from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import (
    Access,
    Account,
    FindingType,
    Identity,
    Owner,
    OwnerStatus,
    Policy,
    Rules,
    Snapshot,
    Target,
)
from lockstep.store import Store
from lockstep.store import usage as usage_module
from lockstep.store.tables import usage as usage_table
from lockstep.store.usage import UsageStore
from support.settings import NO_SETTINGS

pytest_plugins = ("support.stores",)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
DB = "orders-db"


@pytest.fixture
def usage(store: Store) -> UsageStore:
    return UsageStore(store)


def rows(store: Store) -> dict[tuple[str, str, str], tuple[datetime, str]]:
    with store.engine.connect() as conn:
        return {
            (r.target, r.account, r.entitlement): (r.last_seen, r.source)
            for r in conn.execute(select(usage_table))
        }


def writes_to_usage(store: Store) -> list[str]:
    """Every statement that writes the usage table from now on, as the driver sees it."""
    seen: list[str] = []

    def note(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        words = statement.lstrip().split(None, 3)
        if words[0].upper() in ("INSERT", "UPDATE", "DELETE") and "usage" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    return seen


def test_an_account_read_for_the_first_time_is_stamped_first_seen(
    usage: UsageStore, store: Store
) -> None:
    assert usage.record(DB, [], ["payments_api"], T0) == 1
    assert rows(store) == {(DB, "payments_api", ""): (T0, "first-seen")}
    assert usage.last_used() == {(DB, "payments_api"): T0}


def test_observed_use_is_the_accounts_last_use(usage: UsageStore) -> None:
    usage.record(DB, [Usage("payments_api", T0, source="pg_stat_activity")], ["payments_api"], T1)
    assert usage.last_used() == {(DB, "payments_api"): T0}


def test_use_of_an_entitlement_is_use_of_its_account(usage: UsageStore, store: Store) -> None:
    usage.record(DB, [Usage("payments_api", T1, "role:app_readonly", "audit")], [], T2)
    assert rows(store) == {
        (DB, "payments_api", "role:app_readonly"): (T1, "audit"),
        (DB, "payments_api", ""): (T1, "audit"),
    }


def test_only_the_latest_of_several_observations_is_kept(usage: UsageStore, store: Store) -> None:
    seen = [Usage("payments_api", at, source=f"s{i}") for i, at in enumerate([T0, T1, T0])]
    assert usage.record(DB, seen, [], T2) == 1
    assert rows(store) == {(DB, "payments_api", ""): (T1, "s1")}


def test_an_older_observation_never_moves_last_use_back(usage: UsageStore) -> None:
    usage.record(DB, [Usage("payments_api", T1)], [], T2)
    assert usage.record(DB, [Usage("payments_api", T0)], [], T2) == 0
    assert usage.last_used() == {(DB, "payments_api"): T1}


def test_a_pass_that_saw_nothing_newer_writes_nothing(usage: UsageStore, store: Store) -> None:
    observed = [Usage("payments_api", T0, "role:app_readonly"), Usage("reporting_job", T0)]
    usage.record(DB, observed, ["payments_api", "reporting_job", "idle_job"], T0)
    before = rows(store)
    statements = writes_to_usage(store)
    assert usage.record(DB, observed, ["payments_api", "reporting_job", "idle_job"], T1) == 0
    assert statements == []
    assert rows(store) == before


def test_a_first_seen_stamp_never_overwrites_observed_use(usage: UsageStore) -> None:
    usage.record(DB, [Usage("payments_api", T0)], ["payments_api"], T1)
    usage.record(DB, [], ["payments_api"], T2)
    assert usage.last_used() == {(DB, "payments_api"): T0}


def test_newer_use_replaces_a_first_seen_stamp(usage: UsageStore, store: Store) -> None:
    usage.record(DB, [], ["payments_api"], T0)
    assert usage.record(DB, [Usage("payments_api", T1, source="pwdLastSuccess")], [], T2) == 1
    assert rows(store)[(DB, "payments_api", "")] == (T1, "pwdLastSuccess")


def test_use_reported_in_the_future_counts_as_now(usage: UsageStore) -> None:
    usage.record(DB, [Usage("payments_api", T2 + timedelta(days=365))], [], T1)
    assert usage.last_used() == {(DB, "payments_api"): T1}


def test_a_naive_time_is_refused_with_the_account_named(usage: UsageStore) -> None:
    with pytest.raises(ValueError, match="'payments_api' was reported at a naive time"):
        usage.record(DB, [Usage("payments_api", datetime(2026, 5, 1))], [], T1)


def test_last_use_can_be_read_for_one_target(usage: UsageStore) -> None:
    usage.record(DB, [], ["payments_api"], T0)
    usage.record("corp-ldap", [], ["svc-etl"], T1)
    assert usage.last_used("corp-ldap") == {("corp-ldap", "svc-etl"): T1}
    assert set(usage.last_used()) == {(DB, "payments_api"), ("corp-ldap", "svc-etl")}


def test_a_deleted_account_is_forgotten(usage: UsageStore, store: Store) -> None:
    usage.record(DB, [Usage("legacy_etl", T0, "role:etl")], ["payments_api"], T1)
    assert usage.forget(DB, "legacy_etl") == 2
    assert set(rows(store)) == {(DB, "payments_api", "")}


def test_a_batch_is_written_in_one_statement_not_one_per_row(
    usage: UsageStore, store: Store
) -> None:
    observed = [Usage(f"svc_{i}", T0, source="log") for i in range(100)]
    statements = writes_to_usage(store)
    written = usage.record(DB, observed, [f"new_{i}" for i in range(30)], T1)
    assert written == 130
    assert len(statements) == 2  # the observed use; the first-seen stamps
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage_table)).scalar_one() == 130


def test_a_stored_first_seen_time_starts_the_dormancy_clock(usage: UsageStore) -> None:
    usage.record(DB, [], ["payments_api"], T0)
    policy = Policy(
        targets={DB: Target(DB, "postgres", "prod", frozenset(), False, NO_SETTINGS)},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={
            "payments-api": Identity(
                "payments-api",
                "team",
                "test",
                "prod",
                (Access(DB, "payments_api", frozenset(), None),),
            )
        },
        rules=Rules(dormant_after_s=86400),
    )
    observed = {DB: Snapshot(DB, {"payments_api": Account("payments_api", frozenset(), True)})}

    def dormant(now: datetime) -> bool:
        plan = make_plan(
            policy, desired_state(policy, now), observed, now, last_used=usage.last_used()
        )
        return any(f.type is FindingType.DORMANT_IDENTITY for f in plan.findings)

    assert not dormant(T0 + timedelta(hours=23))
    assert dormant(T0 + timedelta(days=1))


def test_a_write_racing_a_newer_one_never_moves_a_time_back(store: Store) -> None:
    # What another process may do between this one's read and its write.
    row = {"target": DB, "account": "payments_api", "entitlement": "", "source": "log"}
    with store.engine.begin() as conn:
        assert (
            usage_module.upsert_newer(conn, usage_table, [{**row, "last_seen": T1}], "last_seen")
            == 1
        )
        assert (
            usage_module.upsert_newer(conn, usage_table, [{**row, "last_seen": T0}], "last_seen")
            == 0
        )
        first_seen = {**row, "last_seen": T2, "source": "first-seen"}
        assert usage_module.insert_missing(conn, usage_table, [first_seen]) == 0
    assert rows(store) == {(DB, "payments_api", ""): (T1, "log")}
