"""Approval stages: who may approve a request, and when it is approved. Pure.

When a request is filed, the approval rules in force for its environment are snapshotted
into it with every approver resolved to people (``owner`` to the owner's contacts,
``group:NAME`` to its members), together with the admins and the identity's sponsor: a later
policy edit never changes who may approve a request already filed.

Stages pass in order; each needs ``required`` distinct people among its approvers (an admin
may stand in for any). The requester never approves their own request, the sponsor of an
agent never approves a request for it, and nobody approves two stages of one request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lockstep.errors import LockstepError
from lockstep.governance.people import admins, resolve
from lockstep.model import DEFAULT_ENVIRONMENT, Identity, Policy


class NotAllowed(LockstepError):
    """This person may not decide this request (now). One line saying why."""

    code = "not_allowed"


@dataclass(frozen=True, slots=True)
class StageRule:
    approvers: tuple[str, ...]  # as the policy wrote them
    people: frozenset[str]  # resolved when the request was filed
    required: int

    def fields(self) -> dict[str, Any]:
        return {
            "approvers": list(self.approvers),
            "people": sorted(self.people),
            "required": self.required,
        }


@dataclass(frozen=True, slots=True)
class ApprovalRules:
    stages: tuple[StageRule, ...]
    admins: frozenset[str]
    sponsor: str | None

    def fields(self) -> dict[str, Any]:
        return {
            "stages": [s.fields() for s in self.stages],
            "admins": sorted(self.admins),
            "sponsor": self.sponsor,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> ApprovalRules:
        return cls(
            tuple(
                StageRule(tuple(s["approvers"]), frozenset(s["people"]), int(s["required"]))
                for s in data["stages"]
            ),
            frozenset(data["admins"]),
            data.get("sponsor"),
        )


@dataclass(frozen=True, slots=True)
class Given:
    """An approval already given: by whom, for which stage (0-based)."""

    by: str
    stage: int


def environment_of(policy: Policy, identity: Identity, target: str) -> str | None:
    """The environment whose rules govern access of ``identity`` on ``target``: the
    target's, else the identity's."""
    return policy.targets[target].environment or identity.environment


def rules_for(policy: Policy, identity: Identity, environment: str | None) -> ApprovalRules:
    approvals = policy.governance.approvals
    stages = approvals.get(environment or DEFAULT_ENVIRONMENT) or approvals.get(
        DEFAULT_ENVIRONMENT, ()
    )
    return ApprovalRules(
        tuple(
            StageRule(s.approvers, resolve(policy, s.approvers, identity), s.required)
            for s in stages
        ),
        admins(policy),
        identity.sponsor,
    )


def _excluded(rules: ApprovalRules, requester: str) -> set[str]:
    return {requester} | ({rules.sponsor} if rules.sponsor else set())


def unsatisfiable(rules: ApprovalRules, requester: str) -> str | None:
    """Why no set of people could ever approve a request filed by ``requester``, or None."""
    if not rules.stages:
        return "no approval stages apply: governance.approvals names none for this environment"
    excluded = _excluded(rules, requester)
    everyone: set[str] = set()
    for i, stage in enumerate(rules.stages):
        eligible = (stage.people | rules.admins) - excluded
        everyone |= eligible
        if len(eligible) < stage.required:
            return (
                f"stage {i + 1} ({', '.join(stage.approvers)}) needs {stage.required} "
                f"approval(s) but only {len(eligible)} person(s) other than the requester"
                + (" and the sponsor" if rules.sponsor else "")
                + " can give them"
            )
    needed = sum(s.required for s in rules.stages)
    if len(everyone) < needed:
        return f"the stages need {needed} different people but only {len(everyone)} can approve"
    return None


def current_stage(rules: ApprovalRules, given: Sequence[Given]) -> int | None:
    """The first stage still short of approvals; None once every stage has passed."""
    for i, stage in enumerate(rules.stages):
        if sum(g.stage == i for g in given) < stage.required:
            return i
    return None


def stage_for(rules: ApprovalRules, requester: str, given: Sequence[Given], person: str) -> int:
    """The stage ``person``'s approval counts for now; NotAllowed when it would not."""
    if person == requester:
        raise NotAllowed("you filed this request: another person must approve it")
    if rules.sponsor is not None and person == rules.sponsor:
        raise NotAllowed("you sponsor this agent: another person must approve its requests")
    earlier = next((g for g in given if g.by == person), None)
    if earlier is not None:
        raise NotAllowed(
            f"you approved stage {earlier.stage + 1} of this request: "
            "another person must approve the rest"
        )
    stage = current_stage(rules, given)
    if stage is None:
        raise NotAllowed("every stage of this request is approved already")
    rule = rules.stages[stage]
    if person not in rule.people and person not in rules.admins:
        raise NotAllowed(
            f"you are not an approver of stage {stage + 1} "
            f"({', '.join(rule.approvers)}: {', '.join(sorted(rule.people)) or 'nobody'})"
        )
    return stage


def may_approve(rules: ApprovalRules, requester: str, given: Sequence[Given], person: str) -> bool:
    try:
        stage_for(rules, requester, given, person)
    except NotAllowed:
        return False
    return True


def check_may_deny(
    rules: ApprovalRules, requester: str, given: Sequence[Given], person: str
) -> None:
    """Whoever may approve a stage still to come may deny instead; NotAllowed otherwise."""
    if person == requester:
        raise NotAllowed("you filed this request: withdraw it by letting it expire")
    if rules.sponsor is not None and person == rules.sponsor:
        raise NotAllowed("you sponsor this agent: another person must decide its requests")
    earlier = next((g for g in given if g.by == person), None)
    if earlier is not None:
        raise NotAllowed(f"you approved stage {earlier.stage + 1} of this request")
    stage = current_stage(rules, given)
    later = rules.stages[stage:] if stage is not None else ()
    if person in rules.admins or any(person in s.people for s in later):
        return
    raise NotAllowed("you are not an approver of this request")
