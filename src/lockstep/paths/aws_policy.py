"""Lockstep's own evaluator of IAM policies, written from the IAM User Guide's "Policy
evaluation logic" for requests within one account. Pure.

1. An explicit Deny in any policy that applies (identity-based, the permissions boundary, the
   resource's policy) decides: denied.
2. Otherwise an Allow is needed: in the identity-based policies (the principal's own, inline,
   and its groups') and, when a permissions boundary is set, in the boundary too; or in the
   resource's policy naming the principal. A resource policy that names an IAM user grants it
   whatever its boundary says; one that names a role is still limited by the role's boundary.
   A resource policy that names the account (``arn:aws:iam::ACCOUNT:root``) only delegates to
   the identity-based policies.
3. Some resources need their own policy to allow (a role's trust policy for
   ``sts:AssumeRole``, a KMS key policy): for them an identity-based Allow counts only when
   the resource policy delegates to the account.
4. Nothing allows: denied (implicitly).

Actions match case-insensitively with ``*`` and ``?``; ``NotAction`` and ``NotResource``
match what their lists do not; resources match as ArnLike does, part by part. Conditions are
decided three ways (``aws_conditions``): an Allow that hangs on an unknown condition, or a
Deny that might apply, makes the decision unknown, with those conditions listed. Service
control policies and session policies are not read: docs/paths.md says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from lockstep.paths.aws_conditions import (
    FALSE,
    TRUE,
    Context,
    Tri,
    Verdict,
    all_of,
    any_of,
    arn_like,
    evaluate_block,
    glob,
    substitute,
    unknown,
)


class PolicyError(ValueError):
    """A policy document lockstep cannot read: what it allows is not known."""


@dataclass(frozen=True, slots=True)
class PrincipalSpec:
    anyone: bool = False
    aws: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    others: tuple[str, ...] = ()  # Federated, CanonicalUser: never a principal of this account


@dataclass(frozen=True, slots=True)
class Statement:
    allow: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...] | None  # None: no Resource element (a resource's own policy)
    not_resource: bool
    principal: PrincipalSpec | None  # None: an identity-based policy
    not_principal: bool
    condition: Mapping[str, Any]
    origin: str  # where the statement was written, e.g. "policy:arn:aws:iam::...", "inline:x"


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal making a request, with every identity-based statement that applies to it
    and its permissions boundary (None: no boundary)."""

    arn: str
    account: str
    kind: str  # "user" or "role"
    identity: tuple[Statement, ...]
    boundary: tuple[Statement, ...] | None = None


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    resource: str
    context: Context = field(default_factory=lambda: Context({}))


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    allowed_by: frozenset[str] = frozenset()  # origins of the Allows that may apply

    @property
    def allowed(self) -> Tri:
        return self.verdict.value


def document(raw: Any) -> Mapping[str, Any]:
    """A policy document as IAM returns it: a mapping, JSON text, or URL-encoded JSON text."""
    if isinstance(raw, Mapping):
        return raw
    if not isinstance(raw, str):
        raise PolicyError("a policy document is neither JSON text nor an object")
    for text in (raw, unquote(raw)):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, Mapping):
            return parsed
    raise PolicyError("a policy document is not valid JSON")


def statements(raw: Any, origin: str) -> tuple[Statement, ...]:
    """The statements of one policy document, each remembering ``origin``."""
    listed = document(raw).get("Statement", [])
    items = listed if isinstance(listed, list) else [listed]
    return tuple(_statement(item, origin) for item in items)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in items):
        raise PolicyError(f"{what} must be a string or a list of strings")
    return tuple(items)


def _statement(item: Any, origin: str) -> Statement:
    if not isinstance(item, Mapping):
        raise PolicyError("a statement is not an object")
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"a statement's Effect is {effect!r}, not Allow or Deny")
    action_key = _one_of(item, "Action", "NotAction", required=True) or "Action"
    resource_key = _one_of(item, "Resource", "NotResource", required=False)
    principal_key = _one_of(item, "Principal", "NotPrincipal", required=False)
    condition = item.get("Condition", {})
    if not isinstance(condition, Mapping):
        raise PolicyError("a statement's Condition is not an object")
    return Statement(
        allow=effect == "Allow",
        actions=_strings(item[action_key], action_key),
        not_action=action_key == "NotAction",
        resources=_strings(item[resource_key], resource_key) if resource_key else None,
        not_resource=resource_key == "NotResource",
        principal=_principal(item[principal_key]) if principal_key else None,
        not_principal=principal_key == "NotPrincipal",
        condition=condition,
        origin=origin,
    )


def _one_of(item: Mapping[str, Any], plain: str, negated: str, *, required: bool) -> str | None:
    present = [k for k in (plain, negated) if k in item]
    if len(present) > 1:
        raise PolicyError(f"a statement has both {plain} and {negated}")
    if required and not present:
        raise PolicyError(f"a statement has neither {plain} nor {negated}")
    return present[0] if present else None


