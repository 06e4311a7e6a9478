"""The escalation graph's data: nodes, edges and the facts each target contributes. Pure.

A node is something that can act or be obtained: an account of a target (a PostgreSQL role,
a Redis ACL user, an LDAP entry, an IAM user or role), a group, a capability shared by many
(``any superuser of orders-db``), anyone who can reach a target, a place secrets are kept, a
sink, an OS user. An edge says that whoever acts as its source can obtain its destination,
with the rule that says so, the evidence, and how sure lockstep is:

- ``proven``: the target's own check answered it (``pg_has_role``, ``ACL DRYRUN``);
- ``inferred``: lockstep's reading of the target's rules (an olcAccess list, IAM policies);
- ``conditional``: it holds only if conditions lockstep cannot resolve hold; they are listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Confidence(StrEnum):
    PROVEN = "proven"
    INFERRED = "inferred"
    CONDITIONAL = "conditional"


# Weakest last: a path is as sure as its least sure step.
_RANK = {Confidence.PROVEN: 0, Confidence.INFERRED: 1, Confidence.CONDITIONAL: 2}


def weakest(confidences: Iterable[Confidence]) -> Confidence:
    return max(confidences, key=_RANK.__getitem__, default=Confidence.PROVEN)


class NodeKind(StrEnum):
    ACCOUNT = "account"  # an account of a target: can act, or be acted as
    GROUP = "group"  # holds privileges for its members; nobody logs in as it
    CAPABILITY = "capability"  # what many share: "any superuser", "any IAM action"
    ANYONE = "anyone"  # whoever can reach the target (PUBLIC, anonymous binds, Principal "*")
    SECRET = "secret"  # noqa: S105 - where secrets are kept: a table, Redis keys
    SINK = "sink"  # a sink lockstep delivers an identity's credential to
    OS_USER = "os_user"  # a user of the host that holds file sinks


@dataclass(frozen=True, slots=True, order=True)
class Node:
    kind: NodeKind
    target: str  # the target's name; "" for the host's files and users
    name: str

    def label(self) -> str:
        if self.kind in (NodeKind.SINK, NodeKind.OS_USER) or not self.target:
            return self.name
        if self.kind is NodeKind.ACCOUNT:
            return f"{self.target}/{self.name}"
        return f"{self.target}: {self.name}"


@dataclass(frozen=True, slots=True)
class Holder:
    """The entitlement of an account that makes an edge exist: revoking it removes the edge."""

    account: str
    entitlement: str


@dataclass(frozen=True, slots=True)
class Edge:
    source: Node
    destination: Node
    rule: str  # what kind of step, e.g. "pg.member", "aws.create_access_key"
    evidence: str  # what in the target says so, for a person to check
    confidence: Confidence = Confidence.INFERRED
    conditions: tuple[str, ...] = ()  # unresolved, for conditional edges
    holder: Holder | None = None
    # False for holding what the destination grants (a plain membership): reaching an
    # identity's entitlement that way is sharing it, not obtaining it.
    obtains: bool = True

    @property
    def target(self) -> str:
        """The target whose rules make the step: where it would be fixed."""
        return self.destination.target or self.source.target


@dataclass(frozen=True, slots=True)
class NotAssessed:
    """Something a target's facts could not cover, and why: never taken for "no path"."""

    target: str
    what: str
    reason: str


@dataclass(frozen=True, slots=True)
class Principals:
    """Which account nodes of a target something can authenticate as, and which of those are
    people's or lockstep's own admin."""

    logins: frozenset[Node] = frozenset()
    people: frozenset[Node] = frozenset()
    admins: frozenset[Node] = frozenset()


@dataclass(frozen=True, slots=True)
class PathRequest:
    """What a read of escalation facts needs from the policy: the AWS Secrets Manager secrets
    that sinks deliver to (their readers are read on the target holding them)."""

    secrets: frozenset[str] = frozenset()


class TargetFacts(Protocol):
    """What one target's session read for escalation paths: pure data that turns itself into
    edges by pure functions, so that the core never branches on the kind of target."""

    @property
    def target(self) -> str: ...

    def edges(self) -> Iterator[Edge]: ...

    def principals(self) -> Principals: ...

    def entitlement_node(self, entitlement: str) -> Node | None:
        """The node holding what ``entitlement`` (canonical) grants, when one does: a group's
        privileges are obtained by reaching its node."""
        ...

    def account_node(self, account: str) -> Node:
        """The node of an account as the policy names it."""
        ...

    def not_assessed(self) -> tuple[NotAssessed, ...]: ...


@dataclass(frozen=True, slots=True)
class EmptyFacts:
    """A target that contributes nothing (it has no escalation rules lockstep reads)."""

    target: str
    gaps: tuple[NotAssessed, ...] = ()

    def edges(self) -> Iterator[Edge]:
        return iter(())

    def principals(self) -> Principals:
        return Principals()

    def entitlement_node(self, entitlement: str) -> Node | None:
        return None

    def account_node(self, account: str) -> Node:
        return Node(NodeKind.ACCOUNT, self.target, account)

    def not_assessed(self) -> tuple[NotAssessed, ...]:
        return self.gaps


@dataclass
class Graph:
    """Edges indexed for search: nodes are numbered, each with its outgoing and incoming
    edge numbers."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    index: dict[Node, int] = field(default_factory=dict)
    out: list[list[int]] = field(default_factory=list)
    into: list[list[int]] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)  # edge number -> source node number
    tails: list[int] = field(default_factory=list)  # edge number -> destination node number
    # node number -> the obtaining edges into it (a group's members join it by few edges and
    # hold it by many: a search asks for the few, once per goal)
    obtaining_into: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, edges: Iterable[Edge]) -> Graph:
        graph = cls()
        seen: set[Edge] = set()
        for edge in edges:
            if edge in seen or edge.source == edge.destination:
                continue
            seen.add(edge)
            graph._add(edge)
        return graph

    def node(self, node: Node) -> int:
        found = self.index.get(node)
        if found is None:
            found = self.index[node] = len(self.nodes)
            self.nodes.append(node)
            self.out.append([])
            self.into.append([])
        return found

    def _add(self, edge: Edge) -> None:
        head, tail = self.node(edge.source), self.node(edge.destination)
        number = len(self.edges)
        self.edges.append(edge)
        self.heads.append(head)
        self.tails.append(tail)
        self.out[head].append(number)
        self.into[tail].append(number)
        if edge.obtains:
            self.obtaining_into.setdefault(tail, []).append(number)

    def edge_numbers(self) -> Mapping[Edge, int]:
        return {edge: i for i, edge in enumerate(self.edges)}
