"""Saved plans against a real PostgreSQL and Redis: ``plan -o`` then ``apply PLANFILE``
executes exactly what was planned; a plan whose policy or target changed since is refused as
stale with the differences named, and so is a plan file edited after it was written; nothing
is applied in either case; ``--target`` narrows plan and apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lockstep.demo import localpg
from support.cli_project import Lockstep, admin, create_orders_db, project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var

if TYPE_CHECKING:
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)


def policy(tables: list[str] | None = None) -> Policy:
    return Policy(
        targets={
            "orders-db": Target.postgres(Var("ORDERS_DB_DSN")),
            "cache": Target.redis(Var("CACHE_URL")),
        },
        owners={"team": Owner(["a@example.com"])},
        identities={
            "reporting": Identity(
                owner="team",
                purpose="Reports",
                access=[
                    Access("orders-db", "reporting", tables or ["SELECT on table public.orders"]),
                    Access("cache", "reporting", ["~report:*", "+get"]),
                ],
            )
        },
    )


@pytest.fixture
def cli(pg: localpg.LocalPostgres, redis_server: LocalRedis, redis_target, tmp_path: Path):
    create_orders_db(pg)
    policy().write(tmp_path)
    env = project_env(ORDERS_DB_DSN=pg.dsn("orders"), CACHE_URL=redis_server.url())
    return Lockstep(tmp_path, env)


def roles(pg: localpg.LocalPostgres) -> set[str]:
    with admin(pg) as conn:
        return {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


def test_apply_executes_exactly_the_saved_plan(cli: Lockstep, pg, redis_server) -> None:
    saved = cli("plan", "-o", "tfplan", "--json")
    assert saved.returncode == 0, saved.stderr
    planned = [
        (a["op"], a["target"], a["entitlement"]) for a in json.loads(saved.stdout)["actions"]
    ]
    text = (cli.workdir / "tfplan").read_text()
    assert pg.password.reveal() not in text and redis_server.password.reveal() not in text

    applied = cli("apply", "tfplan", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    results = json.loads(applied.stdout)["results"]
    assert [(r["op"], r["target"], r["entitlement"]) for r in results] == planned
    assert {r["status"] for r in results} == {"verified"}
    assert cli("verify").returncode == 0


def test_a_plan_whose_target_changed_is_refused_and_nothing_applied(cli: Lockstep, pg) -> None:
    assert cli("plan", "-o", "tfplan").returncode == 0
    with admin(pg) as conn:
        conn.execute("CREATE ROLE intruder LOGIN")
    refused = cli("apply", "tfplan", "--yes")
    assert refused.returncode == 1
    assert (
        "stale" in refused.stderr
        and "target orders-db: account intruder was added" in refused.stderr
    )
    assert "reporting" not in roles(pg)


def test_a_plan_whose_policy_changed_is_refused_naming_the_element(cli: Lockstep, pg) -> None:
    assert cli("plan", "-o", "tfplan").returncode == 0
    policy(["SELECT on table public.orders", "INSERT on table public.orders"]).write(cli.workdir)
    refused = cli("apply", "tfplan", "--yes")
    assert refused.returncode == 1
    assert "policy identities/reporting changed" in refused.stderr
    assert "reporting" not in roles(pg)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["actions"][0].update(op="delete_account"),
        lambda d: d["actions"].append({**d["actions"][0], "account": "postgres"}),
        lambda d: d["state"]["orders-db"].update(ghost="0" * 32),
    ],
)
def test_a_tampered_plan_file_is_refused_and_nothing_applied(cli: Lockstep, pg, tamper) -> None:
    assert cli("plan", "-o", "tfplan").returncode == 0
    path = cli.workdir / "tfplan"
    document = json.loads(path.read_text())
    tamper(document)
    path.write_text(json.dumps(document))
    refused = cli("apply", "tfplan", "--yes")
    assert refused.returncode == 1 and "MAC does not match" in refused.stderr
    assert "reporting" not in roles(pg)


def test_garbage_is_not_a_plan_file(cli: Lockstep) -> None:
    (cli.workdir / "tfplan").write_text("not json")
    refused = cli("apply", "tfplan", "--yes")
    assert refused.returncode == 1 and "not a lockstep plan file" in refused.stderr


def test_target_narrows_plan_and_apply(cli: Lockstep, pg, redis_server) -> None:
    plan = cli.json("plan", "--target", "cache")
    assert {a["target"] for a in plan["actions"]} == {"cache"}
    assert cli("apply", "--yes", "--target", "orders-db").returncode == 0
    assert "reporting" in roles(pg)
    with redis_server.admin() as client:
        assert "reporting" not in client.acl_users()
    assert cli("plan", "-o", "cacheplan", "--target", "cache").returncode == 0
    assert cli("apply", "cacheplan", "--target", "orders-db", "--yes").returncode == 64
    assert cli("apply", "cacheplan", "--yes").returncode == 0
    with redis_server.admin() as client:
        assert "reporting" in client.acl_users()
    unknown = cli("plan", "--target", "nope")
    assert unknown.returncode == 1 and "unknown target 'nope'" in unknown.stderr