def _principal(value: Any) -> PrincipalSpec:
    if value == "*":
        return PrincipalSpec(anyone=True)
    if not isinstance(value, Mapping):
        raise PolicyError("a Principal is neither '*' nor an object")
    aws = _strings(value.get("AWS", []), "Principal AWS") if "AWS" in value else ()
    return PrincipalSpec(
        anyone="*" in aws,
        aws=tuple(a for a in aws if a != "*"),
        services=_strings(value["Service"], "Principal Service") if "Service" in value else (),
        others=tuple(
            v for k in ("Federated", "CanonicalUser") if k in value for v in _strings(value[k], k)
        ),
    )


# ---------------------------------------------------------------- matching


def action_matches(statement: Statement, action: str) -> bool:
    hit = any(glob(p, ignore_case=True).fullmatch(action) for p in statement.actions)
    return hit != statement.not_action


# The resource of a request that creates one (a function, an instance): its creator names it,
# so any pattern of the statement can be met.
NEW_RESOURCE = "*"


def _resource(statement: Statement, resource: str, context: Context) -> Verdict:
    if statement.resources is None or resource == NEW_RESOURCE:
        return TRUE  # a resource's own policy is about that resource
    verdicts = []
    for pattern in statement.resources:
        sub = substitute(pattern, context, literal_wildcards=True)
        if sub.pending is not None:
            verdicts.append(unknown(f"Resource {pattern} with ${{{sub.pending}}} unknown"))
        elif sub.text is not None:
            verdicts.append(TRUE if arn_like(sub.text, resource) else FALSE)
    hit = any_of(verdicts)
    return ~hit if statement.not_resource else hit


def _names_caller(spec: PrincipalSpec, caller: Caller) -> tuple[bool, bool]:
    """(names the caller itself, names the caller's account)."""
    if spec.anyone:
        return True, False
    direct = account = False
    root = f"arn:aws:iam::{caller.account}:root"
    session_prefix = _session_prefix(caller)
    for name in spec.aws:
        if name in (caller.arn,) or (session_prefix and name.startswith(session_prefix)):
            direct = True
        elif name in (root, caller.account) or name.endswith(f"::{caller.account}:root"):
            account = True
    return direct, account


def _session_prefix(caller: Caller) -> str | None:
    if caller.kind != "role":
        return None
    name = caller.arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{caller.account}:assumed-role/{name}/"


def _applies(statement: Statement, request: Request) -> Verdict:
    if not action_matches(statement, request.action):
        return FALSE
    resource = _resource(statement, request.resource, request.context)
    if resource.value is Tri.FALSE:
        return FALSE
    condition = evaluate_block(statement.condition, request.context)
    verdict = resource & condition
    if verdict.value is Tri.UNKNOWN:
        side = "allows" if statement.allow else "denies"
        return Verdict(
            Tri.UNKNOWN,
            frozenset(f"{c} [{side}, {statement.origin}]" for c in verdict.conditions),
        )
    return verdict


# ---------------------------------------------------------------- deciding


def decide(
    caller: Caller,
    request: Request,
    resource_policy: Sequence[Statement] | None = None,
    *,
    resource_policy_required: bool = False,
) -> Decision:
    """Whether ``caller`` may make ``request``, within its own account."""
    allows: list[tuple[Statement, Verdict]] = []
    denies: list[Verdict] = []
    for statement in caller.identity:
        verdict = _applies(statement, request)
        if verdict.value is Tri.FALSE:
            continue
        if statement.allow:
            allows.append((statement, verdict))
        else:
            denies.append(verdict)
    boundary = TRUE
    if caller.boundary is not None:
        bounds: list[Verdict] = []
        for statement in caller.boundary:
            (bounds if statement.allow else denies).append(_applies(statement, request))
        boundary = any_of(bounds)
    direct: list[tuple[Statement, Verdict]] = []
    delegated: list[Verdict] = []
    for statement in resource_policy or ():
        if statement.principal is None:
            continue
        names, account = _names_caller(statement.principal, caller)
        if statement.not_principal:
            names, account = not (names or account), False
        if not (names or account):
            continue
        verdict = _applies(statement, request)
        if not statement.allow:
            denies.append(verdict)
        elif names:
            direct.append((statement, verdict))
        else:
            delegated.append(verdict)
    identity = any_of(v for _, v in allows)
    granted_direct = any_of(v for _, v in direct)
    if caller.kind == "role":
        granted_direct = granted_direct & boundary
    if resource_policy_required:
        through_identity = any_of(delegated) & identity & boundary
    else:
        through_identity = identity & boundary
    allowed = all_of([through_identity | granted_direct, ~any_of(denies)])
    origins = frozenset(s.origin for s, v in [*allows, *direct] if v.value is not Tri.FALSE)
    return Decision(allowed, origins if allowed.value is not Tri.FALSE else frozenset())


def decide_all(
    caller: Caller, requests: Iterable[Request], resource_policy: Sequence[Statement] | None = None
) -> Verdict:
    """Whether ``caller`` may make every one of ``requests`` (steps of one escalation)."""
    return all_of(decide(caller, r, resource_policy).verdict for r in requests)
