"""The AWS connector's optional capabilities against a moto server with authentication enforced:
zero-downtime key rotation, observed usage, and leases as STS role sessions.

Every credential verdict comes from signing a real request with the credential. Where moto does
not behave like AWS (it evaluates no policy condition, so a lease's revocation reaches every
session of its role), the test says so and docs/aws.md explains it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from lockstep.connectors.aws.connector import AwsConnectorType, AwsSession
from lockstep.connectors.aws.leases import (
    STS_MIN_SESSION_S,
    marker_name,
    parse_marker,
    session_duration,
)
from lockstep.connectors.aws.usage import KEY_SOURCE, ROLE_SOURCE
from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    LeaseAccount,
    ProbeResult,
    Scope,
)
from lockstep.model import LEASE_PREFIX, Target
from lockstep.secret import Secret, generate_password

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that pytest rewrites its asserts
    from services.moto_server import MotoServer

pytest_plugins = ["services.moto_server"]

CONNECTOR = AwsConnectorType()
USER = "user/payments-api"
ROLE = "role/etl"
LEASE = LEASE_PREFIX + "0123abcd"
ALLOW_LIST_USERS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
    }
)


@pytest.fixture
def session(aws_target: Target) -> Iterator[AwsSession]:
    scope = Scope(declared=frozenset(), excluded=frozenset({"user/break-glass"}))
    opened = CONNECTOR.open(aws_target, scope)
    yield opened
    opened.close()


@pytest.fixture
def admin(moto_server: MotoServer, aws_target: Target) -> Any:
    """A plain boto3 IAM client as the admin, to arrange and to look at what lockstep did."""
    return moto_server.client("iam")


def create_user(session: AwsSession) -> Credential:
    credential = session.create_account(USER, generate_password())  # AWS mints the key
    assert isinstance(credential, Credential)
    return credential


@pytest.fixture
def role(session: AwsSession, admin: Any, moto_server: MotoServer) -> str:
    """``role/etl``, created by lockstep and granted a policy that allows iam:ListUsers, with a
    trust policy naming the admin: moto matches trust principals by exact ARN, where real AWS
    lets the account root delegate to IAM."""
    session.create_account(ROLE, generate_password())
    arn = admin.create_policy(PolicyName="list-users", PolicyDocument=ALLOW_LIST_USERS)
    entitlement = f"policy:{arn['Policy']['Arn']}"
    session.grant(ROLE, entitlement)
    admin_arn = f"arn:aws:iam::123456789012:user/{moto_server.admin_user}"
    trust = {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}
    document = {"Version": "2012-10-17", "Statement": [trust]}
    admin.update_assume_role_policy(RoleName="etl", PolicyDocument=json.dumps(document))
    return entitlement


def issue(
    session: AwsSession, entitlement: str, lease: str = LEASE, ttl: timedelta | None = None
) -> Credential:
    expires_at = datetime.now(UTC) + (ttl or timedelta(minutes=20))
    return session.issue_lease(lease, ROLE, frozenset({entitlement}), Secret("unused"), expires_at)


def client_as(moto_server: MotoServer, credential: Credential, service: str) -> Any:
    """A client signed the way a workload holding ``credential`` signs."""
    return boto3.client(
        service,
        region_name=moto_server.region,
        endpoint_url=moto_server.endpoint_url,
        aws_access_key_id=credential.username,
        aws_secret_access_key=credential.secret.reveal(),
        aws_session_token=credential.token.reveal() if credential.token else None,
    )


def answer_to(moto_server: MotoServer, credential: Credential, call: str) -> str:
    """AWS's error code for ``call`` signed with ``credential``, or OK."""
    service, _, operation = call.partition(":")
    try:
        getattr(client_as(moto_server, credential, service), operation)()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "OK"


def key_ids(admin: Any) -> set[str]:
    keys = admin.list_access_keys(UserName="payments-api")["AccessKeyMetadata"]
    return {key["AccessKeyId"] for key in keys}


