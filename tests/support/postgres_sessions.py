"""PostgreSQL connector sessions and admin helpers shared by the connector's test modules.

A pytest plugin: modules that use ``open_session`` list it in ``pytest_plugins`` and import
the helpers directly.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lockstep.connectors.base import Scope
from lockstep.connectors.postgres.connector import PostgresConnectorType, PostgresSession
from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.demo import localpg
from lockstep.model import Target
from lockstep.secret import Secret

CONNECTOR = PostgresConnectorType()
OpenSession = Callable[..., PostgresSession]


@pytest.fixture
def open_session(pg: localpg.LocalPostgres) -> Iterator[OpenSession]:
    """Opens sessions on the test server, closed after the test."""
    opened: list[PostgresSession] = []

    def _open(
        declared: tuple[str, ...] = (),
        excluded: tuple[str, ...] = (),
        dsn: str | None = None,
        **settings: Any,
    ) -> PostgresSession:
        target = Target(
            name="orders-db",
            type="postgres",
            environment=None,
            exclude=frozenset(excluded),
            legacy=False,
            settings=PostgresSettings.model_validate({"dsn": Secret(dsn or pg.dsn()), **settings}),
        )
        session = CONNECTOR.open(target, Scope(frozenset(declared), frozenset(excluded)))
        opened.append(session)
        return session

    yield _open
    for session in opened:
        session.close()


def admin(pg: localpg.LocalPostgres, *statements: str | sql.Composed) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def query(pg: localpg.LocalPostgres, statement: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def login(
    pg: localpg.LocalPostgres, user: str, secret: Secret, **options: Any
) -> psycopg.Connection[Any]:
    """A workload's own session, over TCP."""
    return psycopg.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname="postgres",
        user=user,
        password=secret.reveal(),
        autocommit=True,
        **options,
    )


def role_exists(pg: localpg.LocalPostgres, name: str) -> bool:
    return query(pg, "SELECT count(*) FROM pg_roles WHERE rolname = %s", name) == [(1,)]


def assert_session_ended(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


def assert_clean(error: BaseException, secret: str) -> None:
    """Neither the error's message, repr nor formatted traceback shows the secret."""
    rendered = "".join(traceback.format_exception(error))
    for text in (str(error), repr(error), rendered):
        assert secret not in text
