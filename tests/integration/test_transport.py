"""Secrets in policy and on the wire: a password in a DSN's or URL's query string is refused
like one in its userinfo; a plain ldap:// or redis:// connection to another host is a
warning of `validate` and an `insecure_transport` finding of `plan`; ldaps:// and rediss://
work against servers whose certificate a CA the tests make has signed, and a certificate no
trusted CA signed makes the target unreachable."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import FindingType, Snapshot
from lockstep.policy.load import load_policy
from services import redis_server as redis_servers
from services import slapd as slapd_servers
from support import cli_project
from support.cli_project import project_env
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.tls import TlsFiles, make_tls


def _policy(target: Target, account: str = "app_user") -> Policy:
    return Policy(
        targets={"t": target},
        owners={"team": Owner(["alice@example.com"], status="active")},
        identities={
            "app": Identity(owner="team", purpose="tests", access=[Access("t", account, [])])
        },
    )


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://lockstep@db.example.com/orders?password=hunter2-secret",
        "postgresql://lockstep@db.example.com/orders?sslmode=require&sslpassword=k3y-pass",
        "redis://cache.example.com:6379/0?pass=hunter2-secret",
        "postgresql://db.example.com/orders?PWD=hunter2-secret",
    ],
)
def test_a_password_in_a_query_string_is_refused_by_validate(tmp_path: Path, dsn: str) -> None:
    kind = "redis" if dsn.startswith("redis") else "postgres"
    key = "url" if kind == "redis" else "dsn"
    Policy(
        targets={"t": Target(kind, {key: dsn})},
        owners={"team": Owner(["a@example.com"])},
        identities={},
    ).write(tmp_path)
    cli = cli_project.Lockstep(tmp_path, project_env())
    proc = cli("validate")
    assert proc.returncode == 1
    assert "query string" in proc.stderr and "lockstep.yaml:" in proc.stderr
    assert "hunter2" not in proc.stderr and "k3y-pass" not in proc.stderr


def test_a_query_string_without_a_secret_is_accepted(tmp_path: Path) -> None:
    dsn = "postgresql://lockstep@db.example.com/orders?sslmode=require&application_name=x"
    Policy(
        targets={"t": Target("postgres", {"dsn": dsn})},
        owners={"team": Owner(["a@example.com"])},
        identities={},
    ).write(tmp_path)
    assert cli_project.Lockstep(tmp_path, project_env())("validate").returncode == 0


@pytest.mark.parametrize(
    ("target", "env"),
    [
        (
            Target.ldap(
                url="ldap://ldap.example.com",
                bind_dn="cn=admin,dc=example,dc=test",
                bind_password=Var("PW"),
                accounts_dn="ou=people,dc=example,dc=test",
                groups_dn="ou=groups,dc=example,dc=test",
            ),
            {"PW": "pw-x"},
        ),
        (Target.redis(Var("URL")), {"URL": "redis://lockstep:pw-x@cache.example.com:6379/0"}),
    ],
    ids=["ldap", "redis"],
)
def test_plain_transport_to_another_host_is_a_warning_and_a_finding(
    tmp_path: Path, target: Target, env: dict[str, str]
) -> None:
    _policy(target).write(tmp_path)
    proc = cli_project.Lockstep(tmp_path, project_env(**env))("validate")
    assert proc.returncode == 0
    assert "warning:" in proc.stderr and "insecure" not in proc.stdout
    assert "in clear" in proc.stderr and "pw-x" not in proc.stderr

    os.environ.update(env)
    try:
        loaded = load_policy(tmp_path / "lockstep.yaml")
    finally:
        for name in env:
            os.environ.pop(name)
    policy = loaded.policy
    assert policy.targets["t"].insecure_transport is not None
    now = datetime.now(UTC)
    plan = make_plan(policy, desired_state(policy, now), {"t": Snapshot("t", {})}, now)
    found = [f for f in plan.findings if f.type is FindingType.INSECURE_TRANSPORT]
    assert [(f.target, f.severity) for f in found] == [("t", "medium")]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_slapd(tls: TlsFiles) -> Iterator[slapd_servers.LocalSlapd]:
    with slapd_servers.private_server(tls=tls) as server:
        yield server


def ldaps_cli(
    server: slapd_servers.LocalSlapd, tmp_path: Path, ca: Path | None
) -> cli_project.Lockstep:
    assert server.tls_url is not None
    extra = {"ca_file": str(ca)} if ca is not None else {}
    _policy(
        Target.ldap(
            url=server.tls_url,
            bind_dn=server.admin_dn,
            bind_password=Var("PW"),
            accounts_dn=server.people_dn,
            groups_dn=server.groups_dn,
            **extra,
        )
    ).write(tmp_path)
    return cli_project.Lockstep(tmp_path, project_env(PW=server.admin_password.reveal()))


def test_ldaps_with_the_ca_that_signed_the_server_works(
    tls_slapd: slapd_servers.LocalSlapd, tls: TlsFiles, tmp_path: Path
) -> None:
    cli = ldaps_cli(tls_slapd, tmp_path, tls.ca)
    validated = cli("validate")
    assert validated.returncode == 0 and "warning" not in validated.stderr
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert cli("verify").returncode == 0


def test_ldaps_with_a_certificate_no_trusted_ca_signed_is_unreachable(
    tls_slapd: slapd_servers.LocalSlapd, tmp_path: Path
) -> None:
    plan = ldaps_cli(tls_slapd, tmp_path, None).json("plan")
    assert plan["unreachable"] == ["t"] and plan["actions"] == []


@pytest.fixture
def tls_redis(tls: TlsFiles) -> Iterator[redis_servers.LocalRedis]:
    server = redis_servers.start(tls=tls)
    yield server
    server.stop()


@pytest.mark.parametrize("trusted", [True, False])
def test_rediss_works_with_the_ca_and_is_unreachable_without(
    tls_redis: redis_servers.LocalRedis, tls: TlsFiles, tmp_path: Path, trusted: bool
) -> None:
    _policy(Target.redis(Var("URL"))).write(tmp_path)
    url = tls_redis.tls_url(tls.ca if trusted else None)
    cli = cli_project.Lockstep(tmp_path, project_env(URL=url))
    assert "warning" not in cli("validate").stderr
    if not trusted:
        assert cli.json("plan")["unreachable"] == ["t"]
        return
    applied = cli("apply", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {r["status"] for r in json.loads(applied.stdout)["results"]} == {"verified"}
    assert cli("verify").returncode == 0
