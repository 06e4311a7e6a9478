"""Escalation paths as the user sees them: every path from a source to each goal, shortest
first, marked when the policy, an approved grant or lockstep's own admin gives it; one
finding ``escalation_path`` per source and goal otherwise; the smallest cut that removes
every finding's paths to the goal; and, under ``rules.escalation_paths: revoke``, the
revocations of the edges lockstep manages in the cheapest cut made of them. Pure.

A path is given when its source is lockstep's admin connection, or when it is one edge that
an entitlement of the source's own account makes, and the policy (or an approved grant)
declares that entitlement for it: what an identity was given is no escalation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from lockstep.model import Action, Desired, Finding, FindingType, Op, Policy, RuleAction, Severity
from lockstep.paths.assemble import Assembled, Estate, GoalSpec, assemble
from lockstep.paths.graph import Confidence, Edge, Graph, NodeKind, NotAssessed, weakest
from lockstep.paths.risks import THROUGH_SECRETS
from lockstep.paths.search import distances, min_cut, paths_from, reaches

DEFAULT_LIMIT = 10  # paths listed per source and goal; more are counted as truncated
UNMANAGED_COST = 1 << 20  # a revocation cut goes through what lockstep manages when it can
GIVEN_BY_ADMIN = "lockstep's admin connection"
GIVEN_BY_POLICY = "the policy"
GIVEN_BY_GRANT = "an approved grant"


@dataclass(frozen=True, slots=True)
class Step:
    source: str
    destination: str
    target: str
    rule: str
    evidence: str
    confidence: Confidence
    conditions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FoundPath:
    source: str
    source_kind: str  # identity, account, person, admin, anyone, os-user
    to: str
    target: str
    steps: tuple[Step, ...]
    confidence: Confidence
    given_by: str | None  # None: an escalation
    finding: str | None  # the id of its finding

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for s in self.steps for c in s.conditions))


@dataclass(frozen=True, slots=True)
class Cut:
    to: str
    target: str
    edges: tuple[Step, ...]  # the smallest set whose removal cuts every finding's paths
    revocable: tuple[Step, ...]  # of the cheapest cut through what lockstep manages


@dataclass(frozen=True, slots=True)
class PathReport:
    paths: tuple[FoundPath, ...]
    cuts: tuple[Cut, ...]
    findings: tuple[Finding, ...]
    actions: tuple[Action, ...]  # revocations, under rules.escalation_paths: revoke
    remedies: tuple[tuple[Action, str], ...]  # (revocation, finding id it remedies)
    not_assessed: tuple[NotAssessed, ...]
    unread: tuple[tuple[str, str], ...]  # (target, why)
    truncated: bool


def analyse(
    policy: Policy,
    desired: Desired,
    estate: Estate,
    limit: int = DEFAULT_LIMIT,
    accepted: AbstractSet[str] = frozenset(),
) -> PathReport:
    built = assemble(policy, desired, estate)
    paths: list[FoundPath] = []
    cuts: list[Cut] = []
    findings: list[Finding] = []
    revocations: dict[Action, list[str]] = {}
    truncated = False
    for spec in built.goals:
        found, cut, goal_findings, remedies, cut_short = _goal(built, spec, estate, desired, limit)
        paths += found
        findings += goal_findings
        truncated |= cut_short
        if cut is not None:
            cuts.append(cut)
        if policy.rules.escalation_paths is RuleAction.REVOKE:
            for action, finding_id in remedies:
                if finding_id not in accepted:
                    revocations.setdefault(action, []).append(finding_id)
    paths.sort(key=lambda p: (len(p.steps), p.to, p.source, [s.rule for s in p.steps]))
    actions = tuple(sorted(revocations, key=Action.sort_key))
    return PathReport(
        tuple(paths),
        tuple(cuts),
        tuple(sorted(findings, key=lambda f: (f.target, f.account or "", f.entitlement or ""))),
        actions,
        tuple((a, fid) for a in actions for fid in dict.fromkeys(revocations[a])),
        tuple(built.not_assessed),
        tuple(sorted(estate.unread.items())),
        truncated,
    )


def _goal(
    built: Assembled, spec: GoalSpec, estate: Estate, desired: Desired, limit: int
) -> tuple[list[FoundPath], Cut | None, list[Finding], list[tuple[Action, str]], bool]:
    """The paths to one goal, its cut and findings, and the revocations (with the finding
    each cuts off entirely: a revocation that only narrows the paths is not made)."""
    graph, goal = built.graph, spec.goal
    dist = distances(graph, goal)
    found: list[FoundPath] = []
    findings: list[Finding] = []
    given_edges: set[int] = set()
    escalating: list[int] = []
    sources: dict[str, int] = {}
    truncated = False
    # The sources that can reach the goal at all, in the order of ``built.sources`` (sorted):
    # found from ``dist``, which is small, rather than by trying every source per goal.
    for source in sorted(n for n in dist if n in built.source_set):
        if source in goal.nodes:
            continue
        listing = paths_from(graph, source, goal, dist, limit)
        truncated |= listing.truncated
        views = []
        for path in listing.paths:
            given = _given(built, estate, desired, source, path)
            if given is not None and len(path) == 1:
                given_edges.add(path[0])
            views.append((path, given))
        if not views:
            continue
        escalations = [p for p, g in views if g is None]
        finding = (
            _finding(built, spec, source, escalations, listing.truncated) if escalations else None
        )
        if finding is not None:
            findings.append(finding)
            escalating.append(source)
            sources[finding.id] = source
        for path, given in views:
            found.append(_view(built, spec, source, path, given, finding))
    if not escalating:
        return found, None, findings, [], truncated
    usable = _without(given_edges)
    cut = min_cut(graph, escalating, goal, usable=usable) or []
    priced = (
        min_cut(
            graph,
            escalating,
            goal,
            cost=lambda e: 1 if _revocable(graph.edges[e], estate, desired) else UNMANAGED_COST,
            usable=usable,
        )
        or []
    )
    revocable = [e for e in priced if _revocable(graph.edges[e], estate, desired)]
    actions = [_revocation(graph.edges[e], desired, spec, findings) for e in revocable]
    after = _without(given_edges | set(revocable))
    remedies = [
        (action, fid)
        for fid, source in sources.items()
        if actions and not reaches(graph, [source], goal, usable=after)
        for action in actions
    ]
    view = Cut(
        spec.label,
        spec.target,
        tuple(_step(graph, e) for e in cut),
        tuple(_step(graph, e) for e in revocable),
    )
    return found, view, [_with_fix(f, view) for f in findings], remedies, truncated


def _without(edges: set[int]) -> Callable[[int], bool]:
    return lambda e: e not in edges


def _given(
    built: Assembled, estate: Estate, desired: Desired, source: int, path: tuple[int, ...]
) -> str | None:
    if source in built.admins:
        return GIVEN_BY_ADMIN
    if len(path) != 1:
        return None
    edge = built.graph.edges[path[0]]
    holder = edge.holder
    if holder is None or source not in built.identities:
        return None
    want = desired.accounts.get((edge.target, holder.account))
    if want is None or built.graph.index.get(edge.source) != source:
        return None
    # Grants count in the desired state too: asked first, so that a grant is named as such.
    if any((name, edge.target, holder.entitlement) in estate.approved for name in want.identities):
        return GIVEN_BY_GRANT
    if holder.entitlement in want.entitlements:
        return GIVEN_BY_POLICY
    return None


def _revocable(edge: Edge, estate: Estate, desired: Desired) -> bool:
    """An edge lockstep may remove: an entitlement of a managed account that neither the
    policy nor an approved grant gives it, and that the account holds now."""
    holder = edge.holder
    if holder is None:
        return False
    want = desired.accounts.get((edge.target, holder.account))
    if want is None or holder.entitlement in want.entitlements:
        return False
    if any((n, edge.target, holder.entitlement) in estate.approved for n in want.identities):
        return False
    return holder.entitlement in estate.held.get((edge.target, holder.account), frozenset())


def _revocation(edge: Edge, desired: Desired, spec: GoalSpec, findings: list[Finding]) -> Action:
    assert edge.holder is not None
    want = desired.accounts[(edge.target, edge.holder.account)]
    ids = ", ".join(f.id for f in findings[:3]) + (", ..." if len(findings) > 3 else "")
    return Action(
        Op.REVOKE,
        edge.target,
        edge.holder.account,
        edge.holder.entitlement,
        want.identities[0],
        f"cuts escalation paths to {spec.label} ({ids}); rule escalation_paths: revoke",
    )


def _kind(built: Assembled, source: int) -> str:
    node = built.graph.nodes[source]
    if source in built.admins:
        return "admin"
    if source in built.identities:
        return "identity"
    if source in built.people:
        return "person"
    if node.kind is NodeKind.ANYONE:
        return "anyone"
    if node.kind is NodeKind.OS_USER:
        return "os-user"
    return "account"


def source_label(built: Assembled, source: int) -> str:
    names = built.identities.get(source)
    return ",".join(names) if names else built.graph.nodes[source].label()


def _step(graph: Graph, e: int) -> Step:
    edge = graph.edges[e]
    return Step(
        edge.source.label(),
        edge.destination.label(),
        edge.target,
        edge.rule,
        edge.evidence,
        edge.confidence,
        edge.conditions,
    )


def _view(
    built: Assembled,
    spec: GoalSpec,
    source: int,
    path: tuple[int, ...],
    given: str | None,
    finding: Finding | None,
) -> FoundPath:
    steps = tuple(_step(built.graph, e) for e in path)
    return FoundPath(
        source_label(built, source),
        _kind(built, source),
        spec.label,
        spec.target,
        steps,
        weakest(s.confidence for s in steps),
        given,
        None if given is not None or finding is None else finding.id,
    )


def _through_secrets(graph: Graph, paths: Iterable[tuple[int, ...]]) -> bool:
    kinds = (NodeKind.SINK, NodeKind.SECRET)
    return any(graph.edges[e].destination.kind in kinds for p in paths for e in p)


def _finding(
    built: Assembled, spec: GoalSpec, source: int, paths: list[tuple[int, ...]], more: bool
) -> Finding:
    graph = built.graph
    shortest = paths[0]
    steps = [_step(graph, e) for e in shortest]
    chain = " -> ".join([steps[0].source, *(s.destination for s in steps)])
    confidence = weakest(s.confidence for s in steps)
    what = "the credential or privileges of" if spec.identity else "the secrets in"
    detail = (
        f"{source_label(built, source)} can obtain {what} {spec.label}: {chain} "
        f"({confidence}); {len(paths)}{'+' if more else ''} path(s)"
    )
    if _through_secrets(graph, paths) or spec.identity is None:
        detail += f"; {THROUGH_SECRETS}"
    return Finding(
        FindingType.ESCALATION_PATH,
        Severity.MEDIUM if confidence is Confidence.CONDITIONAL else Severity.HIGH,
        spec.target,
        account=spec.account,
        entitlement=f"from {_kind(built, source)} {source_label(built, source)}",
        identity=spec.identity,
        detail=detail,
    )


def _with_fix(finding: Finding, cut: Cut) -> Finding:
    fix = "; ".join(f"{s.source} -> {s.destination} ({s.rule})" for s in cut.edges[:5])
    more = ", ..." if len(cut.edges) > 5 else ""
    return Finding(
        finding.type,
        finding.severity,
        finding.target,
        finding.account,
        finding.entitlement,
        finding.identity,
        f"{finding.detail}; smallest fix: remove {fix}{more}",
    )
