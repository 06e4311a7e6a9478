"""The admin connection a PostgreSQL session holds, and the primitives every part of the
session builds on (``PostgresAdmin``): the roles it never touches, driver errors turned into
the connector's, ending a role's sessions, and retrying statements that collide on an ACL.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from lockstep.connectors.base import ActionFailed, GrammarError, Scope, TargetUnreachable
from lockstep.connectors.postgres import catalog
from lockstep.connectors.postgres.catalog import Conn
from lockstep.model import LEASE_PREFIX
from lockstep.secret import redact

SESSION_END_TIMEOUT_S = 5.0
_COLLISION_RETRIES = 8
# A lock held elsewhere must fail one action, not stall the reconciler.
_SESSION_SETUP = (
    "SET TIME ZONE 'UTC'",
    "SET lock_timeout = '10s'",
    "SET statement_timeout = '120s'",
)


class PostgresAdmin:
    """One autocommit admin connection to one target. Used from one thread at a time."""

    def __init__(self, conn: Conn, target: str, scope: Scope) -> None:
        self._conn = conn
        self._target = target
        self._scope = scope
        for statement in _SESSION_SETUP:
            conn.execute(statement)
        # Catalog reads run in one REPEATABLE READ transaction: one consistent snapshot.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        row = conn.execute("SELECT session_user, current_database()").fetchone()
        assert row is not None
        self._admin: str = row[0]
        self._dbname: str = row[1]

    def close(self) -> None:
        self._conn.close()

    def _scope_params(self) -> dict[str, object]:
        """The parameters of ``catalog.IN_SCOPE``."""
        return {
            "excluded": sorted(self._scope.excluded),
            "declared": sorted(self._scope.declared),
            "marker": catalog.MARKER,
            "lease_prefix": LEASE_PREFIX,
        }

    def _guard(self, account: str) -> None:
        """The admin, excluded and reserved roles are never touched, whatever the plan says."""
        if account == self._admin or account in self._scope.excluded or account.startswith("pg_"):
            raise ActionFailed(f"{account!r} is excluded from management on {self._target}")

    @contextmanager
    def _acting(self, doing: str) -> Iterator[None]:
        """Errors as the connector reports them: a lost connection makes the target
        unreachable; a refusal, or an entitlement the grammar cannot express, fails this one
        action."""
        try:
            yield
        except GrammarError as exc:
            raise ActionFailed(f"{doing}: {exc}") from None
        except psycopg.Error as exc:
            if self._conn.broken or self._conn.closed:
                raise self._unreachable(f"lost the connection during {doing}", exc) from None
            raise ActionFailed(f"{doing}: {one_line(exc)}") from None

    def _role_oid(self, name: str) -> int:
        row = self._conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if row is None:
            raise ActionFailed(f"role {name!r} does not exist on {self._target}")
        return int(row[0])

    def _end_sessions(self, name: str, oid: int) -> None:
        deadline = time.monotonic() + SESSION_END_TIMEOUT_S
        while True:
            row = self._conn.execute(catalog.TERMINATE, (oid,)).fetchone()
            if row is None or row[0] == 0:
                return
            if time.monotonic() >= deadline:
                raise ActionFailed(
                    f"{row[0]} session(s) of {name!r} still open after {SESSION_END_TIMEOUT_S:g}s "
                    "(does the admin have pg_signal_backend?)"
                )
            time.sleep(0.05)

    def _execute_retrying(self, statements: sql.Composed) -> None:
        """Two leases granted, or revoked, on the same object at once can collide on its ACL
        row ("tuple concurrently updated"); the failed transaction left nothing behind, so it
        is simply tried again."""
        for attempt in range(_COLLISION_RETRIES):
            try:
                self._conn.execute(statements, prepare=False)
                return
            except psycopg.errors.InternalError_ as exc:
                if "concurrently updated" not in str(exc) or attempt == _COLLISION_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))  # noqa: S311 - jitter

    def _unreachable(self, doing: str, exc: psycopg.Error) -> TargetUnreachable:
        return TargetUnreachable(f"target {self._target}: {doing}: {one_line(exc)}")


def first(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))
