"""Lockstep's IAM evaluator against a table of cases from the IAM User Guide: each case names
the page (and the rule on it) that decides the expected answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from lockstep.paths.aws_conditions import Context, Tri
from lockstep.paths.aws_policy import (
    Caller,
    PolicyError,
    Request,
    Statement,
    decide,
    statements,
)

ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
DEPLOY = f"arn:aws:iam::{ACCOUNT}:role/deploy"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

EVALUATION = "IAM UG, Policy evaluation logic"
CONDITIONS = "IAM UG, IAM JSON policy elements: Condition operators"
MULTI = "IAM UG, Conditions with multiple context keys or values"
BOUNDARIES = "IAM UG, Permissions boundaries for IAM entities"
ELEMENTS = "IAM UG, IAM JSON policy element reference"
VARIABLES = "IAM UG, IAM policy elements: Variables and tags"
KMS = "KMS Developer Guide, Key policies in AWS KMS (default key policy)"


def policy(*items: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(items)}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def parsed(doc: dict[str, Any] | None, origin: str) -> tuple[Statement, ...] | None:
    return None if doc is None else statements(doc, origin)


@dataclass
class Case:
    id: str
    source: str
    identity: dict[str, Any] | None
    action: str
    resource: str
    expected: Tri
    boundary: dict[str, Any] | None = None
    resource_policy: dict[str, Any] | None = None
    required: bool = False
    caller: str = ALICE
    context: dict[str, tuple[str, ...]] = field(default_factory=dict)
    complete: tuple[str, ...] = ("aws:principaltag/",)
    condition_mentions: str | None = None


CASES = [
    Case("no-allow-is-implicit-deny", f"{EVALUATION}: by default, requests are denied",
         None, "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("allow", f"{EVALUATION}: an explicit allow overrides the default",
         policy(allow("iam:CreateAccessKey")), "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("explicit-deny-wins", f"{EVALUATION}: an explicit deny in any policy overrides allows",
         policy(allow("iam:*"), deny("iam:CreateAccessKey", BOB)),
         "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("deny-elsewhere-leaves-allow", f"{EVALUATION}: a deny applies to what it matches",
         policy(allow("iam:*"), deny("iam:CreateAccessKey", BOB)),
         "iam:CreateAccessKey", ALICE, Tri.TRUE),
    Case("action-wildcard", f"{ELEMENTS} Action: wildcards * and ?",
         policy(allow("iam:Create?ccess*")), "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("action-case-insensitive", f"{ELEMENTS} Action: action names are not case sensitive",
         policy(allow("IAM:createaccesskey")), "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("not-action-allow", f"{ELEMENTS} NotAction: Allow with NotAction allows all others",
         policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
         "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("not-action-allow-other", f"{ELEMENTS} NotAction: Allow with NotAction allows others",
         policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
         "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:eu-west-1:1:secret:x", Tri.TRUE),
    Case("not-resource-deny", f"{ELEMENTS} NotResource: Deny except the listed resources",
         policy(allow("iam:*"), {"Effect": "Deny", "Action": "iam:*", "NotResource": ALICE}),
         "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("not-resource-deny-spares", f"{ELEMENTS} NotResource: the listed one is spared",
         policy(allow("iam:*"), {"Effect": "Deny", "Action": "iam:*", "NotResource": ALICE}),
         "iam:CreateAccessKey", ALICE, Tri.TRUE),
    Case("resource-wildcard", f"{ELEMENTS} Resource: wildcards within ARN segments",
         policy(allow("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/*")),
         "iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/ops/bob", Tri.TRUE),
    Case("resource-wildcard-other-type", f"{ELEMENTS} Resource: the pattern names users only",
         policy(allow("iam:UpdateAssumeRolePolicy", f"arn:aws:iam::{ACCOUNT}:user/*")),
         "iam:UpdateAssumeRolePolicy", DEPLOY, Tri.FALSE),
    Case("resource-other-account", f"{ELEMENTS} Resource: each ARN segment must match",
         policy(allow("iam:CreateAccessKey", "arn:aws:iam::999999999999:user/*")),
         "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("boundary-limits", f"{BOUNDARIES}: effective permissions are the intersection",
         policy(allow("iam:*")), "iam:CreateAccessKey", BOB, Tri.FALSE,
         boundary=policy(allow("s3:*"))),
    Case("boundary-allows", f"{BOUNDARIES}: allowed by both the policy and the boundary",
         policy(allow("iam:*")), "iam:CreateAccessKey", BOB, Tri.TRUE,
         boundary=policy(allow("iam:CreateAccessKey"))),
    Case("boundary-alone-grants-nothing", f"{BOUNDARIES}: a boundary does not grant",
         None, "iam:CreateAccessKey", BOB, Tri.FALSE, boundary=policy(allow("*"))),
    Case("resource-policy-names-user", f"{EVALUATION}: within an account, a resource-based "
         "policy naming the user grants it", None, "secretsmanager:GetSecretValue", "arn:s",
         Tri.TRUE, resource_policy=policy(
             {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "secretsmanager:*"})),
    Case("resource-policy-user-beyond-boundary", f"{BOUNDARIES}: an implicit deny in a user's "
         "boundary does not limit a resource-based policy naming the user", None,
         "secretsmanager:GetSecretValue", "arn:s", Tri.TRUE, boundary=policy(allow("s3:*")),
         resource_policy=policy(
             {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "secretsmanager:*"})),
    Case("resource-policy-role-within-boundary", f"{BOUNDARIES}: a role's boundary limits a "
         "resource-based policy naming the role", None, "secretsmanager:GetSecretValue", "arn:s",
         Tri.FALSE, caller=DEPLOY, boundary=policy(allow("s3:*")), resource_policy=policy(
             {"Effect": "Allow", "Principal": {"AWS": DEPLOY}, "Action": "secretsmanager:*"})),
    Case("resource-policy-account-delegates", f"{EVALUATION}: a resource policy naming the "
         "account delegates to identity policies", None, "secretsmanager:GetSecretValue",
         "arn:s", Tri.FALSE, resource_policy=policy(
             {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "secretsmanager:*"})),
    Case("resource-policy-deny", f"{EVALUATION}: a deny in the resource policy decides",
         policy(allow("secretsmanager:*")), "secretsmanager:GetSecretValue", "arn:s", Tri.FALSE,
         resource_policy=policy(
             {"Effect": "Deny", "Principal": "*", "Action": "secretsmanager:GetSecretValue"})),
    Case("trust-names-account", f"{EVALUATION}: a trust policy naming the account needs the "
         "caller's own sts:AssumeRole", None, "sts:AssumeRole", DEPLOY, Tri.FALSE, required=True,
         resource_policy=policy(
             {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"})),
    Case("trust-names-account-with-allow", f"{EVALUATION}: trust delegated and identity allows",
         policy(allow("sts:AssumeRole", DEPLOY)), "sts:AssumeRole", DEPLOY, Tri.TRUE,
         required=True, resource_policy=policy(
             {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sts:AssumeRole"})),
    Case("trust-missing", f"{EVALUATION}: a role its trust policy does not name is refused",
         policy(allow("sts:AssumeRole")), "sts:AssumeRole", DEPLOY, Tri.FALSE, required=True,
         resource_policy=policy({"Effect": "Allow", "Principal": {"AWS": BOB},
                                 "Action": "sts:AssumeRole"})),
    Case("kms-needs-key-policy", f"{KMS}: without the key policy, IAM policies do not apply",
         policy(allow("kms:Decrypt")), "kms:Decrypt", KEY, Tri.FALSE, required=True,
         resource_policy=policy()),
    Case("kms-root-enables-iam", f"{KMS}: the default key policy lets IAM policies allow",
         policy(allow("kms:Decrypt")), "kms:Decrypt", KEY, Tri.TRUE, required=True,
         resource_policy=policy({"Effect": "Allow", "Principal": {"AWS": ROOT},
                                 "Action": "kms:*", "Resource": "*"})),
    Case("unknown-condition", f"{CONDITIONS}: Bool on a key lockstep cannot know",
         policy(allow("iam:CreateAccessKey", Condition={
             "Bool": {"aws:MultiFactorAuthPresent": "true"}})),
         "iam:CreateAccessKey", BOB, Tri.UNKNOWN, condition_mentions="MultiFactorAuthPresent"),
    Case("deny-may-apply", f"{EVALUATION}: a deny whose condition is unknown may decide",
         policy(allow("iam:*"), deny("iam:*", Condition={
             "IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})),
         "iam:CreateAccessKey", BOB, Tri.UNKNOWN, condition_mentions="denies"),
    Case("absent-key-false", f"{CONDITIONS}: a key absent from the request: no match",
         policy(allow("iam:*", Condition={"StringEquals": {"aws:PrincipalTag/team": "ops"}})),
         "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("absent-key-negated-true", f"{CONDITIONS}: absent key, negated operator: true",
         policy(allow("iam:*", Condition={"StringNotEquals": {"aws:PrincipalTag/team": "ops"}})),
         "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("absent-key-ifexists-true", f"{CONDITIONS}: ...IfExists: an absent key passes",
         policy(allow("iam:*", Condition={
             "StringEqualsIfExists": {"aws:PrincipalTag/team": "ops"}})),
         "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("null-true-absent", f"{CONDITIONS}: Null true when the key is absent",
         policy(allow("iam:*", Condition={"Null": {"aws:PrincipalTag/team": "true"}})),
         "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("values-or", f"{MULTI}: values of one key OR together",
         policy(allow("iam:*", Condition={"StringEquals": {"aws:PrincipalTag/team": ["a", "b"]}})),
         "iam:CreateAccessKey", BOB, Tri.TRUE, context={"aws:PrincipalTag/team": ("b",)}),
    Case("negated-values-nor", f"{MULTI}: a negated operator's values NOR together",
         policy(allow("iam:*", Condition={
             "StringNotEquals": {"aws:PrincipalTag/team": ["a", "b"]}})),
         "iam:CreateAccessKey", BOB, Tri.FALSE, context={"aws:PrincipalTag/team": ("b",)}),
    Case("keys-and", f"{MULTI}: keys of one operator AND together",
         policy(allow("iam:*", Condition={"StringEquals": {
             "aws:PrincipalTag/team": "a", "aws:PrincipalTag/env": "prod"}})),
         "iam:CreateAccessKey", BOB, Tri.FALSE, context={"aws:PrincipalTag/team": ("a",)}),
    Case("for-all-values-absent", f"{MULTI}: ForAllValues is true of an absent key",
         policy(allow("iam:*", Condition={
             "ForAllValues:StringEquals": {"aws:PrincipalTag/team": "a"}})),
         "iam:CreateAccessKey", BOB, Tri.TRUE),
    Case("for-any-value-absent", f"{MULTI}: ForAnyValue is false of an absent key",
         policy(allow("iam:*", Condition={
             "ForAnyValue:StringEquals": {"aws:PrincipalTag/team": "a"}})),
         "iam:CreateAccessKey", BOB, Tri.FALSE),
    Case("variable-username", f"{VARIABLES}: ${{aws:username}} lets users manage their own keys",
         policy(allow("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}")),
         "iam:CreateAccessKey", ALICE, Tri.TRUE, context={"aws:username": ("alice",)}),
    Case("variable-username-other", f"{VARIABLES}: ... and nobody else's",
         policy(allow("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}")),
         "iam:CreateAccessKey", BOB, Tri.FALSE, context={"aws:username": ("alice",)}),
    Case("variable-unknown", f"{VARIABLES}: a variable lockstep cannot know leaves it open",
         policy(allow("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/${{aws:SourceIdentity}}")),  # noqa: E501
         "iam:CreateAccessKey", BOB, Tri.UNKNOWN, condition_mentions="SourceIdentity"),
    Case("passed-to-service", f"{CONDITIONS}: StringEquals iam:PassedToService",
         policy(allow("iam:PassRole", Condition={
             "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})),
         "iam:PassRole", DEPLOY, Tri.TRUE,
         context={"iam:PassedToService": ("lambda.amazonaws.com",)}),
    Case("numeric-and-date", f"{CONDITIONS}: Numeric and Date operators",
         policy(allow("iam:*", Condition={
             "NumericLessThan": {"aws:MultiFactorAuthAge": "3600"},
             "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}})),
         "iam:CreateAccessKey", BOB, Tri.TRUE,
         context={"aws:MultiFactorAuthAge": ("60",), "aws:CurrentTime": ("2026-06-01T00:00:00Z",)}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_evaluator_answers_as_the_aws_documentation_says(case: Case) -> None:
    kind = "role" if ":role/" in case.caller else "user"
    caller = Caller(
        case.caller,
        ACCOUNT,
        kind,
        parsed(case.identity, "policy:test") or (),
        parsed(case.boundary, "boundary:test"),
    )
    context = Context({k.lower(): v for k, v in case.context.items()}, case.complete)
    decision = decide(
        caller,
        Request(case.action, case.resource, context),
        parsed(case.resource_policy, "resource:test"),
        resource_policy_required=case.required,
    )
    assert decision.allowed is case.expected, case.source
    if case.condition_mentions:
        assert any(case.condition_mentions in c for c in decision.verdict.conditions)
    if case.expected is not Tri.UNKNOWN:
        assert not decision.verdict.conditions


def test_the_decision_says_which_policies_allowed() -> None:
    caller = Caller(
        ALICE,
        ACCOUNT,
        "user",
        statements(policy(allow("iam:CreateAccessKey")), "policy:arn:aws:iam::1:policy/keys")
        + statements(policy(allow("s3:*")), "group:readers"),
    )
    decision = decide(caller, Request("iam:CreateAccessKey", BOB))
    assert decision.allowed_by == {"policy:arn:aws:iam::1:policy/keys"}


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "iam:*"}]},
        {"Statement": [{"Effect": "Allow", "Action": 3}]},
    ],
)
def test_a_document_lockstep_cannot_read_is_refused_not_guessed(doc: Any) -> None:
    with pytest.raises(PolicyError):
        statements(doc, "policy:x")


def test_url_encoded_documents_read_as_iam_returns_them() -> None:
    encoded = quote(json.dumps(policy(allow("*"))))
    assert statements(encoded, "policy:x")[0].allow
