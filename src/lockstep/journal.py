"""The journal: an append-only, hash-chained record of every decision, action and check.

Each entry's hash covers the previous entry's hash and the entry's own seq, time, kind and
payload, so editing, deleting or reordering entries breaks the chain from that point on.
The head table records the last seq and hash in the same transaction as each append, which
catches what a chain alone cannot: a truncated tail.

Limits: someone with write access to the store who rewrites every later hash and the head
too goes undetected; anchoring the head elsewhere (a log service, a signed export) closes
that gap and is the job of the evidence exporters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from lockstep.errors import LockstepError
from lockstep.secret import Secret, holds_secret, redact
from lockstep.store import Store, StoreError
from lockstep.store.tables import journal, journal_head

GENESIS_HASH = "0" * 64
LOCK = journal_head  # what a transaction that appends must lock, before anything else
_PAGE = 500


class JournalError(LockstepError):
    """The journal cannot be written (or read): the caller must change nothing in any target."""

    code = "journal_unavailable"
    default_hint = "nothing more was changed; check the state store, then run lockstep audit verify"


@dataclass(frozen=True)
class Entry:
    seq: int
    at: datetime
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad: int | None
    reason: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Journal:
    def __init__(self, store: Store, clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._clock = clock

    def append(self, kind: str, payload: Mapping[str, Any]) -> Entry:
        """Record one entry in its own committed transaction, or raise JournalError."""
        try:
            with self._store.writing(LOCK) as conn:
                return self.append_in(conn, [(kind, payload)])[0]
        except StoreError as exc:
            raise JournalError(f"cannot write the journal: {exc}") from None

    def append_in(
        self, conn: Connection, items: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[Entry]:
        """Record entries within the caller's transaction, which must hold the journal's
        lock (``store.writing(journal.LOCK, ...)``): the entries commit with whatever else it
        writes, or not at all. Raises JournalError, and StoreError from the store."""
        bodies = [(kind, *_normalise(payload)) for kind, payload in items]
        for kind, body, _ in bodies:
            if _holds_secret(kind, body):
                raise JournalError(
                    f"refusing to journal a {redact(kind)!r} entry that contains a "
                    "secret; journal its fingerprint instead"
                )
        if not bodies:
            return []
        head = conn.execute(select(journal_head.c.seq, journal_head.c.hash)).one_or_none()
        if head is None:
            raise JournalError("the journal head record is missing; run `audit verify`")
        # Read under the lock, so that times never run backwards along the chain.
        at = self._now()
        seq, prev_hash = head.seq, head.hash
        entries, rows = [], []
        for kind, body, text in bodies:
            seq += 1
            entry = _sealed(seq, at, kind, body, text, prev_hash)
            entries.append(entry)
            rows.append(_row(entry, text))
            prev_hash = entry.hash
        conn.execute(insert(journal), rows)
        conn.execute(update(journal_head).values(seq=seq, hash=prev_hash))
        return entries

    def _now(self) -> datetime:
        at = self._clock()
        if at.tzinfo is None:
            raise JournalError("the journal clock returned a time without a time zone")
        return at.astimezone(UTC)

    def entries(self, after: int = 0) -> Iterator[Entry]:
        """Entries with seq > ``after``, oldest first, fetched a page at a time."""
        while True:
            try:
                with self._store.reading() as conn:
                    rows = conn.execute(
                        select(journal)
                        .where(journal.c.seq > after)
                        .order_by(journal.c.seq)
                        .limit(_PAGE)
                    ).all()
            except StoreError as exc:
                raise JournalError(f"cannot read the journal: {exc}") from None
            for row in rows:
                yield _entry(row)
            if len(rows) < _PAGE:
                return
            after = rows[-1].seq

    def verify(self) -> ChainReport:
        """Recompute the chain from the first entry and compare the end with the head."""
        try:
            with self._store.reading() as conn:
                head = conn.execute(select(journal_head.c.seq, journal_head.c.hash)).one_or_none()
                rows = conn.execution_options(yield_per=_PAGE).execute(
                    select(journal).order_by(journal.c.seq)
                )
                report = _check_chain(map(_entry, rows), head)
        except StoreError as exc:
            raise JournalError(f"cannot read the journal: {exc}") from None
        return report


def _check_chain(entries: Iterator[Entry], head: Row[Any] | None) -> ChainReport:
    count = 0
    prev_hash = GENESIS_HASH
    for entry in entries:
        expected = count + 1
        if entry.seq != expected:
            return _bad(count, expected, f"entry {expected} is missing (next is {entry.seq})")
        if entry.prev_hash != prev_hash:
            reason = f"entry {entry.seq} does not link to entry {entry.seq - 1}"
            return _bad(count, entry.seq, reason)
        if _seal(entry.seq, entry.at, entry.kind, entry.payload, prev_hash).hash != entry.hash:
            reason = f"entry {entry.seq} does not match its hash (edited after it was written)"
            return _bad(count, entry.seq, reason)
        prev_hash = entry.hash
        count += 1
    if head is None:
        return ChainReport(False, count, None, "the journal head record is missing")
    if head.seq > count:
        reason = f"entries {count + 1} to {head.seq} are missing (the head records {head.seq})"
        return _bad(count, count + 1, reason)
    if head.seq < count:
        reason = (
            f"entry {head.seq + 1} and later were not appended by lockstep (head is {head.seq})"
        )
        return _bad(count, head.seq + 1, reason)
    if head.hash != prev_hash:
        return _bad(count, count, f"entry {count} does not match the hash the head records")
    return ChainReport(True, count, None, f"{count} entries, chain intact")


def _bad(count: int, seq: int, reason: str) -> ChainReport:
    return ChainReport(False, count, seq, reason)


def _seal(seq: int, at: datetime, kind: str, payload: dict[str, Any], prev_hash: str) -> Entry:
    return _sealed(seq, at, kind, payload, _canonical(payload), prev_hash)


def _sealed(
    seq: int, at: datetime, kind: str, payload: dict[str, Any], text: str, prev_hash: str
) -> Entry:
    """The entry whose payload is ``payload``, canonically ``text``. Its hash covers the
    canonical record {"at", "kind", "payload", "seq"}, spelled out here with the keys in
    sorted order, so that a payload is serialised once and not again inside the record."""
    record = (
        f'{{"at":{_canonical(_iso(at))},"kind":{_canonical(kind)},"payload":{text},"seq":{seq}}}'
    )
    digest = hashlib.sha256((prev_hash + record).encode()).hexdigest()
    return Entry(seq, at, kind, payload, prev_hash, digest)


def _row(entry: Entry, text: str) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "kind": entry.kind,
        "payload": text,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _entry(row: Row[Any]) -> Entry:
    return Entry(row.seq, row.at, row.kind, json.loads(row.payload), row.prev_hash, row.hash)


def _normalise(payload: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The payload as it will read back from the store (plain JSON types only), and its
    canonical text."""
    try:
        text = _canonical(dict(payload))
        body: dict[str, Any] = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise JournalError(f"the journal payload is not JSON: {exc}") from None
    return body, text


def _canonical(value: object) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("a datetime without a time zone")
        return _iso(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Secret):
        raise TypeError("a Secret (journal its fingerprint instead)")
    raise TypeError(f"a value of type {type(value).__name__}")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _holds_secret(kind: str, body: dict[str, Any]) -> bool:
    return _any_value_holds([kind, body])


def _any_value_holds(value: object) -> bool:
    # Value by value rather than the JSON text: JSON escaping (a quote or a backslash in the
    # secret) would hide a secret from a search of the text, and most values are shorter
    # than any secret, so that searching them is nearly free.
    if isinstance(value, dict):
        return any(_any_value_holds(k) or _any_value_holds(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_any_value_holds(v) for v in value)
    return holds_secret(value if isinstance(value, str) else str(value))
