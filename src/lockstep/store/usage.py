"""Runtime use of accounts, kept compactly: one last-seen time per account and entitlement.

Connectors that can observe use (``ObservesUsage``) report it every pass; most passes see
nothing newer than what is stored, so a pass writes only the keys whose time moved forward.
An account read for the first time gets a "first-seen" row, so that dormancy has a clock to
start from even on targets that cannot observe use at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from lockstep.connectors.base import Usage
from lockstep.store import Store
from lockstep.store.tables import usage as table

FIRST_SEEN = "first-seen"
ACCOUNT = ""  # the entitlement key of use of the account itself

Key = tuple[str, str]


class UsageStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self,
        target: str,
        usages: Iterable[Usage],
        accounts_seen: Iterable[str],
        now: datetime,
    ) -> int:
        """Store one read's observations of ``target``; returns how many rows were written.

        ``accounts_seen`` are the accounts the read found: those with no use on record yet
        are stamped first seen ``now``. A time in the future (clock skew) counts as ``now``,
        so that it cannot hold a key still for ever.
        """
        latest = _latest(usages, now)
        seen = set(accounts_seen)
        with self._store.reading() as conn:
            stored = _stored(conn, target)
        newer = [
            _row(target, key, at, source)
            for key, (at, source) in latest.items()
            if key not in stored or at > stored[key]
        ]
        first = [
            _row(target, (account, ACCOUNT), now, FIRST_SEEN)
            for account in sorted(seen)
            if (account, ACCOUNT) not in stored and (account, ACCOUNT) not in latest
        ]
        if not newer and not first:
            return 0
        with self._store.writing(lock=table) as conn:
            # Both statements guard against a concurrent writer that got there first: a time
            # only ever moves forward, and a first-seen stamp never overwrites real use.
            written = upsert_newer(conn, table, newer, "last_seen")
            written += insert_missing(conn, table, first)
        return written

    def last_used(self, target: str | None = None) -> dict[Key, datetime]:
        """When each account (of ``target``, or of every target) was last seen in use, or
        first seen at all: the ``last_used`` the plan reads dormancy from."""
        query = select(table.c.target, table.c.account, table.c.last_seen).where(
            table.c.entitlement == ACCOUNT
        )
        if target is not None:
            query = query.where(table.c.target == target)
        with self._store.reading() as conn:
            return {(row.target, row.account): row.last_seen for row in conn.execute(query)}

    def forget(self, target: str, account: str) -> int:
        """Drop an account's use history, once the account has been deleted."""
        return self.forget_all([(target, account)])

    def forget_all(self, accounts: Iterable[tuple[str, str]]) -> int:
        """``forget`` for many accounts (target, account), in one commit."""
        keys = sorted(set(accounts))
        if not keys:
            return 0
        gone = 0
        with self._store.writing(lock=table) as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                where = tuple_(table.c.target, table.c.account).in_(chunk)
                gone += conn.execute(delete(table).where(where)).rowcount
        return gone


def upsert_newer(
    conn: Connection, into: Table, rows: Sequence[Mapping[str, Any]], column: str
) -> int:
    """Insert ``rows``, or move ``column`` of the existing ones forward where theirs is later.

    One statement for the whole batch (executed with many parameter sets, which the drivers
    send in bulk), never one per row; a value never moves backwards, whatever another writer
    did in between. Returns the rows inserted or updated.
    """
    if not rows:
        return 0
    keys = [c.name for c in into.primary_key.columns]
    stmt = _insert(conn, into)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={name: stmt.excluded[name] for name in rows[0] if name not in keys},
        where=into.c[column] < stmt.excluded[column],
    )
    return conn.execute(stmt, list(rows)).rowcount


def insert_missing(conn: Connection, into: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert the ``rows`` whose key is not there yet, in one statement; leave the others."""
    if not rows:
        return 0
    keys = [c.name for c in into.primary_key.columns]
    stmt = _insert(conn, into).on_conflict_do_nothing(index_elements=keys)
    return conn.execute(stmt, list(rows)).rowcount


def _insert(conn: Connection, into: Table) -> postgresql.Insert | sqlite.Insert:
    # Drivers report no row count for an INSERT unless asked to keep it.
    if conn.dialect.name == "postgresql":
        return postgresql.insert(into).execution_options(preserve_rowcount=True)
    return sqlite.insert(into).execution_options(preserve_rowcount=True)


def _latest(usages: Iterable[Usage], now: datetime) -> dict[Key, tuple[datetime, str]]:
    latest: dict[Key, tuple[datetime, str]] = {}

    def note(key: Key, at: datetime, source: str) -> None:
        if key not in latest or at > latest[key][0]:
            latest[key] = (at, source)

    for use in usages:
        if use.last_used.tzinfo is None:
            raise ValueError(
                f"use of account {use.account!r} was reported at a naive time; "
                "connectors report aware UTC times"
            )
        at = min(use.last_used, now)
        note((use.account, use.entitlement or ACCOUNT), at, use.source)
        if use.entitlement:
            # Using an entitlement is using the account: dormancy is read at account level.
            note((use.account, ACCOUNT), at, use.source)
    return latest


def _stored(conn: Connection, target: str) -> dict[Key, datetime]:
    rows = conn.execute(
        select(table.c.account, table.c.entitlement, table.c.last_seen).where(
            table.c.target == target
        )
    )
    return {(row.account, row.entitlement): row.last_seen for row in rows}


def _row(target: str, key: Key, at: datetime, source: str) -> dict[str, Any]:
    account, entitlement = key
    return {
        "target": target,
        "account": account,
        "entitlement": entitlement,
        "last_seen": at,
        "source": source,
    }
