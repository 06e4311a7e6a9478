"""Zero-downtime rotation on LDAP: userPassword may hold several values, and a simple bind
succeeds with any of them.

``add_credential`` adds a value in clear, which ppolicy (``olcPPolicyHashCleartext``) hashes on
arrival. ``retire_credential`` removes exactly the old one. The directory only deletes a value
named exactly as stored, hash and salt included, so lockstep reads the stored values and finds
the one the old password hashes to. It can do so for the schemes OpenLDAP ships with hashlib
equivalents: {SSHA} (the default), {SHA}, the SHA-2 family of pw-sha2 ({SSHA256} ...
{SHA512}), and values kept in clear. It cannot for {CRYPT}, {ARGON2} or {PBKDF2}: an account
holding such a value, or a directory that hashes new ones that way, gets an error and no
change: it can only be rotated by replacing its password (``rotate_credential``).

The bind DN must therefore read userPassword values (in OpenLDAP, write access includes read).
ppolicy treats any change of userPassword as a password change: it would unlock a locked entry,
so neither operation touches a suspended account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final

import ldap3  # type: ignore[import-untyped, unused-ignore]

from lockstep.connectors.base import ActionFailed, Credential
from lockstep.connectors.ldap.directory import LOCK, PASSWORD, LdapDirectory
from lockstep.secret import Secret, generate_password

# Scheme -> (hashlib name, salted).
SCHEMES: Final = {
    "{SHA}": ("sha1", False),
    "{SSHA}": ("sha1", True),
    "{SHA256}": ("sha256", False),
    "{SSHA256}": ("sha256", True),
    "{SHA384}": ("sha384", False),
    "{SSHA384}": ("sha384", True),
    "{SHA512}": ("sha512", False),
    "{SSHA512}": ("sha512", True),
}


def scheme_of(stored: bytes) -> str | None:
    """``{SSHA}`` for ``{SSHA}abc...``; None for a value kept in clear."""
    if not stored.startswith(b"{") or b"}" not in stored:
        return None
    return stored[: stored.index(b"}") + 1].decode("ascii", "replace").upper()


def checkable(stored: bytes) -> bool:
    return scheme_of(stored) is None or _hashed(stored) is not None


def stored_matches(stored: bytes, password: Secret) -> bool | None:
    """Whether a stored userPassword value is ``password``; None when its scheme is one
    lockstep cannot check."""
    clear = password.reveal().encode()
    if scheme_of(stored) is None:
        return hmac.compare_digest(stored, clear)
    hashed = _hashed(stored)
    if hashed is None:
        return None
    algorithm, digest, salt = hashed
    # SHA-1 is what {SSHA} values were made with: checking one is not choosing it.
    computed = hashlib.new(algorithm, clear + salt).digest()
    return hmac.compare_digest(computed, digest)


def _hashed(stored: bytes) -> tuple[str, bytes, bytes] | None:
    """(hashlib name, digest, salt) of a value in a scheme lockstep can check."""
    scheme = scheme_of(stored)
    if scheme not in SCHEMES:
        return None
    algorithm, salted = SCHEMES[scheme]
    try:
        raw = base64.b64decode(stored[len(scheme) :], validate=True)
    except binascii.Error:
        return None
    size = hashlib.new(algorithm).digest_size
    digest, salt = raw[:size], raw[size:]
    if len(digest) != size or bool(salt) != salted:
        return None
    return algorithm, digest, salt


class LdapPasswords(LdapDirectory):
    def add_credential(self, account: str, secret: Secret | None) -> Credential:
        """A new password alongside the current ones, each of which lockstep can tell apart
        (or nothing changes)."""
        dn = self._managed_dn(account)
        new = secret if secret is not None else generate_password()
        with self._ldap_errors(ActionFailed):
            before = self._stored(account, dn)
            self._refuse_unknown_schemes(account, before)
            self._conn.modify(dn, {PASSWORD: [(ldap3.MODIFY_ADD, [new.reveal()])]})
            self._check(f"add a password to {dn}")
            added = [value for value in self._stored(account, dn) if value not in before]
            if not any(stored_matches(value, new) for value in added):
                if added:
                    self._conn.modify(dn, {PASSWORD: [(ldap3.MODIFY_DELETE, added)]})
                    self._check(f"take back the password just added to {dn}")
                schemes = sorted({scheme_of(value) or "clear" for value in added})
                raise ActionFailed(
                    self._say(
                        f"the directory stored the new password of {account!r} as "
                        f"{', '.join(schemes) or 'nothing lockstep can see'}, which lockstep "
                        "cannot match to retire it later; nothing was changed"
                    )
                )
        return Credential(account, new)

    def retire_credential(self, account: str, credential: Credential) -> None:
        """Remove one password, leaving the others working. One the account no longer holds
        is already refused: nothing to do. Its only password is never removed."""
        dn = self._managed_dn(account)
        if credential.username != account:
            raise ActionFailed(
                self._say(
                    f"a credential of {credential.username!r} cannot be retired from {account!r}"
                )
            )
        with self._ldap_errors(ActionFailed):
            stored = self._stored(account, dn)
            verdicts = [(value, stored_matches(value, credential.secret)) for value in stored]
            retiring = [value for value, matches in verdicts if matches]
            if not retiring:
                self._refuse_unknown_schemes(account, stored)
                return
            if len(retiring) == len(stored):
                raise ActionFailed(
                    self._say(
                        f"that is the only password of {account!r}: retiring it would lock "
                        "the workload out; add a credential first"
                    )
                )
            self._conn.modify(dn, {PASSWORD: [(ldap3.MODIFY_DELETE, retiring)]})
            self._check(f"retire a password of {dn}")

    def _managed_dn(self, account: str) -> str:
        if self._is_excluded(account):
            raise ActionFailed(self._say(f"{account!r} is excluded from management"))
        return self._account_dn(account)

    def _stored(self, account: str, dn: str) -> list[bytes]:
        """The account's userPassword values, as stored (hashes)."""
        entries = self._search(
            dn,
            ldap3.BASE,
            "(objectClass=*)",
            [PASSWORD, LOCK],
            absent_ok=True,
            failure=ActionFailed,
        )
        if not entries:
            raise ActionFailed(self._say(f"account {account!r} does not exist"))
        present = entries[0]["raw_attributes"]
        if LOCK in present:
            raise ActionFailed(
                self._say(
                    f"{account!r} is suspended (locked); changing its passwords would unlock "
                    "it, restore it instead"
                )
            )
        values = list(present.get(PASSWORD, []))
        if not values:
            raise ActionFailed(
                self._say(
                    f"{account!r} has no userPassword the bind DN can read: restore the "
                    "account if it has none, or let the bind DN read userPassword"
                )
            )
        return values

    def _refuse_unknown_schemes(self, account: str, stored: list[bytes]) -> None:
        unknown = sorted({scheme_of(v) or "" for v in stored if not checkable(v)})
        if unknown:
            raise ActionFailed(
                self._say(
                    f"{account!r} holds passwords stored as {', '.join(unknown)}, which "
                    "lockstep cannot match to a credential; nothing was changed"
                )
            )
