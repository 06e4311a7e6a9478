"""The edges lockstep's own IAM evaluator (``aws_policy``) finds in an account's facts
(``aws``). Pure.

For every user, role and group, as a principal:

- ``iam:CreateAccessKey`` on a user mints its credential; ``iam:CreateLoginProfile`` or
  ``iam:UpdateLoginProfile`` gives its console a password of the principal's choosing;
- ``iam:UpdateAssumeRolePolicy`` on a role makes it trust the principal;
  ``sts:AssumeRole`` on a role whose trust policy lets it in;
- ``iam:PassRole`` on a role that trusts a service that runs code, with what launches the
  code (``lambda:CreateFunction`` and ``lambda:InvokeFunction``, ``ec2:RunInstances``...);
- self-escalation to any IAM action: a new default version of a policy attached to itself
  (``iam:CreatePolicyVersion``; ``iam:SetDefaultPolicyVersion`` where another version
  exists), attaching or writing its own policies (``Attach/Put{User,Role,Group}Policy``);
  ``iam:AddUserToGroup`` joins a group and its privileges;
- ``secretsmanager:GetSecretValue`` on an ``aws-secrets:`` sink's secret, with
  ``kms:Decrypt`` on its key when a customer key encrypts it.

An evaluation that hangs on conditions lockstep cannot resolve makes a ``conditional`` edge
listing them; an explicit Deny removes the edge; one that might apply makes it conditional.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from lockstep.paths.aws_conditions import Context, Tri, Verdict, all_of
from lockstep.paths.aws_policy import (
    NEW_RESOURCE,
    Caller,
    Decision,
    Request,
    Statement,
    action_matches,
    decide,
    statements,
)
from lockstep.paths.graph import Confidence, Edge, Holder, Node, NodeKind

if TYPE_CHECKING:
    from lockstep.paths.aws import AwsFacts, AwsPrincipal

# Services that run code with a role passed to them, and what makes them run it.
LAUNCHES: Mapping[str, tuple[str, ...]] = {
    "lambda.amazonaws.com": ("lambda:CreateFunction", "lambda:InvokeFunction"),
    "ec2.amazonaws.com": ("ec2:RunInstances",),
    "ecs-tasks.amazonaws.com": ("ecs:RegisterTaskDefinition", "ecs:RunTask"),
    "glue.amazonaws.com": ("glue:CreateDevEndpoint",),
    "codebuild.amazonaws.com": ("codebuild:CreateProject", "codebuild:StartBuild"),
    "cloudformation.amazonaws.com": ("cloudformation:CreateStack",),
    "sagemaker.amazonaws.com": (
        "sagemaker:CreateNotebookInstance",
        "sagemaker:CreatePresignedNotebookInstanceUrl",
    ),
}
_SELF = {
    "user": ("iam:AttachUserPolicy", "iam:PutUserPolicy"),
    "role": ("iam:AttachRolePolicy", "iam:PutRolePolicy"),
    "group": ("iam:AttachGroupPolicy", "iam:PutGroupPolicy"),
}
# Every action the rules ask about: a principal none of whose Allows names one is skipped.
ASKED = frozenset(
    {
        "iam:CreateAccessKey",
        "iam:CreateLoginProfile",
        "iam:UpdateLoginProfile",
        "iam:UpdateAssumeRolePolicy",
        "sts:AssumeRole",
        "iam:PassRole",
        "iam:CreatePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:AddUserToGroup",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        *(a for actions in _SELF.values() for a in actions),
    }
)
ADMIN_HUB = "any IAM action"
ANY_PRINCIPAL = "any AWS principal"


class AwsRules:
    """The edges of one account's facts."""

    def __init__(self, facts: AwsFacts) -> None:
        self.f = facts

    def _asks(self, caller: Caller) -> frozenset[str]:
        """The asked actions some Allow of ``caller`` names: the others cannot be allowed
        by its identity-based policies."""
        return frozenset(
            a for a in ASKED if any(s.allow and action_matches(s, a) for s in caller.identity)
        )

    # ------------------------------------------------------------ edges

    def edges(self) -> Iterator[Edge]:
        return (edge for edge in self._edges() if edge is not None)

    def _edges(self) -> Iterator[Edge | None]:
        callers, _ = self.f.evaluated()
        by_name = {p.account: p for p in self.f.entities}
        users = [p for p in self.f.entities if p.kind == "user"]
        roles = [p for p in self.f.entities if p.kind == "role"]
        groups = [p for p in self.f.entities if p.kind == "group"]
        trusting = self._trust_named(roles)
        for account, caller in sorted(callers.items()):
            p = by_name[account]
            asks = self._asks(caller)
            yield from self._over_users(p, caller, asks, users)
            yield from self._over_roles(p, caller, asks, roles, trusting.get(p.arn, set()))
            yield from self._self_escalation(p, caller, asks, groups)
            yield from self._secrets(p, caller, asks)
        yield from self._outsiders(roles)
        hub = Node(NodeKind.CAPABILITY, self.f.target, ADMIN_HUB)
        for p in [*users, *roles]:
            yield Edge(
                hub,
                self.f.node(p),
                "aws.admin_any",
                f"any IAM action includes taking over {p.account}",
            )

    def _edge(
        self,
        p: AwsPrincipal,
        destination: Node,
        rule: str,
        evidence: str,
        decisions: Sequence[Decision],
    ) -> Edge | None:
        verdict = all_of(d.verdict for d in decisions)
        if verdict.value is Tri.FALSE:
            return None
        origins = {o for d in decisions for o in d.allowed_by}
        holder = None
        if len(origins) == 1 and p.kind != "group":
            origin = next(iter(origins))
            if origin.startswith(("policy:", "group:")):
                holder = Holder(p.account, origin)
        allowed = ", ".join(sorted(origins)) or "a resource policy"
        return Edge(
            self.f.node(p),
            destination,
            rule,
            f"{evidence} (allowed by {allowed})",
            _confidence(verdict),
            conditions=tuple(sorted(verdict.conditions)),
            holder=holder,
        )

    def _decide(
        self,
        p: AwsPrincipal,
        caller: Caller,
        action: str,
        resource: str,
        about: AwsPrincipal | None = None,
        extra: Mapping[str, tuple[str, ...]] | None = None,
        resource_policy: Sequence[Statement] | None = None,
        required: bool = False,
    ) -> Decision:
        context = self.f.context(p, about)
        if extra:
            context = context.with_values(extra)
        return decide(
            caller,
            Request(action, resource, context),
            resource_policy,
            resource_policy_required=required,
        )

    def _over_users(
        self, p: AwsPrincipal, caller: Caller, asks: frozenset[str], users: list[AwsPrincipal]
    ) -> Iterator[Edge | None]:
        profiles = asks & {"iam:CreateLoginProfile", "iam:UpdateLoginProfile"}
        for user in users:
            if user.arn == p.arn:
                continue
            if "iam:CreateAccessKey" in asks:
                yield self._edge(
                    p,
                    self.f.node(user),
                    "aws.create_access_key",
                    f"may iam:CreateAccessKey for {user.account}",
                    [self._decide(p, caller, "iam:CreateAccessKey", user.arn, user)],
                )
            for action in sorted(profiles):
                edge = self._edge(
                    p,
                    self.f.node(user),
                    "aws.login_profile",
                    f"may {action} for {user.account} (a console password)",
                    [self._decide(p, caller, action, user.arn, user)],
                )
                if edge is not None:
                    yield edge
                    break

    def _over_roles(
        self,
        p: AwsPrincipal,
        caller: Caller,
        asks: frozenset[str],
        roles: list[AwsPrincipal],
        named_by: set[str],
    ) -> Iterator[Edge | None]:
        for role in roles:
            if role.arn == p.arn:
                continue
            node = self.f.node(role)
            if "iam:UpdateAssumeRolePolicy" in asks:
                yield self._edge(
                    p,
                    node,
                    "aws.update_trust",
                    f"may iam:UpdateAssumeRolePolicy of {role.account}",
                    [self._decide(p, caller, "iam:UpdateAssumeRolePolicy", role.arn, role)],
                )
            trust = self.f.trust(role)
            if trust and p.kind != "group" and ("sts:AssumeRole" in asks or role.arn in named_by):
                yield self._edge(
                    p,
                    node,
                    "aws.assume_role",
                    f"may sts:AssumeRole {role.account}: its trust policy lets it in",
                    [
                        self._decide(
                            p,
                            caller,
                            "sts:AssumeRole",
                            role.arn,
                            role,
                            resource_policy=trust,
                            required=True,
                        )
                    ],
                )
            if "iam:PassRole" in asks:
                yield from self._pass_role(p, caller, role, trust or ())

    def _pass_role(
        self, p: AwsPrincipal, caller: Caller, role: AwsPrincipal, trust: Sequence[Statement]
    ) -> Iterator[Edge | None]:
        services = sorted({s for st in trust if st.principal for s in st.principal.services})
        for service in services:
            launch = LAUNCHES.get(service)
            if launch is None:
                continue
            passed = {"iam:PassedToService": (service,)}
            decisions = [self._decide(p, caller, "iam:PassRole", role.arn, role, passed)]
            decisions += [self._decide(p, caller, a, NEW_RESOURCE) for a in launch]
            yield self._edge(
                p,
                self.f.node(role),
                "aws.pass_role",
                f"may iam:PassRole {role.account} to {service} and run code there "
                f"({', '.join(launch)})",
                decisions,
            )

    def _self_escalation(
        self, p: AwsPrincipal, caller: Caller, asks: frozenset[str], groups: list[AwsPrincipal]
    ) -> Iterator[Edge | None]:
        hub = Node(NodeKind.CAPABILITY, self.f.target, ADMIN_HUB)
        mine = [(p.kind, p.arn), *(("group", g.arn) for g in groups if g.name in p.groups)]
        for kind, arn in mine:
            for action in _SELF[kind]:
                if action in asks:
                    yield self._edge(
                        p,
                        hub,
                        "aws.self_escalation",
                        f"may {action} on {arn.rsplit(':', 1)[-1]}, its own",
                        [self._decide(p, caller, action, arn, p)],
                    )
        versions = {v.arn: v for v in self.f.policies}
        attached = {*p.attached, *(a for g in groups if g.name in p.groups for a in g.attached)}
        for arn in sorted(a for a in attached if ":aws:policy/" not in a):
            if "iam:CreatePolicyVersion" in asks:
                yield self._edge(
                    p,
                    hub,
                    "aws.self_escalation",
                    f"may iam:CreatePolicyVersion of {arn}, attached to itself",
                    [self._decide(p, caller, "iam:CreatePolicyVersion", arn)],
                )
            others = versions[arn].other_versions if arn in versions else ()
            if "iam:SetDefaultPolicyVersion" in asks and others:
                edge = self._edge(
                    p,
                    hub,
                    "aws.self_escalation",
                    f"may iam:SetDefaultPolicyVersion of {arn}, attached to itself",
                    [self._decide(p, caller, "iam:SetDefaultPolicyVersion", arn)],
                )
                if edge is not None:
                    yield Edge(
                        edge.source,
                        edge.destination,
                        edge.rule,
                        edge.evidence,
                        Confidence.CONDITIONAL,
                        (
                            *edge.conditions,
                            f"version {', '.join(others)} of {arn} grants more than the default",
                        ),
                        edge.holder,
                    )
        if "iam:AddUserToGroup" in asks and p.kind == "user":
            for group in groups:
                if group.name not in p.groups:
                    yield self._edge(
                        p,
                        self.f.node(group),
                        "aws.add_to_group",
                        f"may iam:AddUserToGroup itself to {group.account}",
                        [self._decide(p, caller, "iam:AddUserToGroup", group.arn)],
                    )

    def _secrets(
        self, p: AwsPrincipal, caller: Caller, asks: frozenset[str]
    ) -> Iterator[Edge | None]:
        keys = dict(self.f.key_policies)
        for secret in self.f.secrets:
            policy = self.f.parsed(secret.policy, f"resource:{secret.arn}")
            named = policy is not None and any(s.allow and s.principal is not None for s in policy)
            if p.kind == "group" or not ("secretsmanager:GetSecretValue" in asks or named):
                continue
            decisions = [
                self._decide(
                    p, caller, "secretsmanager:GetSecretValue", secret.arn, resource_policy=policy
                )
            ]
            what = "may secretsmanager:GetSecretValue"
            if secret.kms_key is not None:
                key_policy = self.f.parsed(keys.get(secret.kms_key), f"key:{secret.kms_key}")
                via = {
                    "kms:ViaService": (f"secretsmanager.{secret.arn.split(':')[3]}.amazonaws.com",)
                }
                decisions.append(
                    self._decide(
                        p,
                        caller,
                        "kms:Decrypt",
                        secret.kms_key,
                        None,
                        via,
                        key_policy or (),
                        required=True,
                    )
                )
                what += " and kms:Decrypt with its customer key"
            if not secret.exists:
                what += " (once the secret is created)"
            edge = self._edge(
                p,
                Node(NodeKind.SINK, "", secret.sink),
                "aws.get_secret_value",
                f"{what}",
                decisions,
            )
            if edge is not None:
                yield edge

    def _outsiders(self, roles: list[AwsPrincipal]) -> Iterator[Edge]:
        """Trust policies open to any principal, or to another account."""
        for role in roles:
            for statement in self.f.trust(role) or ():
                spec = statement.principal
                if not statement.allow or spec is None:
                    continue
                outsiders = [("*", ANY_PRINCIPAL)] if spec.anyone else []
                for name in spec.aws:
                    account = name.split(":")[4] if name.startswith("arn:") else name
                    if account.isdigit() and account != self.f.account:
                        outsiders.append((account, f"AWS account {account}"))
                for account, label in outsiders:
                    outsider = Caller(
                        f"arn:aws:iam::{account}:root",
                        account,
                        "user",
                        statements(
                            {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
                            "theirs",
                        ),
                    )
                    decision = decide(
                        outsider,
                        Request("sts:AssumeRole", role.arn, Context({})),
                        self.f.trust(role),
                        resource_policy_required=True,
                    )
                    if decision.allowed is not Tri.FALSE:
                        yield Edge(
                            Node(NodeKind.ANYONE, self.f.target, label),
                            self.f.node(role),
                            "aws.assume_role",
                            f"the trust policy of {role.account} lets {label} assume it",
                            _confidence(decision.verdict),
                            tuple(sorted(decision.verdict.conditions)),
                        )

    def _trust_named(self, roles: list[AwsPrincipal]) -> dict[str, set[str]]:
        """For each principal ARN, the roles whose trust policy names it."""
        named: dict[str, set[str]] = {}
        for role in roles:
            for statement in self.f.trust(role) or ():
                if statement.allow and statement.principal is not None:
                    for arn in statement.principal.aws:
                        named.setdefault(arn, set()).add(role.arn)
        return named


def _confidence(verdict: Verdict) -> Confidence:
    return Confidence.CONDITIONAL if verdict.value is Tri.UNKNOWN else Confidence.INFERRED
