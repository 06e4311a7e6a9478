"""An AWS account's escalation facts: ``GetAccountAuthorizationDetails`` (every user, role
and group with its policies, and the managed policies), people (users with a console
password), and the secrets that ``aws-secrets:`` sinks deliver to with their resource and
key policies. Pure.

The facts set up each principal as a caller for lockstep's evaluator (``aws_policy``): its
own, inline and groups' statements, its permissions boundary, and the request context
lockstep knows (its ARN, account, name, tags; the resource's tags). ``aws_rules`` makes the
edges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lockstep.paths.aws_conditions import Context
from lockstep.paths.aws_policy import Caller, PolicyError, Statement, statements
from lockstep.paths.aws_rules import AwsRules
from lockstep.paths.graph import Edge, Node, NodeKind, NotAssessed, Principals


@dataclass(frozen=True, slots=True)
class AwsPrincipal:
    kind: str  # user, role or group
    name: str
    arn: str
    inline: tuple[tuple[str, Any], ...] = ()  # (name, document)
    attached: tuple[str, ...] = ()  # managed policy ARNs
    groups: tuple[str, ...] = ()  # a user's groups
    boundary: str | None = None  # the permissions boundary's ARN
    tags: tuple[tuple[str, str], ...] = ()
    trust: Any = None  # a role's trust policy
    login_profile: bool | None = None  # a user with a console password (a person); None: unknown

    @property
    def account(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class AwsPolicy:
    arn: str
    document: Any  # the default version
    other_versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AwsSecret:
    sink: str  # aws-secrets:NAME as the policy's sink names it
    arn: str
    kms_key: str | None = None  # a customer key's ARN; None: the AWS managed key
    policy: Any = None  # its resource policy
    exists: bool = True


@dataclass(frozen=True, slots=True)
class AwsFacts:
    target: str
    account: str
    admin: str | None  # user/NAME or role/NAME
    entities: tuple[AwsPrincipal, ...]  # users, roles and groups
    policies: tuple[AwsPolicy, ...] = ()
    secrets: tuple[AwsSecret, ...] = ()
    key_policies: tuple[tuple[str, Any], ...] = ()  # (key ARN, key policy)
    gaps: tuple[NotAssessed, ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------ nodes

    def account_node(self, account: str) -> Node:
        return Node(NodeKind.ACCOUNT, self.target, account)

    def entitlement_node(self, entitlement: str) -> Node | None:
        kind, _, name = entitlement.partition(":")
        return Node(NodeKind.GROUP, self.target, f"group/{name}") if kind == "group" else None

    def node(self, p: AwsPrincipal) -> Node:
        if p.kind == "group":
            return Node(NodeKind.GROUP, self.target, p.account)
        return self.account_node(p.account)

    def principals(self) -> Principals:
        actors = [p for p in self.entities if p.kind != "group"]
        return Principals(
            logins=frozenset(self.node(p) for p in actors),
            people=frozenset(self.node(p) for p in actors if p.login_profile),
            admins=frozenset({self.account_node(self.admin)}) if self.admin else frozenset(),
        )

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        return self.gaps + tuple(self.evaluated()[1])

    # ------------------------------------------------------------ evaluation set-up

    def evaluated(self) -> tuple[dict[str, Caller], list[NotAssessed]]:
        """Every principal as a caller, with the statements that apply to it; principals
        whose policies cannot be read are left out and reported."""
        if "callers" in self._cache:
            return self._cache["callers"], self._cache["gaps"]
        managed: dict[str, tuple[Statement, ...]] = {}
        gaps: list[NotAssessed] = []
        for policy in self.policies:
            try:
                managed[policy.arn] = statements(policy.document, f"policy:{policy.arn}")
            except PolicyError as exc:
                gaps.append(NotAssessed(self.target, f"policy {policy.arn}", str(exc)))
        groups = {p.name: p for p in self.entities if p.kind == "group"}
        callers: dict[str, Caller] = {}
        for p in self.entities:
            try:
                callers[p.account] = self._caller(p, managed, groups)
            except (PolicyError, KeyError) as exc:
                gaps.append(NotAssessed(self.target, p.account, f"cannot read its policies: {exc}"))
        documents = [
            *((p.trust, f"trust:{p.account}") for p in self.entities if p.kind == "role"),
            *((s.policy, f"resource:{s.arn}") for s in self.secrets),
            *((policy, f"key:{arn}") for arn, policy in self.key_policies),
        ]
        for document, origin in documents:
            if document is None:
                continue
            try:
                self._cache[f"doc:{origin}"] = statements(document, origin)
            except PolicyError as exc:
                self._cache[f"doc:{origin}"] = ()
                gaps.append(NotAssessed(self.target, origin, str(exc)))
        self._cache.update(callers=callers, gaps=gaps, managed=managed)
        return callers, gaps

    def _caller(
        self,
        p: AwsPrincipal,
        managed: Mapping[str, tuple[Statement, ...]],
        groups: Mapping[str, AwsPrincipal],
    ) -> Caller:
        own: list[Statement] = []
        for name, doc in p.inline:
            own += statements(doc, f"inline:{p.account}:{name}")
        for arn in p.attached:
            own += managed[arn]
        for group_name in p.groups:
            group = groups[group_name]
            for _, doc in group.inline:
                own += statements(doc, f"group:{group.name}")
            for arn in group.attached:
                own += (_relabel(s, f"group:{group.name}") for s in managed[arn])
        boundary = managed[p.boundary] if p.boundary else None
        kind = "user" if p.kind == "group" else p.kind
        return Caller(p.arn, self.account, kind, tuple(own), boundary)

    def context(self, p: AwsPrincipal, resource: AwsPrincipal | None = None) -> Context:
        values: dict[str, tuple[str, ...]] = {
            "aws:principalaccount": (self.account,),
            "aws:principalarn": (p.arn,),
        }
        complete = ["aws:principaltag/"]
        if p.kind == "user":
            values["aws:username"] = (p.name,)
            values["aws:principaltype"] = ("User",)
        elif p.kind == "role":
            values["aws:principaltype"] = ("AssumedRole",)
            complete.append("aws:username")
        values.update({f"aws:principaltag/{k.lower()}": (v,) for k, v in p.tags})
        if resource is not None:
            complete += ["aws:resourcetag/", "iam:resourcetag/"]
            for k, v in resource.tags:
                values[f"aws:resourcetag/{k.lower()}"] = (v,)
                values[f"iam:resourcetag/{k.lower()}"] = (v,)
        return Context(values, tuple(complete))

    def trust(self, role: AwsPrincipal) -> tuple[Statement, ...] | None:
        return self.parsed(role.trust, f"trust:{role.account}")

    def parsed(self, document: Any, origin: str) -> tuple[Statement, ...] | None:
        """A trust, resource or key policy, parsed by ``_evaluated`` (one it could not read
        allows nothing, and is reported there)."""
        if document is None:
            return None
        found: tuple[Statement, ...] = self._cache.get(f"doc:{origin}", ())
        return found

    def edges(self) -> Iterator[Edge]:
        return AwsRules(self).edges()


def _relabel(statement: Statement, origin: str) -> Statement:
    return replace(statement, origin=origin)
