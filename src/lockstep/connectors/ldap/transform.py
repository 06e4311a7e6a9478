"""Search results of an LDAP directory as a snapshot: pure, so that what a read reports is
tested with literal entries.

A read is two searches: the entries directly under ``accounts_dn`` (``userPassword`` and
``pwdAccountLockedTime``, by presence only) and the groupOfNames under ``groups_dn`` with
their members. An entry without a field the snapshot needs fails the whole read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lockstep.connectors.base import required
from lockstep.connectors.ldap.directory import LOCK, PASSWORD, NormalDn, fold, leaf_value, normal_dn
from lockstep.model import Account, Snapshot


def transform(
    target: str,
    entries: Iterable[Mapping[str, Any]],
    groups: Iterable[Mapping[str, Any]],
    excluded: frozenset[str],
    admin_groups: frozenset[str] = frozenset(),
) -> Snapshot:
    """``entries``: account entries, searched with ``types_only``; ``groups``: groupOfNames
    entries with ``member``; ``excluded``: account names and ``admin_groups`` group CNs as
    ``fold`` compares them (members of an admin group are privileged)."""
    held = memberships(target, groups)
    accounts: dict[str, Account] = {}
    for entry in entries:
        account = _account(target, entry, held, admin_groups)
        if account is not None and fold(account.name) not in excluded:
            accounts[account.name] = account
    return Snapshot(target, accounts)


def memberships(target: str, groups: Iterable[Mapping[str, Any]]) -> dict[NormalDn, set[str]]:
    """The CNs of ``groups``, by the normalised DN of each member. A placeholder member (the
    group's own DN, which stands in for the last member removed) is a group, never an
    account, so it drops out when accounts are looked up here."""
    found: dict[NormalDn, set[str]] = {}
    for group in groups:
        dn = required(group, "dn", f"target {target}: a group")
        cn = leaf_value(dn, "cn")
        if cn is None:  # not cn=CN,groups_dn: no entitlement can name it
            continue
        attributes = required(group, "attributes", f"target {target}: {dn}")
        for member in attributes.get("member", []):
            found.setdefault(normal_dn(member), set()).add(cn)
    return found


def _account(
    target: str,
    entry: Mapping[str, Any],
    held: Mapping[NormalDn, set[str]],
    admin_groups: frozenset[str],
) -> Account | None:
    dn = required(entry, "dn", f"target {target}: an account entry")
    name = leaf_value(dn, "uid")
    if name is None:  # not uid=NAME,accounts_dn: lockstep could neither bind as nor manage it
        return None
    present = required(entry, "raw_attributes", f"target {target}: {dn}")
    groups = held.get(normal_dn(dn), set())
    admin = sorted(cn for cn in groups if fold(cn) in admin_groups)
    return Account(
        name=name,
        entitlements=frozenset(f"group:{cn}" for cn in groups),
        enabled=PASSWORD in present and LOCK not in present,
        sessions=-1,  # binds are per operation: LDAP cannot tell who is "logged in"
        privileged=f"member of the admin group {admin[0]}" if admin else None,
    )


def missing_groups(
    target: str, groups: Iterable[Mapping[str, Any]], granted: Iterable[str], groups_dn: str
) -> dict[str, str]:
    """The ``group:CN`` entitlements of ``granted`` with no groupOfNames ``cn=CN`` among
    ``groups`` (those directly under ``groups_dn``), with what is missing."""
    present = set()
    for group in groups:
        cn = leaf_value(required(group, "dn", f"target {target}: a group"), "cn")
        if cn is not None:
            present.add(fold(cn))
    return {
        text: f"no groupOfNames cn={text.removeprefix('group:')} under {groups_dn}"
        for text in granted
        if text.startswith("group:") and fold(text.removeprefix("group:")) not in present
    }
