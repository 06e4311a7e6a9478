"""The AWS session's escalation facts against moto, evaluated by lockstep's own IAM
evaluator: each kind of edge, with the cases that are no path (a plain reader, a Deny over
an Allow, half of what an escalation needs) and a condition reported as conditional."""

from __future__ import annotations

import json
from typing import Any

from lockstep.connectors.aws.connector import AwsConnectorType
from lockstep.connectors.base import Scope
from lockstep.paths.aws import AwsFacts
from lockstep.paths.graph import Confidence, Edge, NodeKind, PathRequest

pytest_plugins = ("services.moto_server",)

CT = AwsConnectorType()
ACCOUNT = "123456789012"
V = "2012-10-17"


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": V, "Statement": list(statements)})


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def trust(principal: Any, **extra: Any) -> str:
    return doc({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra})


def user(iam: Any, name: str, *statements: dict[str, Any]) -> None:
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(*statements))


def facts(target, *sinks: str) -> AwsFacts:
    session = CT.open(target, Scope(frozenset(), frozenset()))
    try:
        read = session.read_paths(PathRequest(secrets=frozenset(sinks)))
    finally:
        session.close()
    assert isinstance(read, AwsFacts)
    return read


def edges(read: AwsFacts, rule: str) -> dict[tuple[str, str], Edge]:
    return {(e.source.name, e.destination.name): e for e in read.edges() if e.rule == rule}


