"""The AWS IAM connector against a moto server with authentication enforced.

Nothing of lockstep or boto3 is mocked: every action goes over HTTP to the emulator, and every
credential verdict comes from signing a real request with the key. What moto does not enforce
(Inactive keys, expired STS credentials, aws:TokenIssueTime) is shown here as a state check,
and written down in docs/aws.md.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from lockstep.connectors.aws.connector import AwsConnectorType, AwsSession
from lockstep.connectors.aws.grammar import AwsSettings
from lockstep.connectors.aws.session import REVOKE_SESSIONS_POLICY
from lockstep.connectors.aws.transform import SUSPENDED_POLICY
from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    GrammarError,
    ProbeResult,
    Scope,
    TargetUnreachable,
    secret_fields,
)
from lockstep.model import Op, Target
from lockstep.secret import generate_password

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that pytest rewrites its asserts
    from services.moto_server import MotoServer

pytest_plugins = ["services.moto_server"]

CONNECTOR = AwsConnectorType()
NO_SCOPE = Scope(declared=frozenset(), excluded=frozenset())
ALLOW_LIST_USERS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
    }
)


@pytest.fixture
def session(aws_target: Target) -> Iterator[AwsSession]:
    opened = CONNECTOR.open(aws_target, NO_SCOPE)
    yield opened
    opened.close()


@pytest.fixture
def admin(moto_server: MotoServer, aws_target: Target) -> Any:
    """A plain boto3 IAM client as the admin, to arrange what lockstep does not create and to
    look at what the connector does not report."""
    return moto_server.client("iam")


# What operations that take a secret are given: AWS mints access keys itself.
IGNORED = generate_password()


def create_user(session: AwsSession, account: str = "user/payments-api") -> Credential:
    credential = session.create_account(account, IGNORED)
    assert isinstance(credential, Credential)
    return credential


def target_with(target: Target, **changes: object) -> Target:
    """``target`` with some of its settings changed, validated as the loader validates them."""
    settings = AwsSettings.model_validate(target.settings).model_dump()
    return dataclasses.replace(target, settings=AwsSettings.model_validate(settings | changes))


def make_policy(admin: Any) -> str:
    """A customer-managed policy under a path (moto loads no AWS-managed ones by default)."""
    created = admin.create_policy(
        PolicyName="orders-read", Path="/team/", PolicyDocument=ALLOW_LIST_USERS
    )
    return str(created["Policy"]["Arn"])


def error_code(moto_server: MotoServer, credential: Credential) -> str:
    """What AWS answers to a workload signing with ``credential``."""
    try:
        moto_server.client("sts", credential.username, credential.secret).get_caller_identity()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "OK"


# ---------------------------------------------------------------- grammar (no server)


@pytest.mark.parametrize(
    "name",
    ["user/a;b", "user/../x", "group/x", "user/", "role/", "user", "", "USER/x", "user/a b",
     "user/é", "user/a\n", "role/x/y", "user/" + "a" * 65, "arn:aws:iam::123456789012:user/x"],
)  # fmt: skip
def test_check_account_rejects_names_iam_cannot_hold(name: str) -> None:
    with pytest.raises(GrammarError, match="user/NAME or role/NAME"):
        CONNECTOR.check_account(name)


@pytest.mark.parametrize("name", ["user/payments-api", "role/ci+deploy=x,y.z@corp_1", "user/a"])
def test_check_account_accepts_iam_names(name: str) -> None:
    CONNECTOR.check_account(name)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("policy:arn:aws:iam::123456789012:policy/team/Orders-Read",
         "policy:arn:aws:iam::123456789012:policy/team/Orders-Read"),
        ("policy:arn:aws:iam::aws:policy/ReadOnlyAccess",
         "policy:arn:aws:iam::aws:policy/ReadOnlyAccess"),
        (" Group:Deployers ", "group:Deployers"),
    ],
)  # fmt: skip
def test_parse_entitlement_canonical_form_keeps_case_of_names(text: str, canonical: str) -> None:
    assert CONNECTOR.parse_entitlement(text) == canonical


@pytest.mark.parametrize(
    "text",
    ["policy:ReadOnlyAccess", "policy:arn:aws:s3:::bucket", "policy:arn:aws:iam::12345:policy/x",
     "policy:arn:aws:iam::123456789012:role/x", "group:a;b", "group:", "role:x", "SELECT"],
)  # fmt: skip
def test_parse_entitlement_rejects_other_shapes(text: str) -> None:
    with pytest.raises(GrammarError, match="policy:arn:aws:iam::"):
        CONNECTOR.parse_entitlement(text)


def test_settings_forbid_unknown_keys_and_bad_paths() -> None:
    model = CONNECTOR.settings_model()
    assert model.model_validate({"region": "eu-west-1"}).model_dump()["path_prefix"] == "/"
    for bad in ({"region": "eu-west-1", "access_key": "x"}, {"region": "x", "path_prefix": "svc"}):
        with pytest.raises(ValueError, match=r"access_key|path_prefix"):
            model.model_validate(bad)
    assert secret_fields(model) == frozenset()
    assert CONNECTOR.default_excluded(AwsSettings(region="eu-west-1")) == frozenset()


def test_every_operation_lists_its_iam_permissions() -> None:
    assert set(CONNECTOR.permissions) == set(Op)
    assert all(p.startswith("iam:") for perms in CONNECTOR.permissions.values() for p in perms)


# ---------------------------------------------------------------- reading


def test_empty_account_reads_empty_and_never_shows_the_admin(
    session: AwsSession, moto_server: MotoServer
) -> None:
    assert session.admin_account == f"user/{moto_server.admin_user}"
    assert session.read().accounts == {}


def test_the_propagation_window_is_the_targets_own_or_ten_seconds(aws_target: Target) -> None:
    assert CONNECTOR.propagation_window(aws_target.settings) == 0.0  # moto's, as set
    assert CONNECTOR.propagation_window(AwsSettings(region="eu-west-1")) == 10.0  # real AWS


def test_the_admin_cannot_be_touched(session: AwsSession) -> None:
    with pytest.raises(ActionFailed, match="lockstep acts as"):
        session.delete_account(session.admin_account or "")


def test_scope_path_prefix_declared_excluded_and_service_linked_roles(
    aws_target: Target, admin: Any
) -> None:
    admin.create_user(UserName="in-prefix", Path="/svc/")
    admin.create_user(UserName="elsewhere")
    admin.create_user(UserName="declared")
    admin.create_user(UserName="excluded", Path="/svc/")
    admin.create_service_linked_role(AWSServiceName="autoscaling.amazonaws.com")
    target = target_with(aws_target, path_prefix="/")
    scope = Scope(declared=frozenset({"user/declared"}), excluded=frozenset({"user/excluded"}))
    everything = {"user/in-prefix", "user/elsewhere", "user/declared"}
    assert set(read_all(target, scope)) == everything
    target = target_with(target, path_prefix="/svc/")
    assert set(read_all(target, scope)) == {"user/in-prefix", "user/declared"}


def read_all(target: Target, scope: Scope) -> list[str]:
    session = CONNECTOR.open(target, scope)
    try:
        return list(session.read().accounts)
    finally:
        session.close()


# ---------------------------------------------------------------- users


def test_created_user_is_tagged_enabled_and_its_key_works(session: AwsSession, admin: Any) -> None:
    credential = create_user(session)
    assert credential.username.startswith("AKIA")
    assert session.probe(credential) is ProbeResult.ACCEPTED
    account = session.read().accounts["user/payments-api"]
    assert account.enabled and account.entitlements == frozenset() and account.sessions == -1
    assert session.read_account("user/payments-api") == account
    tags = admin.list_user_tags(UserName="payments-api")["Tags"]
    assert {"Key": "managed-by", "Value": "lockstep"} in tags
    assert session.read_account("user/nobody") is None


def test_grant_and_revoke_policy_and_group_read_back_canonical(
    session: AwsSession, admin: Any
) -> None:
    arn = make_policy(admin)
    admin.create_group(GroupName="Deployers")
    create_user(session)
    wanted = {CONNECTOR.parse_entitlement(f"policy:{arn}"), "group:Deployers"}
    for entitlement in wanted:
        session.grant("user/payments-api", entitlement)
    assert session.read().accounts["user/payments-api"].entitlements == wanted
    assert session.read_account("user/payments-api").entitlements == wanted  # type: ignore[union-attr]
    for entitlement in wanted:
        session.revoke("user/payments-api", entitlement)
    assert session.read().accounts["user/payments-api"].entitlements == frozenset()


def test_missing_group_and_policy_fail_the_action(session: AwsSession) -> None:
    create_user(session)
    with pytest.raises(ActionFailed, match=r"NoSuchEntity.*nope"):
        session.grant("user/payments-api", "group:nope")
    with pytest.raises(ActionFailed, match="NoSuchEntity"):
        session.grant("user/payments-api", "policy:arn:aws:iam::123456789012:policy/no")


def test_suspend_deletes_keys_only_and_restore_issues_a_new_one(
    session: AwsSession, admin: Any, moto_server: MotoServer
) -> None:
    arn = make_policy(admin)
    old = create_user(session)
    session.grant("user/payments-api", f"policy:{arn}")
    admin.create_login_profile(UserName="payments-api", Password="Console-Pa55word!")

    session.suspend_account("user/payments-api", IGNORED)
    with pytest.raises(ClientError, match="NoSuchEntity"):
        admin.get_login_profile(UserName="payments-api")
    assert session.probe(old) is ProbeResult.REFUSED
    assert error_code(moto_server, old) == "InvalidClientTokenId"
    suspended = session.read_account("user/payments-api")
    assert suspended is not None and not suspended.enabled
    assert suspended.entitlements == {f"policy:{arn}"}  # nothing but the keys went
    inline = admin.list_user_policies(UserName="payments-api")["PolicyNames"]
    assert inline == [REVOKE_SESSIONS_POLICY]  # temporary credentials from before end too

    new = session.restore_account("user/payments-api", IGNORED)
    assert isinstance(new, Credential) and new.username != old.username
    assert session.probe(new) is ProbeResult.ACCEPTED
    assert session.probe(old) is ProbeResult.REFUSED
    assert session.read().accounts["user/payments-api"].enabled


def test_rotate_leaves_only_the_new_key(session: AwsSession, admin: Any) -> None:
    old = create_user(session)
    new = session.rotate_credential("user/payments-api", IGNORED)
    assert isinstance(new, Credential)
    assert session.probe(old) is ProbeResult.REFUSED
    assert session.probe(new) is ProbeResult.ACCEPTED
    keys = admin.list_access_keys(UserName="payments-api")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [new.username]


def test_delete_removes_a_user_with_everything_attached(session: AwsSession, admin: Any) -> None:
    arn = make_policy(admin)
    admin.create_group(GroupName="deployers")
    credential = create_user(session)
    session.grant("user/payments-api", f"policy:{arn}")
    session.grant("user/payments-api", "group:deployers")
    session.end_sessions("user/payments-api")  # leaves an inline policy behind
    admin.create_login_profile(UserName="payments-api", Password="Console-Pa55word!")
    session.delete_account("user/payments-api")
    assert session.read_account("user/payments-api") is None
    assert session.probe(credential) is ProbeResult.REFUSED
    assert admin.get_group(GroupName="deployers")["Users"] == []


def test_end_sessions_keeps_a_users_key_working(session: AwsSession) -> None:
    credential = create_user(session)
    session.end_sessions("user/payments-api")
    assert session.probe(credential) is ProbeResult.ACCEPTED
    assert session.read().accounts["user/payments-api"].enabled


def test_moto_accepts_an_inactive_key_so_read_reports_the_state(
    session: AwsSession, admin: Any
) -> None:
    credential = create_user(session)
    admin.update_access_key(
        UserName="payments-api", AccessKeyId=credential.username, Status="Inactive"
    )
    # Real AWS refuses an Inactive key; moto does not check the status at all (docs/aws.md).
    assert session.probe(credential) is ProbeResult.ACCEPTED
    assert not session.read().accounts["user/payments-api"].enabled


def test_key_last_used_is_filled_by_a_signed_request(session: AwsSession) -> None:
    credential = create_user(session)
    assert session.key_last_used("user/payments-api") == {credential.username: None}
    session.probe(credential)
    assert session.key_last_used("user/payments-api")[credential.username] is not None
    assert session.key_last_used("user/nobody") == {}
    assert session.key_last_used("role/anything") == {}


# ---------------------------------------------------------------- roles


def assume(moto_server: MotoServer, admin: Any, role: str) -> Any:
    """An IAM client on a fresh session of ``role``. moto matches trust principals by exact
    ARN only, so the admin is trusted by name here; real AWS honours the account root."""
    admin_arn = f"arn:aws:iam::123456789012:user/{moto_server.admin_user}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}
        ],
    }
    admin.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust))
    arn = f"arn:aws:iam::123456789012:role/{role}"
    creds = moto_server.client("sts").assume_role(RoleArn=arn, RoleSessionName="workload")
    return boto3.client(
        "iam",
        region_name=moto_server.region,
        endpoint_url=moto_server.endpoint_url,
        aws_access_key_id=creds["Credentials"]["AccessKeyId"],
        aws_secret_access_key=creds["Credentials"]["SecretAccessKey"],
        aws_session_token=creds["Credentials"]["SessionToken"],
    )


def can_list_users(iam: Any) -> bool:
    try:
        iam.list_users()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied"
        return False
    return True


def test_role_lifecycle_suspension_denies_live_sessions(
    session: AwsSession, admin: Any, moto_server: MotoServer
) -> None:
    arn = make_policy(admin)
    assert session.create_account("role/etl", IGNORED) is None  # roles have no static key
    trust = admin.get_role(RoleName="etl")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    session.grant("role/etl", f"policy:{arn}")
    role = session.read().accounts["role/etl"]
    assert role.enabled and role.entitlements == {f"policy:{arn}"}
    live = assume(moto_server, admin, "etl")
    assert can_list_users(live)

    session.suspend_account("role/etl", IGNORED)
    assert admin.list_role_policies(RoleName="etl")["PolicyNames"] == [SUSPENDED_POLICY]
    tags = {t["Key"] for t in admin.list_role_tags(RoleName="etl")["Tags"]}
    assert "lockstep-suspended-at" in tags
    suspended = session.read_account("role/etl")
    assert suspended is not None and not suspended.enabled
    assert suspended.entitlements == {f"policy:{arn}"}
    assert not can_list_users(live)  # the session issued before suspension is cut off

    session.restore_account("role/etl", IGNORED)
    assert admin.list_role_policies(RoleName="etl")["PolicyNames"] == []
    assert session.read().accounts["role/etl"].enabled
    assert can_list_users(live)

    session.delete_account("role/etl")
    assert session.read_account("role/etl") is None


def test_role_end_sessions_rotate_and_groups(session: AwsSession, admin: Any) -> None:
    admin.create_group(GroupName="deployers")
    session.create_account("role/etl", IGNORED)
    session.end_sessions("role/etl")
    document = admin.get_role_policy(RoleName="etl", PolicyName=REVOKE_SESSIONS_POLICY)
    condition = document["PolicyDocument"]["Statement"][0]["Condition"]
    assert "aws:TokenIssueTime" in condition["DateLessThan"]
    assert session.read().accounts["role/etl"].enabled  # new sessions stay possible
    with pytest.raises(ActionFailed, match="no static credential"):
        session.rotate_credential("role/etl", IGNORED)
    with pytest.raises(ActionFailed, match="roles cannot be members of groups"):
        session.grant("role/etl", "group:deployers")


# ---------------------------------------------------------------- failures and secrets


def test_a_closed_port_is_unreachable_naming_the_endpoint(aws_target: Target) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TargetUnreachable, match="cannot reach AWS") as caught:
        CONNECTOR.open(target_with(aws_target, endpoint_url=closed), NO_SCOPE)
    assert "connect to aws-test: cannot reach AWS: " in str(caught.value)
    assert closed in str(caught.value)


def test_probe_against_a_stopped_endpoint_is_never_refused(session: AwsSession) -> None:
    credential = create_user(session)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        # Reaching in: the only way to point a live session at an endpoint that went away.
        session._settings = session._settings.model_copy(
            update={"endpoint_url": f"http://127.0.0.1:{s.getsockname()[1]}"}
        )
    with pytest.raises(TargetUnreachable):
        session.probe(credential)


def test_a_wrong_admin_secret_is_unreachable_and_says_why(
    aws_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-" + "x" * 27)
    with pytest.raises(TargetUnreachable, match="SignatureDoesNotMatch"):
        CONNECTOR.open(aws_target, NO_SCOPE)
