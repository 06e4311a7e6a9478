"""Batches on LDAP: one connection, group memberships changed one modify per group, accounts
read back in one search.

A batch's grants of one group become one modify adding every new member at once, and its
revokes one modify deleting them; LDAP applies a modify all or nothing, so when the
directory refuses one (a member that is not a value, a group that would be left empty), the
changes of that group are made one at a time instead, and only the one that fails fails.
Which accounts exist, and which memberships they already hold, is read first in one search
for the whole batch. Other operations (adds, password changes, locks, deletes) go one by one
on the same connection: each is its own entry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final, cast

import ldap3  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import results  # type: ignore[import-untyped, unused-ignore]
from ldap3.utils.conv import escape_filter_chars  # type: ignore[import-untyped, unused-ignore]
from ldap3.utils.dn import escape_rdn  # type: ignore[import-untyped, unused-ignore]

from lockstep.connectors.base import (
    ActionFailed,
    Change,
    Outcome,
    Session,
    TargetUnreachable,
    apply_each,
)
from lockstep.connectors.ldap.directory import GROUPS_FILTER, LOCK, PASSWORD, LdapDirectory
from lockstep.connectors.ldap.transform import transform
from lockstep.model import Account, Op

# slapd serves binds on a pool of threads; a bind is a hash comparison.
PROBE_SLOTS: Final = 4
_MODIFY: Final = {Op.GRANT: ldap3.MODIFY_ADD, Op.REVOKE: ldap3.MODIFY_DELETE}


class LdapBatches(LdapDirectory):
    def read_accounts(self, accounts: Collection[str]) -> dict[str, Account | None]:
        names = sorted(a for a in accounts if not self._is_excluded(a))
        found: Mapping[str, Account] = {}
        with self._ldap_errors(TargetUnreachable):
            if names:
                uids = "".join(f"(uid={escape_filter_chars(n)})" for n in names)
                entries = self._search(
                    self._settings.accounts_dn,
                    ldap3.LEVEL,
                    f"(|{uids})",
                    [PASSWORD, LOCK],
                    types_only=True,
                )
                members = "".join(
                    f"(member={escape_filter_chars(self._account_dn(n))})" for n in names
                )
                groups = self._search(
                    self._settings.groups_dn,
                    ldap3.LEVEL,
                    f"(&{GROUPS_FILTER}(|{members}))",
                    ["member"],
                )
                found = transform(self._target, entries, groups, self._excluded).accounts
        return {name: found.get(name) for name in accounts}

    def probe_slots(self) -> int:
        return PROBE_SLOTS

    def apply_batch(self, changes: Sequence[Change]) -> list[Outcome]:
        memberships = [i for i, c in enumerate(changes) if c.op in _MODIFY]
        outcomes: list[Outcome] = [None] * len(changes)
        others = [i for i in range(len(changes)) if i not in set(memberships)]
        for index, outcome in zip(others, self._each(changes, others), strict=True):
            outcomes[index] = outcome
        if not memberships:
            return outcomes
        try:
            held = self.read_accounts({changes[i].account for i in memberships})
        except TargetUnreachable as exc:
            for index in memberships:
                outcomes[index] = exc
            return outcomes
        by_group: dict[tuple[Op, str], list[int]] = {}
        for index in memberships:
            change = changes[index]
            failure = self._refusal(change, held.get(change.account))
            if failure is not None:
                outcomes[index] = failure
            elif self._needed(change, held.get(change.account)):
                cn = (change.entitlement or "").partition(":")[2]
                by_group.setdefault((change.op, cn), []).append(index)
        for (op, cn), indices in by_group.items():
            group = f"cn={escape_rdn(cn)},{self._settings.groups_dn}"
            dns = sorted({self._account_dn(changes[i].account) for i in indices})
            try:
                with self._ldap_errors(ActionFailed):
                    self._conn.modify(group, {"member": [(_MODIFY[op], dns)]})
                    done = self._conn.result["result"] == results.RESULT_SUCCESS
            except TargetUnreachable as exc:
                for index in indices:
                    outcomes[index] = exc
                continue
            except ActionFailed:
                done = False
            if not done:  # all or nothing: find which one the directory refuses
                for index, outcome in zip(indices, self._each(changes, indices), strict=True):
                    outcomes[index] = outcome
        return outcomes

    def _refusal(self, change: Change, account: Account | None) -> ActionFailed | None:
        if self._is_excluded(change.account):
            return ActionFailed(f"{self._target}: {change.account!r} is excluded from management")
        prefix, colon, cn = (change.entitlement or "").partition(":")
        if not colon or prefix.lower() != "group" or not cn.strip(" ") or "\x00" in cn:
            return ActionFailed(f"{self._target}: {change.entitlement!r} is not group:CN")
        if account is None and change.op is Op.GRANT:
            # A member value for a DN nobody holds would pass to whoever creates it later.
            return ActionFailed(f"{self._target}: account {change.account!r} does not exist")
        return None

    @staticmethod
    def _needed(change: Change, account: Account | None) -> bool:
        """Whether the directory must change: a membership held is granted already, one
        not held is revoked already."""
        holds = account is not None and change.entitlement in account.entitlements
        return holds if change.op is Op.REVOKE else not holds

    def _each(self, changes: Sequence[Change], indices: Sequence[int]) -> list[Outcome]:
        return apply_each(cast(Session, self), [changes[i] for i in indices])
