"""The journal: an append-only, hash-chained record of every decision, action and check.

Each entry's hash covers the previous entry's hash and the entry's own seq, time, kind and
payload, so editing, deleting or reordering entries breaks the chain from that point on.
The head table records the last seq and hash in the same transaction as each append, which
catches what a chain alone cannot: a truncated tail.

Verification hashes the text the store holds, never a re-serialisation of it: a payload
edited to a duplicate key or other whitespace, which would parse to the same value, does not
match its hash. Someone with write access to the store who rewrites every later hash and the
head too goes undetected by the chain alone; a signed checkpoint of the head kept elsewhere
(``lockstep.evidence.checkpoints``) catches that, and a rollback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, insert, select, update

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
    # The seq and hash of the last entry that checked out, and the hash found at the seq
    # asked for with ``watch`` (a checkpoint's): what a checkpoint is compared with.
    last: tuple[int, str] = field(default=(0, GENESIS_HASH), compare=False)
    watched: str | None = field(default=None, compare=False)


# One stored entry as its hash covers it: seq, time as ISO text, kind, payload text,
# previous hash, hash. The payload is the text the store holds, byte for byte.
RawEntry = tuple[int, str, str, str, str, str]


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

    @contextmanager
    def recording(self, *more: Table) -> Iterator[Connection]:
        """A transaction holding the journal's lock (and the locks of ``more``, in that
        order), for entries (``append_in``) that commit together with other state, or not
        at all: a batch's intents with its staged credentials, its results with the pending
        changes they close. Raises JournalError when it cannot commit."""
        try:
            with self._store.writing(LOCK, *more) as conn:
                yield conn
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
                return check_chain(raw_entries(conn), read_head(conn))
        except StoreError as exc:
            raise JournalError(f"cannot read the journal: {exc}") from None


def read_head(conn: Connection) -> tuple[int, str] | None:
    row = conn.execute(select(journal_head.c.seq, journal_head.c.hash)).one_or_none()
    return None if row is None else (int(row.seq), str(row.hash))


_RAW = "SELECT seq, at, kind, payload, prev_hash, hash FROM journal WHERE seq > {} ORDER BY seq"
_BATCH = 5000


def raw_entries(conn: Connection, after: int = 0) -> Iterator[RawEntry]:
    """Every entry with seq > ``after`` as stored, oldest first, through the driver's own
    cursor within the caller's transaction (a server-side cursor on PostgreSQL): no
    conversion but the time's, so that 1M entries are read in about a second."""
    dbapi: Any = conn.connection.dbapi_connection
    failure: Any = conn.dialect.loaded_dbapi.Error
    try:
        if conn.dialect.name == "postgresql":
            cursor = dbapi.cursor(name=f"lockstep_journal_{id(conn)}")
            cursor.itersize = _BATCH
            cursor.execute(_RAW.format("%s"), (after,))
        else:
            cursor = dbapi.cursor()
            cursor.execute(_RAW.format("?"), (after,))
        try:
            # Iterating the cursor (sqlite3's fetches a row at a time faster than fetchmany;
            # psycopg's named cursor fetches itersize rows a round trip).
            for seq, at, kind, payload, prev_hash, digest in cursor:
                if type(at) is str and len(at) == 26 and at[10] == " ":
                    yield seq, f"{at[:10]}T{at[11:]}Z", kind, payload, prev_hash, digest
                else:
                    yield seq, _at_text(at), kind, payload, prev_hash, digest
        finally:
            cursor.close()
    except failure as exc:
        lines = str(exc).strip().splitlines()
        raise StoreError(f"cannot read the journal: {redact(lines[0] if lines else '?')}") from None


