"""AWS leases: one STS session of a role per lease, expiring natively.

A lease on ``role/NAME`` is ``sts:AssumeRole`` with the lease's name as the role session name.
AWS ends the session at its expiry whatever lockstep does, so expiry holds while lockstep is
down. The session is limited to the identity's entitlements by session policies.

AWS can neither list nor end one STS session, so every lease leaves a *marker* on its role: an
inline policy named ``LEASE@EXPIRY`` (``lockstep_lease_…@20250101T120000Z``) that names the
session by ``aws:userid`` (``ROLE_ID:SESSION_NAME``). While the lease lives the marker allows
the session to read its own role, which is what the probe asks (a live lease is therefore
never refused for lack of a permission); revoking the lease rewrites the marker into a deny of
everything for that session alone. Markers are written before the session is issued, so a
crash in between still leaves the lease findable, and are deleted once the session they name
has long expired, so a role never accumulates them. docs/aws.md has the details and what the
moto emulator does differently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lockstep.connectors.base import ActionFailed, Credential, LeaseAccount
from lockstep.model import LEASE_PREFIX
from lockstep.secret import Secret

STS_MIN_SESSION_S = 900  # AWS refuses shorter sessions
ROLE_CHAINING_MAX_S = 3600  # a role session assuming another role gets at most an hour
# Between the lease manager fixing the expiry and the AssumeRole call a moment passes: a TTL of
# exactly the 15-minute minimum is honoured, and the session may outlive the recorded expiry by
# at most this much.
ISSUE_SLACK_S = 10
# Markers outlive their session by this much before they are deleted, for clock skew.
_MARKER_GRACE = timedelta(minutes=15)
_MAX_SESSION_POLICY_ARNS = 10  # AWS's limit on managed session policies

_STAMP = "%Y%m%dT%H%M%SZ"
_SESSION_NAME_RE = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)  # STS's RoleSessionName
_MARKER_RE = re.compile(rf"({re.escape(LEASE_PREFIX)}[\w+=,.@-]*)@(\d{{8}}T\d{{6}}Z)", re.ASCII)
_POLICY_ARN_PREFIX = "policy:"


@dataclass(frozen=True, slots=True)
class Marker:
    """One lease's inline policy on its role."""

    role: str
    policy_name: str
    lease: str
    expires_at: datetime


def parse_marker(role: str, policy_name: str) -> Marker | None:
    match = _MARKER_RE.fullmatch(policy_name)
    if match is None:
        return None
    expires_at = datetime.strptime(match[2], _STAMP).replace(tzinfo=UTC)
    return Marker(role, policy_name, match[1], expires_at)


def marker_name(lease: str, expires_at: datetime) -> str:
    # Rounded up, so that the marker never claims an earlier end than the session's.
    whole = expires_at.replace(microsecond=0)
    if whole < expires_at:
        whole += timedelta(seconds=1)
    return f"{lease}@{whole.astimezone(UTC).strftime(_STAMP)}"


def check_lease_name(lease: str) -> None:
    if not lease.startswith(LEASE_PREFIX) or not _SESSION_NAME_RE.fullmatch(lease):
        raise ActionFailed(
            f"lease name {lease!r} must start with {LEASE_PREFIX!r} and be at most 64 letters, "
            "digits or _+=,.@- (an STS role session name)"
        )


def session_duration(template: str, seconds_left: float, max_session_s: int) -> int:
    """The DurationSeconds that ends the session at the lease's expiry, or why none can."""
    if seconds_left < STS_MIN_SESSION_S - ISSUE_SLACK_S:
        raise ActionFailed(
            f"lease on {template}: AWS STS sessions last at least 15 minutes "
            f"({STS_MIN_SESSION_S} s) and this one would last {max(0, int(seconds_left))} s; "
            "ask for a TTL of 15m or more"
        )
    if seconds_left > max_session_s:
        raise ActionFailed(
            f"lease on {template}: sessions of this role last at most {max_session_s} s "
            "(its MaxSessionDuration, or one hour when lockstep itself acts as a role "
            "session); ask for a shorter TTL or raise the role's maximum"
        )
    return max(STS_MIN_SESSION_S, int(seconds_left))


def session_policy_arns(template: str, entitlements: Iterable[str]) -> list[dict[str, str]]:
    """The identity's entitlements as managed session policies: the lease holds exactly them
    even while the role still holds more."""
    arns: list[dict[str, str]] = []
    for entitlement in sorted(entitlements):
        if not entitlement.startswith(_POLICY_ARN_PREFIX):
            raise ActionFailed(
                f"lease on {template}: {entitlement} cannot reach a role session (roles hold "
                "policy:ARN entitlements only)"
            )
        arns.append({"arn": entitlement.removeprefix(_POLICY_ARN_PREFIX)})
    if len(arns) > _MAX_SESSION_POLICY_ARNS:
        raise ActionFailed(
            f"lease on {template}: AWS passes at most {_MAX_SESSION_POLICY_ARNS} managed "
            f"policies to a session and the identity holds {len(arns)}"
        )
    return arns


