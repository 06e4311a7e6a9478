"""What a Redis read reports, from literal ACL users, check verdicts and CLIENT LIST: no server.

Whether a candidate rule set reproduces a user is Redis's to say (applied to a throw-away
user, see the connector's docstring); here each verdict is given, and what the read makes of
it is checked.
"""

from __future__ import annotations

from lockstep.connectors.redis.acl import MARKER_PREFIX, AclUser, user_from_line
from lockstep.connectors.redis.transform import in_scope, rule_checks, transform

CLIENTS = (
    "id=3 addr=127.0.0.1:5000 name= age=9 idle=0 flags=N db=0 user=svc cmd=get\n"
    "id=4 addr=127.0.0.1:5001 name= age=3 idle=1 flags=N db=0 user=svc cmd=set\n"
    "id=5 addr=127.0.0.1:5002 name= age=1 idle=1 flags=N db=0 user=lockstep cmd=acl\n"
)


def user(line: str) -> AclUser:
    return user_from_line(line)


SVC = user("user svc on #5e88 ~orders:* resetchannels -@all +get")


def test_default_the_admin_and_exclusions_are_out_of_scope() -> None:
    users = [user("user default on nopass ~* &* +@all"), user("user lockstep on #ab +@all"), SVC]
    assert in_scope(users, frozenset({"default", "lockstep"})) == [SVC]


def test_the_recorded_spelling_is_checked_before_the_rendered_one() -> None:
    recorded = frozenset({"~orders:*", "+@read"})
    assert rule_checks([SVC], {"svc": recorded}) == [
        ("svc", recorded),
        ("svc", frozenset({"~orders:*", "+get"})),
    ]
    # A record that says what Redis renders anyway is checked once.
    assert rule_checks([SVC], {"svc": frozenset({"~orders:*", "+get"})}) == [
        ("svc", frozenset({"~orders:*", "+get"}))
    ]


def test_the_first_candidate_that_reproduces_the_user_is_reported() -> None:
    recorded = frozenset({"~orders:*", "+@read"})
    checks = rule_checks([SVC], {"svc": recorded})
    assert transform("cache", [SVC], checks, [True, True], "").accounts["svc"].entitlements == (
        recorded
    )
    rendered = transform("cache", [SVC], checks, [False, True], "").accounts["svc"]
    assert rendered.entitlements == {"~orders:*", "+get"}


def test_a_user_no_candidate_reproduces_carries_the_unexpressible_marker() -> None:
    checks = rule_checks([SVC], {})
    [account] = transform("cache", [SVC], checks, [False], "").accounts.values()
    assert "~orders:*" in account.entitlements and "+get" in account.entitlements
    [marker] = [e for e in account.entitlements if e.startswith(MARKER_PREFIX)]
    assert marker == MARKER_PREFIX + "~orders:* +get"


def test_a_user_holding_nothing_holds_an_empty_set_not_a_marker() -> None:
    empty = user("user bare on #5e88 resetchannels -@all")
    checks = rule_checks([empty], {})
    assert checks == [("bare", frozenset())]
    assert transform("cache", [empty], checks, [True], "").accounts["bare"].entitlements == set()


def test_a_user_gone_since_it_was_listed_is_left_out() -> None:
    other = user("user other on #5e88 +ping")
    checks = rule_checks([SVC, other], {})
    accounts = transform("cache", [SVC, other], checks, [None, True], "").accounts
    assert set(accounts) == {"other"}


def test_enabled_means_on_with_a_password_and_sessions_are_counted_per_user() -> None:
    users = [
        SVC,
        user("user off off #5e88 +get"),
        user("user open on nopass +get"),
        user("user no-password on +get"),
    ]
    checks = rule_checks(users, {})
    accounts = transform("cache", users, checks, [True] * len(checks), CLIENTS).accounts
    assert {name: a.enabled for name, a in accounts.items()} == {
        "svc": True,
        "off": False,
        "open": False,
        "no-password": False,
    }
    assert accounts["svc"].sessions == 2
    assert accounts["off"].sessions == 0


def test_a_name_that_is_not_utf8_is_escaped_never_hidden() -> None:
    odd = AclUser("bad\udcff", frozenset({"on"}), 1, ("+get",))
    checks = rule_checks([odd], {})
    assert set(transform("cache", [odd], checks, [True], "").accounts) == {"bad\\xff"}
