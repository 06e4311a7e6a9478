"""Separation of duties over time. Pure: the caller gathers what an identity holds and held.

A sod rule names entitlements (each ``TARGET/ENTITLEMENT``) no identity may hold two of at
once, nor, with ``within``, one after the other less than ``within`` apart. Each holding is
an interval: from ``start`` (None: as long as anyone knows) to ``end`` (None: still held,
with no end in sight). Two holdings of different entitlements of one rule conflict when
their intervals overlap, or when the gap between them is shorter than the rule's window
(one ending the instant the other begins is a gap of zero: within any window, but not
together).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lockstep.engine.plan import finding
from lockstep.model import Desired, Finding, FindingType, Snapshot, SodRule

Entitlement = tuple[str, str]  # (target, canonical entitlement)


@dataclass(frozen=True, slots=True)
class Holding:
    target: str
    entitlement: str
    start: datetime | None  # None: since before anyone knows
    end: datetime | None  # None: held with no end (policy access without expiry, held now)
    source: str  # where it comes from, for the refusal: "policy FILE:LINE", "request R-…"

    @property
    def key(self) -> Entitlement:
        return (self.target, self.entitlement)

    def __str__(self) -> str:
        return f"{self.target}/{self.entitlement}"


@dataclass(frozen=True, slots=True)
class Conflict:
    rule: SodRule
    held: Holding  # what the identity holds, held, or is granted
    wanted: Holding  # what it asks for (or, in a target, the other side)

    def message(self) -> str:
        window = f" within {_window(self.rule.within_s)}" if self.rule.within_s else ""
        return (
            f"sod rule {self.rule.name!r}: {self.wanted} may not be held together with "
            f"{self.held}{window}; {self.held} comes from {self.held.source}"
        )


class SodIndex:
    """The rules by the entitlements they name, built once per policy."""

    def __init__(self, rules: Iterable[SodRule]) -> None:
        self.rules = tuple(rules)
        by: dict[Entitlement, list[SodRule]] = {}
        for rule in self.rules:
            for ent in rule.entitlements:
                by.setdefault(ent, []).append(rule)
        self._by: Mapping[Entitlement, tuple[SodRule, ...]] = {k: tuple(v) for k, v in by.items()}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rules_of(self, key: Entitlement) -> tuple[SodRule, ...]:
        return self._by.get(key, ())

    def names(self, key: Entitlement) -> bool:
        return key in self._by

    @property
    def entitlements(self) -> frozenset[Entitlement]:
        return frozenset(self._by)


def too_close(a: Holding, b: Holding, within_s: int | None) -> bool:
    """Whether ``a`` and ``b`` overlap, or lie less than ``within_s`` apart."""
    gap = max(_at(b.start, _PAST) - _at(a.end, _FUTURE), _at(a.start, _PAST) - _at(b.end, _FUTURE))
    if gap < 0:
        return True
    return within_s is not None and gap < within_s


_PAST, _FUTURE = -math.inf, math.inf


def _at(when: datetime | None, otherwise: float) -> float:
    return otherwise if when is None else when.timestamp()


def conflicts(
    index: SodIndex, held: Sequence[Holding], wanted: Sequence[Holding]
) -> list[Conflict]:
    """Every conflict of what is ``wanted`` with what is ``held`` and with the rest of what
    is wanted, each rule and pair once."""
    found: list[Conflict] = []
    seen: set[tuple[str, Entitlement, Entitlement]] = set()
    for i, want in enumerate(wanted):
        rules = index.rules_of(want.key)
        if not rules:
            continue
        others = [*held, *wanted[i + 1 :]]
        for rule in rules:
            for other in others:
                if other.key == want.key or other.key not in rule.entitlements:
                    continue
                pair = (rule.name, min(want.key, other.key), max(want.key, other.key))
                if pair in seen or not too_close(want, other, rule.within_s):
                    continue
                seen.add(pair)
                found.append(Conflict(rule, other, want))
    return found


def held_together(index: SodIndex, holdings: Sequence[Holding]) -> list[Conflict]:
    """Every pair of ``holdings`` that conflicts, each rule and pair once: what a pass finds
    in the targets."""
    return conflicts(index, (), holdings)


def _window(seconds: int) -> str:
    from lockstep.policy.durations import format_duration

    return format_duration(seconds)


def violations(
    index: SodIndex,
    desired: Desired,
    observed: Mapping[str, Snapshot],
    elsewhere: Mapping[str, Sequence[Holding]],
) -> list[Finding]:
    """A ``sod_violation`` for every identity that the targets show holding two
    entitlements of one rule: in the ``observed`` targets, or one there and one in a target
    last seen holding it (``elsewhere``). Each finding is on a target read now."""
    if not index:
        return []
    held: dict[str, list[Holding]] = {}
    accounts: dict[tuple[str, str], str] = {}
    for name, snapshot in observed.items():
        for account, want in desired.for_target(name).items():
            actual = snapshot.accounts.get(account)
            if actual is None:
                continue
            for identity in want.identities:
                accounts[(identity, name)] = account
                for ent in sorted(actual.entitlements):
                    if index.names((name, ent)):
                        source = f"target {name}, where account {account} holds it"
                        held.setdefault(identity, []).append(Holding(name, ent, None, None, source))
    found = []
    for identity, holdings in sorted(held.items()):
        for conflict in held_together(index, [*holdings, *elsewhere.get(identity, ())]):
            here = conflict.wanted if conflict.wanted.target in observed else conflict.held
            found.append(
                finding(
                    FindingType.SOD_VIOLATION,
                    here.target,
                    account=accounts[(identity, here.target)],
                    entitlement=here.entitlement,
                    identity=identity,
                    detail=f"identity {identity!r} breaks {conflict.message()}",
                )
            )
    return found