def test_create_access_key_and_a_plain_reader_is_no_path(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    user(iam, "svc")
    user(iam, "helpdesk", allow("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/*"))
    user(iam, "reader", allow("s3:GetObject"))
    read = facts(aws_target)
    keys = edges(read, "aws.create_access_key")
    assert keys["user/helpdesk", "user/svc"].confidence is Confidence.INFERRED
    assert not [e for e in read.edges() if e.source.name == "user/reader"]


def test_a_deny_overrides_the_allow(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    user(iam, "svc")
    user(iam, "other")
    deny = {"Effect": "Deny", "Action": "iam:CreateAccessKey",
            "Resource": f"arn:aws:iam::{ACCOUNT}:user/svc"}  # fmt: skip
    user(iam, "ops", allow("iam:*"), deny)
    keys = edges(facts(aws_target), "aws.create_access_key")
    assert ("user/ops", "user/svc") not in keys
    assert ("user/ops", "user/other") in keys


def test_an_unresolved_condition_is_reported_as_conditional(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    user(iam, "svc")
    mfa = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    user(iam, "admin2", allow("iam:CreateAccessKey", Condition=mfa))
    edge = edges(facts(aws_target), "aws.create_access_key")["user/admin2", "user/svc"]
    assert edge.confidence is Confidence.CONDITIONAL
    assert any("aws:MultiFactorAuthPresent" in c for c in edge.conditions)


def test_console_passwords_and_the_people_who_have_one(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    user(iam, "svc")
    user(iam, "alice", allow("iam:UpdateLoginProfile"))
    iam.create_login_profile(UserName="alice", Password="Correct-Horse-42!")
    read = facts(aws_target)
    assert ("user/alice", "user/svc") in edges(read, "aws.login_profile")
    assert {n.name for n in read.principals().people} == {"user/alice"}


def test_trust_rewrites_and_assuming_roles(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    user(iam, "ci")
    user(iam, "dev", allow("sts:AssumeRole"))
    user(iam, "nobody")
    user(iam, "trustee", allow("iam:UpdateAssumeRolePolicy"))
    iam.create_role(RoleName="deploy", AssumeRolePolicyDocument=trust(
        {"AWS": f"arn:aws:iam::{ACCOUNT}:user/ci"}))  # fmt: skip
    iam.create_role(RoleName="ops", AssumeRolePolicyDocument=trust({"AWS": ACCOUNT}))
    read = facts(aws_target)
    assumed = edges(read, "aws.assume_role")
    assert ("user/ci", "role/deploy") in assumed  # named by the trust policy itself
    assert ("user/dev", "role/ops") in assumed  # the account delegates, dev's policy allows
    assert ("user/nobody", "role/ops") not in assumed
    assert ("user/dev", "role/deploy") not in assumed
    assert ("user/trustee", "role/deploy") in edges(read, "aws.update_trust")


def test_pass_role_needs_the_service_to_run_code(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    iam.create_role(RoleName="fn", AssumeRolePolicyDocument=trust(
        {"Service": "lambda.amazonaws.com"}))  # fmt: skip
    user(iam, "dev", allow(["iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction"]))
    user(iam, "half", allow("iam:PassRole"))
    passed = edges(facts(aws_target), "aws.pass_role")
    assert ("user/dev", "role/fn") in passed
    assert ("user/half", "role/fn") not in passed


def test_self_escalation_to_any_iam_action(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    arn = f"arn:aws:iam::{ACCOUNT}:policy/mine"
    iam.create_policy(PolicyName="mine", PolicyDocument=doc(allow("iam:CreatePolicyVersion", arn)))
    user(iam, "selfie")
    iam.attach_user_policy(UserName="selfie", PolicyArn=arn)
    user(iam, "attacher", allow("iam:AttachUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/attacher"))
    user(iam, "joiner", allow("iam:AddUserToGroup"))
    user(iam, "bystander", allow("iam:AttachUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/selfie"))
    iam.create_group(GroupName="admins")
    read = facts(aws_target)
    escalations = edges(read, "aws.self_escalation")
    edge = escalations["user/selfie", "any IAM action"]
    assert edge.holder is not None and edge.holder.entitlement == f"policy:{arn}"
    assert ("user/attacher", "any IAM action") in escalations
    assert ("user/bystander", "any IAM action") not in escalations  # not its own
    assert ("user/joiner", "group/admins") in edges(read, "aws.add_to_group")
    assert ("any IAM action", "user/joiner") in edges(read, "aws.admin_any")


def test_secrets_sinks_need_the_secret_and_its_customer_key(aws_target, moto_server) -> None:
    iam, kms, manager = (moto_server.client(s) for s in ("iam", "kms", "secretsmanager"))
    key = kms.create_key()["KeyMetadata"]["Arn"]
    manager.create_secret(Name="sink-a", SecretString="{}", KmsKeyId=key)
    manager.create_secret(Name="sink-b", SecretString="{}")
    user(iam, "peek", allow("secretsmanager:GetSecretValue"))
    user(iam, "peek2", allow(["secretsmanager:GetSecretValue", "kms:Decrypt"]))
    read = facts(aws_target, "aws-secrets:sink-a", "aws-secrets:sink-b", "aws-secrets:sink-c")
    found = [(e.source.name, e.destination.name, e.evidence) for e in read.edges()
             if e.rule == "aws.get_secret_value"]  # fmt: skip
    pairs = {(s, d) for s, d, _ in found}
    assert ("user/peek", "aws-secrets:sink-a") not in pairs  # no kms:Decrypt
    assert ("user/peek2", "aws-secrets:sink-a") in pairs
    assert ("user/peek", "aws-secrets:sink-b") in pairs  # the AWS managed key
    assert any(d == "aws-secrets:sink-c" and "once the secret is created" in e
               for _, d, e in found)  # fmt: skip
    sinks = [e.destination for e in read.edges() if e.rule == "aws.get_secret_value"]
    assert all(n.kind is NodeKind.SINK for n in sinks)


def test_roles_open_to_anyone_or_another_account(aws_target, moto_server) -> None:
    iam = moto_server.client("iam")
    iam.create_role(RoleName="open", AssumeRolePolicyDocument=trust({"AWS": "*"}))
    iam.create_role(RoleName="partner", AssumeRolePolicyDocument=trust(
        {"AWS": "arn:aws:iam::999999999999:root"},
        Condition={"StringEquals": {"sts:ExternalId": "x"}}))  # fmt: skip
    assumed = edges(facts(aws_target), "aws.assume_role")
    assert assumed["any AWS principal", "role/open"].source.kind is NodeKind.ANYONE
    partner = assumed["AWS account 999999999999", "role/partner"]
    assert partner.confidence is Confidence.CONDITIONAL


def test_what_is_not_read_is_said(aws_target) -> None:
    read = facts(aws_target)
    assert any("service control" in n.what for n in read.not_assessed())
    assert read.admin == "user/lockstep-admin"
