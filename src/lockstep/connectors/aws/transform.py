"""IAM's answers as lockstep's accounts: pure, so that what a read reports is tested with
literal answers.

A read is ``GetAccountAuthorizationDetails`` for users and for roles, then ``ListAccessKeys``
for each user in scope (key status is in no bulk call but the credential report, which can
be hours old). An answer without a field the snapshot needs fails the whole read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lockstep.connectors.aws.grammar import AccountKind, AccountRef
from lockstep.connectors.base import MalformedRead, Scope, required
from lockstep.model import Account, Snapshot

SUSPENDED_POLICY = "lockstep-suspended"
SERVICE_LINKED_PATH = "/aws-service-role/"
ADMINISTRATOR_ACCESS = "policy/AdministratorAccess"  # the AWS managed policy, any partition


def administrators(policies: Iterable[str], via: str = "") -> str | None:
    """Why holding ``policies`` makes a principal an administrator (None: it does not)."""
    if any(arn.endswith(f":{ADMINISTRATOR_ACCESS}") for arn in policies):
        return f"holds AdministratorAccess{via}"
    return None


def in_scope(ref: AccountRef, path: str, scope: Scope, admin: str | None, prefix: str) -> bool:
    """Whether a user or role is read: declared, or under the target's ``path_prefix``;
    never the admin lockstep acts as, an excluded one or one an AWS service owns."""
    name = str(ref)
    if name in scope.excluded or name == admin:
        return False
    if path.startswith(SERVICE_LINKED_PATH):  # owned by an AWS service, not by anyone here
        return False
    return name in scope.declared or path.startswith(prefix)


def user_account(
    ref: AccountRef,
    policies: Iterable[str],
    groups: Iterable[str],
    keys: Iterable[Mapping[str, Any]],
    admin_groups: frozenset[str] = frozenset(),
) -> Account:
    """A user is enabled while it holds an Active access key: keys are what it signs with.
    ``admin_groups``: the groups that hold AdministratorAccess."""
    enabled = any(required(key, "Status", f"an access key of {ref}") == "Active" for key in keys)
    policies, groups = list(policies), list(groups)
    via = sorted(set(groups) & admin_groups)
    privileged = administrators(policies) or (
        f"holds AdministratorAccess through group {via[0]}" if via else None
    )
    return Account(
        str(ref), entitlements(policies, groups), enabled, sessions=-1, privileged=privileged
    )


def role_account(
    ref: AccountRef, policies: Iterable[str], inline_policies: Iterable[str]
) -> Account:
    """A role is enabled unless lockstep's deny-all inline policy is attached."""
    enabled = SUSPENDED_POLICY not in inline_policies
    policies = list(policies)
    return Account(
        str(ref),
        entitlements(policies, []),
        enabled,
        sessions=-1,
        privileged=administrators(policies),
    )


def admin_groups(groups: Iterable[Mapping[str, Any]], target: str) -> frozenset[str]:
    """The names of the groups (``GroupDetailList`` items) holding AdministratorAccess."""
    where = f"target {target}: an IAM group"
    return frozenset(
        str(required(group, "GroupName", where))
        for group in groups
        if administrators(_attached(group, where))
    )


def entitlements(policies: Iterable[str], groups: Iterable[str]) -> frozenset[str]:
    return frozenset([*(f"policy:{arn}" for arn in policies), *(f"group:{g}" for g in groups)])


def scoped_users(
    target: str,
    users: Iterable[Mapping[str, Any]],
    scope: Scope,
    admin: str | None,
    prefix: str,
) -> list[Mapping[str, Any]]:
    """The user details (``UserDetailList`` items) a read covers."""
    return [user for user in users if _covered(target, "user", user, scope, admin, prefix)]


def transform(
    target: str,
    users: Iterable[Mapping[str, Any]],
    roles: Iterable[Mapping[str, Any]],
    keys: Mapping[str, Sequence[Mapping[str, Any]]],
    scope: Scope,
    admin: str | None,
    prefix: str,
    groups: Iterable[Mapping[str, Any]] = (),
) -> Snapshot:
    """``users``, ``roles`` and ``groups``: ``GetAccountAuthorizationDetails`` items;
    ``keys``: each in-scope user's ``AccessKeyMetadata``, by user name. ``admin`` is the
    account lockstep acts as; ``prefix`` the target's ``path_prefix``."""
    administering = admin_groups(groups, target)
    accounts: list[Account] = []
    for user in scoped_users(target, users, scope, admin, prefix):
        ref = _ref(target, "user", user)
        where = f"target {target}: {ref}"
        if ref.name not in keys:
            raise MalformedRead(f"{where}: its access keys were not listed")
        member_of = required(user, "GroupList", where)
        accounts.append(
            user_account(ref, _attached(user, where), member_of, keys[ref.name], administering)
        )
    for role in roles:
        if _covered(target, "role", role, scope, admin, prefix):
            ref = _ref(target, "role", role)
            where = f"target {target}: {ref}"
            # A role without inline policies may come without the list.
            inline = [required(p, "PolicyName", where) for p in role.get("RolePolicyList", [])]
            accounts.append(role_account(ref, _attached(role, where), inline))
    return Snapshot(target, {account.name: account for account in accounts})


def _covered(
    target: str,
    kind: AccountKind,
    detail: Mapping[str, Any],
    scope: Scope,
    admin: str | None,
    prefix: str,
) -> bool:
    path = required(detail, "Path", f"target {target}: an IAM {kind}")
    return in_scope(_ref(target, kind, detail), str(path), scope, admin, prefix)


def _ref(target: str, kind: AccountKind, detail: Mapping[str, Any]) -> AccountRef:
    key = "UserName" if kind == "user" else "RoleName"
    return AccountRef(kind, str(required(detail, key, f"target {target}: an IAM {kind}")))


def _attached(detail: Mapping[str, Any], where: str) -> list[str]:
    return [
        str(required(policy, "PolicyArn", where))
        for policy in required(detail, "AttachedManagedPolicies", where)
    ]
