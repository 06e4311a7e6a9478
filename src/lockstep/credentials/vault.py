"""Credentials lockstep issued, kept encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256).

A rotated credential is not deleted at once: it stays, retired and encrypted, so that
verification can prove the target now refuses it. ``purge_retired`` drops what is no
longer needed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ColumnElement, Connection, Row, and_, delete, insert, select, tuple_, update

from lockstep.errors import LockstepError
from lockstep.secret import Secret
from lockstep.store import Store
from lockstep.store.tables import credentials, pending_credentials

KEY_ENV = "LOCKSTEP_KEY"
KEY_FILE = "key"
LOCK = credentials  # what a transaction that stores credentials must lock
_CURRENT = "current"
_RETIRED = "retired"


class VaultError(LockstepError):
    """The key or a stored credential cannot be used. The message holds no secret."""

    code = "vault_unusable"
    default_hint = "check LOCKSTEP_KEY, or the key file in the state directory (.lockstep/key)"


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


def load_key(state_dir: Path) -> bytes:
    """The vault key: ``LOCKSTEP_KEY`` if set, else ``state_dir/key``, created on first use.
    The state directory, where it exists, is checked first (see ``check_private_dir``)."""
    check_private_dir(state_dir)
    from_env = os.environ.get(KEY_ENV)
    if from_env is not None:
        return _checked(from_env.strip().encode(), f"{KEY_ENV} is not a valid Fernet key")
    path = state_dir / KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def _checked(key: bytes, problem: str) -> bytes:
    try:
        Fernet(key)
    except ValueError:
        raise VaultError(
            f"{problem} (expected 32 url-safe base64-encoded bytes, as made by "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'`)"
        ) from None
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise VaultError(f"cannot read the key file {path}: {exc.strerror}") from None
    try:
        _check_key_file(path, os.fstat(fd))
        # A key is 45 bytes; one read of a regular file returns all of it.
        key = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    return _checked(key, f"the key file {path} does not hold a valid Fernet key")


def check_private_dir(path: Path) -> None:
    """The state directory (``.lockstep``) holds the key and the state: it must be a real
    directory (not a link), owned by the user lockstep runs as, and writable by nobody else.
    Checked at every start; absent, it is created 0700 when first needed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise VaultError(f"the state directory {path} is not a directory (a link is refused)")
    _check_owner(path, info, "state directory")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise VaultError(
            f"the state directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 700 {path}"
        )


def _check_owner(path: Path, info: os.stat_result, what: str) -> None:
    if info.st_uid != os.geteuid():
        raise VaultError(
            f"the {what} {path} is owned by uid {info.st_uid}, not by the user lockstep runs "
            f"as ({os.geteuid()}): refused"
        )


def _check_key_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise VaultError(f"the key file {path} is not a regular file")
    _check_owner(path, info, "key file")
    if info.st_mode & 0o077:
        raise VaultError(
            f"the key file {path} is accessible to group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )


def _create_key_file(path: Path) -> bytes:
    """Write a new key under a temporary name, then link it into place.

    The file is 0600 from its creation, and linking fails if another process won the race,
    so nobody ever reads a half-written key: the loser discards its key and reads the file.
    """
    key = Fernet.generate_key()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return _read_key_file(path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise VaultError(f"cannot create the key file {path}: {exc.strerror}") from None
    finally:
        temp.unlink(missing_ok=True)
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Vault:
    def __init__(self, store: Store, key: bytes) -> None:
        self._store = store
        self._fernet = Fernet(_checked(key, "the vault key is not a valid Fernet key"))
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
        now = datetime.now(UTC)
        fingerprint = None if secret is None else secret.fingerprint()
        row = {
            "target": target,
            "account": account,
            "identity": identity,
            "op": op,
            "username": username,
            "ciphertext": self._seal(target, account, username, secret),
            "fingerprint": fingerprint,
            "created_at": now,
        }
        with self._store.writing(LOCK, pending_credentials) as conn:
            new_id = conn.execute(insert(pending_credentials).values(row)).inserted_primary_key
        assert new_id is not None
        return PendingCredential(
            int(new_id[0]), target, account, identity, op, username, secret, fingerprint, now
        )

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
        if pending.secret is None:
            raise ValueError("a pending change without a secret cannot become a credential")
        stored = StoredCredential(
            pending.target,
            pending.account,
            pending.identity,
            pending.username,
            pending.secret,
            pending.secret.fingerprint(),
            issued_at,
            None,
        )
        with self._store.writing(LOCK) as conn:
            already = conn.execute(
                select(credentials.c.id).where(
                    _for(pending.target, pending.account),
                    credentials.c.status == _CURRENT,
                    credentials.c.fingerprint == stored.fingerprint,
                )
            ).first()
            if already is None:
                self.put_in(conn, [stored])
        return stored

    def discard(self, pending: PendingCredential) -> None:
        """The change is over: its result journaled, or rolled back."""
        with self._store.writing(LOCK, pending_credentials) as conn:
            conn.execute(delete(pending_credentials).where(pending_credentials.c.id == pending.id))

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
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        with self._store.writing(lock=credentials) as conn:
            kept = (
                select(credentials.c.id)
                .where(_for(target, account), credentials.c.status == _RETIRED)
                .order_by(credentials.c.id.desc())
                .limit(keep)
            )
            result = conn.execute(
                delete(credentials).where(
                    _for(target, account),
                    credentials.c.status == _RETIRED,
                    credentials.c.id.not_in(kept.scalar_subquery()),
                )
            )
        return result.rowcount

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


def _for(target: str, account: str) -> ColumnElement[bool]:
    return and_(credentials.c.target == target, credentials.c.account == account)
