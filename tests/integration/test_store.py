"""The state store opens, migrates and fails cleanly, on SQLite files and on PostgreSQL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from lockstep.demo.localpg import LocalPostgres
from lockstep.store import Store, StoreError

pytest_plugins = ("support.stores",)

TABLES = {
    "alembic_version",
    "journal",
    "journal_head",
    "credentials",
    "findings",
    "usage",
    "leases",
    "target_leases",
    "target_passes",
    "heartbeats",
    "identity_states",
    "pending_credentials",
    "token_replay",
    "person_tokens",
    "access_requests",
    "request_approvals",
    "sod_holdings",
    "reviews",
    "review_subjects",
    "review_versions",
    "notifications",
    "ended_sessions",
}
NEWEST = "0011_findings_and_sessions"


def schema(store: Store) -> tuple[set[str], str, tuple[object, ...]]:
    with store.engine.connect() as conn:
        version: str = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        head = tuple(conn.execute(text("SELECT id, seq, hash FROM journal_head")).one())
    return set(inspect(store.engine).get_table_names()), version, head


def test_open_creates_every_table_at_the_newest_revision(store: Store) -> None:
    tables, version, head = schema(store)
    assert tables >= TABLES
    assert version == NEWEST
    assert head == (1, 0, "0" * 64)


def test_reopening_a_current_store_changes_nothing(state_url: str) -> None:
    with Store.open(state_url) as first:
        with first.engine.begin() as conn:
            conn.execute(text("UPDATE journal_head SET seq = 7 WHERE id = 1"))
        before = schema(first)
    with Store.open(state_url) as again:
        assert schema(again) == before


def test_a_store_from_a_newer_lockstep_is_refused_clearly(state_url: str) -> None:
    with Store.open(state_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"'9999'.*written by a newer lockstep"):
        Store.open(state_url)


def test_sqlite_store_creates_its_directory_and_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    Store.open(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sqlite_path_under_a_regular_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the state database"):
        Store.open(f"sqlite:///{tmp_path}/file/state.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:p@localhost/db", "unsupported state URL scheme 'mysql'"),
        ("sqlite://", "needs a file path"),
        ("sqlite:///:memory:", "needs a file path"),
        ("not a url", "not a valid URL"),
    ],
)
def test_unusable_urls_are_refused_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        Store.open(url)


def test_a_refused_postgres_login_never_shows_the_password(pg: LocalPostgres) -> None:
    password = "Wr0ng-pass-" + uuid.uuid4().hex
    url = f"postgresql://{pg.superuser}:{password}@127.0.0.1:{pg.port}/postgres?password={password}"
    with pytest.raises(StoreError) as caught:
        Store.open(url.replace("?password=" + password, ""))
    assert password not in str(caught.value)
    assert "password authentication failed" in str(caught.value)
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    assert password not in str(caught.value)


def test_an_unreachable_postgres_is_a_store_error(pg: LocalPostgres) -> None:
    closed_port = pg.port + 1 if pg.port < 65535 else pg.port - 1
    with pytest.raises(StoreError, match="cannot open state store"):
        Store.open(f"postgresql://nobody:secretpw1@127.0.0.1:{closed_port}/x")


def test_aware_utc_times_round_trip_and_naive_times_are_refused(store: Store) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from lockstep.store.tables import findings

    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    row = {
        "id": "F-1",
        "type": "orphan_account",
        "severity": "high",
        "target": "t",
        "detail": "",
        "first_seen": at,
        "last_seen": at,
        "status": "open",
    }
    with store.writing(lock=findings) as conn:
        conn.execute(findings.insert(), row)
    with store.reading() as conn:
        read = conn.execute(findings.select()).one()
    assert read.first_seen == at
    assert read.first_seen.tzinfo == UTC
    with pytest.raises(StoreError, match="naive datetime"), store.writing(lock=findings) as conn:
        conn.execute(findings.insert(), {**row, "id": "F-2", "first_seen": datetime(2026, 1, 2)})


OPEN_AT_ONCE = """
import os, sys, time
from lockstep.store import Store
time.sleep(max(0.0, float(os.environ["START_AT"]) - time.time()))
Store.open(os.environ["STATE_URL"]).close()
"""


def test_processes_opening_a_new_store_at_once_all_succeed(state_url: str) -> None:
    env = {**os.environ, "STATE_URL": state_url, "START_AT": str(time.time() + 2.0)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with Store.open(state_url) as store:
        _tables, version, head = schema(store)
    assert (version, head) == (NEWEST, (1, 0, "0" * 64))
