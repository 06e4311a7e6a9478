"""Delivering a credential to AWS Secrets Manager as a rotation does, without a Lambda:
stage the new version ``AWSPENDING``, move ``AWSCURRENT`` to it, and read the move back.

Imported only when a policy uses an ``aws-secrets:`` sink, so that others never load boto3.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
from botocore import exceptions as aws_errors  # type: ignore[import-untyped,unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

from lockstep.credentials.sinks import SinkError
from lockstep.secret import redact

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
_CONFIG = Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard"})


def put_current(name: str, content: str, region: str | None = None) -> None:
    """Make ``content`` the secret's AWSCURRENT version, creating the secret if missing.
    Raises SinkError; on failure AWSCURRENT still holds what it held before."""
    where = f"aws-secrets:{name}"
    try:
        # botocore reads AWS_DEFAULT_REGION; the AWS CLI and SDKs also honour AWS_REGION.
        region = region or os.environ.get("AWS_REGION") or None
        # A session of its own: boto3's default session is not thread-safe, and would keep
        # the credentials it first found for the life of the process.
        session = boto3.session.Session(region_name=region)
        client = session.client("secretsmanager", config=_CONFIG)
        version = str(uuid.uuid4())
        previous = _current_version(client, name)
        if previous is None:
            client.create_secret(Name=name, SecretString=content, ClientRequestToken=version)
        else:
            _stage_and_promote(client, name, content, version, previous)
        now = client.get_secret_value(SecretId=name, VersionStage=CURRENT)
    except aws_errors.ClientError as exc:
        error = exc.response.get("Error", {})
        raise SinkError(
            f"cannot deliver the credential to {where}: {error.get('Code', 'error')}: "
            f"{redact(str(error.get('Message', '')))}"
        ) from None
    except aws_errors.BotoCoreError as exc:
        raise SinkError(f"cannot deliver the credential to {where}: {redact(str(exc))}") from None
    if now.get("VersionId") != version:
        raise SinkError(f"{where}: {CURRENT} is not the version just delivered")


def get_current(name: str, region: str | None = None) -> str | None:
    """The secret's AWSCURRENT value, None when the secret does not exist. Raises SinkError."""
    where = f"aws-secrets:{name}"
    try:
        region = region or os.environ.get("AWS_REGION") or None
        client = boto3.session.Session(region_name=region).client("secretsmanager", config=_CONFIG)
        try:
            got = client.get_secret_value(SecretId=name, VersionStage=CURRENT)
        except client.exceptions.ResourceNotFoundException:
            return None
    except aws_errors.ClientError as exc:
        error = exc.response.get("Error", {})
        raise SinkError(f"cannot read {where}: {error.get('Code', 'error')}") from None
    except aws_errors.BotoCoreError as exc:
        raise SinkError(f"cannot read {where}: {redact(str(exc))}") from None
    value = got.get("SecretString")
    return value if isinstance(value, str) else None


def _current_version(client: Any, name: str) -> str | None:
    try:
        described = client.describe_secret(SecretId=name)
    except client.exceptions.ResourceNotFoundException:
        return None
    stages: dict[str, list[str]] = described.get("VersionIdsToStages", {})
    return next((v for v, labels in stages.items() if CURRENT in labels), None)


def _stage_and_promote(client: Any, name: str, content: str, version: str, previous: str) -> None:
    client.put_secret_value(
        SecretId=name, ClientRequestToken=version, SecretString=content, VersionStages=[PENDING]
    )
    # One call moves AWSCURRENT: readers never see the secret without a current version.
    # AWSPENDING stays on the new version, as AWS's own rotation functions leave it, rather
    # than risk a failure after the delivery has already happened; the next delivery moves it.
    client.update_secret_version_stage(
        SecretId=name, VersionStage=CURRENT, MoveToVersionId=version, RemoveFromVersionId=previous
    )
