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
grammar.py, which never calls AWS. The session is in session.py, turning IAM's answers into
accounts with transform.py; client.py configures boto3 and translates its errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

import boto3  # type: ignore[import-untyped,unused-ignore]
from pydantic import BaseModel

from lockstep.connectors.aws.client import BOTO_CONFIG, LOGGERS_WITH_SECRETS, SCRUBBER, boto_errors
from lockstep.connectors.aws.grammar import (
    CAPABILITY_PERMISSIONS,
    PERMISSIONS,
    READ_PERMISSIONS,
    AwsSettings,
    parse_account,
    parse_entitlement,
)
from lockstep.connectors.aws.session import AwsSession
from lockstep.connectors.base import Scope, TargetUnreachable
from lockstep.model import Op, Target

__all__ = ["AwsConnectorType", "AwsSession"]


class AwsConnectorType:
    name: ClassVar[str] = "aws"
    permissions: ClassVar[Mapping[Op, tuple[str, ...]]] = PERMISSIONS
    paths_permissions: ClassVar[tuple[str, ...]] = (
        "iam:GetAccountAuthorizationDetails",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "secretsmanager:DescribeSecret and secretsmanager:GetResourcePolicy on aws-secrets sinks",
        "kms:DescribeKey and kms:GetKeyPolicy on their customer keys",
    )
    read_permissions: ClassVar[tuple[str, ...]] = READ_PERMISSIONS
    capability_permissions: ClassVar[Mapping[type, tuple[str, ...]]] = CAPABILITY_PERMISSIONS

    def settings_model(self) -> type[BaseModel]:
        return AwsSettings

    def check_account(self, name: str) -> None:
        parse_account(name)

    def parse_entitlement(self, text: str) -> str:
        kind, value = parse_entitlement(text)
        return f"{kind}:{value}"

    def default_excluded(self, settings: BaseModel) -> frozenset[str]:
        # The admin's name is not in the settings: the session learns it from STS and
        # excludes it itself (AwsSession.admin_account).
        return frozenset()

    def propagation_window(self, settings: BaseModel) -> float:
        # IAM is eventually consistent: a deleted key can keep working for several seconds
        # (10 by default; the emulator forgets keys at once).
        return AwsSettings.model_validate(settings).propagation_window

    def open(self, target: Target, scope: Scope) -> AwsSession:
        settings = AwsSettings.model_validate(target.settings)
        for name in LOGGERS_WITH_SECRETS:
            logging.getLogger(name).addFilter(SCRUBBER)  # idempotent
        with boto_errors(f"connect to {target.name}", TargetUnreachable):
            boto = boto3.session.Session(region_name=settings.region)
            sts = boto.client("sts", endpoint_url=settings.endpoint_url, config=BOTO_CONFIG)
            try:
                caller = sts.get_caller_identity()
            finally:
                sts.close()
        return AwsSession(target.name, settings, scope, boto, caller)
