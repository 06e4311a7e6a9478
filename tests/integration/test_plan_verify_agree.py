"""``plan`` and ``verify`` agree, on a real PostgreSQL: verify is in sync exactly when plan has
nothing left to do; what the rules only report, and accepted risks, are listed and fail
nothing unless ``--strict``; a target that cannot be read makes ``plan --exit-code`` exit 1
and ``plan`` says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockstep.demo import localpg
from support.cli_project import Lockstep, admin, create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var


def policy(**rules: str) -> Policy:
    return Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": Owner(["a@example.com"])},
        identities={
            "reporting": Identity(
                owner="team",
                purpose="Reports",
                access=[Access("orders-db", "reporting", ["SELECT on table public.orders"])],
            )
        },
        rules=rules,
    )


@pytest.fixture
def cli(pg: localpg.LocalPostgres, tmp_path: Path) -> Lockstep:
    create_orders_db(pg)
    policy(excess_entitlements="report").write(tmp_path)
    lockstep = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))
    assert lockstep("apply", "--yes").returncode == 0
    with admin(pg) as conn:  # out of band, and the rules only report it
        conn.execute("GRANT INSERT ON public.orders TO reporting")
    return lockstep


def test_a_reported_only_finding_is_listed_and_fails_nothing(cli: Lockstep) -> None:
    plan = cli.json("plan")
    assert plan["actions"] == []
    assert [f["type"] for f in plan["findings"]] == ["excess_entitlement"]
    assert cli("plan", "--exit-code").returncode == 0

    verified = cli("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    body = json.loads(verified.stdout)
    assert body["in_sync"] is True and body["pending"] == []
    assert [f["type"] for f in body["findings"]] == ["excess_entitlement"]
    (excess,) = [c for c in body["checks"] if c["entitlement"] == "INSERT on table public.orders"]
    assert excess["ok"] and "reported" in excess["actual"]
    text = cli("verify")
    assert text.returncode == 0 and "excess_entitlement" in text.stdout and "In sync" in text.stdout


def test_strict_fails_on_an_open_finding_but_not_an_accepted_one(cli: Lockstep) -> None:
    strict = cli("verify", "--strict", "--json")
    assert strict.returncode == 2 and json.loads(strict.stdout)["in_sync"] is False
    assert "--strict" in cli("verify", "--strict").stdout
    (finding,) = cli.json("findings")["findings"]
    accepted = cli("findings", "accept", finding["id"], "--reason", "audit tool", "--until", "30d")
    assert accepted.returncode == 0, accepted.stderr
    assert cli("verify", "--strict").returncode == 0


def test_verify_fails_when_apply_has_something_to_do(cli: Lockstep, tmp_path: Path) -> None:
    policy(excess_entitlements="revoke").write(tmp_path)
    plan = cli.json("plan")
    assert [a["op"] for a in plan["actions"]] == ["revoke"]
    verified = cli("verify", "--json")
    assert verified.returncode == 2
    assert [a["op"] for a in json.loads(verified.stdout)["pending"]] == ["revoke"]


def test_an_unreadable_target_exits_1_and_plan_says_why(
    pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    create_orders_db(pg)
    policy().write(tmp_path)
    wrong = f"postgresql://{pg.superuser}:not-the-password@127.0.0.1:{pg.port}/orders"
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=wrong))
    assert cli("plan", "--exit-code").returncode == 1
    shown = cli("plan")
    assert shown.returncode == 0
    assert "unreachable" in shown.stdout and "password authentication failed" in shown.stdout
    assert "not-the-password" not in shown.stdout + shown.stderr
    assert cli("verify").returncode == 2
