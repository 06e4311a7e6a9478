"""The PostgreSQL connector: roles that can log in are accounts, everything else is granted.

Passwords never travel to the server in clear: the SCRAM verifier is computed client-side
(libpq's ``PQencryptPasswordConn``), so neither the server log nor an echoed statement can
show one. Every name goes through ``psycopg.sql.Identifier`` and every value through
``sql.Literal`` or a bind parameter.

The target's keys are in ``settings``; the session is in ``session``, reading through
``catalog`` (its queries) and ``transform`` (their rows as a snapshot); the optional
capabilities keep their SQL beside them: the change token and usage in ``usage``, leases in
``leases``.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any, ClassVar

import psycopg
from pydantic import BaseModel

from lockstep.connectors.base import (
    AppliesBatches,
    IssuesLeaseBatches,
    IssuesLeases,
    ObservesUsage,
    ProbesInParallel,
    Scope,
    TargetUnreachable,
    WatchesChanges,
)
from lockstep.connectors.postgres import grammar
from lockstep.connectors.postgres.admin import one_line
from lockstep.connectors.postgres.catalog import Conn
from lockstep.connectors.postgres.session import CONNECT_TIMEOUT_S, PostgresSession
from lockstep.connectors.postgres.settings import PostgresSettings, exact_params
from lockstep.model import Op, Target

__all__ = ["PostgresConnectorType", "PostgresSession", "PostgresSettings"]


_LEASE_PERMISSIONS = (
    "CREATEROLE",
    "ADMIN OPTION on each role leases are made members of (or CREATEROLE before PostgreSQL 16)",
    "GRANT OPTION on each table, schema or database leases are granted (or owning it)",
    "pg_signal_backend (to end a revoked lease's sessions)",
)


class PostgresConnectorType:
    name: ClassVar[str] = "postgres"
    permissions: ClassVar[Mapping[Op, tuple[str, ...]]] = {
        Op.CREATE_ACCOUNT: ("CREATEROLE",),
        Op.RESTORE_ACCOUNT: ("CREATEROLE (ADMIN OPTION on the role from PostgreSQL 16)",),
        Op.GRANT: (
            "ADMIN OPTION on the granted role (or CREATEROLE before PostgreSQL 16)",
            "GRANT OPTION on the table, schema or database (or owning it)",
        ),
        Op.REVOKE: (
            "ADMIN OPTION on the granted role (or CREATEROLE before PostgreSQL 16)",
            "GRANT OPTION on the table, schema or database (or owning it)",
        ),
        Op.ROTATE_CREDENTIAL: ("CREATEROLE (ADMIN OPTION on the role from PostgreSQL 16)",),
        Op.SUSPEND_ACCOUNT: (
            "CREATEROLE (ADMIN OPTION on the role from PostgreSQL 16)",
            "pg_signal_backend",
        ),
        Op.END_SESSIONS: ("pg_signal_backend",),
        Op.DELETE_ACCOUNT: (
            "CREATEROLE (ADMIN OPTION on the role from PostgreSQL 16)",
            "GRANT OPTION on every object the account holds privileges on",
            "pg_signal_backend",
        ),
    }
    paths_permissions: ClassVar[tuple[str, ...]] = (
        "LOGIN to the DSN's database: pg_roles, pg_auth_members, pg_class, pg_proc and the "
        "has_*_privilege functions are readable by every role",
    )
    read_permissions: ClassVar[tuple[str, ...]] = (
        "LOGIN to the DSN's database (the catalogs read are readable by every role)",
        "pg_read_all_stats (to count other roles' open sessions)",
    )
    capability_permissions: ClassVar[Mapping[type, tuple[str, ...]]] = {
        # The catalogs it summarises are readable by any role.
        WatchesChanges: (),
        ObservesUsage: ("pg_read_all_stats (to see other roles' sessions)",),
        IssuesLeases: _LEASE_PERMISSIONS,
        IssuesLeaseBatches: _LEASE_PERMISSIONS,
        # The operations' own permissions; the catalogs read back are readable by any role.
        AppliesBatches: (),
        ProbesInParallel: (),
    }

    def settings_model(self) -> type[BaseModel]:
        return PostgresSettings

    def check_account(self, name: str) -> None:
        grammar.check_account(name)

    def parse_entitlement(self, text: str) -> str:
        return grammar.parse_entitlement(text)

    def default_excluded(self, settings: BaseModel) -> frozenset[str]:
        params = PostgresSettings.model_validate(settings).dsn_params()
        # libpq's own default when the DSN names no user (PGUSER is never read).
        user = params.get("user") or getpass.getuser()
        return frozenset({str(user)})

    def propagation_window(self, settings: BaseModel) -> float:
        # A server answers from its catalogs: a removed password fails the next login.
        return 0.0

    def open(self, target: Target, scope: Scope) -> PostgresSession:
        settings = PostgresSettings.model_validate(target.settings)
        params = settings.dsn_params()
        conn = _connect_admin(params, target.name)
        try:
            return PostgresSession(
                conn, target.name, settings, scope, lambda: _connect_admin(params, target.name)
            )
        except psycopg.Error as exc:
            message = one_line(exc)
            conn.close()
        raise TargetUnreachable(f"target {target.name}: cannot set up the session: {message}")


def _connect_admin(params: dict[str, Any], target: str) -> Conn:
    try:
        exact = exact_params(
            {**params, "connect_timeout": CONNECT_TIMEOUT_S, "application_name": "lockstep"}
        )
    except TargetUnreachable as exc:
        raise TargetUnreachable(f"cannot connect to target {target}: {exc}") from None
    try:
        return psycopg.connect(autocommit=True, **exact)
    except psycopg.Error as exc:
        message = one_line(exc)
    # Raised outside the handler: the driver's error keeps the connection parameters,
    # password included, and must not ride along as __context__.
    raise TargetUnreachable(f"cannot connect to target {target}: {message}")
