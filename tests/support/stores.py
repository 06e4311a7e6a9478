"""The state store on each backend, as a pytest plugin.

Load it from a test module with ``pytest_plugins = ("support.stores",)``: every test that asks
for ``state_url`` or ``store`` then runs once on a SQLite file and once on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from lockstep.demo.localpg import LocalPostgres
from lockstep.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to a state store that does not exist yet, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/state.db"
    # Only the PostgreSQL half needs the server: SQLite runs where PostgreSQL cannot start.
    pg: LocalPostgres = request.getfixturevalue("pg")
    name = f"lockstep_state_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return pg.dsn(name)


@pytest.fixture
def store(state_url: str) -> Iterator[Store]:
    """An open, migrated state store on each backend."""
    with Store.open(state_url) as opened:
        yield opened