def _at_text(value: object) -> str:
    """The time as the hash covers it. SQLite keeps the UTC time as 'YYYY-MM-DD HH:MM:SS.ffffff'
    (SQLAlchemy always writes the microseconds); PostgreSQL hands back an aware datetime. A
    value of any other shape was not written by lockstep and is left to fail the check."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return _iso(value)
    return repr(value)


def record_text(seq: int, at: str, kind_json: str, payload: str) -> str:
    """The canonical record an entry's hash covers: {"at", "kind", "payload", "seq"} with the
    keys in sorted order. ``kind_json`` is the kind as canonical JSON, ``payload`` the
    payload's canonical text as stored."""
    return f'{{"at":"{at}","kind":{kind_json},"payload":{payload},"seq":{seq}}}'


def entry_hash(prev_hash: str, record: str) -> str:
    return hashlib.sha256((prev_hash + record).encode()).hexdigest()


def check_chain(
    rows: Iterable[RawEntry],
    head: tuple[int, str] | None,
    *,
    start: tuple[int, str] = (0, GENESIS_HASH),
    watch: int | None = None,
) -> ChainReport:
    """Check that ``rows``, the entries after ``start`` (a seq and hash already trusted), link
    up, each matching its hash over its stored text, and end where ``head`` says. ``watch``:
    a seq whose hash to hand back (a checkpoint's)."""
    count, prev_hash = start
    watched = prev_hash if watch == count else None
    kinds: dict[str, str] = {}
    sha256 = hashlib.sha256
    for seq, at, kind, payload, stored_prev, digest in rows:
        expected = count + 1
        if seq != expected:
            reason = f"entry {expected} is missing (next is {seq})"
            return _bad(count, expected, reason, prev_hash, watched)
        if stored_prev != prev_hash:
            reason = f"entry {seq} does not link to entry {seq - 1}"
            return _bad(count, seq, reason, prev_hash, watched)
        kind_json = kinds.get(kind)
        if kind_json is None:
            kind_json = kinds[kind] = _canonical(kind)
        # A quote or a backslash in the time could move the record's field boundaries (a
        # forged time swallowing the kind); lockstep never writes one.
        if '"' in at or "\\" in at:
            reason = f"entry {seq} does not match its hash (edited after it was written)"
            return _bad(count, seq, reason, prev_hash, watched)
        # record_text, spelled out in the loop: 1M entries hash in about a second.
        record = f'{prev_hash}{{"at":"{at}","kind":{kind_json},"payload":{payload},"seq":{seq}}}'
        if sha256(record.encode()).hexdigest() != digest:
            reason = f"entry {seq} does not match its hash (edited after it was written)"
            return _bad(count, seq, reason, prev_hash, watched)
        prev_hash = digest
        count = seq
        if seq == watch:
            watched = digest
    return _ended(count, prev_hash, head, watched)


def _ended(
    count: int, prev_hash: str, head: tuple[int, str] | None, watched: str | None
) -> ChainReport:
    if head is None:
        last = (count, prev_hash)
        return ChainReport(False, count, None, "the journal head record is missing", last, watched)
    head_seq, head_hash = head
    if head_seq > count:
        reason = f"entries {count + 1} to {head_seq} are missing (the head records {head_seq})"
        return _bad(count, count + 1, reason, prev_hash, watched)
    if head_seq < count:
        reason = (
            f"entry {head_seq + 1} and later were not appended by lockstep (head is {head_seq})"
        )
        return _bad(count, head_seq + 1, reason, prev_hash, watched)
    if head_hash != prev_hash:
        reason = f"entry {count} does not match the hash the head records"
        return _bad(count, count, reason, prev_hash, watched)
    last = (count, prev_hash)
    return ChainReport(True, count, None, f"{count} entries, chain intact", last, watched)


def _bad(count: int, seq: int, reason: str, prev_hash: str, watched: str | None) -> ChainReport:
    return ChainReport(False, count, seq, reason, (count, prev_hash), watched)


def _sealed(
    seq: int, at: datetime, kind: str, payload: dict[str, Any], text: str, prev_hash: str
) -> Entry:
    """The entry whose payload is ``payload``, canonically ``text``, which is what the hash
    covers (see ``record_text``): a payload is serialised once, and not again inside the
    record."""
    digest = entry_hash(prev_hash, record_text(seq, _iso(at), _canonical(kind), text))
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