def inline_policies(admin: Any) -> dict[str, Any]:
    names = admin.list_role_policies(RoleName="etl")["PolicyNames"]
    return {n: admin.get_role_policy(RoleName="etl", PolicyName=n)["PolicyDocument"] for n in names}


# ---------------------------------------------------------------- zero-downtime rotation


def test_rotation_keeps_both_keys_working_until_the_old_one_is_retired(
    session: AwsSession, admin: Any, moto_server: MotoServer
) -> None:
    old = create_user(session)
    new = session.add_credential(USER, None)
    assert new.username != old.username
    assert key_ids(admin) == {old.username, new.username}
    for credential in (old, new):  # the workload may still sign with either
        assert session.probe(credential) is ProbeResult.ACCEPTED
        assert answer_to(moto_server, credential, "sts:get_caller_identity") == "OK"

    session.retire_credential(USER, old)
    assert key_ids(admin) == {new.username}
    assert session.probe(old) is ProbeResult.REFUSED
    assert answer_to(moto_server, old, "sts:get_caller_identity") == "InvalidClientTokenId"
    assert session.probe(new) is ProbeResult.ACCEPTED


def test_a_user_with_two_keys_gets_no_third_and_is_told_which_keys_it_holds(
    session: AwsSession, admin: Any
) -> None:
    first = create_user(session)
    second = session.add_credential(USER, None)
    with pytest.raises(ActionFailed, match="already holds two access keys") as raised:
        session.add_credential(USER, None)
    assert first.username in str(raised.value) and second.username in str(raised.value)
    assert key_ids(admin) == {first.username, second.username}  # nothing deleted


def test_retiring_the_last_active_key_or_a_foreign_key_is_refused(
    session: AwsSession, admin: Any
) -> None:
    only = create_user(session)
    with pytest.raises(ActionFailed, match="last Active key"):
        session.retire_credential(USER, only)
    second = session.add_credential(USER, None)
    admin.update_access_key(UserName="payments-api", AccessKeyId=second.username, Status="Inactive")
    with pytest.raises(ActionFailed, match="last Active key"):
        session.retire_credential(USER, only)
    stranger = Credential("AKIAEXAMPLE000000000", Secret("not-a-real-secret"))
    with pytest.raises(ActionFailed, match="not an access key of user/payments-api"):
        session.retire_credential(USER, stranger)
    assert key_ids(admin) == {only.username, second.username}


def test_roles_and_excluded_accounts_hold_no_second_credential(
    session: AwsSession, role: str
) -> None:
    with pytest.raises(ActionFailed, match="roles have no static credential"):
        session.add_credential(ROLE, None)
    with pytest.raises(ActionFailed, match="roles have no static credential"):
        session.retire_credential(ROLE, Credential("AKIAEXAMPLE000000000", Secret("x" * 8)))
    with pytest.raises(ActionFailed, match="excluded"):
        session.add_credential("user/break-glass", None)


# ---------------------------------------------------------------- usage


def test_usage_appears_after_a_key_signs_and_after_a_role_session_acts(
    session: AwsSession, role: str, moto_server: MotoServer
) -> None:
    key = create_user(session)
    assert session.observe_usage() == []  # nothing has signed anything yet
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert answer_to(moto_server, key, "sts:get_caller_identity") == "OK"
    lease = issue(session, role)
    assert answer_to(moto_server, lease, "iam:list_users") == "OK"

    usage = {u.account: u for u in session.observe_usage()}
    assert set(usage) == {USER, ROLE}  # the admin's own signing is never reported
    assert usage[USER].source == KEY_SOURCE and usage[ROLE].source == ROLE_SOURCE
    assert all(u.last_used >= before and u.entitlement is None for u in usage.values())


# ---------------------------------------------------------------- leases


