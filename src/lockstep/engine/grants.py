"""What a pass proved about each grant on the targets it read. Pure.

A grant becomes ``active`` only once the target was read back holding every entitlement it
gives (on an account that can log in): at the start of the pass, or by the verified result
of this pass's grant. Once its window is over it is ``ending``, and ``ended`` only once
every entitlement it gave was read back absent, unless the policy or another live grant
still holds it (grants are counted: that one stays, and the end is noted as kept). A grant
whose enforcement failed is ``failed``, and tried again every pass. A grant under which a
lease was issued ends only once that lease has ended too (proven refused, its sessions gone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from lockstep.engine.plan import finding
from lockstep.model import (
    Desired,
    Finding,
    FindingType,
    Grant,
    Op,
    RequestStatus,
    Result,
    Snapshot,
    Status,
)

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class GrantState:
    """A grant as the state store holds it at the start of a pass's settling."""

    grant: Grant
    status: RequestStatus
    detail: str = ""

    @property
    def key(self) -> Key:
        return (self.grant.target, self.grant.account)


@dataclass(frozen=True, slots=True)
class Transition:
    request: str
    status: RequestStatus
    detail: str = ""
    results: tuple[int, ...] = ()  # journal seqs of the results that brought it about
    kept: tuple[str, ...] = ()  # at its end: entitlements the policy or other grants hold


@dataclass
class _After:
    """An account as the pass left it, as far as it was proven."""

    present: bool
    enabled: bool
    held: set[str]
    failed: dict[str, str]  # entitlement ('' for the account) -> why its action failed
    seqs: list[tuple[str, int]]  # (entitlement or '', journal seq)
    unknown: Mapping[str, str]  # entitlements naming an object the target lacks -> why


def transitions(
    grants: Iterable[GrantState],
    desired: Desired,
    observed: Mapping[str, Snapshot],
    results: Sequence[Result],
    now: datetime,
    leased: AbstractSet[str] = frozenset(),
) -> list[Transition]:
    """The status changes the pass proved, for the grants on the ``observed`` targets.
    ``leased``: the grants under which a lease still lives."""
    states = [g for g in grants if g.grant.target in observed]
    live = [g.grant for g in states if now < g.grant.ends_at]
    after = _accounts_after(observed, results, {g.key for g in states})
    found: list[Transition] = []
    for state in states:
        found.extend(_one(state, desired, after.get(state.key), live, now, leased))
    return found


def _one(
    state: GrantState,
    desired: Desired,
    after: _After | None,
    live: list[Grant],
    now: datetime,
    leased: AbstractSet[str],
) -> list[Transition]:
    grant, status = state.grant, state.status
    ents = grant.entitlements
    seqs = tuple(s for e, s in (after.seqs if after else []) if e in ents or e == "")
    if now >= grant.ends_at:
        moves = []
        if status is not RequestStatus.ENDING:
            moves.append(Transition(grant.request, RequestStatus.ENDING))
        want = desired.accounts.get(state.key)
        policy = (want.entitlements - want.granted.keys()) if want is not None else frozenset()
        others = {
            e for g in live if g.request != grant.request and (g.target, g.account) == state.key
            for e in g.entitlements
        }  # fmt: skip
        kept = tuple(sorted(ents & (policy | others)))
        gone = after is None or not after.present or not ((ents - set(kept)) & after.held)
        if gone and grant.request not in leased:
            moves.append(Transition(grant.request, RequestStatus.ENDED, "", seqs, kept))
        return moves
    want = desired.accounts.get(state.key)
    if want is None:
        why = f"the policy no longer declares access of {grant.identity} on {grant.target}"
        return _failed(state, why, seqs)
    if not want.active:
        return _failed(state, f"the account is suspended: {want.suspend_reason}", seqs)
    if after is None:
        return []
    if after.present and after.enabled and ents <= after.held:
        if status is RequestStatus.ACTIVE:
            return []
        return [Transition(grant.request, RequestStatus.ACTIVE, "", seqs)]
    failures = [f"{e or 'the account'}: {after.failed[e]}" for e in sorted(after.failed)
                if e in ents or e == ""]  # fmt: skip
    failures += [
        f"{e}: {after.unknown[e]}" for e in sorted(ents - after.held) if e in after.unknown
    ]
    if failures:
        return _failed(state, "; ".join(failures), seqs)
    return []


def _failed(state: GrantState, why: str, seqs: tuple[int, ...]) -> list[Transition]:
    if state.status is RequestStatus.FAILED and state.detail == why:
        return []
    return [Transition(state.grant.request, RequestStatus.FAILED, why, seqs)]


def _accounts_after(
    observed: Mapping[str, Snapshot], results: Sequence[Result], keys: set[Key]
) -> dict[Key, _After]:
    after: dict[Key, _After] = {}
    for target, account in keys:
        actual = observed[target].accounts.get(account)
        after[(target, account)] = _After(
            present=actual is not None,
            enabled=actual is not None and actual.enabled,
            held=set(actual.entitlements) if actual is not None else set(),
            failed={},
            seqs=[],
            unknown=observed[target].unknown,
        )
    for result in results:
        a = result.action
        state = after.get((a.target, a.account))
        if state is None:
            continue
        ent = a.entitlement or ""
        if result.seq is not None:
            state.seqs.append((ent, result.seq))
        if result.status is not Status.VERIFIED:
            state.failed[ent] = result.detail
            continue
        if a.op is Op.GRANT:
            state.held.add(ent)
        elif a.op is Op.REVOKE:
            state.held.discard(ent)
        elif a.op in (Op.CREATE_ACCOUNT, Op.RESTORE_ACCOUNT):
            state.present = state.enabled = True
        elif a.op is Op.SUSPEND_ACCOUNT:
            state.enabled = False
        elif a.op is Op.DELETE_ACCOUNT:
            state.present = state.enabled = False
            state.held.clear()
    return after


def grant_findings(grants: Iterable[GrantState], targets_read: Iterable[str]) -> list[Finding]:
    """A ``grant_failed`` finding for every failed grant on a target read."""
    read = set(targets_read)
    return [
        finding(
            FindingType.GRANT_FAILED,
            g.grant.target,
            account=g.grant.account,
            entitlement=min(g.grant.entitlements),
            identity=g.grant.identity,
            detail=f"request {g.grant.request} could not be enforced: {g.detail}",
        )
        for g in grants
        if g.status is RequestStatus.FAILED and g.grant.target in read
    ]
