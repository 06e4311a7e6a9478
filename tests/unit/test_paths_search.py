"""The path search, against brute force on random graphs: every reported path is a real
chain of edges, all of them are found, shortest first, and removing the suggested cut leaves
no path (and no smaller cut would)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.paths.graph import Edge, Graph, Node, NodeKind
from lockstep.paths.search import Goal, distances, is_path, min_cut, paths_from, reaches


def node(i: int) -> Node:
    return Node(NodeKind.ACCOUNT, "t", f"n{i}")


@st.composite
def problems(draw: st.DrawFn, max_nodes: int = 7, max_edges: int = 14) -> tuple[Graph, Goal]:
    n = draw(st.integers(2, max_nodes))
    pairs = st.tuples(
        st.integers(0, n - 1), st.integers(0, n - 1), st.booleans(), st.integers(0, 1)
    )
    raw = draw(st.lists(pairs, max_size=max_edges))
    edges = [
        Edge(node(a), node(b), f"rule{variant}", "", obtains=obtains)
        for a, b, obtains, variant in raw
        if a != b
    ]
    graph = Graph.of(edges)
    for i in range(n):
        graph.node(node(i))
    goal_nodes = draw(st.sets(st.integers(0, n - 1), max_size=2))
    obtained = draw(st.sets(st.integers(0, n - 1), max_size=2)) - goal_nodes
    index = {i: graph.index[node(i)] for i in range(n)}
    return graph, Goal(
        frozenset(index[i] for i in goal_nodes), frozenset(index[i] for i in obtained)
    )


def without(edges: Iterable[int]) -> Callable[[int], bool]:
    gone = set(edges)
    return lambda e: e not in gone


def brute_force(graph: Graph, source: int, goal: Goal) -> set[tuple[int, ...]]:
    found: set[tuple[int, ...]] = set()

    def walk(at: int, path: tuple[int, ...], seen: frozenset[int]) -> None:
        for e in graph.out[at]:
            tail = graph.tails[e]
            if tail in seen:
                continue
            if goal.reached_by(graph, e):
                found.add((*path, e))
            elif tail not in goal.nodes:
                walk(tail, (*path, e), seen | {tail})

    if source not in goal.nodes:
        walk(source, (), frozenset({source}))
    return found


@settings(max_examples=300, deadline=None)
@given(problems())
def test_every_path_is_a_real_chain_and_all_are_found_shortest_first(problem) -> None:
    graph, goal = problem
    dist = distances(graph, goal)
    for source in range(len(graph.nodes)):
        listing = paths_from(graph, source, goal, dist, limit=10_000)
        assert all(is_path(graph, source, goal, p) for p in listing.paths)
        lengths = [len(p) for p in listing.paths]
        assert lengths == sorted(lengths)
        assert len(set(listing.paths)) == len(listing.paths)
        assert set(listing.paths) == brute_force(graph, source, goal)
        assert not listing.truncated


@settings(max_examples=200, deadline=None)
@given(problems(), st.integers(1, 3))
def test_a_limited_listing_keeps_the_shortest_paths(problem, limit: int) -> None:
    graph, goal = problem
    dist = distances(graph, goal)
    for source in range(len(graph.nodes)):
        every = sorted(len(p) for p in brute_force(graph, source, goal))
        listing = paths_from(graph, source, goal, dist, limit=limit)
        assert [len(p) for p in listing.paths] == every[:limit]


@settings(max_examples=300, deadline=None)
@given(problems(max_nodes=6, max_edges=9), st.data())
def test_removing_the_cut_leaves_no_path_and_no_smaller_cut_would(problem, data) -> None:
    graph, goal = problem
    sources = data.draw(st.sets(st.integers(0, len(graph.nodes) - 1), min_size=1, max_size=3))
    cut = min_cut(graph, sources, goal)
    assert cut is not None
    assert not reaches(graph, sources, goal, usable=without(cut))
    if cut:
        for candidate in combinations(range(len(graph.edges)), len(cut) - 1):
            assert reaches(graph, sources, goal, usable=without(candidate))


@settings(max_examples=200, deadline=None)
@given(problems(max_nodes=6, max_edges=9), st.data())
def test_a_priced_cut_still_cuts_every_path(problem, data) -> None:
    graph, goal = problem
    sources = data.draw(st.sets(st.integers(0, len(graph.nodes) - 1), min_size=1, max_size=3))
    prices = data.draw(
        st.lists(st.integers(1, 50), min_size=len(graph.edges), max_size=len(graph.edges))
    )
    cut = min_cut(graph, sources, goal, cost=prices.__getitem__)
    assert cut is not None
    assert not reaches(graph, sources, goal, usable=without(cut))


def test_a_source_that_is_the_goal_has_no_path_and_needs_no_cut() -> None:
    graph = Graph.of([Edge(node(0), node(1), "r", "")])
    goal = Goal(frozenset({graph.index[node(0)]}))
    assert paths_from(graph, graph.index[node(0)], goal, distances(graph, goal), 5).paths == []
    assert min_cut(graph, [graph.index[node(0)]], goal) == []


def test_holding_an_obtained_group_is_not_a_path_but_joining_it_is() -> None:
    held = Edge(node(0), node(2), "member", "", obtains=False)
    joins = Edge(node(1), node(2), "admin", "")
    graph = Graph.of([held, joins])
    goal = Goal(frozenset(), frozenset({graph.index[node(2)]}))
    dist = distances(graph, goal)
    assert paths_from(graph, graph.index[node(0)], goal, dist, 5).paths == []
    assert len(paths_from(graph, graph.index[node(1)], goal, dist, 5).paths) == 1
