"""The PostgreSQL connector: roles that can log in are accounts, everything else is granted.

Passwords never travel to the server in clear: the SCRAM verifier is computed client-side
(libpq's ``PQencryptPasswordConn``), so neither the server log nor an echoed statement can
show one. Every name goes through ``psycopg.sql.Identifier`` and every value through
``sql.Literal`` or a bind parameter.

The catalog queries and grant statements are in ``catalog``; the optional
capabilities keep their SQL beside them: the change token and usage in ``usage``,
leases in ``leases``.
"""

from __future__ import annotations

import getpass
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    GrammarError,
    LeaseAccount,
    LeaseOrder,
    ProbeResult,
    Scope,
    TargetUnreachable,
    Usage,
)
from lockstep.connectors.postgres import catalog, grammar, leases, usage
from lockstep.connectors.postgres.catalog import Conn
from lockstep.model import LEASE_PREFIX, Account, Action, Op, Snapshot, Target
from lockstep.secret import Secret, redact, register

MARKER = "managed by lockstep"
_COLLISION_RETRIES = 8
PROBE_APPLICATION = "lockstep-probe"
CONNECT_TIMEOUT_S = 5
SESSION_END_TIMEOUT_S = 5.0
# A lock held elsewhere must fail one action, not stall the reconciler.
_SESSION_SETUP = (
    "SET TIME ZONE 'UTC'",
    "SET lock_timeout = '10s'",
    "SET statement_timeout = '120s'",
)
# TLS settings of the admin DSN that a probe must keep to talk to the server the same way.
_PROBE_TLS_KEYS = ("sslmode", "sslrootcert", "sslcrl", "sslcrldir")

_INVALID_DSN = (
    "the dsn is not a valid PostgreSQL connection string "
    "(expected postgresql://USER@HOST:PORT/DB or key=value pairs)"
)


class PostgresSettings(BaseModel):
    # The dsn holds a password: it must not be echoed by a validation error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    dsn: str
    probe_host: str | None = None
    probe_port: int | None = Field(default=None, ge=1, le=65535)
    # PBKDF2 rounds in lease verifiers: they dominate the cost of issuing a lease, and fewer
    # keep a 24+ character random secret just as unguessable; but pgjdbc refuses fewer
    # than 4096.
    lease_scram_iterations: int = Field(default=leases.DEFAULT_SCRAM_ITERATIONS, ge=1)

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: str) -> str:
        if _parse_dsn(value) is None:
            raise ValueError(_INVALID_DSN)
        return value

    @field_validator("probe_host")
    @classmethod
    def _probe_over_tcp(cls, value: str | None) -> str | None:
        if value is not None and _is_socket(value):
            raise ValueError(
                "probe_host must be a TCP host: probes over a unix socket prove nothing"
            )
        return value


