"""What the dashboard shows, built in one go from the targets' last reads and the store: the
inventory rows (``lockstep.evidence.inventory``), indexes to search and filter them, and the
figures of the overview. Built off the request path (``lockstep.dashboard.estate``), so that a
page at 100k accounts only slices what is already here."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lockstep.engine.workspace import Workspace
from lockstep.evidence.explain import Known, account_findings
from lockstep.evidence.facts import StoreFacts
from lockstep.evidence.history import History
from lockstep.evidence.inventory import build_inventory
from lockstep.model import Desired, Finding, Observation, Severity
from lockstep.policy.load import LoadedPolicy

Row = dict[str, Any]
SEVERITIES = tuple(reversed([str(s) for s in Severity]))  # critical first
DAY_S = 86400.0
# Upper bounds of the histogram buckets (the last one is open).
AGE_BUCKETS_D = (7, 30, 90, 180, 365)
TTR_BUCKETS_S = (60, 600, 3600, 86400, 7 * 86400)


@dataclass(frozen=True)
class Remediation:
    identity: str | None
    type: str
    seconds: float


@dataclass
class Picture:
    """One consistent view of the estate, never changed once built."""

    built_at: datetime
    generation: int
    loaded: LoadedPolicy
    desired: Desired
    observed: Mapping[str, Observation]
    read_at: Mapping[str, datetime]
    facts: StoreFacts
    live: Sequence[Finding]
    targets: list[dict[str, Any]]
    rows: list[Row]
    remediations: list[Remediation]
    # What the identity pages explain from, built once for this picture: findings grouped
    # by account, the journal's index, git blame and the parsed policy files.
    known: Known
    hay: list[str] = field(default_factory=list)  # each row's searchable text, lower case
    by_identity: dict[str, list[int]] = field(default_factory=dict)
    ages_d: list[float | None] = field(default_factory=list)  # credential age per row
    _overviews: dict[frozenset[str] | None, dict[str, Any]] = field(default_factory=dict)

    def visible_rows(self, identities: frozenset[str] | None) -> list[int]:
        """Row indices a principal may see: every row, or those of ``identities``."""
        if identities is None:
            return list(range(len(self.rows)))
        found: set[int] = set()
        for name in identities:
            found.update(self.by_identity.get(name, ()))
        return sorted(found)

    def overview(self, identities: frozenset[str] | None) -> dict[str, Any]:
        cached = self._overviews.get(identities)
        if cached is None:
            cached = overview(self, self.visible_rows(identities), identities)
            if len(self._overviews) < 256:  # one per kind of viewer; bounded all the same
                self._overviews[identities] = cached
        return cached


def build_picture(
    ws: Workspace,
    generation: int,
    desired: Desired,
    observed: Mapping[str, Observation],
    read_at: Mapping[str, datetime],
    facts: StoreFacts,
    live: Sequence[Finding],
    remediations: list[Remediation],
    history: Callable[[Collection[tuple[str, str]]], History],
    now: datetime,
) -> Picture:
    inventory = build_inventory(ws.policy, desired, observed, facts, live)
    rows: list[Row] = inventory["accounts"]
    picture = Picture(
        now,
        generation,
        ws.loaded,
        desired,
        observed,
        read_at,
        facts,
        live,
        inventory["targets"],
        rows,
        remediations,
        Known(account_findings(facts, live, observed), history),
    )
    for i, row in enumerate(rows):
        names = row.get("identities") or ()
        picture.hay.append(
            " ".join(
                str(v)
                for v in (row["target"], row["account"], *names, row["owner"], row["purpose"])
                if v
            ).lower()
        )
        for name in names:
            picture.by_identity.setdefault(name, []).append(i)
        issued = facts.issued.get((row["target"], row["account"] or ""))
        picture.ages_d.append(None if issued is None else (now - issued).total_seconds() / DAY_S)
    picture.overview(None)
    return picture


def overview(
    picture: Picture, indices: Iterable[int], identities: frozenset[str] | None
) -> dict[str, Any]:
    """Counts and the charts' series over the rows at ``indices``."""
    statuses: dict[str, int] = {}
    severities = dict.fromkeys(SEVERITIES, 0)
    types: dict[str, int] = {}
    accepted = 0
    ages = [0] * (len(AGE_BUCKETS_D) + 1)
    people: set[str] = set()
    for i in indices:
        row = picture.rows[i]
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        people.update(row.get("identities") or ())
        for f in row["findings"]:
            if f["status"] == "accepted":
                accepted += 1
            elif f["status"] == "open":
                severities[f["severity"]] = severities.get(f["severity"], 0) + 1
                types[f["type"]] = types.get(f["type"], 0) + 1
        age = picture.ages_d[i]
        if age is not None:
            ages[_bucket(age, AGE_BUCKETS_D)] += 1
    ttr = sorted(
        r.seconds
        for r in picture.remediations
        if identities is None or (r.identity is not None and r.identity in identities)
    )
    ttr_buckets = [0] * (len(TTR_BUCKETS_S) + 1)
    for seconds in ttr:
        ttr_buckets[_bucket(seconds, TTR_BUCKETS_S)] += 1
    return {
        "accounts": sum(statuses.values()),
        "identities": len(people),
        "statuses": dict(sorted(statuses.items())),
        "open_findings": sum(severities.values()),
        "accepted_findings": accepted,
        "severities": severities,
        "drift": dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        "ttr_p50_s": _pct(ttr, 50),
        "ttr_p95_s": _pct(ttr, 95),
        "ttr_count": len(ttr),
        "ttr_buckets": ttr_buckets,
        "age_buckets": ages,
        "targets_read": sum(t["status"] == "read" for t in picture.targets),
        "targets_unreachable": sum(t["status"] != "read" for t in picture.targets),
    }


def _bucket(value: float, bounds: Sequence[float]) -> int:
    for i, bound in enumerate(bounds):
        if value < bound:
            return i
    return len(bounds)


def _pct(values: Sequence[float], p: int) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, (len(values) * p) // 100)]
