"""Whether each identity's access is enforced as a unit across all its targets.

An identity whose access spans several targets is enforced only when every one of them is:
one unreachable target, or one action not verified, leaves it partially enforced, and the
failed part is retried by the next pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from lockstep.model import Plan, Policy, Result, Status


class Enforcement(StrEnum):
    ENFORCED = "enforced"  # every target read, nothing left to do (or all of it verified)
    PENDING = "pending"  # every target read, changes planned
    PARTIAL = "partially enforced"  # some targets in step, others unreachable or failed
    UNKNOWN = "unknown"  # no target of the identity could be read or changed


@dataclass(frozen=True, slots=True)
class IdentityEnforcement:
    identity: str
    status: Enforcement
    targets: tuple[str, ...]
    lagging: tuple[str, ...]  # targets not (yet) in step


def enforcement(
    policy: Policy, plan: Plan, results: Iterable[Result] | None = None
) -> dict[str, IdentityEnforcement]:
    """After a plan (``results`` None) or after applying it."""
    unreachable = set(plan.unreachable)
    if results is None:
        behind = {(a.identity, a.target) for a in plan.actions}
    else:
        behind = {
            (r.action.identity, r.action.target) for r in results if r.status is not Status.VERIFIED
        }
    report = {}
    for name, identity in sorted(policy.identities.items()):
        targets = tuple(sorted({a.target for a in identity.access}))
        dead = [t for t in targets if t in unreachable]
        lagging = tuple(t for t in targets if t in unreachable or (name, t) in behind)
        if not lagging:
            status = Enforcement.ENFORCED
        elif len(dead) == len(targets) or (results is not None and len(lagging) == len(targets)):
            status = Enforcement.UNKNOWN
        elif dead or results is not None:
            status = Enforcement.PARTIAL
        else:
            status = Enforcement.PENDING
        report[name] = IdentityEnforcement(name, status, targets, lagging)
    return report
