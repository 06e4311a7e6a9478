"""LDAP directories (OpenLDAP with the ppolicy overlay), through ldap3.

An account is the entry ``uid=NAME,<accounts_dn>``: lockstep creates it there, binds as it
to probe, and reads every entry directly under ``accounts_dn`` whose RDN is a ``uid``. The
entitlement ``group:CN`` is membership in the groupOfNames ``cn=CN,<groups_dn>``.

Suspension sets ppolicy's ``pwdAccountLockedTime: 000001010000Z`` (locked until unlocked)
and replaces the password with one nobody holds. The lock only binds where a password policy
applies to the entry (``olcPPolicyDefault`` or ``pwdPolicySubentry``); the new password
refuses the old credential either way. Names and values from the policy always reach the
server escaped (RFC 4514 for DNs, RFC 4515 for filters), whatever characters they hold.

Besides the per-operation rights in ``permissions``, the bind DN must read both subtrees
(including whether userPassword and pwdAccountLockedTime are set: an account whose password
it cannot see reads as disabled) without a size limit, or reads fail as unreachable.

Sessions also offer optional capabilities (see ``connectors.base``), each in its own module:
the last bind of each account and a change token (``observe``), and zero-downtime
rotation with two userPassword values (``passwords``), and batches: one modify per group,
one search to read accounts back (``batches``). LDAP has no leases: a directory
entry cannot expire by itself, so lockstep issues none here.

A session is one ldap3 connection and is used from one thread at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import results
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped, unused-ignore]
from ldap3.utils.dn import escape_rdn  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel

from lockstep.connectors.base import (
    ActionFailed,
    AppliesBatches,
    Credential,
    GrammarError,
    HoldsTwoCredentials,
    ObservesUsage,
    ProbeResult,
    ProbesInParallel,
    Scope,
    TargetUnreachable,
    WatchesChanges,
)
from lockstep.connectors.ldap.batches import LdapBatches
from lockstep.connectors.ldap.directory import (
    GROUPS_FILTER,
    LOCK,
    PASSWORD,
    LdapSettings,
    connection,
    fold,
    normal,
    rdns,
)
from lockstep.connectors.ldap.observe import LdapObserver
from lockstep.connectors.ldap.passwords import LdapPasswords
from lockstep.connectors.ldap.paths import LdapPaths
from lockstep.connectors.ldap.transform import missing_groups, transform
from lockstep.model import Account, Op, Snapshot, Target
from lockstep.policy.hosts import is_loopback
from lockstep.secret import Secret, redact

__all__ = ["LdapConnectorType", "LdapSession", "LdapSettings"]

MAX_NAME_LENGTH: Final = 256
# ppolicy's "locked until an administrator unlocks it" value (draft-behera, section 5.3.3).
PERMANENT_LOCK: Final = "000001010000Z"
MANAGED_MARKER: Final = "managed by lockstep"
ENTITLEMENT_FORM: Final = "group:CN (membership in the groupOfNames cn=CN under groups_dn)"


def _parse_group(text: str) -> str | None:
    prefix, colon, cn = text.partition(":")
    if colon and prefix.lower() == "group" and cn.strip(" ") and "\x00" not in cn:
        return cn
    return None


# ---------------------------------------------------------------- the connector type


class LdapConnectorType:
    name: ClassVar[str] = "ldap"
    permissions: ClassVar[Mapping[Op, tuple[str, ...]]] = {
        Op.CREATE_ACCOUNT: ("add entries (account, simpleSecurityObject) under accounts_dn",),
        Op.RESTORE_ACCOUNT: (
            "write userPassword on accounts_dn entries",
            "manage pwdAccountLockedTime (ppolicy) on accounts_dn entries",
        ),
        Op.GRANT: ("write member on groupOfNames entries under groups_dn",),
        Op.REVOKE: ("write member on groupOfNames entries under groups_dn",),
        # Rotation adds a value and retires the old one by its stored hash (passwords).
        Op.ROTATE_CREDENTIAL: ("read and write userPassword on accounts_dn entries",),
        Op.SUSPEND_ACCOUNT: (
            "write userPassword on accounts_dn entries",
            "manage pwdAccountLockedTime (ppolicy) on accounts_dn entries",
        ),
        # LDAP keeps no sessions lockstep could end: nothing to be allowed.
        Op.END_SESSIONS: (),
        Op.DELETE_ACCOUNT: (
            "write member on groupOfNames entries under groups_dn",
            "delete entries under accounts_dn",
        ),
    }
    paths_permissions: ClassVar[tuple[str, ...]] = (
        "search the directory under the common base of accounts_dn and groups_dn: objectClass,"
        " member, userPassword (presence)",
        "read cn=config: olcDatabase, olcSuffix, olcAccess, olcRootDN (optional: without it "
        "the access rules are not assessed)",
    )
    read_permissions: ClassVar[tuple[str, ...]] = (
        "search accounts_dn entries: uid, userPassword (presence), pwdAccountLockedTime",
        "search groupOfNames entries under groups_dn: member",
    )
    # What each optional capability of the sessions needs.
    capability_permissions: ClassVar[Mapping[type, tuple[str, ...]]] = {
        ObservesUsage: (
            "read pwdLastSuccess (olcLastBind: TRUE) or authTimestamp (lastbind overlay) "
            "on accounts_dn entries",
        ),
        WatchesChanges: (
            "read entryCSN of the groupOfNames entries under groups_dn",
            "read contextCSN of the suffix holding accounts_dn and groups_dn (syncprov; "
            "optional: without it every token lists both subtrees)",
        ),
        HoldsTwoCredentials: ("read and write userPassword on accounts_dn entries",),
        # The operations' own permissions, one modify per group.
        AppliesBatches: (),
        ProbesInParallel: (),
    }

    def settings_model(self) -> type[BaseModel]:
        return LdapSettings

    def check_account(self, name: str) -> None:
        if not fold(name):
            # LDAP matching ignores leading and trailing spaces: a blank uid is an empty one.
            raise GrammarError("an LDAP account name (uid) must not be empty or blank")
        if "\x00" in name:
            raise GrammarError(f"an LDAP account name (uid) must not contain NUL: {name!r}")
        if len(name) > MAX_NAME_LENGTH:
            raise GrammarError(
                f"an LDAP account name (uid) is at most {MAX_NAME_LENGTH} characters, "
                f"got {len(name)}"
            )

    def parse_entitlement(self, text: str) -> str:
        cn = _parse_group(text)
        if cn is None:
            raise GrammarError(f"{text!r} is not an LDAP entitlement; expected {ENTITLEMENT_FORM}")
        return f"group:{cn}"

    def default_excluded(self, settings: BaseModel) -> frozenset[str]:
        typed = LdapSettings.model_validate(settings)
        bind, accounts = rdns(typed.bind_dn), rdns(typed.accounts_dn)
        leaf = bind[0]
        directly_under = len(bind) == len(accounts) + 1 and normal(bind[1:]) == normal(accounts)
        if directly_under and len(leaf) == 1 and leaf[0][0] == "uid":
            return frozenset({leaf[0][1]})
        return frozenset()

    def insecure_transport(self, settings: BaseModel) -> str | None:
        parts = urlsplit(LdapSettings.model_validate(settings).url)
        if parts.scheme == "ldaps" or is_loopback(parts.hostname):
            return None
        return (
            f"ldap:// to {parts.hostname} sends the bind password and every entry in clear: "
            "use ldaps://"
        )

    def propagation_window(self, settings: BaseModel) -> float:
        # A directory answers from what it stores: a removed password fails the next bind.
        return 0.0

    def open(self, target: Target, scope: Scope) -> LdapSession:
        settings = LdapSettings.model_validate(target.settings)
        where = f"{target.name}: {settings.url}"
        try:
            conn = connection(
                settings.url, settings.bind_dn, settings.bind_password, settings.ca_file
            )
            bound = conn.bind()
        except ldap_errors.LDAPException as exc:
            raise TargetUnreachable(redact(f"{where}: cannot connect: {exc}")) from exc
        if not bound:
            result = conn.result
            raise TargetUnreachable(
                redact(f"{where}: bind as {settings.bind_dn} failed: {result['description']}")
            )
        return LdapSession(target.name, settings, scope, conn)


# ---------------------------------------------------------------- sessions


class LdapSession(LdapObserver, LdapPasswords, LdapPaths, LdapBatches):
    """One target's accounts and groups; the optional capabilities come from the mixins."""

    # ------------------------------------------------------------ reading

    def read(self) -> Snapshot:
        # Parsing a DN the directory returned can fail too: within the same translation.
        with self._ldap_errors(TargetUnreachable):
            groups = self._groups(GROUPS_FILTER)
            entries = self._accounts(self._settings.accounts_dn, ldap3.LEVEL, absent_ok=False)
            snapshot = transform(self._target, entries, groups, self._excluded, self._admin_groups)
            unknown = missing_groups(self._target, groups, self._granted, self._settings.groups_dn)
        return replace(snapshot, unknown=unknown)

    def read_account(self, account: str) -> Account | None:
        """The account read fresh; None when it does not exist or is excluded (never read)."""
        if self._is_excluded(account):
            return None
        dn = self._account_dn(account)
        with self._ldap_errors(TargetUnreachable):
            entries = self._accounts(dn, ldap3.BASE, absent_ok=True)
            if not entries:
                return None
            groups = self._groups(f"(&{GROUPS_FILTER}(member={escape_filter_chars(dn)}))")
            found = transform(
                self._target, entries, groups, self._excluded, self._admin_groups
            ).accounts
        return next(iter(found.values()), None)

    def _accounts(self, base: str, scope: str, *, absent_ok: bool) -> list[dict[str, Any]]:
        # types_only: whether userPassword is set is all we need; its hash stays on the server.
        attributes = [PASSWORD, LOCK]
        return self._search(
            base, scope, "(uid=*)", attributes, types_only=True, absent_ok=absent_ok
        )

    def _groups(self, group_filter: str) -> list[dict[str, Any]]:
        return self._search(self._settings.groups_dn, ldap3.LEVEL, group_filter, ["member"])

    # ------------------------------------------------------------ changing

    def _managed(self, account: str) -> None:
        if self._is_excluded(account):
            raise ActionFailed(f"{self._target}: {account!r} is excluded from management")

    @contextmanager
    def _changing(self, account: str) -> Iterator[str]:
        """The account's DN, for a change whose ldap3 errors fail the action."""
        self._managed(account)
        with self._ldap_errors(ActionFailed):
            yield self._account_dn(account)

    def create_account(self, account: str, secret: Secret) -> Credential:
        with self._changing(account) as dn:
            attributes = {"uid": account, PASSWORD: secret.reveal(), "description": MANAGED_MARKER}
            # The password goes in clear: ppolicy (olcPPolicyHashCleartext) hashes it on arrival.
            self._conn.add(dn, ["account", "simpleSecurityObject"], attributes)
            self._check(f"add {dn}")
        return Credential(account, secret)

    def grant(self, account: str, entitlement: str) -> None:
        with self._changing(account) as dn:
            group = self._group_dn(entitlement)
            # A member value for a DN nobody holds would pass to whoever creates that DN later.
            self._presence(account, dn)
            self._conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [dn])]})
            code = self._check(
                f"add member to {group}",
                tolerated=frozenset(
                    {results.RESULT_ATTRIBUTE_OR_VALUE_EXISTS, results.RESULT_NO_SUCH_OBJECT}
                ),
            )
            if code == results.RESULT_NO_SUCH_OBJECT:
                raise ActionFailed(
                    f"{self._target}: group {group} does not exist "
                    "(lockstep does not create groups)"
                )

    def revoke(self, account: str, entitlement: str) -> None:
        with self._changing(account) as dn:
            self._remove_member(self._group_dn(entitlement), dn)

    def _remove_member(self, group: str, member: str) -> None:
        self._conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [member])]})
        doing = f"remove member from {group}"
        violation = results.RESULT_OBJECT_CLASS_VIOLATION
        tolerated = frozenset({results.RESULT_NO_SUCH_ATTRIBUTE, violation})
        if self._check(doing, tolerated=tolerated) != violation:
            return
        # groupOfNames must keep a member, so the last one is swapped, in one atomic modify,
        # for the group's own DN. Its own DN, rather than a made-up "cn=placeholder" DN,
        # because it always exists (referential-integrity checks accept it) and nobody can
        # later create an entry at that DN and inherit the membership. It grants nothing, and
        # reads ignore it: it is not an account.
        swap = [(ldap3.MODIFY_ADD, [group]), (ldap3.MODIFY_DELETE, [member])]
        self._conn.modify(group, {"member": swap})
        self._check(doing)

    def suspend_account(self, account: str, secret: Secret) -> Credential:
        with self._changing(account) as dn:
            # Two modifies, password first: ppolicy drops pwdAccountLockedTime whenever the
            # password of a locked entry changes, so a lock set in the same modify (or before)
            # would not survive a second suspension. In between, the password is one nobody
            # holds.
            self._replace_password(dn, secret)
            self._conn.modify(dn, {LOCK: [(ldap3.MODIFY_REPLACE, [PERMANENT_LOCK])]})
            self._check(f"lock {dn}")
        return Credential(account, secret)

    def restore_account(self, account: str, secret: Secret) -> Credential:
        with self._changing(account) as dn:
            self._replace_password(dn, secret)
            # ppolicy has just unlocked it; unlocking explicitly as well keeps this right on a
            # directory that does not. Replacing with nothing is a no-op when there is no lock.
            self._conn.modify(dn, {LOCK: [(ldap3.MODIFY_REPLACE, [])]})
            self._check(f"unlock {dn}")
        return Credential(account, secret)

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        with self._changing(account) as dn:
            # Under ppolicy a new password unlocks a locked entry: rotating a suspended account
            # would quietly restore it. Restoring is a decision of its own.
            if LOCK in self._presence(account, dn):
                raise ActionFailed(
                    f"{self._target}: {account!r} is suspended (locked); rotating its "
                    "password would unlock it, restore it instead"
                )
            self._replace_password(dn, secret)
        return Credential(account, secret)

    def end_sessions(self, account: str) -> None:
        """Nothing to do: an LDAP bind authenticates one connection, and the directory checks
        the password and lock again at every bind, so once suspended no new bind succeeds. A
        connection bound earlier is not tracked by LDAP and cannot be closed from here."""
        self._managed(account)

    def delete_account(self, account: str) -> None:
        with self._changing(account) as dn:
            # Memberships first: a member value outlives its entry and would hand the groups
            # to whatever is created under that DN next.
            member_filter = f"(&{GROUPS_FILTER}(member={escape_filter_chars(dn)}))"
            groups = self._search(
                self._settings.groups_dn, ldap3.LEVEL, member_filter, [], failure=ActionFailed
            )
            for group in groups:
                self._remove_member(group["dn"], dn)
            self._conn.delete(dn)
            self._check(f"delete {dn}")

    def _replace_password(self, dn: str, password: Secret) -> None:
        self._conn.modify(dn, {PASSWORD: [(ldap3.MODIFY_REPLACE, [password.reveal()])]})
        self._check(f"set the password of {dn}")

    # ------------------------------------------------------------ probing

    def probe(self, credential: Credential) -> ProbeResult:
        dn = self._account_dn(credential.username)
        with self._ldap_errors(TargetUnreachable):
            conn = connection(self._settings.url, dn, credential.secret, self._settings.ca_file)
            try:
                if conn.bind():
                    return ProbeResult.ACCEPTED
                result = conn.result
            finally:
                conn.unbind()
        # ppolicy answers a locked account with invalidCredentials too.
        if result["result"] == results.RESULT_INVALID_CREDENTIALS:
            return ProbeResult.REFUSED
        raise TargetUnreachable(
            redact(f"{self._target}: probing {dn} got {result['description']}: no conclusion")
        )

    # ------------------------------------------------------------ helpers

    def _group_dn(self, entitlement: str) -> str:
        cn = _parse_group(entitlement)
        if cn is None:
            raise ActionFailed(f"{self._target}: {entitlement!r} is not {ENTITLEMENT_FORM}")
        return f"cn={escape_rdn(cn)},{self._settings.groups_dn}"
