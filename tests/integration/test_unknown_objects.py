"""Against the real servers: a grant of an object the target does not have is the finding
``unknown_object`` in ``plan``, and ``apply`` neither fails on it nor creates the account
half-way; PostgreSQL warns before a grant would outgrow a table's ACL row."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lockstep.connectors.base import Scope
from lockstep.connectors.registry import connector_type
from lockstep.demo import localpg
from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import Access, FindingType, Identity, Owner, OwnerStatus, Policy, Target
from services.slapd import (  # noqa: F401 - the fixtures
    LdapTarget,
    ldap_target_fixture,
    slapd_server_fixture,
)
from support import policies as doc
from support.cli_project import Lockstep, admin, create_orders_db, project_env

pytest_plugins = ("services.redis_server", "services.moto_server")
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def project(pg: localpg.LocalPostgres, tmp_path: Path, **accounts: list[str]) -> Lockstep:
    doc.Policy(
        targets={"orders-db": doc.Target.postgres(doc.Var("ORDERS_DB_DSN"))},
        owners={"team": doc.Owner(["a@example.com"])},
        identities={
            name: doc.Identity(
                owner="team", purpose="t", access=[doc.Access("orders-db", name, ents)]
            )
            for name, ents in accounts.items()
        },
    ).write(tmp_path)
    return Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))


def roles(pg: localpg.LocalPostgres) -> set[str]:
    with admin(pg) as conn:
        return {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


def test_postgres_grants_of_missing_objects_are_held_back(pg, tmp_path: Path) -> None:
    create_orders_db(pg, on_server=["CREATE ROLE existing LOGIN"])
    cli = project(
        pg,
        tmp_path,
        newcomer=["SELECT on table public.orders", "SELECT on table public.orderz"],
        existing=[
            "SELECT on table public.orders",
            "role:no_such_role",
            "USAGE on schema nowhere",
            "CONNECT on database nodb",
        ],
    )
    plan = cli.json("plan")
    unknown = {
        (f["account"], f["entitlement"]): f["detail"]
        for f in plan["findings"]
        if f["type"] == "unknown_object"
    }
    assert set(unknown) == {
        ("newcomer", "SELECT on table public.orderz"),
        ("existing", "role:no_such_role"),
        ("existing", "USAGE on schema nowhere"),
        ("existing", "CONNECT on database nodb"),
    }
    assert "no table public.orderz" in unknown[("newcomer", "SELECT on table public.orderz")]
    assert [(a["op"], a["account"], a["entitlement"]) for a in plan["actions"]] == [
        ("grant", "existing", "SELECT on table public.orders")
    ]
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "newcomer" not in roles(pg)
    verified = cli("verify")
    assert verified.returncode == 0 and "unknown_object" in verified.stdout
    assert cli("verify", "--strict").returncode == 2
    # Once the table exists, the account is created with both grants.
    with admin(pg) as conn:
        conn.execute("CREATE TABLE public.orderz (id int)")
    assert cli("apply", "--yes").returncode == 0 and "newcomer" in roles(pg)


def test_postgres_warns_before_a_grant_would_outgrow_a_tables_acl(pg, tmp_path: Path) -> None:
    create_orders_db(pg)
    with admin(pg) as conn:  # a table already granted to thousands of roles
        conn.execute(
            "DO $$ BEGIN FOR i IN 1..2300 LOOP EXECUTE format("
            "'CREATE ROLE crowd_%s; GRANT SELECT ON public.orders TO crowd_%s', i, i); "
            "END LOOP; END $$"
        )
    few = project(pg, tmp_path, **{f"svc{i}": ["SELECT on table public.orders"] for i in range(3)})
    assert few.json("plan")["warnings"] == []
    many = project(
        pg, tmp_path, **{f"svc{i}": ["SELECT on table public.orders"] for i in range(200)}
    )
    (warning,) = many.json("plan")["warnings"]
    assert "200 new grantee(s) of table public.orders" in warning and "row is too big" in warning
    assert "row is too big" in many("plan").stdout


def plan_declaring(target: Target, account: str, entitlements: list[str]):
    """The plan of a policy granting ``entitlements`` to ``account``, read through the
    connector the way the engine reads."""
    policy = Policy(
        targets={target.name: target},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={
            "svc": Identity(
                "svc",
                "team",
                "t",
                None,
                (Access(target.name, account, frozenset(entitlements), None),),
            )
        },
    )
    desired = desired_state(policy, NOW)
    scope = Scope(frozenset({account}), target.exclude, frozenset(entitlements))
    session = connector_type(target.type).open(target, scope)
    try:
        observed = {target.name: session.read()}
    finally:
        session.close()
    return make_plan(policy, desired, observed, NOW)


def unknown(plan) -> set[str]:
    return {f.entitlement for f in plan.findings if f.type is FindingType.UNKNOWN_OBJECT}


def test_ldap_a_group_that_does_not_exist(ldap_target: LdapTarget) -> None:
    plan = plan_declaring(ldap_target.target, "svc", ["group:readers", "group:ghosts"])
    assert unknown(plan) == {"group:ghosts"}
    assert plan.actions == ()  # not created until every group exists


def test_redis_a_command_or_category_the_server_does_not_have(redis_target: Target) -> None:
    plan = plan_declaring(redis_target, "svc", ["~k:*", "+get", "+nosuchcmd", "+@nosuchcat"])
    assert unknown(plan) == {"+nosuchcmd", "+@nosuchcat"}
    assert plan.actions == ()


def test_aws_a_policy_or_group_the_account_does_not_have(aws_target: Target, moto_server) -> None:
    iam = moto_server.client("iam")
    iam.create_group(GroupName="readers")
    iam.create_user(UserName="svc")
    iam.create_access_key(UserName="svc")
    missing_policy = "policy:arn:aws:iam::123456789012:policy/no-such-policy"
    plan = plan_declaring(aws_target, "user/svc", ["group:readers", "group:ghosts", missing_policy])
    assert unknown(plan) == {"group:ghosts", missing_policy}
    assert [(str(a.op), a.entitlement) for a in plan.actions] == [("grant", "group:readers")]
