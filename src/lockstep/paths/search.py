"""Path search over a ``Graph``: every simple path to a goal, shortest first, and the smallest
set of edges whose removal cuts them all. Pure.

A goal is what an identity's credential or privileges are on one target: reaching one of
``nodes`` (its account), or taking an obtaining edge into one of ``obtained`` (a group whose
privileges it holds: holding the same group is sharing it, being able to join it is obtaining
it). A path stops at its goal.

Paths are listed by a best-first search whose estimate is the exact distance to the goal
ignoring the no-revisit rule, computed once by a breadth-first search backwards from the
goal: the estimate never overstates and grows by at most one per edge, so complete paths come
out in order of length. The cut is a minimum cut by augmenting paths (Edmonds-Karp) on the
part of the graph between the sources and the goal.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lockstep.paths.graph import Graph

Usable = Callable[[int], bool]
Path = tuple[int, ...]  # edge numbers, source first

# Past this many expansions for one source the listing stops and says it was cut short: a
# dense graph has exponentially many simple paths, and the shortest ones come first anyway.
MAX_EXPANSIONS = 20_000
INFINITE = 1 << 40


def _always(_: int) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Goal:
    nodes: frozenset[int]
    obtained: frozenset[int] = frozenset()

    def reached_by(self, graph: Graph, edge: int) -> bool:
        tail = graph.tails[edge]
        return tail in self.nodes or (tail in self.obtained and graph.edges[edge].obtains)


@dataclass(frozen=True, slots=True)
class Listing:
    paths: list[Path] = field(default_factory=list)
    truncated: bool = False


def distances(graph: Graph, goal: Goal, usable: Usable = _always) -> dict[int, int]:
    """The fewest edges from each node that can reach ``goal`` to a completed path."""
    dist = dict.fromkeys(goal.nodes, 0)
    frontier = list(goal.nodes)
    ones = [
        graph.heads[e]
        for node in sorted(goal.obtained)
        for e in graph.obtaining_into.get(node, ())
        if usable(e)
    ]
    level = 0
    while frontier or ones:
        following: list[int] = []
        for head in ones:
            if head not in dist:
                dist[head] = 1
                following.append(head)
        ones = []
        for node in frontier:
            for e in graph.into[node]:
                head = graph.heads[e]
                if head not in dist and usable(e):
                    dist[head] = level + 1
                    following.append(head)
        frontier = following
        level += 1
    return dist


def paths_from(
    graph: Graph,
    source: int,
    goal: Goal,
    dist: dict[int, int],
    limit: int,
    usable: Usable = _always,
    max_expansions: int = MAX_EXPANSIONS,
) -> Listing:
    """Up to ``limit`` simple paths from ``source`` to ``goal``, shortest first; ``dist`` is
    ``distances(graph, goal, usable)``."""
    if source in goal.nodes or source not in dist or limit <= 0:
        return Listing()
    found: list[Path] = []
    counter = 0
    heap: list[tuple[int, int, int, int, Path]] = [(dist[source], 0, 0, source, ())]
    expansions = 0
    # A node with many edges (lockstep's admin reaches every account) is expanded through
    # the few that lead toward the goal, found from the goal's side: the same edges, in the
    # same order, without looking at the thousands that lead elsewhere.
    inward = sum(len(graph.into[n]) for n in dist)
    toward: dict[int, list[int]] | None = None
    while heap and len(found) < limit:
        if expansions >= max_expansions:
            return Listing(found, truncated=True)
        expansions += 1
        _, length, _, node, path = heapq.heappop(heap)
        if path and goal.reached_by(graph, path[-1]):
            found.append(path)
            continue
        visited = {source, *(graph.tails[e] for e in path)}
        edges = graph.out[node]
        if len(edges) > inward:
            toward = toward if toward is not None else _toward(graph, goal, dist)
            edges = toward.get(node, [])
        for e in edges:
            tail = graph.tails[e]
            if tail in visited or not usable(e):
                continue
            if goal.reached_by(graph, e):
                estimate = 0
            elif tail in dist:
                estimate = dist[tail]
            else:
                continue
            counter += 1
            heapq.heappush(heap, (length + 1 + estimate, length + 1, counter, tail, (*path, e)))
    return Listing(found, truncated=bool(heap) and len(found) >= limit)


def _toward(graph: Graph, goal: Goal, dist: dict[int, int]) -> dict[int, list[int]]:
    """The edges into the nodes that can reach ``goal`` and the obtaining edges into what
    it obtains, by the node they leave, each list in edge order as ``graph.out`` keeps it."""
    by_head: dict[int, set[int]] = {}
    for node in dist:
        for e in graph.into[node]:
            by_head.setdefault(graph.heads[e], set()).add(e)
    for node in goal.obtained:
        for e in graph.obtaining_into.get(node, ()):
            by_head.setdefault(graph.heads[e], set()).add(e)
    return {head: sorted(edges) for head, edges in by_head.items()}


def is_path(graph: Graph, source: int, goal: Goal, path: Path) -> bool:
    """Whether ``path`` is a chain of edges from ``source`` that completes at ``goal`` there
    and nowhere before, visiting no node twice."""
    if not path:
        return False
    node, seen = source, {source}
    for i, e in enumerate(path):
        if graph.heads[e] != node:
            return False
        node = graph.tails[e]
        if node in seen or goal.reached_by(graph, e) != (i == len(path) - 1):
            return False
        seen.add(node)
    return True


def reaches(graph: Graph, sources: Iterable[int], goal: Goal, usable: Usable = _always) -> bool:
    dist = distances(graph, goal, usable)
    return any(s in dist and s not in goal.nodes for s in sources)


@dataclass
class _Network:
    """A flow network in arrays: arc i goes to ``to[i]``; arc i ^ 1 is its reverse."""

    to: list[int] = field(default_factory=list)
    cap: list[int] = field(default_factory=list)
    ref: list[int] = field(default_factory=list)  # the graph's edge number, -1 for none
    adj: dict[int, list[int]] = field(default_factory=dict)

    def arc(self, u: int, v: int, capacity: int, ref: int = -1) -> None:
        for a, b, c in ((u, v, capacity), (v, u, 0)):
            self.adj.setdefault(a, []).append(len(self.to))
            self.to.append(b)
            self.cap.append(c)
            self.ref.append(ref)

    def augment(self, s: int, t: int) -> int:
        """One shortest augmenting path's flow, 0 when there is none."""
        back: dict[int, int] = {s: -1}
        queue = deque([s])
        while queue and t not in back:
            u = queue.popleft()
            for a in self.adj.get(u, ()):
                v = self.to[a]
                if self.cap[a] > 0 and v not in back:
                    back[v] = a
                    queue.append(v)
        if t not in back:
            return 0
        arcs, v = [], t
        while v != s:
            arcs.append(back[v])
            v = self.to[back[v] ^ 1]
        flow = min(self.cap[a] for a in arcs)
        for a in arcs:
            self.cap[a] -= flow
            self.cap[a ^ 1] += flow
        return flow

    def source_side(self, s: int) -> set[int]:
        side, queue = {s}, deque([s])
        while queue:
            u = queue.popleft()
            for a in self.adj.get(u, ()):
                if self.cap[a] > 0 and self.to[a] not in side:
                    side.add(self.to[a])
                    queue.append(self.to[a])
        return side


