"""What an AWS read reports, from literal IAM answers: no AWS, no emulator.

Users and roles are shaped as ``GetAccountAuthorizationDetails`` lists them; keys as
``ListAccessKeys`` does.
"""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.connectors.aws.grammar import AccountRef
from lockstep.connectors.aws.transform import SUSPENDED_POLICY, in_scope, transform
from lockstep.connectors.base import MalformedRead, Scope

ADMIN = "user/lockstep"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
EVERYONE = Scope(declared=frozenset(), excluded=frozenset())


def iam_user(
    name: str, path: str = "/", policies: tuple[str, ...] = (), groups: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "UserName": name,
        "Path": path,
        "AttachedManagedPolicies": [{"PolicyArn": arn} for arn in policies],
        "GroupList": list(groups),
    }


def iam_role(
    name: str, path: str = "/", inline: tuple[str, ...] = (), policies: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "RoleName": name,
        "Path": path,
        "AttachedManagedPolicies": [{"PolicyArn": arn} for arn in policies],
        "RolePolicyList": [{"PolicyName": p, "PolicyDocument": {}} for p in inline],
    }


def key(status: str) -> dict[str, str]:
    return {"AccessKeyId": f"AKIA{status.upper()}", "Status": status}


def read(
    users: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    keys: dict[str, list[dict[str, str]]],
    scope: Scope = EVERYONE,
    prefix: str = "/",
) -> dict[str, Any]:
    return dict(transform("aws-test", users, roles, keys, scope, ADMIN, prefix).accounts)


def test_policies_and_groups_are_entitlements_and_sessions_are_unknown() -> None:
    users = [iam_user("api", policies=(READ_ONLY,), groups=("deployers",))]
    roles = [iam_role("etl", policies=(READ_ONLY,))]
    accounts = read(users, roles, {"api": [key("Active")]})
    assert accounts["user/api"].entitlements == {f"policy:{READ_ONLY}", "group:deployers"}
    assert accounts["role/etl"].entitlements == {f"policy:{READ_ONLY}"}
    assert {a.sessions for a in accounts.values()} == {-1}


def test_a_user_is_enabled_while_it_holds_an_active_key() -> None:
    users = [iam_user("active"), iam_user("inactive"), iam_user("keyless")]
    keys = {
        "active": [key("Inactive"), key("Active")],
        "inactive": [key("Inactive")],
        "keyless": [],
    }
    accounts = read(users, [], keys)
    assert {name: a.enabled for name, a in accounts.items()} == {
        "user/active": True,
        "user/inactive": False,
        "user/keyless": False,
    }


def test_a_role_is_suspended_by_lockstep_deny_all_policy_alone() -> None:
    roles = [
        iam_role("suspended", inline=(SUSPENDED_POLICY,)),
        iam_role("other-inline", inline=("lockstep-revoke-older-sessions",)),
        {k: v for k, v in iam_role("no-inline-list").items() if k != "RolePolicyList"},
    ]
    accounts = read([], roles, {})
    assert {name: a.enabled for name, a in accounts.items()} == {
        "role/suspended": False,
        "role/other-inline": True,
        "role/no-inline-list": True,
    }


def test_scope_is_the_path_prefix_plus_declared_accounts() -> None:
    users = [iam_user("in-prefix", "/svc/"), iam_user("elsewhere"), iam_user("declared")]
    keys: dict[str, list[dict[str, str]]] = {name: [] for name in ("in-prefix", "declared")}
    scope = Scope(declared=frozenset({"user/declared"}), excluded=frozenset())
    assert set(read(users, [], keys, scope, prefix="/svc/")) == {"user/in-prefix", "user/declared"}


def test_the_admin_excluded_and_service_linked_roles_are_never_read() -> None:
    users = [iam_user("lockstep"), iam_user("break-glass"), iam_user("api")]
    roles = [
        iam_role("AWSServiceRoleForAutoScaling", "/aws-service-role/autoscaling.amazonaws.com/")
    ]
    scope = Scope(declared=frozenset(), excluded=frozenset({"user/break-glass"}))
    assert set(read(users, roles, {"api": []}, scope)) == {"user/api"}
    assert not in_scope(AccountRef("user", "lockstep"), "/", EVERYONE, ADMIN, "/")
    service_linked = "/aws-service-role/x/"
    declared = Scope(declared=frozenset({"role/x"}), excluded=frozenset())
    assert not in_scope(AccountRef("role", "x"), service_linked, declared, ADMIN, "/")


@pytest.mark.parametrize(
    ("users", "roles", "keys"),
    [
        ([{"Path": "/"}], [], {}),
        ([{"UserName": "api"}], [], {"api": []}),
        ([{"UserName": "api", "Path": "/", "GroupList": []}], [], {"api": []}),
        ([iam_user("api")], [], {}),  # its keys were never listed
        ([iam_user("api")], [], {"api": [{"AccessKeyId": "AKIA"}]}),
        ([], [{"RoleName": "etl", "Path": "/"}], {}),
    ],
)
def test_an_answer_missing_what_the_read_needs_fails_the_read(
    users: list[dict[str, Any]], roles: list[dict[str, Any]], keys: dict[str, Any]
) -> None:
    with pytest.raises(MalformedRead):
        read(users, roles, keys)
