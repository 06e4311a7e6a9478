"""An identity whose access spans several targets, planned and applied per pass as a unit.

A directory (slapd), a database (PostgreSQL) and a cache (Redis, a server of the test's own so
that it can die mid-apply). When one target goes away, the others still converge, nothing of
the dead one is reported verified, the identity is partially enforced, and the next pass
repairs the rest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ldap3
import psycopg
import pytest
import redis

from lockstep.demo import localpg
from services.process import start_or_unavailable
from services.slapd import (  # noqa: F401 - fixtures, imported as the LDAP tests do
    LdapTarget,
    ldap_target_fixture,
    slapd_server_fixture,
)
from support import cli_project
from support.cli_project import create_orders_db, login, project_env
from support.policies import Access, Credentials, Identity, Owner, Policy, Target, Var

if TYPE_CHECKING:  # loaded for real through pytest_plugins, so that pytest rewrites it
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)

IDENTITY = "checkout-worker"
TARGETS = ["directory", "orders-db", "sessions-cache"]
ACCOUNTS = {
    "directory": "checkout-worker",
    "orders-db": "checkout_worker",
    "sessions-cache": "checkout-worker",
}


class Lockstep(cli_project.Lockstep):
    timeout_s = 180

    def sink(self, target: str) -> Path:
        return self.workdir / "secrets" / f"{target}.json"

    def credential(self, target: str) -> dict[str, str]:
        document: dict[str, str] = json.loads(self.sink(target).read_text())
        return document

    def assert_no_secret_leaked(self, *secrets: str) -> None:
        printed = "\n".join(self.outputs)
        state = (self.workdir / ".lockstep" / "state.db").read_bytes()
        for secret in secrets:
            assert secret not in printed
            assert secret.encode() not in state


@pytest.fixture
def orders_db(pg: localpg.LocalPostgres) -> localpg.LocalPostgres:
    return create_orders_db(pg)


@pytest.fixture
def cache() -> Iterator[LocalRedis]:
    """A Redis of this test's own: it is stopped and restarted, which the shared one must not
    be. Users live in an ACL file, so what lockstep created survives the restart."""
    from services.redis_server import start

    server = start_or_unavailable(lambda: start(aclfile=True))
    yield server
    server.stop()


def policy(ldap: LdapTarget, sink: str) -> Policy:
    """checkout-worker on the directory, the database and the cache, delivered to ``sink``."""
    return Policy(
        targets={
            "directory": Target.ldap(
                url=Var("LDAP_URL"),
                bind_dn=ldap.server.admin_dn,
                bind_password=Var("LDAP_PASSWORD"),
                accounts_dn=ldap.server.people_dn,
                groups_dn=ldap.server.groups_dn,
            ),
            "orders-db": Target.postgres(Var("ORDERS_DB_DSN")),
            "sessions-cache": Target.redis(Var("SESSIONS_CACHE_URL")),
        },
        owners={"checkout-team": Owner(["carol@example.test"])},
        identities={
            IDENTITY: Identity(
                owner="checkout-team",
                purpose="Take orders and keep shopping carts",
                access=[
                    Access("directory", ACCOUNTS["directory"], ["group:readers"]),
                    Access(
                        "orders-db",
                        ACCOUNTS["orders-db"],
                        ["SELECT on table public.orders", "CONNECT on database orders"],
                    ),
                    Access(
                        "sessions-cache", ACCOUNTS["sessions-cache"], ["~cart:*", "+get", "+set"]
                    ),
                ],
                credentials=Credentials(sink=sink),
            )
        },
    )


@pytest.fixture
def lockstep(
    orders_db: localpg.LocalPostgres, cache: LocalRedis, ldap_target: LdapTarget, tmp_path: Path
) -> Lockstep:
    env = project_env(
        LDAP_URL=ldap_target.server.url,
        LDAP_PASSWORD=ldap_target.server.admin_password.reveal(),
        ORDERS_DB_DSN=orders_db.dsn("orders"),
        SESSIONS_CACHE_URL=cache.url(),
    )
    policy(ldap_target, f"file:{tmp_path / 'secrets' / '{target}.json'}").write(tmp_path)
    return Lockstep(tmp_path, env)


def identity(report: dict[str, Any]) -> tuple[str, list[str]]:
    status = report["identities"][IDENTITY]
    return status["status"], status["lagging"]


def logs_in_everywhere(
    cli: Lockstep, pg: localpg.LocalPostgres, cache: LocalRedis, ldap: LdapTarget
) -> None:
    """Each target's credential, from its own sink file, works where the workload uses it."""
    db = cli.credential("orders-db")
    with login(pg, db["username"], db["password"]) as conn:
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)
    kv = cli.credential("sessions-cache")
    with redis.Redis(
        host=cache.host, port=cache.port, username=kv["username"], password=kv["password"]
    ) as client:
        assert client.set("cart:1", "x") and client.get("cart:1") == b"x"
    directory = cli.credential("directory")
    server = ldap3.Server(ldap.server.url, get_info=ldap3.NONE)
    dn = f"uid={directory['username']},{ldap.server.people_dn}"
    bound = ldap3.Connection(server, user=dn, password=directory["password"])
    assert bound.bind()
    bound.unbind()


