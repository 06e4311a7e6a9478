"""What an LDAP read reports, from literal search results: no directory.

Entries are shaped as ldap3 returns them: account entries searched with ``types_only`` (the
attributes present, without values) and groupOfNames entries with their ``member`` values.
"""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.connectors.base import MalformedRead
from lockstep.connectors.ldap.transform import transform

PEOPLE = "ou=people,dc=example,dc=test"
GROUPS = "ou=groups,dc=example,dc=test"
NOBODY: frozenset[str] = frozenset()


def person(uid: str, *present: str) -> dict[str, Any]:
    return {"dn": f"uid={uid},{PEOPLE}", "raw_attributes": {name: [] for name in present}}


def group(cn: str, *members: str) -> dict[str, Any]:
    return {"dn": f"cn={cn},{GROUPS}", "attributes": {"member": list(members)}}


def test_an_account_is_enabled_while_it_has_a_password_and_no_lock() -> None:
    entries = [
        person("live", "userPassword"),
        person("locked", "userPassword", "pwdAccountLockedTime"),
        person("no-password"),
    ]
    accounts = transform("directory", entries, [], NOBODY).accounts
    assert {name: a.enabled for name, a in accounts.items()} == {
        "live": True,
        "locked": False,
        "no-password": False,
    }


def test_memberships_are_group_entitlements_and_binds_are_no_sessions() -> None:
    groups = [group("readers", f"uid=svc,{PEOPLE}"), group("Ops Team", f"uid=svc,{PEOPLE}")]
    svc = transform("directory", [person("svc", "userPassword")], groups, NOBODY).accounts["svc"]
    assert svc.entitlements == {"group:readers", "group:Ops Team"}
    assert svc.sessions == -1  # binds are per operation: nobody is "logged in"


def test_members_match_however_their_dn_is_spelled() -> None:
    groups = [group("readers", "UID=SVC,OU=People,DC=Example,dc=TEST")]
    accounts = transform("directory", [person("svc", "userPassword")], groups, NOBODY).accounts
    assert accounts["svc"].entitlements == {"group:readers"}


def test_the_placeholder_member_of_an_emptied_group_is_no_account() -> None:
    emptied = group("readers", f"cn=readers,{GROUPS}")
    accounts = transform("directory", [person("svc", "userPassword")], [emptied], NOBODY).accounts
    assert accounts["svc"].entitlements == frozenset()


def test_entries_and_groups_not_named_by_uid_or_cn_are_left_out() -> None:
    entries = [person("svc", "userPassword"), {"dn": f"cn=printer,{PEOPLE}", "raw_attributes": {}}]
    groups = [{"dn": f"ou=nested,{GROUPS}", "attributes": {"member": [f"uid=svc,{PEOPLE}"]}}]
    accounts = transform("directory", entries, groups, NOBODY).accounts
    assert set(accounts) == {"svc"}
    assert accounts["svc"].entitlements == frozenset()


def test_excluded_accounts_are_never_reported_however_their_uid_is_cased() -> None:
    entries = [person("Admin", "userPassword"), person("svc", "userPassword")]
    # Exclusions arrive folded, as the directory compares uids.
    assert set(transform("directory", entries, [], frozenset({"admin"})).accounts) == {"svc"}


def test_a_group_without_members_read_grants_nothing() -> None:
    groups = [{"dn": f"cn=readers,{GROUPS}", "attributes": {}}]
    accounts = transform("directory", [person("svc", "userPassword")], groups, NOBODY).accounts
    assert accounts["svc"].entitlements == frozenset()


@pytest.mark.parametrize(
    ("entries", "groups"),
    [
        ([{"raw_attributes": {}}], []),
        ([{"dn": f"uid=svc,{PEOPLE}"}], []),
        ([], [{"attributes": {"member": []}}]),
        ([], [{"dn": f"cn=readers,{GROUPS}"}]),
    ],
)
def test_an_entry_missing_what_the_read_needs_fails_the_read(
    entries: list[dict[str, Any]], groups: list[dict[str, Any]]
) -> None:
    with pytest.raises(MalformedRead, match=r"target directory: .* lacks"):
        transform("directory", entries, groups, NOBODY)
