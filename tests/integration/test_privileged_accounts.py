"""Privileged accounts are never managed unless declared, on every real server: PostgreSQL
superusers, replication roles and the roles the admin depends on; LDAP members of an admin
group; Redis users with ``+@all ~*``; AWS principals holding AdministratorAccess. Each is
reported ``privileged_orphan`` (critical) and left alone even under
``orphan_accounts: suspend``; an ordinary orphan beside it is still suspended."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from lockstep.connectors.base import Scope
from lockstep.connectors.registry import connector_type
from lockstep.demo import localpg
from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import FindingType, Op, Owner, OwnerStatus, Policy, RuleAction, Rules, Target
from services.slapd import (  # noqa: F401 - the fixtures
    LdapTarget,
    ldap_target_fixture,
    slapd_server_fixture,
)
from support.cli_project import Lockstep, create_orders_db, login, project_env
from support.policies import Owner as OwnerDoc
from support.policies import Policy as PolicyDoc
from support.policies import Target as TargetDoc
from support.policies import Var

pytest_plugins = ("services.redis_server", "services.moto_server")

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def plan_orphans(target: Target):
    """The plan of a policy declaring nothing on ``target``, orphans to be suspended."""
    policy = Policy(
        targets={target.name: target},
        owners={"team": Owner("team", (), OwnerStatus.ACTIVE)},
        identities={},
        rules=Rules(orphan_accounts=RuleAction.SUSPEND),
    )
    connector = connector_type(target.type)
    session = connector.open(target, Scope(frozenset(), target.exclude))
    try:
        observed = {target.name: session.read()}
    finally:
        session.close()
    return make_plan(policy, desired_state(policy, NOW), observed, NOW)


def privileged(plan) -> dict[str, str]:
    return {
        f.account: f.detail
        for f in plan.findings
        if f.type is FindingType.PRIVILEGED_ORPHAN and f.account is not None
    }


def suspended(plan) -> set[str]:
    return {a.account for a in plan.actions if a.op is Op.SUSPEND_ACCOUNT}


def test_postgres_superusers_replication_and_the_admins_roles_are_left_alone(
    pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    create_orders_db(
        pg,
        on_server=[
            "CREATE ROLE root_too LOGIN SUPERUSER PASSWORD 'pw-root'",
            "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'pw-repl'",
            "CREATE ROLE admin_group LOGIN PASSWORD 'pw-group'",
            f"GRANT admin_group TO {pg.superuser}",
            "CREATE ROLE db_owner LOGIN PASSWORD 'pw-owner'",
            "ALTER DATABASE orders OWNER TO db_owner",
            "CREATE ROLE stray LOGIN PASSWORD 'pw-stray'",
        ],
    )
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))
    PolicyDoc(
        targets={"orders-db": TargetDoc.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": OwnerDoc(["a@example.com"])},
        rules={"orphan_accounts": "suspend"},
    ).write(tmp_path)

    plan = cli.json("plan")
    found = {f["account"]: f for f in plan["findings"] if f["type"] == "privileged_orphan"}
    assert set(found) == {"root_too", "replicator", "admin_group", "db_owner"}
    assert {f["severity"] for f in found.values()} == {"critical"}
    assert "superuser" in found["root_too"]["detail"]
    assert "replication" in found["replicator"]["detail"]
    assert "member" in found["admin_group"]["detail"]
    assert "owns the database" in found["db_owner"]["detail"]
    assert {a["account"] for a in plan["actions"]} == {"stray"}

    applied = cli("apply", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    for user, password in [
        ("root_too", "pw-root"),
        ("replicator", "pw-repl"),
        ("admin_group", "pw-group"),
        ("db_owner", "pw-owner"),
    ]:
        login(pg, user, password).close()  # untouched: still logs in with its password
    with pytest.raises(psycopg.OperationalError):
        login(pg, "stray", "pw-stray").close()
    verified = cli("verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["in_sync"] is True


def test_a_privileged_postgres_role_declared_by_an_identity_is_managed(
    pg: localpg.LocalPostgres, tmp_path: Path
) -> None:
    create_orders_db(pg, on_server=["CREATE ROLE replicator LOGIN REPLICATION"])
    cli = Lockstep(tmp_path, project_env(ORDERS_DB_DSN=pg.dsn("orders")))
    PolicyDoc(
        targets={"orders-db": TargetDoc.postgres(Var("ORDERS_DB_DSN"))},
        owners={"team": OwnerDoc(["a@example.com"], status="departed")},
        rules={"orphan_accounts": "suspend"},
    ).write(tmp_path)
    with (tmp_path / "lockstep.yaml").open("a") as policy:
        policy.write(
            "identities:\n  replication:\n    owner: team\n    purpose: Replicate\n"
            "    access: [{target: orders-db, account: replicator}]\n"
        )
    plan = cli.json("plan")
    assert not [f for f in plan["findings"] if f["type"] == "privileged_orphan"]
    assert [(a["op"], a["account"]) for a in plan["actions"]] == [("suspend_account", "replicator")]


def test_ldap_members_of_an_admin_group_are_left_alone(ldap_target: LdapTarget) -> None:
    server = ldap_target.server
    conn = server.connect()
    try:
        for uid in ("operator", "stray"):
            dn = f"uid={uid},{server.people_dn}"
            conn.add(dn, ["account", "simpleSecurityObject"], {"uid": uid, "userPassword": "x"})
        conn.add(
            f"cn=admins,{server.groups_dn}",
            ["groupOfNames"],
            {"cn": "admins", "member": [f"uid=operator,{server.people_dn}"]},
        )
    finally:
        conn.unbind()
    plan = plan_orphans(ldap_target.target)
    assert set(privileged(plan)) == {"operator"}
    assert "admin group admins" in privileged(plan)["operator"]
    assert suspended(plan) == {"stray"}


def test_redis_users_with_full_access_are_left_alone(redis_target: Target, redis_server) -> None:
    with redis_server.admin() as client:
        client.acl_setuser(
            "stand-in", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"]
        )
        client.acl_setuser(
            "stray", enabled=True, passwords=["+pw"], keys=["cart:*"], commands=["+get"]
        )
    plan = plan_orphans(redis_target)
    assert set(privileged(plan)) == {"stand-in"}
    assert "+@all ~*" in privileged(plan)["stand-in"]
    assert suspended(plan) == {"stray"}


def test_aws_principals_with_administrator_access_are_left_alone(
    aws_target: Target, moto_server
) -> None:
    iam = moto_server.client("iam")
    # The emulator does not load AWS's managed policies: a copy of AdministratorAccess
    # under its name stands in for it (the connector goes by the policy's name).
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    arn = iam.create_policy(
        PolicyName="AdministratorAccess", PolicyDocument=json.dumps(everything)
    )["Policy"]["Arn"]
    for name in ("ops-admin", "via-group", "stray"):
        iam.create_user(UserName=name)
        iam.create_access_key(UserName=name)
    iam.attach_user_policy(UserName="ops-admin", PolicyArn=arn)
    iam.create_group(GroupName="admins")
    iam.attach_group_policy(GroupName="admins", PolicyArn=arn)
    iam.add_user_to_group(GroupName="admins", UserName="via-group")
    trust = {"Version": "2012-10-17", "Statement": []}
    iam.create_role(RoleName="break-glass", AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(RoleName="break-glass", PolicyArn=arn)
    plan = plan_orphans(aws_target)
    found = privileged(plan)
    assert set(found) == {"user/ops-admin", "user/via-group", "role/break-glass"}
    assert "through group admins" in found["user/via-group"]
    assert suspended(plan) == {"user/stray"}
    # Read one at a time (as verification does), the same verdicts.
    session = connector_type("aws").open(aws_target, Scope(frozenset(), frozenset()))
    try:
        alone = session.read_account("user/via-group")
        assert (
            alone is not None
            and alone.privileged == "holds AdministratorAccess through group admins"
        )
        stray = session.read_account("user/stray")
        assert stray is not None and stray.privileged is None
    finally:
        session.close()
