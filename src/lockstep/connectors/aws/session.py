"""An AWS session: one account's IAM, read, changed one operation at a time (or a batch of
them side by side, ``batches``), and probed.

The admin lockstep acts as is learned from STS at ``open`` and never read, reported or
touched. What a read reports is built in ``transform``; the names and documents lockstep
writes are in ``grammar``; leases in ``leases``, observed use in ``usage``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from botocore import exceptions as aws_errors  # type: ignore[import-untyped,unused-ignore]

from lockstep.connectors.aws import leases as aws_leases
from lockstep.connectors.aws import transform
from lockstep.connectors.aws.batches import AwsBatches
from lockstep.connectors.aws.client import (
    BOTO_CONFIG,
    REFUSALS,
    absent_is_none,
    boto_errors,
    code,
)
from lockstep.connectors.aws.grammar import (
    AccountRef,
    AwsSettings,
    caller_account,
    deny_all_document,
    parse_account,
    parse_entitlement,
    revoke_older_sessions_document,
    trust_account_document,
)
from lockstep.connectors.aws.paths import AwsPaths
from lockstep.connectors.aws.transform import SUSPENDED_POLICY
from lockstep.connectors.aws.usage import key_last_used, roles_usage, users_usage
from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    GrammarError,
    LeaseAccount,
    ProbeResult,
    Scope,
    TargetUnreachable,
    Usage,
)
from lockstep.model import Account, Op, Snapshot
from lockstep.secret import Secret

REVOKE_SESSIONS_POLICY = "lockstep-revoke-older-sessions"
MANAGED_TAG = {"Key": "managed-by", "Value": "lockstep"}
SUSPENDED_TAG = "lockstep-suspended-at"
MAX_KEYS_PER_USER = 2


class AwsSession(AwsPaths, AwsBatches):
    """A live connection to one AWS account's IAM, as the admin from boto3's default chain."""

    def __init__(
        self,
        target: str,
        settings: AwsSettings,
        scope: Scope,
        boto: Any,
        caller: Mapping[str, str],
    ) -> None:
        self.admin_account = caller_account(caller["Arn"])
        self._target = target
        self._settings = settings
        self._scope = scope
        self._boto = boto
        self._account_id = caller["Account"]
        self._partition = caller["Arn"].split(":")[1]
        # AWS caps sessions that a role session assumes (role chaining) at one hour.
        self._chained = ":assumed-role/" in caller["Arn"]
        self._making_clients = threading.Lock()
        self._iam = self._client("iam")

    def _client(self, service: str, **credentials: Any) -> Any:
        # A boto3 session is not thread-safe, its clients are: batches and probes make
        # clients from several threads at once.
        with self._making_clients:
            return self._boto.client(
                service, endpoint_url=self._settings.endpoint_url, config=BOTO_CONFIG, **credentials
            )

    def _call(self, template: str, ref: AccountRef, **kwargs: Any) -> Any:
        """IAM names its user and role calls alike (attach_user_policy / attach_role_policy,
        UserName / RoleName): ``template`` is the call with ``{}`` for the kind."""
        method = getattr(self._iam, template.format(ref.kind))
        return method(**{f"{ref.kind.capitalize()}Name": ref.name}, **kwargs)

    def _pages(self, template: str, ref: AccountRef, key: str) -> list[Any]:
        paginator = self._iam.get_paginator(template.format(ref.kind))
        pages = paginator.paginate(**{f"{ref.kind.capitalize()}Name": ref.name})
        return [item for page in pages for item in page.get(key, [])]

    # ------------------------------------------------------------ reading

    def read(self) -> Snapshot:
        with boto_errors(f"read {self._target}", TargetUnreachable):
            users = list(self._authorization_details("User", "UserDetailList"))
            roles = list(self._authorization_details("Role", "RoleDetailList"))
            groups = list(self._authorization_details("Group", "GroupDetailList"))
            scoped = transform.scoped_users(self._target, users, *self._scope_args())
            keys = {
                user["UserName"]: self._keys(AccountRef("user", user["UserName"]))
                for user in scoped
            }
            unknown = self._unknown(groups)
        snapshot = transform.transform(
            self._target, users, roles, keys, *self._scope_args(), groups=groups
        )
        return replace(snapshot, unknown=unknown)

    def _unknown(self, groups: list[dict[str, Any]]) -> dict[str, str]:
        """The policy's ``policy:ARN`` and ``group:NAME`` entitlements naming a managed
        policy or a group this account does not have."""
        names = {str(g.get("GroupName")) for g in groups}
        unknown = {}
        for text in sorted(self._scope.entitlements):
            kind, value = parse_entitlement(text)
            if kind == "group" and value not in names:
                unknown[text] = f"no IAM group {value} in this account"
            elif kind == "policy" and self._absent_policy(value):
                unknown[text] = f"no managed policy {value} (or it cannot be attached)"
        return unknown

    def _absent_policy(self, arn: str) -> bool:
        return absent_is_none(lambda: self._iam.get_policy(PolicyArn=arn)) is None

    def _scope_args(self) -> tuple[Scope, str | None, str]:
        return self._scope, self.admin_account, self._settings.path_prefix

    def _authorization_details(self, kind: str, key: str) -> Iterator[dict[str, Any]]:
        # One paginated call returns every user or role with its policies and groups, where
        # the per-account List* calls would cost two or three requests per account.
        paginator = self._iam.get_paginator("get_account_authorization_details")
        for page in paginator.paginate(Filter=[kind]):
            yield from page.get(key, [])

    def _in_scope(self, ref: AccountRef, path: str) -> bool:
        return transform.in_scope(ref, path, *self._scope_args())

    def _keys(self, ref: AccountRef) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = self._call("list_access_keys", ref)["AccessKeyMetadata"]
        return keys

    def read_account(self, account: str) -> Account | None:
        ref = parse_account(account)
        with boto_errors(f"read {account}", TargetUnreachable):
            if absent_is_none(lambda: self._call("get_{}", ref)) is None:
                return None
            policies = [p["PolicyArn"] for p in self._attached(ref)]
            if ref.kind == "role":
                inline = self._pages("list_role_policies", ref, "PolicyNames")
                return transform.role_account(ref, policies, inline)
            groups = [g["GroupName"] for g in self._pages("list_groups_for_user", ref, "Groups")]
            administering = frozenset(g for g in groups if self._administers(g))
            return transform.user_account(ref, policies, groups, self._keys(ref), administering)

    def _administers(self, group: str) -> bool:
        paginator = self._iam.get_paginator("list_attached_group_policies")
        arns = [
            p["PolicyArn"]
            for page in paginator.paginate(GroupName=group)
            for p in page.get("AttachedPolicies", [])
        ]
        return transform.administrators(arns) is not None

    def _attached(self, ref: AccountRef) -> list[dict[str, str]]:
        return self._pages("list_attached_{}_policies", ref, "AttachedPolicies")

    def key_last_used(self, account: str) -> dict[str, datetime | None]:
        """Each access key of a user with when it last signed a request (None: never), for
        dormancy findings. Roles have no keys; a missing user has none either."""
        ref = parse_account(account)
        if ref.kind == "role":
            return {}
        with boto_errors(f"read keys of {account}", TargetUnreachable):
            listed = absent_is_none(lambda: self._call("list_access_keys", ref))
            key_ids = [key["AccessKeyId"] for key in listed["AccessKeyMetadata"]] if listed else []
            return {key_id: key_last_used(self._iam, key_id) for key_id in key_ids}

    def observe_usage(self) -> list[Usage]:
        """When each in-scope user's keys and each in-scope role were last used (usage.py
        says what it costs)."""
        with boto_errors(f"observe usage on {self._target}", TargetUnreachable):
            pages = self._iam.get_paginator("list_users").paginate()
            users = [
                (f"user/{user['UserName']}", user["UserName"])
                for page in pages
                for user in page["Users"]
                if self._in_scope(AccountRef("user", user["UserName"]), user["Path"])
            ]
            roles = [
                (f"role/{role['RoleName']}", role)
                for role in self._authorization_details("Role", "RoleDetailList")
                if self._in_scope(AccountRef("role", role["RoleName"]), role["Path"])
            ]
            return [*users_usage(self._iam, users), *roles_usage(roles)]

    # ------------------------------------------------------------ changing

    # Each operation ignores ``secret``: AWS mints access keys itself, and roles have none.

    def create_account(self, account: str, secret: Secret) -> Credential | None:
        with self._changing(Op.CREATE_ACCOUNT, account) as ref:
            return self._create(ref)

    def grant(self, account: str, entitlement: str) -> None:
        with self._changing(Op.GRANT, account) as ref:
            kind, value = parse_entitlement(entitlement)
            if kind == "group":
                self._call("add_user_to_group", _user_only(ref, entitlement), GroupName=value)
            else:
                self._call("attach_{}_policy", ref, PolicyArn=value)

    def revoke(self, account: str, entitlement: str) -> None:
        with self._changing(Op.REVOKE, account) as ref:
            kind, value = parse_entitlement(entitlement)
            if kind == "group":
                self._call("remove_user_from_group", _user_only(ref, entitlement), GroupName=value)
            else:
                self._call("detach_{}_policy", ref, PolicyArn=value)

    def suspend_account(self, account: str, secret: Secret) -> Credential | None:
        """Returns None: a suspended user holds no key, and a role never holds one."""
        with self._changing(Op.SUSPEND_ACCOUNT, account) as ref:
            self._suspend(ref)
        return None

    def restore_account(self, account: str, secret: Secret) -> Credential | None:
        with self._changing(Op.RESTORE_ACCOUNT, account) as ref:
            return self._restore(ref)

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        with self._changing(Op.ROTATE_CREDENTIAL, account) as ref:
            return self._rotate(ref)

    def end_sessions(self, account: str) -> None:
        with self._changing(Op.END_SESSIONS, account) as ref:
            self._revoke_older_sessions(ref)

    def delete_account(self, account: str) -> None:
        with self._changing(Op.DELETE_ACCOUNT, account) as ref:
            self._delete(ref)

    @contextmanager
    def _changing(self, op: Op, account: str) -> Iterator[AccountRef]:
        ref = self._managed(account)
        with boto_errors(f"{op} {account}", ActionFailed):
            yield ref

    def _managed(self, account: str) -> AccountRef:
        # Defence in depth: the engine never plans these, and lockstep must never lock itself out.
        if account == self.admin_account:
            raise ActionFailed(f"{account} is the identity lockstep acts as: never managed")
        if account in self._scope.excluded:
            raise ActionFailed(f"{account} is excluded from management on {self._target}")
        try:
            return parse_account(account)
        except GrammarError as exc:
            raise ActionFailed(str(exc)) from exc

    def _create(self, ref: AccountRef) -> Credential | None:
        path = self._settings.path_prefix
        if ref.kind == "role":
            trust = trust_account_document(self._partition, self._account_id)
            self._iam.create_role(
                RoleName=ref.name,
                Path=path,
                AssumeRolePolicyDocument=trust,
                Description="Managed by lockstep",
                Tags=[MANAGED_TAG],
            )
            return None
        self._iam.create_user(UserName=ref.name, Path=path, Tags=[MANAGED_TAG])
        return self._new_key(ref)

    def _new_key(self, ref: AccountRef) -> Credential:
        key = self._call("create_access_key", ref)["AccessKey"]
        return Credential(username=key["AccessKeyId"], secret=Secret(key["SecretAccessKey"]))

    def _delete_keys(self, ref: AccountRef, keep: str | None = None) -> None:
        for key in self._call("list_access_keys", ref)["AccessKeyMetadata"]:
            if key["AccessKeyId"] != keep:
                self._call("delete_access_key", ref, AccessKeyId=key["AccessKeyId"])

    def _restore(self, ref: AccountRef) -> Credential | None:
        if ref.kind == "user":
            return self._new_key(ref)
        # A revoke-older-sessions policy stays: the sessions it ended must stay ended.
        absent_is_none(lambda: self._call("delete_role_policy", ref, PolicyName=SUSPENDED_POLICY))
        self._call("untag_role", ref, TagKeys=[SUSPENDED_TAG])
        return None

    def _rotate(self, ref: AccountRef) -> Credential:
        if ref.kind == "role":
            raise ActionFailed(f"rotate_credential {ref}: roles have no static credential")
        credential = self._new_key(ref)
        self._delete_keys(ref, keep=credential.username)
        return credential

    # ------------------------------------------------------------ two keys at once

    def add_credential(self, account: str, secret: Secret | None) -> Credential:
        """A second access key while the first keeps working. ``secret`` is ignored: AWS mints
        keys. A user already holding two (AWS's limit) fails, naming them: which one goes is
        the operator's call, never lockstep's."""
        ref = self._user_with_keys(account, "add_credential")
        with boto_errors(f"add_credential {account}", ActionFailed):
            keys = self._call("list_access_keys", ref)["AccessKeyMetadata"]
            if len(keys) >= MAX_KEYS_PER_USER:
                held = ", ".join(
                    f"{key['AccessKeyId']} ({key['Status']}, created {key['CreateDate']:%Y-%m-%d})"
                    for key in sorted(keys, key=lambda key: key["CreateDate"])
                )
                raise ActionFailed(
                    f"add_credential {account}: it already holds two access keys, AWS's limit: "
                    f"{held}; delete the one that must go first (lockstep never picks one)"
                )
            return self._new_key(ref)

    def retire_credential(self, account: str, credential: Credential) -> None:
        """Delete exactly that access key, and only while another Active key remains: retiring
        the last one would cut the user off, which is suspension's job."""
        ref = self._user_with_keys(account, "retire_credential")
        what = f"retire_credential {account} {credential.username}"
        with boto_errors(what, ActionFailed):
            keys = self._call("list_access_keys", ref)["AccessKeyMetadata"]
            key_ids = {key["AccessKeyId"] for key in keys}
            others = [k for k in keys if k["AccessKeyId"] != credential.username]
            if credential.username not in key_ids:
                raise ActionFailed(f"{what}: not an access key of {account}")
            if not any(key["Status"] == "Active" for key in others):
                raise ActionFailed(
                    f"{what}: it is the last Active key of {account}; add one first, or "
                    "suspend the account"
                )
            self._call("delete_access_key", ref, AccessKeyId=credential.username)

    def _user_with_keys(self, account: str, what: str) -> AccountRef:
        ref = self._managed(account)
        if ref.kind == "role":
            raise ActionFailed(f"{what} {account}: roles have no static credential")
        return ref

    def _suspend(self, ref: AccountRef) -> None:
        if ref.kind == "user":
            # IAM cannot disable a user: its credentials go (a service user should have no
            # console password; if it has one it goes too). That does not end temporary
            # credentials obtained with a key (GetSessionToken: up to 36 h), hence the deny.
            self._delete_keys(ref)
            absent_is_none(lambda: self._call("delete_login_profile", ref))
            self._revoke_older_sessions(ref)
            return
        self._call(
            "put_role_policy", ref, PolicyName=SUSPENDED_POLICY, PolicyDocument=deny_all_document()
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self._call("tag_role", ref, Tags=[{"Key": SUSPENDED_TAG, "Value": now}])

    def _revoke_older_sessions(self, ref: AccountRef) -> None:
        document = revoke_older_sessions_document(datetime.now(UTC))
        self._call("put_{}_policy", ref, PolicyName=REVOKE_SESSIONS_POLICY, PolicyDocument=document)

    def _delete(self, ref: AccountRef) -> None:
        # IAM refuses to delete a principal that still has anything attached (DeleteConflict).
        for policy in self._attached(ref):
            self._call("detach_{}_policy", ref, PolicyArn=policy["PolicyArn"])
        for name in self._pages("list_{}_policies", ref, "PolicyNames"):
            self._call("delete_{}_policy", ref, PolicyName=name)
        if ref.kind == "user":
            for group in self._pages("list_groups_for_user", ref, "Groups"):
                self._call("remove_user_from_group", ref, GroupName=group["GroupName"])
            self._delete_keys(ref)
            absent_is_none(lambda: self._call("delete_login_profile", ref))
        else:
            profiles = self._pages("list_instance_profiles_for_role", ref, "InstanceProfiles")
            for profile in profiles:
                self._call(
                    "remove_role_from_instance_profile",
                    ref,
                    InstanceProfileName=profile["InstanceProfileName"],
                )
        self._call("delete_{}", ref)

    # ------------------------------------------------------------ leases (leases.py)

    def issue_lease(
        self,
        lease_account: str,
        template: str,
        entitlements: frozenset[str],
        secret: Secret,
        expires_at: datetime,
    ) -> Credential:
        """An STS session of the role ``template`` named ``lease_account``, ending at
        ``expires_at`` (15 minutes at least) and holding only ``entitlements``. ``secret`` is
        ignored: STS mints the credential, whose ``token`` is the session token."""
        ref = self._managed(template)
        if ref.kind == "user":
            raise ActionFailed(
                f"lease on {template}: leases on AWS are role sessions; declare a role "
                "(role/NAME) for this identity"
            )
        what = f"issue lease {lease_account} on {template}"
        with closing(self._client("sts")) as sts, boto_errors(what, ActionFailed):
            lease = aws_leases.LeaseRequest(str(ref), lease_account, entitlements, expires_at)
            return aws_leases.issue(self._iam, sts, lease, datetime.now(UTC), self._chained)

    def renew_lease(self, lease_account: str, expires_at: datetime) -> None:
        raise ActionFailed(
            f"renew lease {lease_account}: AWS STS credentials cannot be extended; issue a new "
            "lease (the old one ends at its own expiry, or revoke it)"
        )

    def revoke_lease(self, lease_account: str) -> None:
        """Deny everything to that one session: STS cannot end a session, but a deny in its
        role's policy applies to it at once (after IAM's propagation delay)."""
        with boto_errors(f"revoke lease {lease_account}", ActionFailed):
            aws_leases.revoke(self._iam, lease_account, self._lease_roles())

    def list_leases(self, prefix: str) -> list[LeaseAccount]:
        """Leases issued here and not revoked, found by their markers: STS sessions themselves
        cannot be listed."""
        with boto_errors(f"list leases on {self._target}", TargetUnreachable):
            return aws_leases.live_leases(prefix, self._lease_roles())

    def _lease_roles(self) -> list[dict[str, Any]]:
        # Every role but excluded ones: a role that left the policy keeps its leases' markers.
        return [
            role
            for role in self._authorization_details("Role", "RoleDetailList")
            if f"role/{role['RoleName']}" not in self._scope.excluded
        ]

    # ------------------------------------------------------------ probing

    def probe(self, credential: Credential) -> ProbeResult:
        """Sign sts:GetCallerIdentity with the credential, as a workload would. AWS answers it
        for any valid key whatever the policies say, so for an access key the answer is about
        the key alone. A role session (a lease) passes it even once revoked, since a revoked
        lease is denied by policy, not invalidated: it must also read its own role
        (iam:GetRole), which its lease marker allows while the lease lives and denies once
        revoked."""
        with boto_errors(f"probe {credential.username}", TargetUnreachable):
            caller = self._signed(credential, "sts", lambda sts: sts.get_caller_identity())
            if caller is None:
                return ProbeResult.REFUSED
            account = caller_account(caller["Arn"])
            if credential.token is None or account is None or not account.startswith("role/"):
                return ProbeResult.ACCEPTED
            role_name = account.removeprefix("role/")
            read = self._signed(credential, "iam", lambda iam: iam.get_role(RoleName=role_name))
        return ProbeResult.REFUSED if read is None else ProbeResult.ACCEPTED

    def _signed(self, credential: Credential, service: str, call: Callable[[Any], Any]) -> Any:
        """``call`` on a client signed with ``credential``; None when AWS refused it."""
        client = self._client(
            service,
            aws_access_key_id=credential.username,
            aws_secret_access_key=credential.secret.reveal(),
            aws_session_token=credential.token.reveal() if credential.token else None,
        )
        with closing(client):
            try:
                return call(client)
            except aws_errors.ClientError as exc:
                if code(exc) in REFUSALS:
                    return None
                raise

    def close(self) -> None:
        self._iam.close()


def _user_only(ref: AccountRef, entitlement: str) -> AccountRef:
    if ref.kind != "user":
        raise ActionFailed(f"{entitlement}: IAM roles cannot be members of groups ({ref})")
    return ref
