"""The plan of ``lockstep rotate``: every credential of one identity, rotated now. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from lockstep.errors import LockstepError
from lockstep.model import Action, Observation, Op, Plan, Policy, Snapshot


class NothingToRotate(LockstepError):
    code = "nothing_to_rotate"
    default_hint = "lockstep validate lists the identities and their access"


def rotation_plan(
    policy: Policy,
    observed: Mapping[str, Observation],
    identity: str,
    target: str | None,
    reason: str,
) -> Plan:
    """Rotate every credential of ``identity`` (on ``target`` only, if given) held by an
    account that exists and is enabled. Targets that could not be read are listed as
    unreachable: their credentials are not rotated."""
    declared = policy.identities.get(identity)
    if declared is None:
        raise NothingToRotate(f"unknown identity {identity!r}")
    accesses = [a for a in declared.access if target is None or a.target == target]
    if not accesses:
        where = f" on target {target!r}" if target else ""
        raise NothingToRotate(f"identity {identity!r} has no access{where}")
    actions = []
    unreachable = []
    for access in accesses:
        obs = observed.get(access.target)
        if not isinstance(obs, Snapshot):
            unreachable.append(access.target)
            continue
        account = obs.accounts.get(access.account)
        if account is not None and account.enabled:
            actions.append(
                Action(
                    Op.ROTATE_CREDENTIAL,
                    access.target,
                    access.account,
                    None,
                    identity,
                    f"requested: {reason}",
                )
            )
    return Plan(tuple(actions), (), tuple(unreachable))
