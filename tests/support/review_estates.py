"""The review tests' real targets, as a fixture plugin: ``review_project`` is a review project
on the suite's PostgreSQL, then on its Redis (``pytest_plugins = ("support.review_estates",)``).
Plugins' fixtures are seen by the whole suite, so the name is one no other plugin uses
(``support.lease_project`` has ``project``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis
from psycopg import sql

from support.cli_project import create_orders_db
from support.cli_project import login as pg_login
from support.review_project import Estate, Project

if TYPE_CHECKING:
    from lockstep.demo.localpg import LocalPostgres
    from services.redis_server import LocalRedis

pytest_plugins = ("services.redis_server",)


def postgres_estate(pg: LocalPostgres) -> Estate:
    create_orders_db(
        pg, on_server=["CREATE ROLE app_readonly NOLOGIN", "CREATE ROLE app_writer NOLOGIN"]
    )

    def add(account: str, entitlement: str) -> None:
        role = entitlement.removeprefix("role:")
        with psycopg.connect(pg.dsn("orders"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(account))
            )

    def logs_in(user: str, password: str) -> bool:
        try:
            pg_login(pg, user, password).close()
        except psycopg.OperationalError:
            return False
        return True

    def sessions(account: str) -> int:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (account,)
            ).fetchone()
        return int(row[0]) if row else 0

    return Estate(
        name="postgres",
        target="t:\n  type: postgres\n  dsn: ${ORDERS_DB_DSN}\n",
        account="payments_api",
        declared=("role:app_readonly", "SELECT on table public.orders"),
        extra="role:app_writer",
        add_by_hand=add,
        logs_in=logs_in,
        sessions=sessions,
    )


def redis_estate(server: LocalRedis) -> Estate:
    def add(account: str, entitlement: str) -> None:
        with server.admin() as admin:
            admin.execute_command("ACL", "SETUSER", account, entitlement)

    def logs_in(user: str, password: str) -> bool:
        client = redis.Redis(
            host="127.0.0.1", port=server.port, username=user, password=password, protocol=2
        )
        try:
            client.ping()
        except redis.exceptions.AuthenticationError:
            return False
        except redis.exceptions.ResponseError:
            return True  # signed in; PING is simply not among its rules
        finally:
            client.close()
        return True

    def sessions(account: str) -> int:
        with server.admin() as admin:
            return sum(1 for c in admin.client_list() if c.get("user") == account)

    return Estate(
        name="redis",
        target="t:\n  type: redis\n  url: ${CACHE_URL}\n",
        account="payments_api",
        declared=("~orders:*", "+get"),
        extra="+set",
        add_by_hand=add,
        logs_in=logs_in,
        sessions=sessions,
    )


@pytest.fixture(params=["postgres", "redis"])
def review_project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    if request.param == "postgres":
        pg: LocalPostgres = request.getfixturevalue("pg")
        monkeypatch.setenv("ORDERS_DB_DSN", pg.dsn("orders"))
        estate = postgres_estate(pg)
    else:
        server: LocalRedis = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_target")  # the server, free of test users
        with server.admin() as admin:
            admin.execute_command("ACL", "LOG", "RESET")  # no use left over from other tests
        monkeypatch.setenv("CACHE_URL", server.url())
        estate = redis_estate(server)
    for name in list(os.environ):
        if name.startswith("LOCKSTEP_"):
            monkeypatch.delenv(name)
    return Project(tmp_path, estate)
