"""Credentials lockstep issued, kept encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256).

A rotated credential is not deleted at once: it stays, retired and encrypted, so that
verification can prove the target now refuses it. ``purge_retired`` drops what is no
longer needed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)

from lockstep.credentials.keys import KEY_ENV, VaultError, checked_key, load_key
from lockstep.secret import Secret
from lockstep.store import Store
from lockstep.store.tables import credentials, pending_credentials

LOCK = credentials  # what a transaction that stores credentials must lock
__all__ = [
    "KEY_ENV",
    "LOCK",
    "PendingCredential",
    "StoredCredential",
    "Vault",
    "VaultError",
    "load_key",
]

_CURRENT = "current"
_RETIRED = "retired"
_T = TypeVar("_T")
# A change to stage: target, account, identity, op, username and its new secret (None for
# one that sets none).
Staging = tuple[str, str, str | None, str, str, Secret | None]


@dataclass(frozen=True)
class StoredCredential:
    target: str
    account: str
    identity: str | None
    username: str
    secret: Secret
    fingerprint: str
    issued_at: datetime
    expires_at: datetime | None


# An account's current credential (None: it has none) and its retired ones, newest first.
Held = tuple[StoredCredential | None, list[StoredCredential]]


@dataclass(frozen=True)
class PendingCredential:
    """A credential change under way: stored before the target is changed, gone once the
    change is complete (promoted to current) or rolled back (discarded)."""

    id: int
    target: str
    account: str
    identity: str | None
    op: str
    username: str
    secret: Secret | None  # None for a change that issues no secret (a deletion)
    fingerprint: str | None
    created_at: datetime


class Vault:
    def __init__(self, store: Store, key: bytes) -> None:
        self._store = store
        self._fernet = Fernet(checked_key(key, "the vault key is not a valid Fernet key"))
        # A key of its own for sealing saved plans, derived so that a seal says nothing of
        # the key that encrypts credentials.
        self._seal_key = hmac.new(key, b"lockstep saved plan", hashlib.sha256).digest()

    def seal(self, data: bytes) -> str:
        """An HMAC of ``data`` under this vault's key: what proves a saved plan was written
        by someone holding it, and not changed since."""
        return hmac.new(self._seal_key, data, hashlib.sha256).hexdigest()

    def put(
        self,
        target: str,
        account: str,
        identity: str | None,
        username: str,
        secret: Secret,
        issued_at: datetime,
        expires_at: datetime | None = None,
    ) -> StoredCredential:
        """Store a new current credential; the previous current one becomes retired."""
        stored = StoredCredential(
            target, account, identity, username, secret, secret.fingerprint(), issued_at, expires_at
        )
        with self._store.writing(LOCK) as conn:
            self.put_in(conn, [stored])
        return stored

    def put_in(self, conn: Connection, items: Sequence[StoredCredential]) -> None:
        """Store new current credentials within the caller's transaction, which must hold
        ``LOCK``, each retiring its account's previous current one. Each account appears at
        most once."""
        accounts = sorted({(item.target, item.account) for item in items})
        if len(accounts) != len(items):
            raise ValueError("an account appears twice among the credentials to store")
        if not items:
            return
        created_at = datetime.now(UTC)
        rows = [
            {
                "target": item.target,
                "account": item.account,
                "identity": item.identity,
                "username": item.username,
                "ciphertext": self._fernet.encrypt(
                    _sealed(item.target, item.account, item.username, item.secret)
                ).decode(),
                "fingerprint": item.fingerprint,
                "issued_at": item.issued_at,
                "expires_at": item.expires_at,
                "status": _CURRENT,
                "created_at": created_at,
            }
            for item in items
        ]
        conn.execute(
            update(credentials)
            .where(
                tuple_(credentials.c.target, credentials.c.account).in_(accounts),
                credentials.c.status == _CURRENT,
            )
            .values(status=_RETIRED)
        )
        conn.execute(insert(credentials), rows)

    def stage(
        self,
        target: str,
        account: str,
        identity: str | None,
        op: str,
        username: str,
        secret: Secret | None,
    ) -> PendingCredential:
        """Record a change about to be made to the target, with its new secret encrypted,
        before the target is touched: the first phase of a two-phase change."""
        with self._store.writing(LOCK, pending_credentials) as conn:
            return self.stage_in(conn, [(target, account, identity, op, username, secret)])[0]

    def stage_in(self, conn: Connection, items: Sequence[Staging]) -> list[PendingCredential]:
        """``stage`` for many changes, within the caller's transaction, which must hold
        ``LOCK`` and ``pending_credentials`` (in that order, after the journal's lock when
        their intents commit with them)."""
        if not items:
            return []
        now = datetime.now(UTC)
        rows = [
            {
                "target": target,
                "account": account,
                "identity": identity,
                "op": op,
                "username": username,
                "ciphertext": self._seal(target, account, username, secret),
                "fingerprint": None if secret is None else secret.fingerprint(),
                "created_at": now,
            }
            for target, account, identity, op, username, secret in items
        ]
        inserted = conn.execute(
            insert(pending_credentials).returning(
                pending_credentials.c.id, sort_by_parameter_order=True
            ),
            rows,
        )
        ids: list[int] = list(inserted.scalars())
        return [
            PendingCredential(
                new_id,
                target,
                account,
                identity,
                op,
                username,
                secret,
                None if secret is None else secret.fingerprint(),
                now,
            )
            for new_id, (target, account, identity, op, username, secret) in zip(
                ids, items, strict=True
            )
        ]

    def restage(
        self, pending: PendingCredential, username: str, secret: Secret
    ) -> PendingCredential:
        """The target minted its own credential instead of taking the staged one (AWS access
        keys): the pending change now holds what the target returned."""
        sealed = self._seal(pending.target, pending.account, username, secret)
        with self._store.writing(LOCK, pending_credentials) as conn:
            conn.execute(
                update(pending_credentials)
                .where(pending_credentials.c.id == pending.id)
                .values(username=username, ciphertext=sealed, fingerprint=secret.fingerprint())
            )
        return PendingCredential(
            pending.id,
            pending.target,
            pending.account,
            pending.identity,
            pending.op,
            username,
            secret,
            secret.fingerprint(),
            pending.created_at,
        )

    def promote(self, pending: PendingCredential, issued_at: datetime) -> StoredCredential:
        """The second phase: the pending credential becomes current (the previous current
        one retired), unless it already is. The pending record stays until ``discard``,
        which comes once the change's result is journaled: a crash in between still leaves
        the change for the next pass to close."""
        with self._store.writing(LOCK) as conn:
            return self.promote_in(conn, [pending], issued_at)[0]

    def promote_all(
        self, pending: Sequence[PendingCredential], issued_at: datetime
    ) -> list[StoredCredential]:
        """``promote`` for many changes (one per account), in one commit."""
        with self._store.writing(LOCK) as conn:
            return self.promote_in(conn, pending, issued_at)

    def promote_in(
        self, conn: Connection, pending: Sequence[PendingCredential], issued_at: datetime
    ) -> list[StoredCredential]:
        """``promote`` for many changes (one per account), within the caller's transaction,
        which must hold ``LOCK``."""
        stored = []
        for p in pending:
            if p.secret is None:
                raise ValueError("a pending change without a secret cannot become a credential")
            stored.append(
                StoredCredential(
                    p.target,
                    p.account,
                    p.identity,
                    p.username,
                    p.secret,
                    p.secret.fingerprint(),
                    issued_at,
                    None,
                )
            )
        already: set[tuple[str, str, str]] = set()
        for chunk in _chunks([(s.target, s.account) for s in stored]):
            already |= {
                (r.target, r.account, r.fingerprint)
                for r in conn.execute(
                    select(
                        credentials.c.target, credentials.c.account, credentials.c.fingerprint
                    ).where(
                        tuple_(credentials.c.target, credentials.c.account).in_(chunk),
                        credentials.c.status == _CURRENT,
                    )
                )
            }
        self.put_in(
            conn, [s for s in stored if (s.target, s.account, s.fingerprint) not in already]
        )
        return stored

    def discard(self, pending: PendingCredential) -> None:
        """The change is over: its result journaled, or rolled back."""
        with self._store.writing(LOCK, pending_credentials) as conn:
            self.discard_in(conn, [pending])

    def discard_in(self, conn: Connection, pending: Sequence[PendingCredential]) -> None:
        """``discard`` for many changes, within the caller's transaction (which holds ``LOCK``
        and ``pending_credentials``): with the results that close them, or not at all."""
        for chunk in _chunks([p.id for p in pending]):
            conn.execute(delete(pending_credentials).where(pending_credentials.c.id.in_(chunk)))

    def pending(self) -> list[PendingCredential]:
        """Every change under way, oldest first."""
        with self._store.reading() as conn:
            rows = list(
                conn.execute(select(pending_credentials).order_by(pending_credentials.c.id)).all()
            )
        return [self._open_pending(row) for row in rows]

    def _seal(self, target: str, account: str, username: str, secret: Secret | None) -> str | None:
        if secret is None:
            return None
        return self._fernet.encrypt(_sealed(target, account, username, secret)).decode()

    def _open_pending(self, row: Row[Any]) -> PendingCredential:
        secret = None
        if row.ciphertext is not None:
            secret = self._decrypt(row, f"{row.target}/{row.account} (pending)")
        return PendingCredential(
            row.id,
            row.target,
            row.account,
            row.identity,
            row.op,
            row.username,
            secret,
            row.fingerprint,
            row.created_at,
        )

    def current(self, target: str, account: str) -> StoredCredential | None:
        rows = self._select(target, account, _CURRENT)
        return self._open(rows[0]) if rows else None

    def held(self, target: str, accounts: Iterable[str] | None = None) -> dict[str, Held]:
        """The credentials kept for the accounts of ``target`` (every account, or those
        named) in few queries: each account's current one and its retired ones, newest
        first."""
        query = select(credentials).where(credentials.c.target == target)
        order = (credentials.c.account, credentials.c.id.desc())
        with self._store.reading() as conn:
            if accounts is None:
                rows = list(conn.execute(query.order_by(*order)).all())
            else:
                rows = [
                    row
                    for chunk in _chunks(sorted(set(accounts)))
                    for row in conn.execute(
                        query.where(credentials.c.account.in_(chunk)).order_by(*order)
                    ).all()
                ]
        found: dict[str, Held] = {}
        for row in rows:
            current, retired = found.get(row.account, (None, []))
            if row.status == _CURRENT:
                current = self._open(row)
            else:
                retired.append(self._open(row))
            found[row.account] = (current, retired)
        return found

    def issued_times(self) -> dict[tuple[str, str], datetime]:
        """When each account's current credential was issued, in one query and without
        decrypting anything: what rotation planning needs on every pass."""
        with self._store.reading() as conn:
            rows = conn.execute(
                select(credentials.c.target, credentials.c.account, credentials.c.issued_at).where(
                    credentials.c.status == _CURRENT
                )
            )
            return {(r.target, r.account): r.issued_at for r in rows}

    def current_fingerprints(self) -> dict[tuple[str, str], str]:
        """Each account's current credential's fingerprint, without decrypting anything."""
        with self._store.reading() as conn:
            rows = conn.execute(
                select(
                    credentials.c.target, credentials.c.account, credentials.c.fingerprint
                ).where(credentials.c.status == _CURRENT)
            )
            return {(r.target, r.account): r.fingerprint for r in rows}

    def retired(self, target: str, account: str) -> list[StoredCredential]:
        """Retired credentials of one account, newest first."""
        return [self._open(row) for row in self._select(target, account, _RETIRED)]

    def purge_retired(self, target: str, account: str, keep: int = 1) -> int:
        """Delete all but the ``keep`` newest retired credentials; returns how many went."""
        return self.purge_retired_of([(target, account)], keep)

    def purge_retired_of(self, accounts: Iterable[tuple[str, str]], keep: int = 1) -> int:
        """``purge_retired`` for many accounts (target, account), in one commit, and none at
        all when none of them keeps more than ``keep``; returns how many went."""
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        over = (
            select(credentials.c.target, credentials.c.account)
            .where(credentials.c.status == _RETIRED)
            .group_by(credentials.c.target, credentials.c.account)
            .having(func.count() > keep)
        )
        with self._store.reading() as conn:
            crowded = {(r.target, r.account) for r in conn.execute(over)}
        purged = sorted(crowded & set(accounts))
        if not purged:
            return 0
        gone = 0
        with self._store.writing(lock=credentials) as conn:
            for target, account in purged:
                kept = (
                    select(credentials.c.id)
                    .where(_for(target, account), credentials.c.status == _RETIRED)
                    .order_by(credentials.c.id.desc())
                    .limit(keep)
                )
                gone += conn.execute(
                    delete(credentials).where(
                        _for(target, account),
                        credentials.c.status == _RETIRED,
                        credentials.c.id.not_in(kept.scalar_subquery()),
                    )
                ).rowcount
        return gone

    def _select(self, target: str, account: str, status: str) -> list[Row[Any]]:
        with self._store.reading() as conn:
            return list(
                conn.execute(
                    select(credentials)
                    .where(_for(target, account), credentials.c.status == status)
                    .order_by(credentials.c.id.desc())
                ).all()
            )

    def _open(self, row: Row[Any]) -> StoredCredential:
        return StoredCredential(
            row.target,
            row.account,
            row.identity,
            row.username,
            self._decrypt(row, f"{row.target}/{row.account}"),
            row.fingerprint,
            row.issued_at,
            row.expires_at,
        )

    def _decrypt(self, row: Row[Any], where: str) -> Secret:
        try:
            sealed = json.loads(self._fernet.decrypt(row.ciphertext.encode()))
        except InvalidToken:
            raise VaultError(
                f"cannot decrypt the stored credential of {where}: LOCKSTEP_KEY does not "
                "match the key it was encrypted with (or the ciphertext was altered)"
            ) from None
        # The ciphertext names its account: a ciphertext copied onto another row is caught.
        if [sealed["target"], sealed["account"], sealed["username"]] != [
            row.target,
            row.account,
            row.username,
        ]:
            raise VaultError(f"the stored credential of {where} was encrypted for another account")
        return Secret(sealed["secret"])


def _sealed(target: str, account: str, username: str, secret: Secret) -> bytes:
    plain = {"target": target, "account": account, "username": username, "secret": secret.reveal()}
    return json.dumps(plain).encode()


def _chunks(items: Sequence[_T], size: int = 500) -> Iterator[Sequence[_T]]:
    """``items`` a few hundred at a time: SQLite limits the variables of one statement."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _for(target: str, account: str) -> ColumnElement[bool]:
    return and_(credentials.c.target == target, credentials.c.account == account)
