"""One graph from every target's facts and the policy's sinks, with what the policy says of
its nodes: which are identities' accounts, lockstep's admins, people; where each identity's
credential and privileges are (its goals); and who can be a source. Pure.

An identity's goal on a target is its account there (obtaining its credential, or acting as
it), or one of the groups the policy grants it, when obtained (being able to join or grant
it; holding it is sharing it). A place secrets are kept (a secret table, secret keys) is a
goal of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from lockstep.credentials.sinks import SinkError, sink_location
from lockstep.model import Desired, Policy
from lockstep.paths.graph import (
    Confidence,
    Edge,
    Graph,
    Node,
    NodeKind,
    NotAssessed,
    PathRequest,
    TargetFacts,
)
from lockstep.paths.search import Goal

AWS_SECRETS = "aws-secrets:"


@dataclass(frozen=True, slots=True)
class Estate:
    """What one pass read for escalation paths."""

    facts: Mapping[str, TargetFacts]  # by target; the host's file sinks under ""
    unread: Mapping[str, str] = field(default_factory=dict)  # target -> why not
    # (identity, target, entitlement) of grants being enforced now (approved requests).
    approved: frozenset[tuple[str, str, str]] = frozenset()
    # (target, account) -> the entitlements read in the target.
    held: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GoalSpec:
    label: str  # the identity's name, or the secret store's label
    target: str
    identity: str | None
    account: str | None
    goal: Goal


@dataclass
class Assembled:
    graph: Graph
    goals: list[GoalSpec]
    sources: list[int]
    admins: set[int]
    people: set[int]
    identities: dict[int, tuple[str, ...]]  # account node -> the identities declaring it
    not_assessed: list[NotAssessed]

    @cached_property
    def source_set(self) -> frozenset[int]:
        return frozenset(self.sources)


def sink_locations(policy: Policy) -> dict[str, list[tuple[str, str, str]]]:
    """Every sink location the policy delivers to, with (identity, target, account)."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for identity in policy.identities.values():
        sink = identity.credentials.sink
        if sink is None:
            continue
        for access in identity.access:
            try:
                location = sink_location(sink, access.target)
            except SinkError:
                continue  # the loader refused it already; nothing is delivered there
            found.setdefault(location, []).append((identity.name, access.target, access.account))
    return found


def path_request(policy: Policy) -> PathRequest:
    return PathRequest(
        secrets=frozenset(s for s in sink_locations(policy) if s.startswith(AWS_SECRETS))
    )


def assemble(policy: Policy, desired: Desired, estate: Estate) -> Assembled:
    edges = [e for facts in estate.facts.values() for e in facts.edges()]
    edges += _sink_edges(policy, estate)
    edges.sort(key=lambda e: (e.source, e.destination, e.rule, e.evidence))
    graph = Graph.of(edges)
    admins: set[int] = set()
    people: set[int] = set()
    logins: set[int] = set()
    gaps: list[NotAssessed] = []
    for read in estate.facts.values():
        found = read.principals()
        admins |= _numbers(graph, found.admins)
        people |= _numbers(graph, found.people)
        logins |= _numbers(graph, found.logins)
        gaps += read.not_assessed()
    identities: dict[int, list[str]] = {}
    goals: list[GoalSpec] = []
    for want in sorted(desired.accounts.values(), key=lambda w: (w.target, w.account)):
        facts = estate.facts.get(want.target)
        if facts is None:
            continue
        node = graph.node(facts.account_node(want.account))
        for name in want.identities:
            identities.setdefault(node, []).append(name)
        obtained = {
            graph.node(n)
            for e in sorted(want.entitlements)
            if (n := facts.entitlement_node(e)) is not None and graph.index.get(n) != node
        }
        for name in want.identities:
            own = Goal(frozenset({node}), frozenset(obtained))
            goals.append(GoalSpec(name, want.target, name, want.account, own))
    for number, store in enumerate(list(graph.nodes)):
        if store.kind is NodeKind.SECRET:
            goal = Goal(frozenset({number}))
            goals.append(GoalSpec(store.label(), store.target, None, None, goal))
    sources = sorted(
        n
        for n, node in enumerate(graph.nodes)
        if node.kind in (NodeKind.ANYONE, NodeKind.OS_USER)
        or n in logins
        or n in admins
        or n in people
        or n in identities
    )
    return Assembled(
        graph,
        goals,
        sources,
        admins,
        people,
        {n: tuple(sorted(set(names))) for n, names in identities.items()},
        gaps,
    )


def _numbers(graph: Graph, nodes: Iterable[Node]) -> set[int]:
    return {graph.node(n) for n in nodes}


def _sink_edges(policy: Policy, estate: Estate) -> list[Edge]:
    """Whoever obtains a sink obtains the credential lockstep delivers there."""
    edges = []
    for location, holders in sorted(sink_locations(policy).items()):
        sink = Node(NodeKind.SINK, "", location)
        for identity, target, account in holders:
            facts = estate.facts.get(target)
            if facts is None:
                continue
            edges.append(
                Edge(
                    sink,
                    facts.account_node(account),
                    "sink.holds",
                    f"{location} holds the credential of {identity} on {target} (its sink)",
                    Confidence.PROVEN,
                )
            )
    return edges
