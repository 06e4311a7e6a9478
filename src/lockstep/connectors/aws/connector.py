"""AWS IAM: service users with access keys, and roles.

Accounts are ``user/NAME`` and ``role/NAME``. Entitlements are ``policy:ARN`` (a managed
policy attached) and ``group:NAME`` (group membership; IAM roles cannot join groups). A user's
credential is an access key pair that AWS mints; a role has no static credential.

IAM has no "disable" switch, so the states lockstep manages are built from what IAM has:

- a user is enabled while it holds an Active access key (keys are what a workload signs
  with); suspension deletes its keys, restoration mints a new one;
- a role is enabled unless lockstep's inline deny-all policy ``lockstep-suspended`` is
  attached; a deny in the role's own policy bites sessions already issued as well as new ones;
- ending sessions attaches the inline policy AWS documents for "revoke active sessions": deny
  everything to temporary credentials issued before now (``aws:TokenIssueTime``). Requests
  signed with a long-term access key carry no such key, so the key itself keeps working.

The admin lockstep acts as is not named in the policy: it is learned from STS at ``open`` and
never read, reported or touched. docs/aws.md says what the moto emulator does not enforce.

Sessions offer three optional capabilities: two access keys at once (zero-downtime rotation),
observed use of keys and roles (usage.py) and leases as STS role sessions (leases.py).
They do not watch changes: IAM has no cheap change token.

The names lockstep accepts, its settings and the policy documents it writes are in
grammar.py, which never calls AWS.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

import boto3  # type: ignore[import-untyped,unused-ignore]
from botocore import exceptions as aws_errors  # type: ignore[import-untyped,unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel

from lockstep.connectors.aws import leases as aws_leases
from lockstep.connectors.aws.grammar import (
    CAPABILITY_PERMISSIONS,
    PERMISSIONS,
    READ_PERMISSIONS,
    AccountRef,
    AwsSettings,
    caller_account,
    deny_all_document,
    parse_account,
    parse_entitlement,
    revoke_older_sessions_document,
    trust_account_document,
)
from lockstep.connectors.aws.usage import key_last_used, roles_usage, users_usage
from lockstep.connectors.base import (
    ActionFailed,
    ConnectorError,
    Credential,
    GrammarError,
    LeaseAccount,
    ProbeResult,
    Scope,
    TargetUnreachable,
    Usage,
)
from lockstep.model import Account, Action, Op, Snapshot, Target
from lockstep.secret import Secret, redact

SUSPENDED_POLICY = "lockstep-suspended"
REVOKE_SESSIONS_POLICY = "lockstep-revoke-older-sessions"
MANAGED_TAG = {"Key": "managed-by", "Value": "lockstep"}
SUSPENDED_TAG = "lockstep-suspended-at"
SERVICE_LINKED_PATH = "/aws-service-role/"

# Error codes with which AWS refuses a credential: the server answered, so the verdict is sure.
_REFUSALS = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AuthFailure",
        "ExpiredToken",
    }
)

# Real AWS answers in well under a second; a stuck endpoint must surface as unreachable fast,
# not after botocore's default 60 s timeouts times its retries.
_BOTO_CONFIG = Config(
    connect_timeout=5,
    read_timeout=5,
    retries={"max_attempts": 3, "mode": "standard"},
    user_agent_extra="lockstep",
)

_CREDENTIALS_HINT = (
    "admin credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
)

_MAX_KEYS_PER_USER = 2
# ---------------------------------------------------------------- the boto3 boundary


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _message(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


@contextmanager
def _aws_errors(what: str, failure: type[ConnectorError]) -> Iterator[None]:
    """Turn botocore's exceptions into the connector's, with messages fit to show a user.

    ``failure`` is what an AWS refusal means here: ActionFailed for a change, TargetUnreachable
    for a read (an unreadable target must yield no verdict). Not reaching AWS is always
    TargetUnreachable. AWS error texts carry no secret; ``redact`` is the last line anyway.
    """
    try:
        yield
    except aws_errors.ClientError as exc:
        raise failure(redact(f"{what}: {_code(exc)}: {_message(exc)}")) from exc
    except (aws_errors.ParamValidationError, aws_errors.ValidationError) as exc:
        raise failure(redact(f"{what}: {exc}")) from exc
    except aws_errors.NoCredentialsError as exc:
        raise TargetUnreachable(f"{what}: {exc} ({_CREDENTIALS_HINT})") from exc
    except (aws_errors.ConnectionError, aws_errors.HTTPClientError) as exc:
        raise TargetUnreachable(redact(f"{what}: cannot reach AWS: {exc}")) from exc
    except aws_errors.BotoCoreError as exc:  # credentials or configuration that cannot be loaded
        raise TargetUnreachable(redact(f"{what}: {exc}")) from exc


def _absent_is_none(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except aws_errors.ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return None
        raise


# The secrets in an XML (query protocol) or a JSON response body.
_SECRET_FIELDS = ("SecretAccessKey", "SessionToken")
_SECRET_IN_BODY = re.compile(
    r'(<(?:SecretAccessKey|SessionToken)>|"(?:SecretAccessKey|SessionToken)":\s*")[^<"]*'
)
# Where botocore logs secrets at DEBUG: response bodies (parsers), and the session token a
# request is signed with (endpoint: the request's headers; auth: the canonical request).
_LOGGERS_WITH_SECRETS = ("botocore.parsers", "botocore.endpoint", "botocore.auth")


class _ScrubSecrets(logging.Filter):
    """CreateAccessKey's and AssumeRole's response bodies hold new secrets before lockstep has
    even seen (and registered) them: those are masked by field name. A token lockstep already
    holds as a ``Secret`` is masked wherever it appears."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(arg) for arg in record.args)
        return True


