"""Batches on IAM (a moto server with authentication enforced): a batch's calls run side by
side; a change IAM refuses fails alone; the accounts are read back together and each minted
key proven accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from lockstep.connectors.aws.connector import AwsConnectorType, AwsSession
from lockstep.connectors.base import ActionFailed, Change, Credential, ProbeResult, Scope
from lockstep.model import Op, Target
from lockstep.secret import generate_password

if TYPE_CHECKING:
    from services.moto_server import MotoServer

pytest_plugins = ["services.moto_server"]
CONNECTOR = AwsConnectorType()
READ_ONLY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
)


@pytest.fixture
def session(aws_target: Target) -> Iterator[AwsSession]:
    opened = CONNECTOR.open(aws_target, Scope(frozenset(), frozenset()))
    yield opened
    opened.close()


def test_a_batch_runs_side_by_side_and_a_refused_change_fails_alone(
    session: AwsSession, moto_server: MotoServer
) -> None:
    iam: Any = moto_server.client("iam")
    arn = iam.create_policy(PolicyName="read-only", PolicyDocument=READ_ONLY)["Policy"]["Arn"]
    names = [f"user/svc{i}" for i in range(10)]
    made = session.apply_batch(
        [Change(Op.CREATE_ACCOUNT, n, None, generate_password()) for n in names]
    )
    assert all(isinstance(m, Credential) for m in made)
    missing = arn.replace("read-only", "no-such-policy")
    outcomes = session.apply_batch(
        [Change(Op.GRANT, n, f"policy:{arn}") for n in names]
        + [Change(Op.GRANT, names[0], f"policy:{missing}")]
    )
    assert outcomes[:10] == [None] * 10
    assert isinstance(outcomes[10], ActionFailed)
    read = session.read_accounts([*names, "user/ghost"])
    assert read["user/ghost"] is None
    for name in names:
        account = read[name]
        assert account is not None and account.entitlements == {f"policy:{arn}"}
    for credential in made:
        assert isinstance(credential, Credential)
        assert session.probe(credential) is ProbeResult.ACCEPTED
