"""The journal chains every entry, names the first tampered one and fails closed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from lockstep import journal as journal_module
from lockstep.journal import LOCK as journal_lock
from lockstep.journal import Entry, Journal, JournalError
from lockstep.secret import Secret, generate_password
from lockstep.store import Store

pytest_plugins = ("support.stores",)

ZERO = "0" * 64
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def ticking_clock() -> Callable[[], datetime]:
    ticks = iter(range(1_000_000))
    return lambda: T0 + timedelta(seconds=next(ticks), microseconds=123)


@pytest.fixture
def journal(store: Store) -> Journal:
    return Journal(store, clock=ticking_clock())


def fill(journal: Journal, n: int) -> list[Entry]:
    return [journal.append("action", {"n": i, "op": "grant"}) for i in range(1, n + 1)]


def sql_exec(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def count_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM journal")).scalar_one())


# ------------------------------------------------------------------ appending


def test_entries_chain_from_a_zero_hash_over_canonical_json(journal: Journal) -> None:
    first, second = fill(journal, 2)
    assert (first.seq, first.prev_hash) == (1, ZERO)
    assert second.prev_hash == first.hash
    canonical = (
        '{"at":"2026-03-01T12:00:00.000123Z","kind":"action",'
        '"payload":{"n":1,"op":"grant"},"seq":1}'
    )
    assert first.hash == hashlib.sha256((ZERO + canonical).encode()).hexdigest()


def test_entries_appended_in_a_callers_transaction_commit_with_it_or_not_at_all(
    journal: Journal, store: Store
) -> None:
    fill(journal, 1)
    with pytest.raises(RuntimeError), store.writing(journal_lock) as conn:
        journal.append_in(conn, [("lease_intent", {"n": 2}), ("lease_intent", {"n": 3})])
        raise RuntimeError("the rest of the transaction failed")
    assert count_rows(store) == 1
    with store.writing(journal_lock) as conn:
        second, third = journal.append_in(conn, [("a", {"n": 2}), ("b", {"n": 3})])
    assert (second.seq, third.seq, third.prev_hash) == (2, 3, second.hash)
    assert second.at == third.at  # one transaction, one time
    assert journal.verify().ok and count_rows(store) == 3


def test_read_back_entries_equal_the_appended_ones(journal: Journal) -> None:
    appended = fill(journal, 4)
    assert list(journal.entries()) == appended
    assert list(journal.entries(after=2)) == appended[2:]


def test_entries_page_through_a_journal_longer_than_a_page(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_PAGE", 3)
    appended = fill(journal, 8)
    assert [e.seq for e in journal.entries()] == [e.seq for e in appended]
    assert journal.verify().ok


def test_payload_values_are_stored_as_plain_json(journal: Journal) -> None:
    entry = journal.append(
        "decision",
        {"when": datetime(2026, 1, 1, 1, 0, tzinfo=UTC), "roles": frozenset({"b", "a"}), "x": None},
    )
    assert entry.payload == {"when": "2026-01-01T01:00:00.000000Z", "roles": ["a", "b"], "x": None}
    assert next(journal.entries()).payload == entry.payload
    assert entry.at.tzinfo == UTC


def test_verify_of_an_intact_journal_is_ok(journal: Journal) -> None:
    fill(journal, 5)
    assert journal.verify() == journal_module.ChainReport(True, 5, None, "5 entries, chain intact")


def test_verify_of_an_empty_journal_is_ok(journal: Journal) -> None:
    report = journal.verify()
    assert (report.ok, report.entries, report.first_bad) == (True, 0, None)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda s: {"password": s}, id="value"),
        pytest.param(lambda s: {"nested": [{"dsn": f"postgresql://u:{s}@h/db"}]}, id="inside"),
        pytest.param(lambda s: {s: "key"}, id="key"),
    ],
)
def test_a_payload_holding_a_registered_secret_is_refused_and_nothing_written(
    journal: Journal, store: Store, payload: Callable[[str], dict[str, object]]
) -> None:
    fill(journal, 1)
    secret = generate_password().reveal()
    with pytest.raises(JournalError, match="contains a secret") as caught:
        journal.append("action", payload(secret))
    assert secret not in str(caught.value)
    assert count_rows(store) == 1
    assert journal.verify().ok


def test_a_secret_that_json_would_escape_is_still_caught(journal: Journal) -> None:
    secret = Secret('quo"te\\back' + uuid.uuid4().hex).reveal()
    with pytest.raises(JournalError, match="contains a secret"):
        journal.append("action", {"detail": f"password was {secret}"})


def test_a_secret_in_the_kind_is_refused_without_echoing_it(journal: Journal) -> None:
    secret = generate_password().reveal()
    with pytest.raises(JournalError) as caught:
        journal.append(f"kind-{secret}", {})
    assert secret not in str(caught.value)


def test_a_secret_object_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="Secret"):
        journal.append("action", {"credential": Secret("x")})


@pytest.mark.parametrize(
    "payload",
    [{"t": datetime(2026, 1, 1)}, {"n": float("nan")}, {"o": object()}],
    ids=["naive-datetime", "nan", "object"],
)
def test_a_payload_that_is_not_plain_json_is_refused(
    journal: Journal, payload: dict[str, object]
) -> None:
    with pytest.raises(JournalError, match="not JSON"):
        journal.append("action", payload)


def test_a_clock_without_time_zone_is_refused(store: Store) -> None:
    with pytest.raises(JournalError, match="time zone"):
        Journal(store, clock=lambda: datetime(2026, 1, 1)).append("action", {})


# ------------------------------------------------------------------ tampering


def swap_rows(store: Store, a: int, b: int) -> None:
    read = text("SELECT at, kind, payload, prev_hash, hash FROM journal WHERE seq = :s")
    with store.engine.begin() as conn:
        rows = {seq: conn.execute(read, {"s": seq}).one() for seq in (a, b)}
        for seq, other in ((a, b), (b, a)):
            conn.execute(
                text(
                    "UPDATE journal SET at = :at, kind = :kind, payload = :payload,"
                    " prev_hash = :prev_hash, hash = :hash WHERE seq = :seq"
                ),
                {**rows[other]._asdict(), "seq": seq},
            )


TAMPERING: dict[str, tuple[Callable[[Store], None], int, str]] = {
    "edited payload": (
        lambda s: sql_exec(s, "UPDATE journal SET payload = :p WHERE seq = 3", p='{"n":99}'),
        3,
        "entry 3 does not match its hash",
    ),
    # Both parse to the stored value {"n": 3, "op": "grant"}: only the stored text tells.
    "duplicate key added": (
        lambda s: sql_exec(
            s, "UPDATE journal SET payload = :p WHERE seq = 3", p='{"n":0,"n":3,"op":"grant"}'
        ),
        3,
        "entry 3 does not match its hash",
    ),
    "whitespace added": (
        lambda s: sql_exec(
            s, "UPDATE journal SET payload = :p WHERE seq = 3", p='{"n": 3, "op": "grant"}'
        ),
        3,
        "entry 3 does not match its hash",
    ),
    "edited kind": (
        lambda s: sql_exec(s, "UPDATE journal SET kind = 'other' WHERE seq = 2"),
        2,
        "entry 2 does not match its hash",
    ),
    "edited time": (
        lambda s: sql_exec(s, "UPDATE journal SET at = :t WHERE seq = 4", t=T0),
        4,
        "entry 4 does not match its hash",
    ),
    "edited hash": (
        lambda s: sql_exec(s, "UPDATE journal SET hash = :h WHERE seq = 2", h="f" * 64),
        2,
        "entry 2 does not match its hash",
    ),
    "deleted middle row": (
        lambda s: sql_exec(s, "DELETE FROM journal WHERE seq = 3"),
        3,
        "entry 3 is missing (next is 4)",
    ),
    "deleted first row": (
        lambda s: sql_exec(s, "DELETE FROM journal WHERE seq = 1"),
        1,
        "entry 1 is missing (next is 2)",
    ),
    "deleted last row": (
        lambda s: sql_exec(s, "DELETE FROM journal WHERE seq = 5"),
        5,
        "entries 5 to 5 are missing (the head records 5)",
    ),
    "truncated tail": (
        lambda s: sql_exec(s, "DELETE FROM journal WHERE seq >= 3"),
        3,
        "entries 3 to 5 are missing",
    ),
    "swapped rows": (lambda s: swap_rows(s, 2, 3), 2, "entry 2 does not link to entry 1"),
    "renumbered row": (
        lambda s: sql_exec(s, "UPDATE journal SET seq = 6 WHERE seq = 5"),
        5,
        "entry 5 is missing (next is 6)",
    ),
    "row appended behind lockstep's back": (
        lambda s: sql_exec(
            s,
            "INSERT INTO journal (seq, at, kind, payload, prev_hash, hash)"
            " SELECT 6, at, kind, payload, hash, hash FROM journal WHERE seq = 5",
        ),
        6,
        "entry 6 does not match its hash",
    ),
    "head rewound": (
        lambda s: sql_exec(s, "UPDATE journal_head SET hash = :h", h="e" * 64),
        5,
        "entry 5 does not match the hash the head records",
    ),
}


@pytest.mark.parametrize("case", TAMPERING, ids=list(TAMPERING))
def test_verify_names_the_first_tampered_entry(journal: Journal, store: Store, case: str) -> None:
    tamper, first_bad, reason = TAMPERING[case]
    fill(journal, 5)
    tamper(store)
    report = journal.verify()
    assert (report.ok, report.first_bad) == (False, first_bad), report
    assert reason in report.reason


def test_an_extra_entry_with_a_valid_hash_but_no_head_is_caught(
    journal: Journal, store: Store
) -> None:
    fill(journal, 2)
    sql_exec(
        store, "UPDATE journal_head SET seq = 1, hash = (SELECT hash FROM journal WHERE seq = 1)"
    )
    report = journal.verify()
    assert (report.ok, report.first_bad) == (False, 2)
    assert "not appended by lockstep" in report.reason


def test_a_missing_head_is_reported_and_stops_appends(journal: Journal, store: Store) -> None:
    fill(journal, 2)
    sql_exec(store, "DELETE FROM journal_head")
    report = journal.verify()
    assert (report.ok, report.first_bad, report.reason) == (
        False,
        None,
        "the journal head record is missing",
    )
    with pytest.raises(JournalError, match="head record is missing"):
        journal.append("action", {})
    assert count_rows(store) == 2


# ------------------------------------------------------------------ failing closed


def test_an_unwritable_journal_raises_journal_error(journal: Journal, store: Store) -> None:
    fill(journal, 1)
    sql_exec(store, "DROP TABLE journal")
    with pytest.raises(JournalError, match="cannot write the journal"):
        journal.append("intent", {"op": "revoke"})
    with pytest.raises(JournalError, match="cannot read the journal"):
        journal.verify()


def freeze_head(store: Store) -> None:
    if store.dialect == "sqlite":
        sql_exec(
            store,
            "CREATE TRIGGER frozen BEFORE UPDATE ON journal_head"
            " BEGIN SELECT RAISE(ABORT, 'journal head is frozen'); END",
        )
        return
    sql_exec(
        store,
        "CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'journal head is frozen'; END $$",
    )
    sql_exec(store, "CREATE TRIGGER frozen BEFORE UPDATE ON journal_head EXECUTE FUNCTION frozen()")


def test_a_failed_head_update_leaves_no_entry_behind(journal: Journal, store: Store) -> None:
    fill(journal, 2)
    freeze_head(store)
    with pytest.raises(JournalError, match="journal head is frozen"):
        journal.append("intent", {"op": "revoke"})
    assert count_rows(store) == 2
    assert journal.verify().ok


# ------------------------------------------------------------------ concurrency


def test_threads_appending_at_once_keep_one_chain(store: Store) -> None:
    journal = Journal(store)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(name: int) -> None:
        start.wait()
        try:
            for i in range(25):
                journal.append("action", {"worker": name, "i": i})
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread's assert
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = journal.verify()
    assert (report.ok, report.entries) == (True, 100), report
    times = [entry.at for entry in journal.entries()]
    assert times == sorted(times)


APPEND_AT_ONCE = """
import os, time
from lockstep.journal import Journal
from lockstep.store import Store
store = Store.open(os.environ["STATE_URL"])
time.sleep(max(0.0, float(os.environ["START_AT"]) - time.time()))
journal = Journal(store)
for i in range(30):
    journal.append("action", {"pid": os.getpid(), "i": i})
store.close()
"""


def test_processes_appending_at_once_keep_one_chain(store: Store, state_url: str) -> None:
    env = {**os.environ, "STATE_URL": state_url, "START_AT": str(time.time() + 2.0)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPEND_AT_ONCE], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    report = Journal(store).verify()
    assert (report.ok, report.entries) == (True, 120), report
    per_process: dict[int, list[int]] = {}
    for entry in Journal(store).entries():
        per_process.setdefault(entry.payload["pid"], []).append(entry.payload["i"])
    assert all(seen == list(range(30)) for seen in per_process.values())


def test_stored_payload_is_the_canonical_text(journal: Journal, store: Store) -> None:
    journal.append("action", {"b": 1, "a": "é"})
    with store.engine.connect() as conn:
        stored: str = conn.execute(text("SELECT payload FROM journal")).scalar_one()
    assert stored == '{"a":"é","b":1}'
    assert json.loads(stored) == {"a": "é", "b": 1}
