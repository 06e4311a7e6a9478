"""Leases on Redis (an ACL user, expired by the reaper since Redis cannot) and on
(emulated) AWS (a role session whose token is proven refused once revoked)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from lockstep.connectors.base import Credential
from lockstep.leases.manager import (
    LeaseStatus,
)
from support.cli_project import project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var

if TYPE_CHECKING:
    from services.moto_server import MotoServer
    from services.redis_server import LocalRedis
from support.lease_project import (
    Project,
    assert_nothing_secret_in,
)

pytest_plugins = ("services.redis_server", "services.moto_server", "support.lease_project")


# ---------------------------------------------------------------- Redis


def redis_policy() -> Policy:
    return Policy(
        targets={"cache": Target.redis(Var("CACHE_URL"))},
        owners={"team": Owner(["team@example.com"])},
        identities={
            "payments-api": Identity(
                owner="team",
                purpose="Cache orders",
                access=[Access("cache", "payments_api", ["~orders:*", "+get", "+ping"])],
            )
        },
    )


@pytest.fixture
def redis_project(tmp_path: Path, redis_server: LocalRedis, redis_target: object) -> Project:
    project = Project(tmp_path, project_env(CACHE_URL=redis_server.url()))
    project.write(redis_policy())
    return project


def redis_refused(server: LocalRedis, credential: Credential) -> bool:
    client = redis.Redis(
        host="127.0.0.1",
        port=server.port,
        username=credential.username,
        password=credential.secret.reveal(),
        protocol=2,
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError:
        return True
    finally:
        client.close()
    return False


def test_a_redis_lease_is_an_acl_user_holding_the_identitys_rules(
    redis_project: Project, redis_server: LocalRedis
) -> None:
    with redis_project.manager() as manager:
        lease, credential = manager.issue("payments-api", "cache")
        assert not redis_refused(redis_server, credential)
        with redis_server.admin() as admin:
            rules = admin.acl_getuser(lease.account)
        assert "~orders:*" in rules["keys"]
        assert manager.revoke(lease.id).verified
    assert redis_refused(redis_server, credential)


def test_redis_leases_expire_through_the_reaper_since_redis_cannot(
    redis_project: Project, redis_server: LocalRedis
) -> None:
    with redis_project.manager() as manager:
        lease, credential = manager.issue("payments-api", "cache", ttl_s=60)
        renewed = manager.renew(lease.id, ttl_s=120)
        assert renewed.expires_at > lease.expires_at
        report = manager.reap(now=renewed.expires_at + timedelta(seconds=1))
        assert report.verified and manager.get(lease.id).status is LeaseStatus.EXPIRED
    assert redis_refused(redis_server, credential)


# ---------------------------------------------------------------- AWS (moto)


def aws_policy(region: str, endpoint_url: str, policy_arn: str) -> Policy:
    """etl takes role/etl, which holds the managed policy ``policy_arn``."""
    return Policy(
        targets={
            "aws": Target.aws(region, endpoint_url=endpoint_url, propagation_window=0),
        },
        owners={"team": Owner(["team@example.com"])},
        identities={
            "etl": Identity(
                owner="team",
                purpose="Nightly ETL",
                access=[Access("aws", "role/etl", [f"policy:{policy_arn}"])],
                credentials=Credentials(lease_ttl="20m", lease_max_ttl="1h"),
            )
        },
    )


ALLOW_LIST_USERS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
}


@pytest.fixture
def aws_project(tmp_path: Path, moto_server: MotoServer, aws_target: object) -> Project:
    """role/etl exists, may list users, and trusts the admin lockstep runs as."""
    iam = moto_server.client("iam")
    admin_arn = f"arn:aws:iam::123456789012:user/{moto_server.admin_user}"
    trust = {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}
    iam.create_role(
        RoleName="etl",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
    )
    arn = iam.create_policy(PolicyName="list-users", PolicyDocument=json.dumps(ALLOW_LIST_USERS))
    policy_arn = arn["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="etl", PolicyArn=policy_arn)
    env = dict(os.environ)  # aws_target put the admin key in the environment
    project = Project(tmp_path, env)
    project.write(aws_policy(moto_server.region, moto_server.endpoint_url, policy_arn))
    return project


def test_an_aws_lease_is_a_role_session_with_a_token_proven_refused_once_revoked(
    aws_project: Project, moto_server: MotoServer
) -> None:
    proc = aws_project.cli("issue", "etl", "--target", "aws", "--json")
    assert proc.returncode == 0, proc.stderr
    lease = json.loads(proc.stdout)
    assert lease["username"].startswith("ASIA") and lease["session_token"]
    [issued] = aws_project.journal("lease_issued")
    assert issued["username"] == lease["username"]

    revoked = aws_project.cli("revoke", lease["lease_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert_nothing_secret_in(
        aws_project, lease["password"], lease["session_token"], texts=(revoked.stdout,)
    )


def test_an_aws_lease_cannot_be_renewed_and_says_so(aws_project: Project) -> None:
    lease = json.loads(aws_project.cli("issue", "etl", "--target", "aws", "--json").stdout)
    proc = aws_project.cli("renew", lease["lease_id"])
    assert proc.returncode == 1 and "cannot be extended" in proc.stderr
