"""``aws-secrets:NAME`` sinks against a moto server with authentication enforced: the new
credential becomes AWSCURRENT only once it is fully stored, and a failed delivery leaves the
old one current."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from lockstep.credentials.sinks import Delivery, SinkError, check_sink, deliver
from lockstep.demo.localpg import free_port
from lockstep.model import Target
from lockstep.secret import generate_password

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that pytest rewrites its asserts
    from services.moto_server import MotoServer

pytest_plugins = ("services.moto_server",)

ISSUED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def aws(moto_server: MotoServer, aws_target: Target, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The standard AWS environment (admin key, region, endpoint) pointing at a freshly
    reset moto server, and nothing of the developer's own AWS setup."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", moto_server.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    return moto_server


def delivery(target: str = "orders-db") -> Delivery:
    return Delivery(target, "payments_api", "payments_api", generate_password(), ISSUED, None)


def current(aws: MotoServer, secret_id: str) -> dict[str, Any]:
    answer = aws.client("secretsmanager").get_secret_value(
        SecretId=secret_id, VersionStage="AWSCURRENT"
    )
    loaded: dict[str, Any] = json.loads(answer["SecretString"])
    return loaded


def stages(aws: MotoServer, secret_id: str) -> dict[str, list[str]]:
    described = aws.client("secretsmanager").describe_secret(SecretId=secret_id)
    stages: dict[str, list[str]] = described["VersionIdsToStages"]
    return stages


def test_a_missing_secret_is_created_holding_the_documented_json(aws: MotoServer) -> None:
    d = delivery()
    assert deliver("aws-secrets:prod/payments-api", d) == "aws-secrets:prod/payments-api"
    assert current(aws, "prod/payments-api") == {
        "target": "orders-db",
        "account": "payments_api",
        "username": "payments_api",
        "password": d.secret.reveal(),
        "issued_at": "2026-06-01T12:00:00Z",
        "expires_at": None,
    }


def test_a_new_credential_becomes_awscurrent_and_the_old_one_awsprevious(
    aws: MotoServer,
) -> None:
    first, second = delivery(), delivery()
    deliver("aws-secrets:payments-api", first)
    deliver("aws-secrets:payments-api", second)
    assert current(aws, "payments-api")["password"] == second.secret.reveal()
    previous = aws.client("secretsmanager").get_secret_value(
        SecretId="payments-api", VersionStage="AWSPREVIOUS"
    )
    assert json.loads(previous["SecretString"])["password"] == first.secret.reveal()
    assert sorted(label for labels in stages(aws, "payments-api").values() for label in labels) == [
        "AWSCURRENT",
        "AWSPENDING",
        "AWSPREVIOUS",
    ]


def test_an_existing_secret_made_elsewhere_is_taken_over(aws: MotoServer) -> None:
    aws.client("secretsmanager").create_secret(Name="handmade", SecretString="{}")
    d = delivery()
    deliver("aws-secrets:handmade", d)
    assert current(aws, "handmade")["password"] == d.secret.reveal()


def test_when_awscurrent_cannot_be_moved_the_old_credential_stays_current(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = delivery()
    deliver("aws-secrets:payments-api", old)
    key = _key_without(aws, "secretsmanager:UpdateSecretVersionStage")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    new = delivery()
    with pytest.raises(SinkError, match="aws-secrets:payments-api") as caught:
        deliver("aws-secrets:payments-api", new)
    assert new.secret.reveal() not in str(caught.value)
    assert old.secret.reveal() not in str(caught.value)
    assert current(aws, "payments-api")["password"] == old.secret.reveal()


def test_when_the_secret_cannot_be_written_at_all_nothing_changes(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = delivery()
    deliver("aws-secrets:payments-api", old)
    key = _key_without(aws, "secretsmanager:PutSecretValue")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    with pytest.raises(SinkError, match="AccessDenied"):
        deliver("aws-secrets:payments-api", delivery())
    assert current(aws, "payments-api")["password"] == old.secret.reveal()
    assert len(stages(aws, "payments-api")) == 1


def test_target_placeholder_gives_one_secret_per_target(aws: MotoServer) -> None:
    for target in ("orders-db", "billing-db"):
        deliver("aws-secrets:prod/{target}/payments-api", delivery(target))
    for target in ("orders-db", "billing-db"):
        assert current(aws, f"prod/{target}/payments-api")["target"] == target


def test_an_arn_names_its_region_without_aws_region_set(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = aws.client("secretsmanager").create_secret(Name="by-arn", SecretString="{}")["ARN"]
    monkeypatch.delenv("AWS_REGION")
    d = delivery()
    deliver(f"aws-secrets:{arn}", d)
    assert current(aws, "by-arn")["password"] == d.secret.reveal()


def test_aws_default_region_is_honoured_too(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", aws.region)
    d = delivery()
    deliver("aws-secrets:payments-api", d)
    assert current(aws, "payments-api")["password"] == d.secret.reveal()


def test_no_region_is_one_clear_error(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(SinkError, match="region"):
        deliver("aws-secrets:payments-api", delivery())


def test_an_unreachable_endpoint_is_one_clear_error(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    d = delivery()
    with pytest.raises(SinkError, match="cannot deliver the credential to aws-secrets:x") as caught:
        deliver("aws-secrets:x", d)
    assert d.secret.reveal() not in str(caught.value)


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("aws-secrets:", "not a secret name"),
        ("aws-secrets:has space", "not a secret name"),
        ("aws-secrets:x/{identity}", r"unknown placeholder \{identity\}"),
        ("aws-secrets:" + "n" * 513, "not a secret name"),
    ],
)
def test_unusable_secret_names_are_refused_before_anything_is_sent(sink: str, message: str) -> None:
    with pytest.raises(SinkError, match=message):
        check_sink(sink)


@pytest.mark.parametrize(
    "sink",
    [
        "aws-secrets:prod/payments-api",
        "aws-secrets:{target}/api",
        "aws-secrets:arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/api-AbCdEf",
    ],
)
def test_secret_names_and_arns_pass_the_check(sink: str) -> None:
    check_sink(sink)


def _key_without(aws: MotoServer, action: str) -> dict[str, str]:
    """An access key of a user that may do everything but ``action``."""
    iam = aws.client("iam")
    user = "sink-" + action.split(":")[1].lower()
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="all-but-one",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"},
                    {"Effect": "Deny", "Action": action, "Resource": "*"},
                ],
            }
        ),
    )
    key: dict[str, str] = iam.create_access_key(UserName=user)["AccessKey"]
    return key
