"""The JSON shape of ``lockstep paths`` (CONTRACT.md, "Escalation paths"), and the filters
``--from`` and ``--to``. Pure.

``{"paths": [{"from", "to", "steps": [{"target", "edge", "evidence"}], "confidence"}]}``
with, beside the contract's keys: each path's kind of source, its target, conditions,
whether the policy, an approved grant or lockstep's admin gives it (``given_by``; null for
an escalation) and its finding's id; each step's ``from``, ``to``, confidence and
conditions; the smallest cut per goal (``cuts``); what could not be assessed, and the
targets that could not be read.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lockstep.paths.analysis import Cut, FoundPath, PathReport, Step


def matches(path: FoundPath, source: str | None, goal: str | None) -> bool:
    """Whether ``path`` is from ``source`` (an identity, or an account as ``TARGET/NAME``,
    or any node's label) and to ``goal`` (an identity or a secret store's label)."""
    if source is not None:
        named = {path.source, *path.source.split(","), path.steps[0].source}
        if source not in named:
            return False
    return goal is None or path.to == goal


def filtered(report: PathReport, source: str | None, goal: str | None) -> PathReport:
    paths = tuple(p for p in report.paths if matches(p, source, goal))
    goals = {(p.to, p.target) for p in paths}
    cuts = tuple(c for c in report.cuts if goal is None or (c.to, c.target) in goals)
    return replace(report, paths=paths, cuts=cuts)


def step_json(step: Step) -> dict[str, Any]:
    return {
        "target": step.target,
        "edge": step.rule,
        "evidence": step.evidence,
        "from": step.source,
        "to": step.destination,
        "confidence": str(step.confidence),
        "conditions": list(step.conditions),
    }


def path_json(path: FoundPath) -> dict[str, Any]:
    return {
        "from": path.source,
        "from_kind": path.source_kind,
        "to": path.to,
        "target": path.target,
        "steps": [step_json(s) for s in path.steps],
        "confidence": str(path.confidence),
        "conditions": list(path.conditions),
        "given_by": path.given_by,
        "finding": path.finding,
    }


def cut_json(cut: Cut) -> dict[str, Any]:
    return {
        "to": cut.to,
        "target": cut.target,
        "edges": [step_json(s) for s in cut.edges],
        "revocable": [step_json(s) for s in cut.revocable],
    }


def report_json(report: PathReport) -> dict[str, Any]:
    return {
        "paths": [path_json(p) for p in report.paths],
        "cuts": [cut_json(c) for c in report.cuts],
        "truncated": report.truncated,
        "not_assessed": [
            {"target": n.target, "what": n.what, "reason": n.reason} for n in report.not_assessed
        ],
        "unreachable": [{"target": t, "error": why} for t, why in report.unread],
    }
