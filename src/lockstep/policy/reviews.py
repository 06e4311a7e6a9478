"""The policy's review rules (``rules.review_every``, ``review_grace``, ``unreviewed``), the
webhook people are notified through (``governance.notify``) and what an identity of kind
``agent`` must and must not say: checks that need more than one element, each error at its
file and line."""

from __future__ import annotations

from collections.abc import Callable, Collection
from urllib.parse import urlsplit

from lockstep.model import (
    DEFAULT_ENVIRONMENT,
    DEFAULT_REVIEW_GRACE_S,
    IdentityKind,
    Location,
    Notify,
    RuleAction,
)
from lockstep.policy.documents import PathKey
from lockstep.policy.durations import format_duration
from lockstep.policy.errors import PolicyError
from lockstep.policy.schema import IdentitySpec, NotifySpec, RulesSpec

Locate = Callable[[PathKey], Location]
AGENT_LEASE_MAX_TTL_S = 3600  # an agent's leases live at most this long unless it says less
AGENT_LEASE_CEILING_S = 8 * 3600  # ... or, if its policy says more, at most this long


def review_rules(
    spec: RulesSpec, locate: Locate, environments: Collection[str], errors: list[PolicyError]
) -> tuple[dict[str, int], int, RuleAction]:
    """``review_every`` by environment, ``review_grace`` and ``unreviewed``."""
    for env in spec.review_every:
        if env != DEFAULT_ENVIRONMENT and env not in environments:
            known = ", ".join(sorted({*environments, DEFAULT_ENVIRONMENT}))
            errors.append(
                PolicyError(
                    locate(("review_every", env)),
                    f"no target or identity is in environment {env!r} (known: {known})",
                )
            )
    return (
        dict(spec.review_every),
        spec.review_grace or DEFAULT_REVIEW_GRACE_S,
        RuleAction(spec.unreviewed),
    )


def notify(spec: NotifySpec | None, locate: Locate, errors: list[PolicyError]) -> Notify | None:
    if spec is None:
        return None
    parts = urlsplit(spec.webhook)
    where = locate(("notify", "webhook"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(PolicyError(where, "notify.webhook: write an http:// or https:// URL"))
        return None
    return Notify(spec.webhook)


def agent_errors(spec: IdentitySpec, at: Callable[..., Location]) -> list[PolicyError]:
    """What an agent's declaration gets wrong: it needs a sponsor, holds no static credential
    (no ``sink``, no ``rotate_every``: leases only) and leases of bounded life."""
    if spec.kind is not IdentityKind.AGENT:
        return []
    errors = []
    if spec.sponsor is None:
        errors.append(
            PolicyError(at("kind"), "an agent needs a sponsor: the person who answers for it")
        )
    credentials = spec.credentials
    for key in ("sink", "rotate_every"):
        if getattr(credentials, key) is not None:
            errors.append(
                PolicyError(
                    at("credentials", key),
                    f"an agent holds no static credential: remove credentials.{key} "
                    "(agents obtain short-lived leases only)",
                )
            )
    max_ttl = agent_lease_max_ttl(credentials.lease_max_ttl)
    if max_ttl > AGENT_LEASE_CEILING_S:
        errors.append(
            PolicyError(
                at("credentials", "lease_max_ttl"),
                f"an agent's leases live at most {format_duration(AGENT_LEASE_CEILING_S)}, "
                f"not {format_duration(max_ttl)}",
            )
        )
    ttl = credentials.lease_ttl
    if ttl is not None and ttl > max_ttl:
        errors.append(
            PolicyError(
                at("credentials", "lease_ttl"),
                f"lease_ttl {format_duration(ttl)} is longer than the agent's lease_max_ttl "
                f"({format_duration(max_ttl)})",
            )
        )
    return errors


def agent_lease_max_ttl(declared: int | None) -> int:
    return declared if declared is not None else AGENT_LEASE_MAX_TTL_S
