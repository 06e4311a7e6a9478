"""What an AWS session reads for escalation paths, turned into ``lockstep.paths.aws`` facts:
``GetAccountAuthorizationDetails`` (one paginated call: every user, role and group with its
policies, and the managed policies with their versions), the credential report (who has a
console password: a person), and for each ``aws-secrets:`` sink of the policy its secret's
key and resource policy, and the key's policy when a customer key encrypts it.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Mapping
from typing import Any

from botocore import exceptions as aws_errors  # type: ignore[import-untyped,unused-ignore]

from lockstep.connectors.aws.client import boto_errors, code
from lockstep.connectors.base import TargetUnreachable
from lockstep.paths.aws import AwsFacts, AwsPolicy, AwsPrincipal, AwsSecret
from lockstep.paths.graph import NotAssessed, PathRequest

_REPORT_WAIT_S = 5.0
_NOT_YET_CREATED_ARN = "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????"


class AwsPaths:
    """A mixin of ``AwsSession``: what it needs of the session is declared here."""

    _target: str
    _account_id: str
    _partition: str
    _iam: Any
    admin_account: str | None

    def _client(self, service: str, **credentials: Any) -> Any: ...

    def read_paths(self, request: PathRequest) -> AwsFacts:
        with boto_errors(f"read {self._target} for escalation paths", TargetUnreachable):
            details = self._details()
            gaps: list[NotAssessed] = []
            people = self._people(gaps)
            secrets, keys = self._secrets(request.secrets, gaps)
        entities = [
            *(_user(u, people) for u in details["UserDetailList"]),
            *(_role(r) for r in details["RoleDetailList"]),
            *(_group(g) for g in details["GroupDetailList"]),
        ]
        gaps.append(
            NotAssessed(
                self._target,
                "service control and session policies",
                "not read: an SCP may deny what IAM policies allow",
            )
        )
        return AwsFacts(
            target=self._target,
            account=self._account_id,
            admin=self.admin_account,
            entities=tuple(entities),
            policies=tuple(_policy(p) for p in details["Policies"]),
            secrets=tuple(secrets),
            key_policies=tuple(keys.items()),
            gaps=tuple(gaps),
        )

    def _details(self) -> dict[str, list[Any]]:
        merged: dict[str, list[Any]] = {
            k: [] for k in ("UserDetailList", "RoleDetailList", "GroupDetailList", "Policies")
        }
        paginator = self._iam.get_paginator("get_account_authorization_details")
        for page in paginator.paginate():
            for key, items in merged.items():
                items.extend(page.get(key, []))
        return merged

    def _people(self, gaps: list[NotAssessed]) -> dict[str, bool] | None:
        """Which users have a console password, from the credential report; None when it
        cannot be had."""
        deadline = time.monotonic() + _REPORT_WAIT_S
        try:
            self._iam.generate_credential_report()
            while True:
                try:
                    content = self._iam.get_credential_report()["Content"]
                    break
                except aws_errors.ClientError as exc:
                    if code(exc) not in ("ReportInProgress", "ReportNotPresent"):
                        raise
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        except aws_errors.ClientError as exc:
            gaps.append(NotAssessed(self._target, "people (console passwords)", code(exc)))
            return None
        text = content.decode() if isinstance(content, bytes) else str(content)
        return {
            row["user"]: row.get("password_enabled") == "true"
            for row in csv.DictReader(io.StringIO(text))
        }

    def _secrets(
        self, sinks: Iterable[str], gaps: list[NotAssessed]
    ) -> tuple[list[AwsSecret], dict[str, Any]]:
        manager, kms = self._client("secretsmanager"), self._client("kms")
        found: list[AwsSecret] = []
        keys: dict[str, Any] = {}
        region = manager.meta.region_name
        for sink in sorted(sinks):
            name = sink.partition(":")[2]
            if name.startswith("arn:") and name.split(":")[4] != self._account_id:
                gaps.append(NotAssessed(self._target, sink, "the secret is in another account"))
                continue
            try:
                described = manager.describe_secret(SecretId=name)
            except aws_errors.ClientError as exc:
                if code(exc) != "ResourceNotFoundException":
                    raise
                arn = (
                    name
                    if name.startswith("arn:")
                    else _NOT_YET_CREATED_ARN.format(
                        partition=self._partition,
                        region=region,
                        account=self._account_id,
                        name=name,
                    )
                )
                found.append(AwsSecret(sink, arn, exists=False))
                continue
            policy = manager.get_resource_policy(SecretId=name).get("ResourcePolicy")
            key = described.get("KmsKeyId")
            customer = None
            if key:
                metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
                if metadata.get("KeyManager") == "CUSTOMER":
                    customer = metadata["Arn"]
                    keys[customer] = kms.get_key_policy(KeyId=customer, PolicyName="default")[
                        "Policy"
                    ]
            found.append(AwsSecret(sink, described["ARN"], customer, policy))
        return found, keys


def _tags(item: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((t["Key"], t["Value"]) for t in item.get("Tags", []))


def _boundary(item: Mapping[str, Any]) -> str | None:
    boundary = item.get("PermissionsBoundary") or {}
    return boundary.get("PermissionsBoundaryArn")


def _inline(items: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, Any], ...]:
    return tuple((i["PolicyName"], i["PolicyDocument"]) for i in items)


def _attached(item: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(p["PolicyArn"] for p in item.get("AttachedManagedPolicies", []))


def _user(item: Mapping[str, Any], people: Mapping[str, bool] | None) -> AwsPrincipal:
    name = item["UserName"]
    return AwsPrincipal(
        "user",
        name,
        item["Arn"],
        _inline(item.get("UserPolicyList", [])),
        _attached(item),
        tuple(item.get("GroupList", [])),
        _boundary(item),
        _tags(item),
        login_profile=None if people is None else people.get(name, False),
    )


def _role(item: Mapping[str, Any]) -> AwsPrincipal:
    return AwsPrincipal(
        "role",
        item["RoleName"],
        item["Arn"],
        _inline(item.get("RolePolicyList", [])),
        _attached(item),
        boundary=_boundary(item),
        tags=_tags(item),
        trust=item.get("AssumeRolePolicyDocument"),
    )


def _group(item: Mapping[str, Any]) -> AwsPrincipal:
    return AwsPrincipal(
        "group",
        item["GroupName"],
        item["Arn"],
        _inline(item.get("GroupPolicyList", [])),
        _attached(item),
    )


def _policy(item: Mapping[str, Any]) -> AwsPolicy:
    versions = item.get("PolicyVersionList", [])
    default = next((v for v in versions if v.get("IsDefaultVersion")), None)
    others = tuple(v["VersionId"] for v in versions if not v.get("IsDefaultVersion"))
    document = default["Document"] if default else {"Statement": []}
    return AwsPolicy(item["Arn"], document, others)