def _document(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _probe_statement(role_arn: str) -> dict[str, Any]:
    return {
        "Sid": "LockstepLeaseProbe",
        "Effect": "Allow",
        "Action": "iam:GetRole",
        "Resource": role_arn,
    }


def marker_document(role: Mapping[str, Any], lease: str, *, revoked: bool) -> str:
    session = {"StringEquals": {"aws:userid": f"{role['RoleId']}:{lease}"}}
    if revoked:
        deny = {"Sid": "LockstepLeaseRevoked", "Effect": "Deny", "Action": "*", "Resource": "*"}
        return _document({**deny, "Condition": session})
    return _document({**_probe_statement(role["Arn"]), "Condition": session})


def is_revoked(document: Mapping[str, Any]) -> bool:
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    return any(statement.get("Effect") == "Deny" for statement in statements)


def markers_of(
    roles: Iterable[Mapping[str, Any]],
) -> Iterator[tuple[Mapping[str, Any], Marker, Mapping[str, Any]]]:
    """Every lease marker in ``GetAccountAuthorizationDetails`` role details, with its role
    and its policy document."""
    for role in roles:
        for policy in role.get("RolePolicyList", []):
            marker = parse_marker(role["RoleName"], policy["PolicyName"])
            if marker is not None:
                yield role, marker, policy["PolicyDocument"]


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    template: str  # role/NAME
    lease: str  # the session name
    entitlements: frozenset[str]
    expires_at: datetime


def issue(iam: Any, sts: Any, request: LeaseRequest, now: datetime, chained: bool) -> Credential:
    """Mark the role, then assume it as the lease. ``chained``: lockstep itself acts as a role
    session, and AWS caps the sessions such a session assumes at one hour. Calls raise
    botocore's errors; the session turns them into the connector's."""
    template, lease = request.template, request.lease
    check_lease_name(lease)
    policy_arns = session_policy_arns(template, request.entitlements)
    role = iam.get_role(RoleName=template.removeprefix("role/"))["Role"]
    max_session_s = int(role.get("MaxSessionDuration", ROLE_CHAINING_MAX_S))
    if chained:
        max_session_s = min(max_session_s, ROLE_CHAINING_MAX_S)
    seconds_left = (request.expires_at - now).total_seconds()
    duration = session_duration(template, seconds_left, max_session_s)
    prune(iam, role["RoleName"], now)
    iam.put_role_policy(
        RoleName=role["RoleName"],
        PolicyName=marker_name(lease, now + timedelta(seconds=duration)),
        PolicyDocument=marker_document(role, lease, revoked=False),
    )
    answer = sts.assume_role(
        RoleArn=role["Arn"],
        RoleSessionName=lease,
        DurationSeconds=duration,
        Policy=_document(_probe_statement(role["Arn"])),
        **({"PolicyArns": policy_arns} if policy_arns else {}),
    )
    credentials = answer["Credentials"]
    return Credential(
        username=credentials["AccessKeyId"],
        secret=Secret(credentials["SecretAccessKey"]),
        token=Secret(credentials["SessionToken"]),
    )


def prune(iam: Any, role_name: str, now: datetime) -> None:
    """Delete the markers of sessions that have long expired: AWS refuses those sessions on
    its own, and a role holds at most 10,240 characters of inline policies."""
    pages = iam.get_paginator("list_role_policies").paginate(RoleName=role_name)
    for name in [name for page in pages for name in page["PolicyNames"]]:
        marker = parse_marker(role_name, name)
        if marker is not None and marker.expires_at + _MARKER_GRACE < now:
            iam.delete_role_policy(RoleName=role_name, PolicyName=name)


def revoke(iam: Any, lease: str, roles: Iterable[Mapping[str, Any]]) -> None:
    """Deny everything to the lease's session, on whichever role carries its marker.

    Without a marker there is nothing to deny: the marker is written before STS is asked for
    the session, so none was issued (an issue that failed early), or the session expired
    long before its marker was deleted."""
    check_lease_name(lease)
    for role, marker, _ in markers_of(roles):
        if marker.lease == lease:
            iam.put_role_policy(
                RoleName=marker.role,
                PolicyName=marker.policy_name,
                PolicyDocument=marker_document(role, lease, revoked=True),
            )


def live_leases(prefix: str, roles: Iterable[Mapping[str, Any]]) -> list[LeaseAccount]:
    """Leases issued and not revoked, with the expiry AWS enforces (possibly past)."""
    return [
        LeaseAccount(marker.lease, marker.expires_at)
        for _, marker, document in markers_of(roles)
        if marker.lease.startswith(prefix) and not is_revoked(document)
    ]
