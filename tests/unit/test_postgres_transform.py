"""What a PostgreSQL read reports, from literal catalog rows: no server.

Rows are those of ``catalog.ACCOUNTS`` (name, can log in, past its VALID UNTIL, VALID UNTIL,
open sessions) and ``catalog.GRANTS`` (name, kind, privilege, schema, object). Which roles are
in scope (login roles, declared ones, those carrying lockstep's marker; never the admin,
excluded or ``pg_`` roles) is the queries' own filter, tested against a server in
tests/integration/test_postgres_connector.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockstep.connectors.base import MalformedRead
from lockstep.connectors.postgres.transform import render, transform
from lockstep.model import Account

LATER = datetime(2999, 1, 1, tzinfo=UTC)


def account(
    name: str = "app", *, login: bool = True, expired: bool = False, privileged: str | None = None
) -> tuple[object, ...]:
    return (name, login, expired, None, 0, privileged)


def test_each_kind_of_grant_is_rendered_as_the_grammar_writes_it() -> None:
    grants = [
        ("app", "role", None, None, "app_readonly"),
        ("app", "table", "SELECT", "public", "orders"),
        ("app", "table", "INSERT", "billing", "Order Lines"),
        ("app", "schema", "USAGE", None, "billing"),
        ("app", "database", "TEMPORARY", None, "Søren DB"),
    ]
    snapshot = transform("orders-db", [account()], grants)
    assert snapshot.target == "orders-db"
    assert snapshot.accounts["app"].entitlements == {
        "role:app_readonly",
        "SELECT on table public.orders",
        'INSERT on table billing."Order Lines"',
        "USAGE on schema billing",
        'TEMPORARY on database "Søren DB"',
    }


def test_a_privilege_the_grammar_cannot_express_is_left_out() -> None:
    # PostgreSQL 17's MAINTAIN: reporting it would plan a revoke nobody could write.
    grants = [("app", "table", "MAINTAIN", "public", "orders")]
    assert transform("db", [account()], grants).accounts["app"].entitlements == frozenset()
    assert render("table", "MAINTAIN", "public", "orders") is None


def test_an_account_is_enabled_only_while_it_can_log_in_and_has_not_expired() -> None:
    rows = [
        account("live"),
        account("parked", login=False),
        account("lapsed", expired=True),
        account("both", login=False, expired=True),
    ]
    accounts = transform("db", rows, []).accounts
    assert {name: a.enabled for name, a in accounts.items()} == {
        "live": True,
        "parked": False,
        "lapsed": False,
        "both": False,
    }


def test_open_sessions_and_a_future_expiry_are_reported_as_read() -> None:
    rows = [("app", True, False, LATER, 3, None), ("idle", True, False, None, 0, None)]
    accounts = transform("db", rows, []).accounts
    assert accounts["app"] == Account("app", frozenset(), True, sessions=3, valid_until=LATER)
    assert accounts["idle"].sessions == 0 and accounts["idle"].valid_until is None


def test_grants_go_to_their_own_account_and_only_accounts_read_are_reported() -> None:
    grants = [
        ("app", "role", None, None, "readers"),
        ("other", "role", None, None, "writers"),
        ("ghost", "role", None, None, "admins"),  # a role the account query did not return
    ]
    accounts = transform("db", [account("app"), account("other")], grants).accounts
    assert set(accounts) == {"app", "other"}
    assert accounts["app"].entitlements == {"role:readers"}
    assert accounts["other"].entitlements == {"role:writers"}


def test_a_privileged_role_says_why() -> None:
    rows = [account("root", privileged="superuser"), account("app")]
    accounts = transform("db", rows, []).accounts
    assert accounts["root"].privileged == "superuser" and accounts["app"].privileged is None


def test_an_account_without_grants_holds_nothing() -> None:
    assert transform("db", [account()], []).accounts["app"].entitlements == frozenset()


@pytest.mark.parametrize(
    ("accounts", "grants"),
    [
        ([(None, True, False, None, 0, None)], []),
        ([("app", None, False, None, 0, None)], []),
        ([("app", True, False, None, 0)], []),
        ([account()], [("app", "role", None, None)]),
        ([account()], [("app", None, None, None, "readers")]),
    ],
)
def test_a_row_missing_a_value_the_read_needs_fails_the_read(
    accounts: list[tuple[object, ...]], grants: list[tuple[object, ...]]
) -> None:
    with pytest.raises(MalformedRead, match=r"target db: a (role|grant) row"):
        transform("db", accounts, grants)