def _scrub(value: object) -> object:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    cleaned = redact(text)
    if any(field in cleaned for field in _SECRET_FIELDS):
        cleaned = _SECRET_IN_BODY.sub(r"\1***", cleaned)
    return value if cleaned == text else cleaned


_SCRUBBER = _ScrubSecrets()


# ---------------------------------------------------------------- session


class AwsSession:
    """A live connection to one AWS account's IAM, as the admin from boto3's default chain."""

    def __init__(
        self,
        target: str,
        settings: AwsSettings,
        scope: Scope,
        boto: Any,
        caller: Mapping[str, str],
    ) -> None:
        # Per target: the emulator forgets keys at once, real AWS within seconds.
        self.propagation_window_s = settings.propagation_window
        self.admin_account = caller_account(caller["Arn"])
        self._target = target
        self._settings = settings
        self._scope = scope
        self._boto = boto
        self._account_id = caller["Account"]
        self._partition = caller["Arn"].split(":")[1]
        # AWS caps sessions that a role session assumes (role chaining) at one hour.
        self._chained = ":assumed-role/" in caller["Arn"]
        self._iam = self._client("iam")

    def _client(self, service: str, **credentials: Any) -> Any:
        return self._boto.client(
            service, endpoint_url=self._settings.endpoint_url, config=_BOTO_CONFIG, **credentials
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
        with _aws_errors(f"read {self._target}", TargetUnreachable):
            accounts = [*self._read_users(), *self._read_roles()]
        return Snapshot(self._target, {account.name: account for account in accounts})

    def _authorization_details(self, kind: str, key: str) -> Iterator[dict[str, Any]]:
        # One paginated call returns every user or role with its policies and groups, where
        # the per-account List* calls would cost two or three requests per account.
        paginator = self._iam.get_paginator("get_account_authorization_details")
        for page in paginator.paginate(Filter=[kind]):
            yield from page.get(key, [])

    def _read_users(self) -> Iterator[Account]:
        for user in self._authorization_details("User", "UserDetailList"):
            ref = AccountRef("user", user["UserName"])
            if self._in_scope(ref, user["Path"]):
                policies = [p["PolicyArn"] for p in user["AttachedManagedPolicies"]]
                yield self._user(ref, policies, user["GroupList"])

    def _read_roles(self) -> Iterator[Account]:
        for role in self._authorization_details("Role", "RoleDetailList"):
            ref = AccountRef("role", role["RoleName"])
            if self._in_scope(ref, role["Path"]):
                policies = [p["PolicyArn"] for p in role["AttachedManagedPolicies"]]
                inline = [p["PolicyName"] for p in role.get("RolePolicyList", [])]
                yield _role(ref, policies, inline)

    def _in_scope(self, ref: AccountRef, path: str) -> bool:
        name = str(ref)
        if name in self._scope.excluded or name == self.admin_account:
            return False
        if path.startswith(SERVICE_LINKED_PATH):  # owned by an AWS service, not by anyone here
            return False
        return name in self._scope.declared or path.startswith(self._settings.path_prefix)

    def _user(self, ref: AccountRef, policies: list[str], groups: list[str]) -> Account:
        # Key status is in no bulk call but the credential report, which can be hours old.
        keys = self._call("list_access_keys", ref)["AccessKeyMetadata"]
        enabled = any(key["Status"] == "Active" for key in keys)
        return Account(str(ref), _entitlements(policies, groups), enabled, sessions=-1)

    def read_account(self, account: str) -> Account | None:
        ref = parse_account(account)
        with _aws_errors(f"read {account}", TargetUnreachable):
            if _absent_is_none(lambda: self._call("get_{}", ref)) is None:
                return None
            policies = [p["PolicyArn"] for p in self._attached(ref)]
            if ref.kind == "role":
                return _role(ref, policies, self._pages("list_role_policies", ref, "PolicyNames"))
            groups = [g["GroupName"] for g in self._pages("list_groups_for_user", ref, "Groups")]
            return self._user(ref, policies, groups)

    def _attached(self, ref: AccountRef) -> list[dict[str, str]]:
        return self._pages("list_attached_{}_policies", ref, "AttachedPolicies")

    def key_last_used(self, account: str) -> dict[str, datetime | None]:
        """Each access key of a user with when it last signed a request (None: never), for
        dormancy findings. Roles have no keys; a missing user has none either."""
        ref = parse_account(account)
        if ref.kind == "role":
            return {}
        with _aws_errors(f"read keys of {account}", TargetUnreachable):
            listed = _absent_is_none(lambda: self._call("list_access_keys", ref))
            key_ids = [key["AccessKeyId"] for key in listed["AccessKeyMetadata"]] if listed else []
            return {key_id: key_last_used(self._iam, key_id) for key_id in key_ids}

    def observe_usage(self) -> list[Usage]:
        """When each in-scope user's keys and each in-scope role were last used (usage.py
        says what it costs)."""
        with _aws_errors(f"observe usage on {self._target}", TargetUnreachable):
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

    def execute(self, action: Action, secret: Secret | None) -> Credential | None:
        """``secret`` is ignored: AWS mints access keys itself, and roles have none."""
        ref = self._managed(action.account)
        with _aws_errors(f"{action.op} {action.account}", ActionFailed):
            match action.op:
                case Op.CREATE_ACCOUNT:
                    return self._create(ref)
                case Op.RESTORE_ACCOUNT:
                    return self._restore(ref)
                case Op.ROTATE_CREDENTIAL:
                    return self._rotate(ref)
                case Op.GRANT:
                    self._grant(ref, _required_entitlement(action))
                case Op.REVOKE:
                    self._revoke(ref, _required_entitlement(action))
                case Op.SUSPEND_ACCOUNT:
                    self._suspend(ref)
                case Op.END_SESSIONS:
                    self._revoke_older_sessions(ref)
                case Op.DELETE_ACCOUNT:
                    self._delete(ref)
        return None

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
        _absent_is_none(lambda: self._call("delete_role_policy", ref, PolicyName=SUSPENDED_POLICY))
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
        with _aws_errors(f"add_credential {account}", ActionFailed):
            keys = self._call("list_access_keys", ref)["AccessKeyMetadata"]
            if len(keys) >= _MAX_KEYS_PER_USER:
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
        with _aws_errors(what, ActionFailed):
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

    def _grant(self, ref: AccountRef, entitlement: str) -> None:
        kind, value = parse_entitlement(entitlement)
        if kind == "group":
            self._call("add_user_to_group", _user_only(ref, entitlement), GroupName=value)
        else:
            self._call("attach_{}_policy", ref, PolicyArn=value)

    def _revoke(self, ref: AccountRef, entitlement: str) -> None:
        kind, value = parse_entitlement(entitlement)
        if kind == "group":
            self._call("remove_user_from_group", _user_only(ref, entitlement), GroupName=value)
        else:
            self._call("detach_{}_policy", ref, PolicyArn=value)

    def _suspend(self, ref: AccountRef) -> None:
        if ref.kind == "user":
            # IAM cannot disable a user: its credentials go (a service user should have no
            # console password; if it has one it goes too). That does not end temporary
            # credentials obtained with a key (GetSessionToken: up to 36 h), hence the deny.
            self._delete_keys(ref)
            _absent_is_none(lambda: self._call("delete_login_profile", ref))
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
            _absent_is_none(lambda: self._call("delete_login_profile", ref))
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
        with closing(self._client("sts")) as sts, _aws_errors(what, ActionFailed):
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
        with _aws_errors(f"revoke lease {lease_account}", ActionFailed):
            aws_leases.revoke(self._iam, lease_account, self._lease_roles())

    def list_leases(self, prefix: str) -> list[LeaseAccount]:
        """Leases issued here and not revoked, found by their markers: STS sessions themselves
        cannot be listed."""
        with _aws_errors(f"list leases on {self._target}", TargetUnreachable):
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
        with _aws_errors(f"probe {credential.username}", TargetUnreachable):
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
                if _code(exc) in _REFUSALS:
                    return None
                raise

    def close(self) -> None:
        self._iam.close()


def _entitlements(policies: list[str], groups: list[str]) -> frozenset[str]:
    return frozenset([*(f"policy:{arn}" for arn in policies), *(f"group:{g}" for g in groups)])


def _role(ref: AccountRef, policies: list[str], inline_policies: list[str]) -> Account:
    enabled = SUSPENDED_POLICY not in inline_policies
    return Account(str(ref), _entitlements(policies, []), enabled, sessions=-1)


def _required_entitlement(action: Action) -> str:
    if action.entitlement is None:
        raise ActionFailed(f"{action.op} {action.account}: no entitlement given")
    return action.entitlement


def _user_only(ref: AccountRef, entitlement: str) -> AccountRef:
    if ref.kind != "user":
        raise ActionFailed(f"{entitlement}: IAM roles cannot be members of groups ({ref})")
    return ref


# ---------------------------------------------------------------- connector type


class AwsConnectorType:
    name: ClassVar[str] = "aws"
    permissions: ClassVar[Mapping[Op, tuple[str, ...]]] = PERMISSIONS
    read_permissions: ClassVar[tuple[str, ...]] = READ_PERMISSIONS
    capability_permissions: ClassVar[Mapping[str, tuple[str, ...]]] = CAPABILITY_PERMISSIONS
    # IAM is eventually consistent: a deleted key can keep working for several seconds.
    propagation_window_s: ClassVar[float] = 10.0

    def settings_model(self) -> type[BaseModel]:
        return AwsSettings

    def secret_fields(self) -> frozenset[str]:
        return frozenset()

    def check_account(self, name: str) -> None:
        parse_account(name)

    def parse_entitlement(self, text: str) -> str:
        kind, value = parse_entitlement(text)
        return f"{kind}:{value}"

    def default_excluded(self, settings: Mapping[str, Any]) -> frozenset[str]:
        # The admin's name is not in the settings: the session learns it from STS and
        # excludes it itself (AwsSession.admin_account).
        return frozenset()

    def open(self, target: Target, scope: Scope) -> AwsSession:
        settings = AwsSettings.model_validate(dict(target.settings))
        for name in _LOGGERS_WITH_SECRETS:
            logging.getLogger(name).addFilter(_SCRUBBER)  # idempotent
        with _aws_errors(f"connect to {target.name}", TargetUnreachable):
            boto = boto3.session.Session(region_name=settings.region)
            sts = boto.client("sts", endpoint_url=settings.endpoint_url, config=_BOTO_CONFIG)
            try:
                caller = sts.get_caller_identity()
            finally:
                sts.close()
        return AwsSession(target.name, settings, scope, boto, caller)
