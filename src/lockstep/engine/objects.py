"""What the plan does about the objects its grants name. Pure.

A grant of an object the target does not have (a role, table, group, command, policy) would
fail on apply; worse, an account created for it would be left half-made. So the plan holds
such a grant back and reports ``unknown_object``; an account that does not exist yet is not
created until every object it is granted exists. The account's other actions go ahead.

Some targets cap how many grantees one object can have: a PostgreSQL table's ACL lives in
its ``pg_class`` row, which cannot grow past a page ("row is too big"). The plan warns when
its grants would take an object past the room its target reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lockstep.engine.catalog import KINDS
from lockstep.model import (
    Account,
    Action,
    DesiredAccount,
    Finding,
    FindingType,
    Op,
    Snapshot,
)


@dataclass(frozen=True)
class Withheld:
    actions: list[Action]
    findings: list[Finding]


def withhold(
    actions: list[Action],
    findings: list[Finding],
    want: DesiredAccount,
    actual: Account | None,
    unknown: Mapping[str, str],
) -> Withheld:
    """``actions`` and ``findings`` of one account without the grants of unknown objects
    (and without the account's creation, if any is needed for it), with an
    ``unknown_object`` finding for each."""
    if not unknown:
        return Withheld(actions, findings)
    missing = sorted(e for e in want.entitlements if e in unknown)
    if actual is not None:
        missing = [e for e in missing if e not in actual.entitlements]
    if not missing:
        return Withheld(actions, findings)
    held = set(missing)
    creating = actual is None
    note = "; the account is created once every object it is granted exists" if creating else ""
    kept = [
        a
        for a in actions
        if not (creating and a.op in (Op.CREATE_ACCOUNT, Op.GRANT))
        and not (a.op is Op.GRANT and a.entitlement in held)
    ]
    reported = [
        f
        for f in findings
        if not (f.type is FindingType.MISSING_ENTITLEMENT and f.entitlement in held)
    ]
    kind = KINDS[FindingType.UNKNOWN_OBJECT]
    for ent in missing:
        for identity in want.identities:
            reported.append(
                Finding(
                    FindingType.UNKNOWN_OBJECT,
                    kind.severity,
                    want.target,
                    want.account,
                    ent,
                    identity,
                    f"{unknown[ent]}: the grant is held back{note}",
                )
            )
    return Withheld(kept, reported)


def room_warnings(actions: Iterable[Action], observed: Mapping[str, object]) -> list[str]:
    """A warning per object that the plan's grants would take past its room."""
    grantees: dict[tuple[str, str], set[str]] = {}
    rooms: dict[tuple[str, str], int] = {}
    for a in actions:
        obs = observed.get(a.target)
        if a.op is not Op.GRANT or a.entitlement is None or not isinstance(obs, Snapshot):
            continue
        found = obs.room.get(a.entitlement)
        if found is None:
            continue
        obj, room = found
        if _holds_on(obs, a.account, obj):
            continue  # one more privilege of an existing grantee: no new ACL item
        grantees.setdefault((a.target, obj), set()).add(a.account)
        rooms[(a.target, obj)] = room
    return [
        f"target {target}: {len(accounts)} new grantee(s) of {obj}, but its ACL has room for "
        f"about {rooms[(target, obj)]} more; the grants beyond it may fail ('row is too big')"
        for (target, obj), accounts in sorted(grantees.items())
        if len(accounts) > rooms[(target, obj)]
    ]


def _holds_on(obs: Snapshot, account: str, obj: str) -> bool:
    held = obs.accounts.get(account)
    if held is None:
        return False
    return any(obs.room.get(e, ("", 0))[0] == obj for e in held.entitlements)
