"""The IAM vocabulary lockstep speaks, free of boto3: the account and entitlement names it
accepts, its target settings, the ARNs it reads, the policy documents it writes and the IAM
actions each operation calls. session.py does the calling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockstep.connectors.base import (
    AppliesBatches,
    GrammarError,
    HoldsTwoCredentials,
    IssuesLeases,
    ObservesUsage,
    ProbesInParallel,
)
from lockstep.model import Op

AccountKind = Literal["user", "role"]
EntitlementKind = Literal["policy", "group"]

_NAME = r"[A-Za-z0-9_+=,.@-]"  # IAM's character set for user, role, group and policy names
_ACCOUNT_RE = re.compile(rf"(user|role)/({_NAME}{{1,64}})")
_GROUP_RE = re.compile(rf"{_NAME}{{1,128}}")
# arn:PARTITION:iam::(ACCOUNT|aws):policy/[PATH/]NAME; path segments are printable ASCII
_POLICY_ARN_RE = re.compile(
    rf"arn:aws(?:-cn|-us-gov)?:iam::(?:\d{{12}}|aws):policy/(?:[!-.0-~]+/)*{_NAME}{{1,128}}"
)
_PATH_RE = re.compile(r"/(?:[!-~]+/)?")
_MAX_PATH = 512

_USER_KEYS_OPS = ("iam:ListAccessKeys", "iam:DeleteAccessKey")
PERMISSIONS: Mapping[Op, tuple[str, ...]] = MappingProxyType(
    {
        Op.CREATE_ACCOUNT: (
            "iam:CreateUser",
            "iam:TagUser",
            "iam:CreateAccessKey",
            "iam:CreateRole",
            "iam:TagRole",
        ),
        Op.RESTORE_ACCOUNT: ("iam:CreateAccessKey", "iam:DeleteRolePolicy", "iam:UntagRole"),
        Op.GRANT: ("iam:AttachUserPolicy", "iam:AttachRolePolicy", "iam:AddUserToGroup"),
        Op.REVOKE: ("iam:DetachUserPolicy", "iam:DetachRolePolicy", "iam:RemoveUserFromGroup"),
        Op.ROTATE_CREDENTIAL: ("iam:CreateAccessKey", *_USER_KEYS_OPS),
        Op.SUSPEND_ACCOUNT: (
            *_USER_KEYS_OPS,
            "iam:DeleteLoginProfile",
            "iam:PutUserPolicy",
            "iam:PutRolePolicy",
            "iam:TagRole",
        ),
        Op.END_SESSIONS: ("iam:PutUserPolicy", "iam:PutRolePolicy"),
        Op.DELETE_ACCOUNT: (
            "iam:ListAttachedUserPolicies",
            "iam:DetachUserPolicy",
            "iam:ListGroupsForUser",
            "iam:RemoveUserFromGroup",
            *_USER_KEYS_OPS,
            "iam:ListUserPolicies",
            "iam:DeleteUserPolicy",
            "iam:DeleteLoginProfile",
            "iam:DeleteUser",
            "iam:ListAttachedRolePolicies",
            "iam:DetachRolePolicy",
            "iam:ListRolePolicies",
            "iam:DeleteRolePolicy",
            "iam:ListInstanceProfilesForRole",
            "iam:RemoveRoleFromInstanceProfile",
            "iam:DeleteRole",
        ),
    }
)


READ_PERMISSIONS = (
    "iam:GetAccountAuthorizationDetails",
    "iam:ListAccessKeys",
    "iam:GetUser",
    "iam:GetRole",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    "iam:ListAttachedRolePolicies",
    "iam:ListAttachedGroupPolicies",
    "iam:GetPolicy",
    "iam:ListRolePolicies",
    "iam:GetAccessKeyLastUsed",
    "sts:GetCallerIdentity",
)
CAPABILITY_PERMISSIONS: Mapping[type, tuple[str, ...]] = MappingProxyType(
    {
        ObservesUsage: (
            "iam:ListUsers",
            "iam:ListAccessKeys",
            "iam:GetAccessKeyLastUsed",
            "iam:GetAccountAuthorizationDetails",
        ),
        HoldsTwoCredentials: ("iam:CreateAccessKey", *_USER_KEYS_OPS),
        IssuesLeases: (
            "iam:GetAccountAuthorizationDetails",
            "iam:GetRole",
            "iam:PutRolePolicy",
            "iam:ListRolePolicies",
            "iam:DeleteRolePolicy",
            "sts:AssumeRole on each identity's role (its trust policy must allow lockstep)",
        ),
        # The operations' own permissions, called side by side.
        AppliesBatches: (),
        ProbesInParallel: (),
    }
)


@dataclass(frozen=True, slots=True)
class AccountRef:
    kind: AccountKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_account(name: str) -> AccountRef:
    match = _ACCOUNT_RE.fullmatch(name)
    if match is None:
        raise GrammarError(
            f"AWS account {name!r} must be user/NAME or role/NAME, NAME being 1-64 "
            "letters, digits or +=,.@_-"
        )
    kind: AccountKind = "user" if match[1] == "user" else "role"
    return AccountRef(kind, match[2])


def parse_entitlement(text: str) -> tuple[EntitlementKind, str]:
    prefix, _, value = text.strip().partition(":")
    match prefix.lower():
        case "policy" if _POLICY_ARN_RE.fullmatch(value):
            return "policy", value
        case "group" if _GROUP_RE.fullmatch(value):
            return "group", value
    raise GrammarError(
        f"AWS entitlement {text!r} must be policy:arn:aws:iam::(ACCOUNT|aws):policy/[PATH/]NAME "
        "or group:NAME (NAME being letters, digits or +=,.@_-)"
    )


class AwsSettings(BaseModel):
    """Target keys. Admin credentials come from boto3's default chain, never the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str = Field(min_length=1, description="The AWS region of IAM and STS calls")
    endpoint_url: str | None = Field(
        default=None, description="Another endpoint (an emulator, a VPC endpoint)"
    )
    path_prefix: str = Field(
        default="/", description="Users and roles under this IAM path are in scope"
    )
    propagation_window: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a removed key may still work (IAM is eventually consistent)",
    )

    @field_validator("path_prefix")
    @classmethod
    def _iam_path(cls, value: str) -> str:
        if len(value) > _MAX_PATH or not _PATH_RE.fullmatch(value):
            raise ValueError("path_prefix must be an IAM path such as / or /services/")
        return value


def deny_all_document() -> str:
    statement = {"Sid": "LockstepSuspended", "Effect": "Deny", "Action": "*", "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def revoke_older_sessions_document(now: datetime) -> str:
    statement = {
        "Sid": "LockstepRevokeOlderSessions",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def trust_account_document(partition: str, account_id: str) -> str:
    # Trusting the account root delegates to IAM: whoever in the account may sts:AssumeRole it.
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "sts:AssumeRole",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def caller_account(arn: str) -> str | None:
    """The account name of the principal lockstep acts as, if it is a user or a role."""
    resource = arn.split(":", 5)[-1]  # user/PATH/NAME, assumed-role/NAME/SESSION or root
    kind, _, rest = resource.partition("/")
    if kind == "user":
        return f"user/{rest.rsplit('/', 1)[-1]}"
    if kind == "assumed-role":
        return f"role/{rest.split('/', 1)[0]}"
    return None
