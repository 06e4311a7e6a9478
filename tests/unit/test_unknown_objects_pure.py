"""Grants of objects a target lacks are held back as ``unknown_object`` (an account is not
created half-way for them), and a grant beyond an ACL's room is warned of. Pure: plans over
literal snapshots, and the connectors' transforms over literal answers."""

from __future__ import annotations

from datetime import UTC, datetime

from lockstep.connectors.ldap.transform import missing_groups
from lockstep.connectors.postgres.transform import objects, wanted_objects
from lockstep.connectors.redis.transform import unknown_rules
from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import (
    Access,
    Account,
    FindingType,
    Identity,
    Op,
    Owner,
    OwnerStatus,
    Policy,
    Snapshot,
    Target,
)
from support.settings import NO_SETTINGS

NOW = datetime(2026, 11, 28, tzinfo=UTC)
GOOD, BAD = "SELECT on table public.orders", "SELECT on table public.orderz"


def policy(*accounts: tuple[str, list[str]]) -> Policy:
    return Policy(
        targets={"db": Target("db", "postgres", None, frozenset(), False, NO_SETTINGS)},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={
            name: Identity(name, "team", "t", None, (Access("db", name, frozenset(ents), None),))
            for name, ents in accounts
        },
    )


def plan(p: Policy, snapshot: Snapshot):
    return make_plan(p, desired_state(p, NOW), {"db": snapshot}, NOW)


def ops(p) -> list[tuple[str, str, str | None]]:
    return [(str(a.op), a.account, a.entitlement) for a in p.actions]


UNKNOWN = {BAD: "no table public.orderz on this target"}


def test_a_missing_account_is_not_created_for_a_grant_of_an_unknown_object() -> None:
    p = plan(policy(("app", [GOOD, BAD])), Snapshot("db", {}, unknown=UNKNOWN))
    assert p.actions == ()
    (found,) = [f for f in p.findings if f.type is FindingType.UNKNOWN_OBJECT]
    assert (found.account, found.entitlement) == ("app", BAD)
    assert "no table public.orderz" in found.detail and "created once" in found.detail


def test_an_existing_accounts_other_grants_go_ahead() -> None:
    app = Account("app", frozenset(), True)
    p = plan(policy(("app", [GOOD, BAD])), Snapshot("db", {"app": app}, unknown=UNKNOWN))
    assert ops(p) == [("grant", "app", GOOD)]
    types = {(f.type, f.entitlement) for f in p.findings}
    assert (FindingType.UNKNOWN_OBJECT, BAD) in types
    assert (FindingType.MISSING_ENTITLEMENT, BAD) not in types


def test_grants_beyond_an_acls_room_are_warned_of() -> None:
    room = {GOOD: ("table public.orders", 2)}
    names = [(f"app{i}", [GOOD]) for i in range(3)]
    p = plan(policy(*names), Snapshot("db", {}, room=room))
    assert [a.op for a in p.actions].count(Op.GRANT) == 3
    (warning,) = p.warnings
    assert "3 new grantee(s) of table public.orders" in warning and "row is too big" in warning
    assert plan(policy(*names[:2]), Snapshot("db", {}, room=room)).warnings == ()


def test_postgres_objects_missing_and_the_room_of_a_tables_acl() -> None:
    wanted = wanted_objects([GOOD, BAD, "role:ghost", "USAGE on schema billing"])
    rows = [
        ("table", "public", "orders", 8000, 3.0, 8192),
        ("table", "public", "orderz", None, None, 8192),
        ("role", None, "ghost", None, None, 8192),
        ("schema", None, "billing", 0, None, 8192),
    ]
    unknown, room = objects(wanted, rows)
    assert set(unknown) == {BAD, "role:ghost"}
    assert unknown["role:ghost"] == "no role ghost on this target"
    what, left = room[GOOD]
    assert what == "table public.orders" and 0 < left < (8160 - 8000) // 3


def test_redis_rules_naming_no_command_or_category() -> None:
    commands = ["get", "set", "config|get", "config", "select"]
    found = unknown_rules(
        ["+get", "+nosuch", "+@nocat", "+@all", "+config|nope", "+select|0", "~k:*"],
        commands,
        ["read", "write"],
    )
    assert set(found) == {"+nosuch", "+@nocat", "+config|nope"}


def test_ldap_groups_missing_under_groups_dn() -> None:
    groups = [{"dn": "cn=Readers,ou=groups,dc=x", "attributes": {}}]
    found = missing_groups("d", groups, ["group:readers", "group:writers"], "ou=groups,dc=x")
    assert list(found) == ["group:writers"]
