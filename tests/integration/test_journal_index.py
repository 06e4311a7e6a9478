"""The dashboard's journal index gives each account the history a full search of the journal
gives (``read_history``), on both state stores, while the journal keeps growing."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.dashboard import journal_index
from lockstep.dashboard.journal_index import JournalIndex
from lockstep.evidence.history import History, read_history
from lockstep.journal import Journal
from lockstep.store import Store

pytest_plugins = ("support.stores",)

HOSTILE = [
    ("pg", "app"),
    ("pg", 'we"ird; DROP ROLE x; --'),
    ("pg", "100%_off\\"),
    ("ldap", "cn=a,ou=b"),
    ("pg", "app2"),  # one whose name contains another's
]


def _result(target: str, account: str, op: str, ent: str | None, status: str) -> dict[str, Any]:
    return {
        "target": target,
        "account": account,
        "identity": "svc",
        "op": op,
        "entitlement": ent,
        "status": status,
        "checks": [{"entitlement": ent, "expected": "present", "actual": "present"}],
    }


def _fill(journal: Journal, round_: int) -> None:
    for i, (target, account) in enumerate(HOSTILE):
        journal.append("intent", {"target": target, "account": account, "op": "grant"})
        journal.append("result", _result(target, account, "create_account", None, "verified"))
        ent = f"SELECT on t{round_}{i}"
        journal.append("result", _result(target, account, "grant", ent, "verified"))
        journal.append("delivery", {"target": target, "account": account, "fingerprint": "f"})
    failed = [{"target": "pg", "account": "app", "entitlement": None}]
    journal.append("verification", {"in_sync": False, "checks": 10, "failed": failed})
    journal.append("verification", {"in_sync": True, "checks": 10, "failed": []})
    failed = [{"target": "pg", "account": 'we"ird; DROP ROLE x; --', "entitlement": None}]
    journal.append("verification", {"in_sync": False, "checks": 10, "failed": failed})
    journal.append("result", _result("pg", "app", "revoke", "x", "failed"))


def _said(history: History) -> dict[str, Any]:
    keys = sorted(history.actions)
    return {
        "actions": {k: [e.seq for e in history.actions[k]] for k in keys},
        "verified": {k: history.last_verified(k) for k in HOSTILE},
        "entitlement": {k: history.last_verified(k, "SELECT on t00") for k in HOSTILE},
        "enforced": {k: history.enforced(k) for k in HOSTILE},
        "credential": {k: history.credential(k) for k in HOSTILE},
        "trail": {k: history.trail(k) for k in HOSTILE},
    }


@pytest.mark.parametrize("page", [3, journal_index.PAGE])
def test_index_agrees_with_a_search_of_the_journal(
    store: Store, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_index, "PAGE", page)
    journal = Journal(store)
    index = JournalIndex(store)
    index.catch_up()
    assert index.seq == 0
    _fill(journal, 0)
    index.catch_up()
    for keys in (set(HOSTILE), {HOSTILE[0]}, {HOSTILE[1], HOSTILE[2]}):
        assert _said(index.history(keys)) == _said(read_history(store, keys))
    _fill(journal, 1)  # appended after the first catch-up: only the new entries are read
    before = index.seq
    index.catch_up()
    assert index.seq > before
    assert _said(index.history(set(HOSTILE))) == _said(read_history(store, set(HOSTILE)))


def test_a_clean_verification_drops_the_ones_before_it(store: Store) -> None:
    journal = Journal(store)
    failed = [{"target": "pg", "account": "app", "entitlement": None}]
    for _ in range(5):
        journal.append("verification", {"in_sync": False, "checks": 3, "failed": failed})
    clean = journal.append("verification", {"in_sync": True, "checks": 3, "failed": []})
    index = JournalIndex(store)
    index.catch_up()
    history = index.history({("pg", "app")})
    assert [e.seq for e in history.verifications] == [clean.seq]
    assert history.last_verified(("pg", "app")) == read_history(
        store, {("pg", "app")}
    ).last_verified(("pg", "app"))


def test_an_unknown_account_has_no_history(store: Store) -> None:
    index = JournalIndex(store)
    _fill(Journal(store), 0)
    index.catch_up()
    history = index.history({("pg", "nobody")})
    assert history.actions == {}
    assert history.last_verified(("pg", "nobody")) is not None  # the clean verification