def test_a_lease_is_a_role_session_that_can_do_what_the_role_allows_and_no_more(
    session: AwsSession, role: str, moto_server: MotoServer
) -> None:
    lease = issue(session, role)
    assert lease.username.startswith("ASIA") and lease.token is not None
    assert session.probe(lease) is ProbeResult.ACCEPTED
    caller = client_as(moto_server, lease, "sts").get_caller_identity()
    assert caller["Arn"].endswith(f":assumed-role/etl/{LEASE}")
    assert answer_to(moto_server, lease, "iam:list_users") == "OK"
    assert answer_to(moto_server, lease, "iam:list_roles") == "AccessDenied"


def test_a_lease_leaves_a_marker_naming_its_session_and_its_expiry(
    session: AwsSession, role: str, admin: Any
) -> None:
    issue(session, role, ttl=timedelta(minutes=30))
    [(name, document)] = inline_policies(admin).items()
    marker = parse_marker("etl", name)
    assert marker is not None and marker.lease == LEASE
    expected = datetime.now(UTC) + timedelta(minutes=30)
    assert abs(marker.expires_at - expected) < timedelta(seconds=30)
    role_id = admin.get_role(RoleName="etl")["Role"]["RoleId"]
    statement = document["Statement"][0]
    assert statement["Effect"] == "Allow" and statement["Action"] == "iam:GetRole"
    assert statement["Condition"] == {"StringEquals": {"aws:userid": f"{role_id}:{LEASE}"}}
    assert session.list_leases(LEASE_PREFIX) == [LeaseAccount(LEASE, marker.expires_at)]


def test_a_revoked_lease_is_refused_though_getcalleridentity_still_answers(
    session: AwsSession, role: str, admin: Any, moto_server: MotoServer
) -> None:
    lease = issue(session, role)
    session.revoke_lease(LEASE)
    assert session.probe(lease) is ProbeResult.REFUSED
    assert answer_to(moto_server, lease, "iam:list_users") == "AccessDenied"
    # Why the probe does not stop at GetCallerIdentity: no policy can deny it, here or in AWS.
    assert answer_to(moto_server, lease, "sts:get_caller_identity") == "OK"
    [document] = inline_policies(admin).values()
    role_id = admin.get_role(RoleName="etl")["Role"]["RoleId"]
    assert document["Statement"][0]["Effect"] == "Deny"
    assert document["Statement"][0]["Condition"]["StringEquals"] == {
        "aws:userid": f"{role_id}:{LEASE}"
    }
    assert session.list_leases(LEASE_PREFIX) == []
    session.revoke_lease(LEASE)  # revoking again changes nothing
    assert session.probe(lease) is ProbeResult.REFUSED


def test_moto_lets_one_revocation_reach_every_session_of_the_role(
    session: AwsSession, role: str, admin: Any
) -> None:
    kept = issue(session, role, lease=LEASE_PREFIX + "kept")
    issue(session, role)
    session.revoke_lease(LEASE)
    # Real AWS denies only the session aws:userid names; moto evaluates no condition, so the
    # deny reaches the other lease too (docs/aws.md). The deny itself names one session only.
    assert session.probe(kept) is ProbeResult.REFUSED
    assert [lease.name for lease in session.list_leases(LEASE_PREFIX)] == [LEASE_PREFIX + "kept"]


def test_a_lease_shorter_than_15_minutes_is_refused_before_anything_changes(
    session: AwsSession, role: str, admin: Any
) -> None:
    with pytest.raises(ActionFailed, match="at least 15 minutes"):
        issue(session, role, ttl=timedelta(minutes=5))
    assert inline_policies(admin) == {}
    lease = issue(session, role, ttl=timedelta(seconds=STS_MIN_SESSION_S))  # the minimum works
    assert session.probe(lease) is ProbeResult.ACCEPTED


def test_a_lease_longer_than_the_roles_maximum_session_is_refused(
    session: AwsSession, role: str, admin: Any
) -> None:
    with pytest.raises(ActionFailed, match="at most 3600 s"):
        issue(session, role, ttl=timedelta(hours=2))
    admin.update_role(RoleName="etl", MaxSessionDuration=7200)
    assert session.probe(issue(session, role, ttl=timedelta(hours=2))) is ProbeResult.ACCEPTED


