"""Fixtures that start real services on 127.0.0.1 for the suite.

Under CI (CI=true) a service that cannot start fails the tests that need it; elsewhere those
tests are skipped with the reason, so a laptop without slapd can still run the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from lockstep.demo import localpg

# Helpers and fixtures there assert too; test modules import them before pytest loads them as
# plugins, so they are registered for rewriting here, before any test module is collected.
pytest.register_assert_rewrite("support", "services")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"service unavailable under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[localpg.LocalPostgres]:
    try:
        server = localpg.start()
    except localpg.LocalPostgresError as exc:
        unavailable(str(exc))
        raise
    yield server
    server.stop()


def _reset_cluster(server: localpg.LocalPostgres) -> None:
    """Drop every role and database a test made, so each test starts from an empty cluster."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for (db,) in conn.execute(
            "SELECT datname FROM pg_database"
            " WHERE datname NOT IN ('postgres', 'template0', 'template1')"
        ).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        roles = [
            r
            for (r,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user"
            ).fetchall()
        ]
        for role in roles:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.execute("DROP SCHEMA IF EXISTS billing CASCADE")
        conn.execute("DROP TABLE IF EXISTS public.orders, public.customers CASCADE")


@pytest.fixture
def pg(pg_server: localpg.LocalPostgres) -> Iterator[localpg.LocalPostgres]:
    """The shared server, empty of test roles before and after the test."""
    _reset_cluster(pg_server)
    yield pg_server
    _reset_cluster(pg_server)