def test_apply_enforces_every_target_and_writes_one_sink_file_per_target(
    lockstep: Lockstep, orders_db: localpg.LocalPostgres, cache: LocalRedis, ldap_target: LdapTarget
) -> None:
    plan = lockstep.json("plan")
    assert {a["target"] for a in plan["actions"]} == set(TARGETS)
    assert identity(plan) == ("pending", TARGETS)

    applied = lockstep("apply", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report = json.loads(applied.stdout)
    assert {r["status"] for r in report["results"]} == {"verified"}
    assert identity(report) == ("enforced", [])

    for target in TARGETS:
        sink = lockstep.credential(target)
        assert (sink["target"], sink["account"]) == (target, ACCOUNTS[target])
        assert lockstep.sink(target).stat().st_mode & 0o777 == 0o600
    logs_in_everywhere(lockstep, orders_db, cache, ldap_target)

    again = lockstep.json("plan")
    assert again["actions"] == [] and identity(again) == ("enforced", [])
    assert lockstep("verify").returncode == 0
    lockstep.assert_no_secret_leaked(*(lockstep.credential(t)["password"] for t in TARGETS))


def wait_until_blocked(pg: localpg.LocalPostgres, apply: subprocess.Popen[str]) -> None:
    """Until lockstep's admin session waits on a lock the test holds."""
    deadline = time.monotonic() + 60
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        while True:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'lockstep' AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting == (1,):
                return
            assert apply.poll() is None, "apply ended before it reached the database"
            assert time.monotonic() < deadline, "apply never reached the database"
            time.sleep(0.02)


def test_a_target_lost_mid_apply_leaves_the_identity_partially_enforced_until_the_next_pass(
    lockstep: Lockstep, orders_db: localpg.LocalPostgres, cache: LocalRedis, ldap_target: LdapTarget
) -> None:
    # The test creates the same role in a transaction it keeps open, so lockstep's CREATE ROLE
    # waits for it: the cache dies while apply is provably in the middle, after the directory
    # and before the cache (actions run target by target, in name order).
    blocker = psycopg.connect(orders_db.dsn("orders"))
    blocker.execute("CREATE ROLE checkout_worker LOGIN")
    apply = subprocess.Popen(
        lockstep.argv("apply", "--yes", "--json"),
        cwd=lockstep.workdir,
        env=lockstep.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_blocked(orders_db, apply)
        cache.kill()
    finally:
        blocker.rollback()
        blocker.close()
    stdout, stderr = apply.communicate(timeout=180)
    lockstep.record(stdout, stderr)

    assert apply.returncode == 1
    report = json.loads(stdout)
    by_target: dict[str, set[str]] = {}
    for result in report["results"]:
        by_target.setdefault(result["target"], set()).add(result["status"])
    assert by_target["directory"] == by_target["orders-db"] == {"verified"}
    assert by_target["sessions-cache"] and "verified" not in by_target["sessions-cache"]
    assert identity(report) == ("partially enforced", ["sessions-cache"])
    assert lockstep.sink("orders-db").exists() and lockstep.sink("directory").exists()
    assert not lockstep.sink("sessions-cache").exists()

    plan = lockstep.json("plan")
    assert plan["actions"] == [] and plan["unreachable"] == ["sessions-cache"]
    assert identity(plan) == ("partially enforced", ["sessions-cache"])
    human = lockstep("plan").stdout
    assert f"identity {IDENTITY} is partially enforced" in human
    assert lockstep("verify").returncode == 2

    cache.launch()  # the same server again: same port, configuration and ACL file
    retry = lockstep.json("plan")
    assert {a["target"] for a in retry["actions"]} == {"sessions-cache"}
    applied = lockstep("apply", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report = json.loads(applied.stdout)
    assert {r["target"] for r in report["results"]} == {"sessions-cache"}
    assert {r["status"] for r in report["results"]} == {"verified"}
    assert identity(report) == ("enforced", [])
    logs_in_everywhere(lockstep, orders_db, cache, ldap_target)
    assert lockstep.json("plan")["actions"] == []
    lockstep.assert_no_secret_leaked(*(lockstep.credential(t)["password"] for t in TARGETS))


def test_a_file_sink_without_target_is_refused_for_access_on_several_targets(
    tmp_path: Path, ldap_target: LdapTarget
) -> None:
    written = policy(ldap_target, "file:/run/secrets/checkout-worker.json").write(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    env |= {
        "LDAP_URL": "ldap://127.0.0.1:1",
        "LDAP_PASSWORD": "unused-password",
        "ORDERS_DB_DSN": "postgresql://lockstep@127.0.0.1:1/orders",
        "SESSIONS_CACHE_URL": "redis://127.0.0.1:1/0",
    }
    proc = Lockstep(tmp_path, env)("validate")
    assert proc.returncode == 1
    line = 1 + written.read_text().splitlines().index(
        "      sink: file:/run/secrets/checkout-worker.json"
    )
    assert f"lockstep.yaml:{line}: this identity has access on several targets" in proc.stderr
    assert "{target}" in proc.stderr


# ---------------------------------------------------------------- the README's example

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_policies() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if b.startswith("version:")]  # not the pre-commit config


def test_the_readme_multi_target_example_applies_one_sink_file_per_target(
    orders_db: localpg.LocalPostgres, cache: LocalRedis, tmp_path: Path
) -> None:
    (example,) = [p for p in readme_policies() if "checkout-worker:" in p]
    (tmp_path / "lockstep.yaml").write_text(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    env |= {"ORDERS_DB_DSN": orders_db.dsn("orders"), "SESSIONS_CACHE_URL": cache.url()}
    cli = Lockstep(tmp_path, env)
    assert cli("validate").returncode == 0
    applied = cli("apply", "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    report = json.loads(applied.stdout)["identities"]
    assert {name: state["status"] for name, state in report.items()} == {
        "checkout-worker": "enforced"
    }
    sinks = sorted(p.name for p in (tmp_path / ".secrets" / "checkout-worker").iterdir())
    assert sinks == ["orders-db.json", "sessions-cache.json"]
    assert cli.json("plan")["actions"] == []