def test_leases_are_role_sessions_only(session: AwsSession, role: str) -> None:
    create_user(session)
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(ActionFailed, match="leases on AWS are role sessions; declare a role"):
        session.issue_lease(LEASE, USER, frozenset(), Secret("unused"), expires_at)
    with pytest.raises(ActionFailed, match="roles hold policy:ARN entitlements only"):
        session.issue_lease(LEASE, ROLE, frozenset({"group:ops"}), Secret("unused"), expires_at)
    with pytest.raises(ActionFailed, match="must start with 'lockstep_lease_'"):
        session.issue_lease("workload", ROLE, frozenset(), Secret("unused"), expires_at)


def test_renewing_a_lease_is_refused_because_sts_cannot_extend_a_session(
    session: AwsSession,
) -> None:
    with pytest.raises(ActionFailed, match="cannot be extended; issue a new lease"):
        session.renew_lease(LEASE, datetime.now(UTC) + timedelta(hours=1))


def test_revoking_a_lease_whose_issue_failed_early_changes_nothing(
    session: AwsSession, role: str, admin: Any
) -> None:
    with pytest.raises(ActionFailed):
        issue(session, role, ttl=timedelta(minutes=1))  # refused before any marker or session
    session.revoke_lease(LEASE)  # what the lease manager does after a failed issue
    assert inline_policies(admin) == {}
    assert session.list_leases(LEASE_PREFIX) == []


def test_markers_of_long_expired_leases_are_deleted_when_the_role_issues_again(
    session: AwsSession, role: str, admin: Any
) -> None:
    stale = marker_name(LEASE_PREFIX + "old", datetime(2020, 1, 1, tzinfo=UTC))
    admin.put_role_policy(RoleName="etl", PolicyName=stale, PolicyDocument=ALLOW_LIST_USERS)
    admin.put_role_policy(RoleName="etl", PolicyName="hand-made", PolicyDocument=ALLOW_LIST_USERS)
    issue(session, role)
    names = set(inline_policies(admin))
    assert stale not in names and "hand-made" in names and len(names) == 2


# ---------------------------------------------------------------- the rules without a server


@pytest.mark.parametrize(
    ("seconds_left", "duration"),
    [(STS_MIN_SESSION_S - 5, STS_MIN_SESSION_S), (1800.7, 1800), (3600, 3600)],
)
def test_session_duration_never_outlives_the_lease_by_more_than_the_issue_slack(
    seconds_left: float, duration: int
) -> None:
    assert session_duration(ROLE, seconds_left, 3600) == duration


def test_marker_names_round_trip_and_round_the_expiry_up() -> None:
    expires_at = datetime(2030, 5, 6, 7, 8, 9, 500, tzinfo=UTC)
    name = marker_name(LEASE_PREFIX + "a@b", expires_at)
    assert name == LEASE_PREFIX + "a@b@20300506T070810Z"
    marker = parse_marker("etl", name)
    assert marker is not None and marker.lease == LEASE_PREFIX + "a@b"
    assert marker.expires_at == datetime(2030, 5, 6, 7, 8, 10, tzinfo=UTC)
    assert parse_marker("etl", "lockstep-suspended") is None


# ---------------------------------------------------------------- secrets


def test_botocore_debug_logs_never_show_a_secret_key_or_session_token(
    session: AwsSession, role: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore logs bodies, headers and canonical requests
    secrets = [create_user(session).secret, session.add_credential(USER, None).secret]
    lease = issue(session, role)
    assert lease.token is not None
    secrets += [lease.secret, lease.token]
    session.probe(lease)
    session.revoke_lease(LEASE)
    session.probe(lease)
    assert "SessionToken" in caplog.text and "X-Amz-Security-Token" in caplog.text
    for secret in secrets:
        assert secret.reveal() not in caplog.text