def _parse_dsn(dsn: str) -> dict[str, Any] | None:
    """The DSN's parameters, or None. libpq's parse errors quote fragments of the string,
    which may hold the password, so they are never shown."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return None
    port = str(params.get("port", "0"))
    # A '/' in a URL password shifts the rest into the port, which libpq would then quote.
    if not all(p.isdigit() for p in port.split(",")):
        return None
    return params


def _is_socket(host: str) -> bool:
    return host.startswith(("/", "@"))


_LEASE_PERMISSIONS = (
    "CREATEROLE",
    "ADMIN OPTION on each role leases are made members of (or CREATEROLE before PostgreSQL 16)",
    "GRANT OPTION on each table, schema or database leases are granted (or owning it)",
    "pg_signal_backend (to end a revoked lease's sessions)",
)


class PostgresConnectorType:
    name: ClassVar[str] = "postgres"
    propagation_window_s: ClassVar[float] = 0.0
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
    read_permissions: ClassVar[tuple[str, ...]] = (
        "LOGIN to the DSN's database (the catalogs read are readable by every role)",
        "pg_read_all_stats (to count other roles' open sessions)",
    )
    capability_permissions: ClassVar[Mapping[str, tuple[str, ...]]] = {
        # The catalogs it summarises are readable by any role.
        "WatchesChanges": (),
        "ObservesUsage": ("pg_read_all_stats (to see other roles' sessions)",),
        "IssuesLeases": _LEASE_PERMISSIONS,
        "IssuesLeaseBatches": _LEASE_PERMISSIONS,
    }

    def settings_model(self) -> type[BaseModel]:
        return PostgresSettings

    def secret_fields(self) -> frozenset[str]:
        return frozenset({"dsn"})

    def check_account(self, name: str) -> None:
        grammar.check_account(name)

    def parse_entitlement(self, text: str) -> str:
        return grammar.parse_entitlement(text)

    def default_excluded(self, settings: Mapping[str, Any]) -> frozenset[str]:
        dsn = settings.get("dsn")
        params = _parse_dsn(dsn.reveal() if isinstance(dsn, Secret) else str(dsn or ""))
        if params is None:
            # Unparseable: open() fails anyway, and a session always excludes its own user.
            return frozenset()
        # libpq's own defaults when the DSN names no user.
        user = params.get("user") or os.environ.get("PGUSER") or getpass.getuser()
        return frozenset({str(user)})

    def open(self, target: Target, scope: Scope) -> PostgresSession:
        dsn = target.settings["dsn"]
        if not isinstance(dsn, Secret):
            raise TypeError("the postgres connector expects settings['dsn'] as a Secret")
        conn = _connect_admin(dsn.reveal(), target.name)
        try:
            return PostgresSession(conn, target, scope)
        except psycopg.Error as exc:
            message = _one_line(exc)
            conn.close()
        raise TargetUnreachable(f"target {target.name}: cannot set up the session: {message}")


def _connect_admin(dsn: str, target: str) -> Conn:
    params = _parse_dsn(dsn)
    if params is None:
        raise TargetUnreachable(f"target {target}: {_INVALID_DSN}")
    if params.get("password"):
        register(str(params["password"]))
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="lockstep",
        )
    except psycopg.Error as exc:
        message = _one_line(exc)
    # Raised outside the handler: the driver's error keeps the connection parameters,
    # password included, and must not ride along as __context__.
    raise TargetUnreachable(f"cannot connect to target {target}: {message}")


@dataclass(frozen=True, slots=True)
class _ProbeEndpoint:
    host: str
    port: int
    dbname: str
    tls: Mapping[str, str]


class PostgresSession:
    """One autocommit admin connection to one target."""

    def __init__(self, conn: Conn, target: Target, scope: Scope) -> None:
        self._conn = conn
        self._target = target.name
        self._scope = scope
        for statement in _SESSION_SETUP:
            conn.execute(statement)
        # Catalog reads run in one REPEATABLE READ transaction: one consistent snapshot.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        row = conn.execute("SELECT session_user, current_database()").fetchone()
        assert row is not None
        self._admin: str = row[0]
        self._probe = self._probe_endpoint(target, dbname=row[1])
        iterations = target.settings.get("lease_scram_iterations")
        self._scram_iterations = int(str(iterations or leases.DEFAULT_SCRAM_ITERATIONS))

    def _probe_endpoint(self, target: Target, dbname: str) -> _ProbeEndpoint:
        host = target.settings.get("probe_host") or self._conn.info.host
        port = target.settings.get("probe_port") or self._conn.info.port
        parameters = self._conn.info.get_parameters()
        tls = {k: parameters[k] for k in _PROBE_TLS_KEYS if k in parameters}
        return _ProbeEndpoint(str(host), int(str(port)), dbname, tls)

    # ------------------------------------------------------------ reading

    def read(self) -> Snapshot:
        return Snapshot(self._target, self._read(sql.SQL(catalog.IN_SCOPE), self._scope_params()))

    def _scope_params(self) -> dict[str, object]:
        return {
            "excluded": sorted(self._scope.excluded),
            "declared": sorted(self._scope.declared),
            "marker": MARKER,
        }

    def read_account(self, account: str) -> Account | None:
        return self._read(sql.SQL(catalog.NAMED), {"name": account}).get(account)

    def _read(self, which: sql.Composable, params: Mapping[str, object]) -> dict[str, Account]:
        try:
            return catalog.read_accounts(self._conn, which, params)
        except psycopg.Error as exc:
            raise self._unreachable("cannot read", exc) from None

    # ------------------------------------------------------------ acting

    def execute(self, action: Action, secret: Secret | None) -> Credential | None:
        self._guard(action.account)
        try:
            return self._dispatch(action, secret)
        except GrammarError as exc:
            raise ActionFailed(f"{_describe(action)}: {exc}") from None
        except psycopg.Error as exc:
            if self._conn.broken or self._conn.closed:
                raise self._unreachable(
                    f"lost the connection during {_describe(action)}", exc
                ) from None
            raise ActionFailed(f"{_describe(action)}: {_one_line(exc)}") from None

    def _dispatch(self, action: Action, secret: Secret | None) -> Credential | None:
        name = action.account
        match action.op:
            case Op.CREATE_ACCOUNT:
                return self._create(name, _needed(secret, action))
            case Op.GRANT | Op.REVOKE:
                self._conn.execute(
                    catalog.privilege_statement(action.op, _entitlement(action), name)
                )
            case Op.SUSPEND_ACCOUNT:
                return self._suspend(name, secret)
            case Op.RESTORE_ACCOUNT:
                return self._restore(name, _needed(secret, action))
            case Op.ROTATE_CREDENTIAL:
                return self._rotate(name, _needed(secret, action))
            case Op.END_SESSIONS:
                self._end_sessions(name, self._role_oid(name))
            case Op.DELETE_ACCOUNT:
                self._delete(name)
            case _:
                raise ActionFailed(f"{_describe(action)}: not an operation postgres supports")
        return None

    def _guard(self, account: str) -> None:
        """The admin, excluded and reserved roles are never touched, whatever the plan says."""
        if account == self._admin or account in self._scope.excluded or account.startswith("pg_"):
            raise ActionFailed(f"{account!r} is excluded from management on {self._target}")

    def _create(self, name: str, secret: Secret) -> Credential:
        role = sql.Identifier(name)
        with self._conn.transaction():
            self._conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    role, self._verifier(name, secret)
                )
            )
            self._mark(role)
        return Credential(username=name, secret=secret)

    def _suspend(self, name: str, secret: Secret | None) -> Credential | None:
        role = sql.Identifier(name)
        # Without a replacement secret, no password at all is just as unusable.
        password = sql.NULL if secret is None else self._verifier(name, secret)
        with self._conn.transaction():
            self._conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD {}").format(role, password))
            self._mark(role)
        # NOLOGIN stops new logins only: sessions already open must be ended too.
        self._end_sessions(name, self._role_oid(name))
        return None if secret is None else Credential(username=name, secret=secret)

    def _restore(self, name: str, secret: Secret) -> Credential:
        role = sql.Identifier(name)
        with self._conn.transaction():
            self._conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    role, self._verifier(name, secret)
                )
            )
            # An expired VALID UNTIL would keep the restored account unusable; a future one
            # is someone's deliberate limit and stays.
            expired = self._conn.execute(
                "SELECT rolvaliduntil <= now() FROM pg_roles WHERE rolname = %s", (name,)
            ).fetchone()
            if expired is not None and expired[0]:
                self._conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(role))
        return Credential(username=name, secret=secret)

    def _rotate(self, name: str, secret: Secret) -> Credential:
        self._conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(name), self._verifier(name, secret)
            )
        )
        return Credential(username=name, secret=secret)

    def _delete(self, name: str) -> None:
        oid = self._role_oid(name)
        owned = [row[0] for row in self._conn.execute(catalog.OWNED, (oid,)).fetchall()]
        if owned:
            raise ActionFailed(
                f"delete_account {name!r}: the role owns {len(owned)} object(s) "
                f"({_first(owned)}); "
                "lockstep never drops or reassigns objects: reassign them, then delete"
            )
        account = self.read_account(name)
        held = sorted(account.entitlements) if account else []
        # One transaction: a DROP that fails leaves the role exactly as it was.
        with self._conn.transaction():
            for text in held:
                self._conn.execute(
                    catalog.privilege_statement(Op.REVOKE, grammar.parse(text), name)
                )
            self._conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        # DROP ROLE leaves open sessions running as a role that no longer exists.
        self._end_sessions(name, oid)

    def _mark(self, role: sql.Identifier) -> None:
        self._conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(MARKER)))

    def _verifier(self, name: str, secret: Secret) -> sql.Literal:
        """The password as the server stores it (SCRAM by default), never the password."""
        hashed = self._conn.pgconn.encrypt_password(secret.reveal().encode(), name.encode(), None)
        return sql.Literal(hashed.decode("ascii"))

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

    # ------------------------------------------------------------ watching and usage

    def change_token(self) -> str:
        try:
            summary = self._conn.execute(
                usage.CATALOG_SUMMARY, {"lease_prefix": LEASE_PREFIX}
            ).fetchone()
        except psycopg.Error as exc:
            raise self._unreachable("cannot compute the change token", exc) from None
        assert summary is not None
        return usage.token(summary)

    def observe_usage(self) -> list[Usage]:
        roles = sql.SQL(catalog.ROLES).format(which=sql.SQL(catalog.IN_SCOPE))
        params = {**self._scope_params(), "probe": PROBE_APPLICATION}
        try:
            rows = self._conn.execute(sql.SQL(usage.USAGE).format(roles=roles), params).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot read pg_stat_activity", exc) from None
        hidden = sorted(name for name, _, unseen in rows if unseen)
        if hidden:
            # An account whose sessions cannot be dated must not look dormant.
            raise TargetUnreachable(
                f"target {self._target}: cannot see when {len(hidden)} account(s) "
                f"({_first(hidden)}) "
                "last used their sessions: grant the admin pg_read_all_stats"
            )
        return [Usage(name, last_used, source="pg_stat_activity") for name, last_used, _ in rows]

    # ------------------------------------------------------------ leases

    def issue_lease(
        self,
        lease_account: str,
        template: str,
        entitlements: frozenset[str],
        secret: Secret,
        expires_at: datetime,
    ) -> Credential:
        """One LOGIN role expiring at ``expires_at``, holding ``entitlements``; the
        template is not needed: a PostgreSQL lease is built from the entitlements alone."""
        order = LeaseOrder(lease_account, template, entitlements, secret, expires_at)
        return self.issue_leases([order])[0]

    def issue_leases(self, orders: Sequence[LeaseOrder]) -> list[Credential]:
        """Every lease of ``orders`` in one message, so one transaction."""
        if not orders:
            return []
        first = orders[0].account
        more = f" and {len(orders) - 1} more" if len(orders) > 1 else ""
        doing = f"issue_lease {first!r}{more}"
        statements: list[sql.Composable] = []
        for order in orders:
            self._check_lease(order.account, doing)
            try:
                grants = [
                    catalog.privilege_statement(Op.GRANT, grammar.parse(e), order.account)
                    for e in sorted(order.entitlements)
                ]
                verifier = leases.scram_verifier(order.secret, self._scram_iterations)
                statements.append(
                    leases.issue_statements(order.account, verifier, order.expires_at, grants)
                )
            except GrammarError as exc:
                raise ActionFailed(f"{doing}: {exc}") from None
        with self._acting(doing):
            self._execute_retrying(sql.SQL("; ").join(statements))
        return [Credential(username=order.account, secret=order.secret) for order in orders]

    def lease_problems(self, orders: Sequence[LeaseOrder]) -> dict[str, str]:
        names = [order.account for order in orders]
        with self._acting(f"read back {len(names)} lease(s)"), self._conn.transaction():
            roles = self._conn.execute(leases.CHECK_ROLES, {"names": names}).fetchall()
            checks = leases.entitlement_checks(orders, (row[0] for row in roles))
            missing = self._conn.execute(leases.CHECK_ENTITLEMENTS, checks).fetchall()
        return leases.problems(orders, roles, missing)

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

    def renew_lease(self, lease_account: str, expires_at: datetime) -> None:
        """A new VALID UNTIL; a lease already past its own cannot be renewed."""
        doing = f"renew_lease {lease_account!r}"
        self._check_lease(lease_account, doing)
        try:
            until = leases.valid_until(expires_at)
        except GrammarError as exc:
            raise ActionFailed(f"{doing}: {exc}") from None
        with self._acting(doing):
            self._conn.execute(leases.renew_statement(lease_account, until, self._conn))

    def revoke_lease(self, lease_account: str) -> None:
        """No new logins, no open sessions, then no role. A lease already gone is revoked."""
        name = lease_account
        doing = f"revoke_lease {name!r}"
        self._check_lease(name, doing)
        with self._acting(doing):
            oid = self._disable(name)
            if oid is None:
                return
            self._end_sessions(name, oid)
            # Nothing can log in as the lease now, so nothing new can come to be owned.
            owned = [row[0] for row in self._conn.execute(catalog.OWNED, (oid,)).fetchall()]
            if owned:
                raise ActionFailed(
                    f"{doing}: the lease role owns {len(owned)} object(s) ({_first(owned)}); "
                    "it can no longer log in and its sessions are ended, but lockstep never "
                    "drops or reassigns objects: reassign them, then revoke again"
                )
            privileged = self._conn.execute(leases.PRIVILEGED_OBJECTS, {"oid": oid}).fetchall()
            self._execute_retrying(leases.drop_statements(name, privileged))
            # A login that passed authentication just before NOLOGIN may have started since.
            self._end_sessions(name, oid)

    def _disable(self, name: str) -> int | None:
        """NOLOGIN now, committed; the role's oid, or None when there is no such role."""
        try:
            cursor = self._conn.execute(leases.disable_statements(name), prepare=False)
        except psycopg.errors.UndefinedObject:
            return None
        cursor.nextset()
        row = cursor.fetchone()
        return None if row is None else int(row[0])

    def list_leases(self, prefix: str) -> list[LeaseAccount]:
        try:
            leases.check_prefix(prefix)
        except GrammarError as exc:
            raise ActionFailed(str(exc)) from None
        params = {"prefix": prefix, "excluded": sorted(self._scope.excluded)}
        try:
            rows = self._conn.execute(leases.LIST, params).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot list leases", exc) from None
        return [LeaseAccount(name, expires_at) for name, expires_at in rows]

    def _check_lease(self, name: str, doing: str) -> None:
        try:
            leases.check_name(name)
        except GrammarError as exc:
            raise ActionFailed(f"{doing}: {exc}") from None
        self._guard(name)

    @contextmanager
    def _acting(self, doing: str) -> Iterator[None]:
        """Driver errors as the connector reports them: a lost connection makes the target
        unreachable, anything else fails this one action."""
        try:
            yield
        except psycopg.Error as exc:
            if self._conn.broken or self._conn.closed:
                raise self._unreachable(f"lost the connection during {doing}", exc) from None
            raise ActionFailed(f"{doing}: {_one_line(exc)}") from None

    # ------------------------------------------------------------ probing

    def probe(self, credential: Credential) -> ProbeResult:
        endpoint = self._probe
        if _is_socket(endpoint.host):
            raise TargetUnreachable(
                f"target {self._target}: the dsn connects over a unix socket; probes need TCP "
                "(a socket with trust authentication accepts any password): set probe_host"
            )
        try:
            with psycopg.connect(
                make_conninfo("", **endpoint.tls),
                host=endpoint.host,
                port=endpoint.port,
                dbname=endpoint.dbname,
                user=credential.username,
                password=credential.secret.reveal(),
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=PROBE_APPLICATION,
            ):
                return ProbeResult.ACCEPTED
        except psycopg.Error as exc:
            message = _one_line(exc)
        verdict = _auth_verdict(message)
        if verdict is None:
            # Outside the handler, as in _connect_admin: the driver error holds the password.
            raise TargetUnreachable(
                f"probe of {credential.username!r} on {self._target}: {message}"
            )
        return verdict

    def close(self) -> None:
        self._conn.close()

    def _unreachable(self, doing: str, exc: psycopg.Error) -> TargetUnreachable:
        return TargetUnreachable(f"target {self._target}: {doing}: {_one_line(exc)}")


