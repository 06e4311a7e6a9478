"""Which targets one pass of the service covers, and what of the policy it sees. Pure.

The service passes target by target, so that a slow target never delays another. An identity
with a pending rotation event spans all of its targets at once: its credentials rotate on
every one of them in one pass, which alone may record the event as enforced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from lockstep.model import Op, Plan, Policy


def pass_scope(policy: Policy, target: str, pending: Iterable[str]) -> frozenset[str]:
    """``target``, joined by every target of each identity in ``pending`` (a pending
    rotation event) whose targets reach the scope, until no more join."""
    spans = [
        frozenset(a.target for a in policy.identities[name].access)
        for name in pending
        if name in policy.identities
    ]
    scope = {target}
    grown = True
    while grown:
        grown = False
        for span in spans:
            if span & scope and not span <= scope:
                scope |= span
                grown = True
    return frozenset(scope)


def narrowed(policy: Policy, scope: frozenset[str]) -> Policy:
    """The policy as one pass over ``scope`` sees it: those targets, and the identities with
    access on them (identities elsewhere are none of this pass's business)."""
    identities = {
        name: identity
        for name, identity in policy.identities.items()
        if any(a.target in scope for a in identity.access)
    }
    targets = {name: policy.targets[name] for name in sorted(scope)}
    return replace(policy, targets=targets, identities=identities)


def without_rotations(plan: Plan, identities: frozenset[str], policy: Policy) -> Plan:
    """``plan`` without the rotations of ``identities`` (whose other targets another service
    holds: their rotation waits for a pass that covers them all)."""
    if not identities:
        return plan
    keys = {
        (a.target, a.account)
        for name in identities
        if name in policy.identities
        for a in policy.identities[name].access
    }
    kept = tuple(
        a
        for a in plan.actions
        if not (a.op is Op.ROTATE_CREDENTIAL and (a.target, a.account) in keys)
    )
    return replace(plan, actions=kept)