def min_cut(
    graph: Graph,
    sources: Iterable[int],
    goal: Goal,
    cost: Callable[[int], int] | None = None,
    usable: Usable = _always,
) -> list[int] | None:
    """The cheapest set of edges (each costing ``cost(edge)``, 1 by default) whose removal
    leaves no path from any of ``sources`` to ``goal``; None when only an edge costing
    ``INFINITE`` would do."""
    price = cost or (lambda _: 1)
    dist = distances(graph, goal, usable)
    starts = sorted({s for s in sources if s in dist and s not in goal.nodes})
    if not starts:
        return []
    s, t = -1, -2
    net = _Network()
    for start in starts:
        net.arc(s, start, INFINITE)
    for node in _reachable(graph, starts, dist, goal, usable):
        for e in graph.out[node]:
            if not usable(e):
                continue
            if goal.reached_by(graph, e):
                net.arc(node, t, price(e), e)
            elif graph.tails[e] in dist:
                net.arc(node, graph.tails[e], price(e), e)
    total = 0
    while (flow := net.augment(s, t)) > 0:
        total += flow
        if total >= INFINITE:
            return None
    side = net.source_side(s)
    return sorted(
        {
            net.ref[a]
            for u in side
            for a in net.adj.get(u, ())
            if a % 2 == 0 and net.ref[a] >= 0 and net.to[a] not in side
        }
    )


def _reachable(
    graph: Graph, starts: list[int], dist: dict[int, int], goal: Goal, usable: Usable
) -> list[int]:
    """The nodes on some walk from ``starts`` towards ``goal`` (within ``dist``)."""
    seen, queue = set(starts), deque(starts)
    while queue:
        node = queue.popleft()
        for e in graph.out[node]:
            tail = graph.tails[e]
            if tail in dist and tail not in goal.nodes and tail not in seen and usable(e):
                seen.add(tail)
                queue.append(tail)
    return sorted(seen)