def _entitlement(action: Action) -> grammar.Entitlement:
    if action.entitlement is None:
        raise ActionFailed(f"{_describe(action)}: no entitlement given")
    return grammar.parse(action.entitlement)


def _needed(secret: Secret | None, action: Action) -> Secret:
    if secret is None:
        raise ActionFailed(f"{_describe(action)}: needs a new secret and none was given")
    return secret


def _first(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _describe(action: Action) -> str:
    text = f"{action.op} {action.account!r}"
    return f"{text} {action.entitlement!r}" if action.entitlement else text


# Server messages (after "FATAL:") that settle a probe. Refusals come before a session
# starts; the accepted ones are raised only after the password was checked and the role
# allowed to log in, so the credential itself works.
_REFUSALS = re.compile(
    r'password authentication failed for user |role ".*" is not permitted to log in'
    r'|role ".*" does not exist|pg_hba\.conf rejects connection|no pg_hba\.conf entry'
)
_POST_AUTH = re.compile(
    r'database ".*" does not exist|permission denied for database '
    r"|too many connections for role "
)
_FATAL = re.compile(r"FATAL:\s+(.*)")


def _auth_verdict(message: str) -> ProbeResult | None:
    fatal = _FATAL.search(message)
    if fatal is None:
        return None
    if _REFUSALS.match(fatal[1]):
        return ProbeResult.REFUSED
    if _POST_AUTH.match(fatal[1]):
        return ProbeResult.ACCEPTED
    return None


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))
