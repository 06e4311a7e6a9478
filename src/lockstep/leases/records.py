"""The lease records: one row per lease in the state store, and, while the lease lives, its
credential kept encrypted in the vault so that its revocation can be proven by trying it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, tuple_, update

from lockstep.connectors.base import Credential
from lockstep.credentials.vault import LOCK as vault_lock
from lockstep.credentials.vault import StoredCredential, Vault
from lockstep.errors import LockstepError
from lockstep.journal import LOCK as journal_lock
from lockstep.journal import Journal
from lockstep.secret import Secret
from lockstep.store import Store
from lockstep.store.tables import credentials, leases

Journaled = tuple[str, Mapping[str, Any]]  # a journal entry's kind and payload


class LeaseStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"  # ended on request, credential proven refused
    EXPIRED = "expired"  # ended by expiry, credential proven refused
    FAILED = "failed"  # issue or revocation not proven: the reaper tries again


class LeaseError(LockstepError):
    """A lease that cannot be issued, renewed or found. One clear line, never a secret."""

    code = "lease_refused"


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    identity: str
    target: str
    account: str  # the lease's own account in the target
    username: str  # what the workload logs in as (the access key id on AWS)
    fingerprint: str
    workload: str | None  # the workload that obtained it, None when issued from the CLI
    issued_at: datetime
    expires_at: datetime
    max_expires_at: datetime
    revoked_at: datetime | None
    status: LeaseStatus

    @property
    def awaiting_reaper(self) -> bool:
        """Expired by the clock, but not yet proven ended (``lockstep reap``, or the service,
        removes its account and proves the credential refused)."""
        return self.status is LeaseStatus.EXPIRED and self.revoked_at is None

    def fields(self) -> dict[str, Any]:
        """The lease as journaled and shown: every field, none of them secret."""
        return {
            "lease_id": self.id,
            "identity": self.identity,
            "target": self.target,
            "account": self.account,
            "username": self.username,
            "fingerprint": self.fingerprint,
            "workload": self.workload,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "max_expires_at": self.max_expires_at,
            "revoked_at": self.revoked_at,
            "status": str(self.status),
        }


class LeaseRecords:
    """Lease rows and kept lease credentials. Each method is one transaction."""

    def __init__(self, store: Store, vault: Vault, journal: Journal) -> None:
        self._store = store
        self._vault = vault
        self._journal = journal

    def get(self, lease_id: str) -> Lease:
        with self._store.reading() as conn:
            row = conn.execute(select(leases).where(leases.c.id == lease_id)).one_or_none()
        if row is None:
            raise LeaseError(f"no lease {lease_id!r}")
        return _lease(row)

    def list(
        self,
        identity: str | None = None,
        target: str | None = None,
        status: LeaseStatus | None = None,
    ) -> list[Lease]:
        query = select(leases).order_by(leases.c.issued_at, leases.c.id)
        if identity is not None:
            query = query.where(leases.c.identity == identity)
        if target is not None:
            query = query.where(leases.c.target == target)
        if status is not None:
            query = query.where(leases.c.status == str(status))
        with self._store.reading() as conn:
            return [_lease(row) for row in conn.execute(query).all()]

    def statuses(self, accounts: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The status of the newest record of each (target, account) that has one: what
        tells a lease lockstep issued from an account that only wears its prefix."""
        if not accounts:
            return {}
        query = (
            select(leases.c.target, leases.c.account, leases.c.status)
            .where(tuple_(leases.c.target, leases.c.account).in_(sorted(set(accounts))))
            .order_by(leases.c.issued_at, leases.c.id)
        )
        with self._store.reading() as conn:
            return {(r.target, r.account): r.status for r in conn.execute(query)}

    def insert(self, batch: Sequence[Lease], journaled: Sequence[Journaled]) -> None:
        """Record new leases and journal ``journaled``, in one transaction."""
        rows = [lease.fields() for lease in batch]
        for values in rows:
            values["id"] = values.pop("lease_id")
        with self._store.writing(journal_lock, leases) as conn:
            self._journal.append_in(conn, journaled)
            conn.execute(insert(leases), rows)

    def update(self, lease_id: str, **values: object) -> None:
        values = {k: str(v) if isinstance(v, LeaseStatus) else v for k, v in values.items()}
        with self._store.writing(lock=leases) as conn:
            conn.execute(update(leases).where(leases.c.id == lease_id).values(**values))

    def keep_credentials(
        self, issued: Sequence[tuple[Lease, Credential]], journaled: Sequence[Journaled]
    ) -> None:
        """Keep the leases' credentials and journal ``journaled``, in one transaction."""
        kept = [_kept(lease, credential) for lease, credential in issued]
        with self._store.writing(journal_lock, vault_lock) as conn:
            self._journal.append_in(conn, journaled)
            self._vault.put_in(conn, kept)

    def kept_credential(self, target: str, account: str) -> Credential | None:
        stored = self._vault.current(target, account)
        if stored is None:
            return None
        parts: Sequence[str] = json.loads(stored.secret.reveal())
        token = Secret(parts[1]) if len(parts) > 1 else None
        return Credential(stored.username, Secret(parts[0]), token)

    def settle(self, target: str, account: str, ended: Lease | None) -> None:
        """Record how a lease ended, and delete its credential, of no use any more, in the
        same transaction."""
        with self._store.writing(lock=leases) as conn:
            if ended is not None:
                conn.execute(
                    update(leases)
                    .where(leases.c.id == ended.id)
                    .values(status=str(ended.status), revoked_at=ended.revoked_at)
                )
            conn.execute(
                delete(credentials).where(
                    and_(credentials.c.target == target, credentials.c.account == account)
                )
            )


def _kept(lease: Lease, credential: Credential) -> StoredCredential:
    # A session token (AWS STS) is needed to try the credential, so it is kept with it.
    parts = [credential.secret.reveal()]
    if credential.token is not None:
        parts.append(credential.token.reveal())
    return StoredCredential(
        lease.target,
        lease.account,
        lease.identity,
        credential.username,
        Secret(json.dumps(parts)),
        credential.secret.fingerprint(),
        lease.issued_at,
        lease.expires_at,
    )


def _lease(row: Row[Any]) -> Lease:
    return Lease(
        id=row.id,
        identity=row.identity,
        target=row.target,
        account=row.account,
        username=row.username,
        fingerprint=row.fingerprint,
        workload=row.workload,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        max_expires_at=row.max_expires_at,
        revoked_at=row.revoked_at,
        status=LeaseStatus(row.status),
    )
