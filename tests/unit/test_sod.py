"""Separation of duties over time, as properties of the pure evaluation over random
timelines of holdings: the same verdict as a brute-force walk over every instant, symmetric,
monotone in the window and in what is held, and blind to order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep.engine.desired import desired_state
from lockstep.engine.sod import Conflict, Holding, SodIndex, conflicts, too_close, violations
from lockstep.model import (
    Access,
    Account,
    FindingType,
    Identity,
    Owner,
    OwnerStatus,
    Policy,
    Snapshot,
    SodRule,
    Target,
)
from support.settings import NO_SETTINGS

Key = tuple[str, str]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENTS = [("db", "role:a"), ("db", "role:b"), ("cloud", "policy:c"), ("cloud", "group:d")]
SPAN = 100  # finite times lie within ±SPAN minutes; open ends reach past it
EDGE = 3 * SPAN


def at(minute: int | None) -> datetime | None:
    return None if minute is None else T0 + timedelta(minutes=minute)


@st.composite
def holdings(draw: st.DrawFn) -> Holding:
    target, ent = draw(st.sampled_from(ENTS))
    start = draw(st.one_of(st.none(), st.integers(-SPAN, SPAN)))
    low = start if start is not None else -SPAN
    end = draw(st.one_of(st.none(), st.integers(low + 1, SPAN + 1)))
    return Holding(target, ent, at(start), at(end), "test")


windows = st.one_of(st.none(), st.integers(1, 3 * SPAN))


def minutes(h: Holding) -> range:
    start = -EDGE if h.start is None else int((h.start - T0).total_seconds() // 60)
    end = EDGE if h.end is None else int((h.end - T0).total_seconds() // 60)
    return range(start, end)


def brute(a: Holding, b: Holding, within: int | None) -> bool:
    """Every instant of one against every instant of the other."""
    ta, tb = minutes(a), minutes(b)
    if set(ta) & set(tb):
        return True
    if within is None:
        return False
    nearest = min(abs(x - y) for x in (ta[0], ta[-1]) for y in (tb[0], tb[-1]))
    return nearest - 1 < within  # a gap counted in whole minutes between the two


@settings(max_examples=400, deadline=None)
@given(holdings(), holdings(), windows)
def test_too_close_agrees_with_a_walk_over_every_minute(a: Holding, b: Holding, w: int | None):
    assert too_close(a, b, None if w is None else w * 60) == brute(a, b, w)


@settings(max_examples=300, deadline=None)
@given(holdings(), holdings(), windows)
def test_too_close_is_symmetric(a: Holding, b: Holding, w: int | None) -> None:
    assert too_close(a, b, w) == too_close(b, a, w)


@settings(max_examples=300, deadline=None)
@given(holdings(), holdings(), windows, st.integers(0, SPAN))
def test_a_longer_window_never_forgives(a: Holding, b: Holding, w: int | None, more: int) -> None:
    if too_close(a, b, None):
        assert too_close(a, b, 1)
    if w is not None and too_close(a, b, w * 60):
        assert too_close(a, b, (w + more) * 60)


RULES = (
    SodRule("ab", (ENTS[0], ENTS[1]), None),
    SodRule("ac-30m", (ENTS[0], ENTS[2]), 30 * 60),
    SodRule("bcd-2h", (ENTS[1], ENTS[2], ENTS[3]), 120 * 60),
)
INDEX = SodIndex(RULES)


def pairs(found: list[Conflict]) -> set[tuple[str, frozenset[Key]]]:
    return {(c.rule.name, frozenset({c.held.key, c.wanted.key})) for c in found}


def expected(held: list[Holding], wanted: list[Holding]) -> set[tuple[str, frozenset[Key]]]:
    everything = [(h, False) for h in held] + [(w, True) for w in wanted]
    out = set()
    for rule in RULES:
        for i, (x, x_wanted) in enumerate(everything):
            for y, y_wanted in everything[i + 1 :]:
                if not (x_wanted or y_wanted) or x.key == y.key:
                    continue
                if x.key in rule.entitlements and y.key in rule.entitlements:
                    within = None if rule.within_s is None else rule.within_s // 60
                    if brute(x, y, within):
                        out.add((rule.name, frozenset({x.key, y.key})))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(holdings(), max_size=6), st.lists(holdings(), min_size=1, max_size=3))
def test_conflicts_are_exactly_the_pairs_a_brute_force_finds(
    held: list[Holding], wanted: list[Holding]
) -> None:
    assert pairs(conflicts(INDEX, held, wanted)) == expected(held, wanted)


@settings(max_examples=200, deadline=None)
@given(st.lists(holdings(), max_size=6), st.lists(holdings(), min_size=1, max_size=3), holdings())
def test_holding_more_never_clears_a_conflict(
    held: list[Holding], wanted: list[Holding], extra: Holding
) -> None:
    assert pairs(conflicts(INDEX, held, wanted)) <= pairs(conflicts(INDEX, [*held, extra], wanted))


@settings(max_examples=200, deadline=None)
@given(st.lists(holdings(), max_size=6), st.lists(holdings(), min_size=1, max_size=3), st.randoms())
def test_the_order_of_holdings_does_not_matter(held, wanted, random) -> None:
    shuffled = list(held)
    random.shuffle(shuffled)
    assert pairs(conflicts(INDEX, held, wanted)) == pairs(conflicts(INDEX, shuffled, wanted))


def test_a_refusal_names_the_rule_and_where_the_conflicting_access_comes_from() -> None:
    held = Holding("db", "role:a", None, None, "policy lockstep.yaml:12")
    want = Holding("db", "role:b", T0, at(60), "this request")
    [conflict] = conflicts(INDEX, [held], [want])
    assert conflict.message() == (
        "sod rule 'ab': db/role:b may not be held together with db/role:a; "
        "db/role:a comes from policy lockstep.yaml:12"
    )


def test_a_pass_finds_an_identity_holding_both_sides_across_targets() -> None:
    policy = Policy(
        targets={
            n: Target(n, "postgres", None, frozenset(), False, NO_SETTINGS) for n in ("db", "cloud")
        },
        owners={"team": Owner("team", ("a@example.com",), OwnerStatus.ACTIVE)},
        identities={
            "app": Identity(
                "app",
                "team",
                "p",
                None,
                (
                    Access("db", "app", frozenset({"role:a"}), None),
                    Access("cloud", "app", frozenset(), None),
                ),
            )
        },
    )
    desired = desired_state(policy, T0)
    db = {"db": Snapshot("db", {"app": Account("app", frozenset({"role:a"}), True)})}
    assert violations(INDEX, desired, db, {}) == []
    elsewhere = {"app": [Holding("cloud", "policy:c", T0, None, "target cloud")]}
    [found] = violations(INDEX, desired, db, elsewhere)
    assert found.type is FindingType.SOD_VIOLATION and found.target == "db"
    assert found.account == "app" and "ac-30m" in found.detail
