"""A PostgreSQL session: reading roles, one method per operation, and probing as a workload.

The optional capabilities come from the mixins beside their SQL: the change token and usage
(``usage``), leases (``leases``), the facts of escalation paths (``paths``), and batches
of changes read back together and probed side by side (``batches``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    ProbeResult,
    Scope,
    TargetUnreachable,
)
from lockstep.connectors.postgres import catalog, grammar
from lockstep.connectors.postgres.admin import first, one_line
from lockstep.connectors.postgres.batches import PostgresBatches
from lockstep.connectors.postgres.catalog import Conn
from lockstep.connectors.postgres.keys import ProbeKeys
from lockstep.connectors.postgres.leases import PostgresLeases
from lockstep.connectors.postgres.paths import PostgresPaths
from lockstep.connectors.postgres.settings import PostgresSettings, exact_params, is_socket
from lockstep.connectors.postgres.transform import (
    object_params,
    objects,
    transform,
    wanted_objects,
)
from lockstep.connectors.postgres.usage import PROBE_APPLICATION, PostgresUsage
from lockstep.model import Account, Op, Snapshot
from lockstep.secret import Secret

CONNECT_TIMEOUT_S = 5
# TLS settings of the admin DSN that a probe must keep to talk to the server the same way.
_PROBE_TLS_KEYS = ("sslmode", "sslrootcert", "sslcrl", "sslcrldir")


@dataclass(frozen=True, slots=True)
class _ProbeEndpoint:
    host: str
    port: int
    dbname: str
    tls: Mapping[str, str]


class PostgresSession(PostgresUsage, PostgresLeases, PostgresPaths, PostgresBatches):
    """One autocommit admin connection to one target."""

    def __init__(
        self,
        conn: Conn,
        target: str,
        settings: PostgresSettings,
        scope: Scope,
        connect_more: Callable[[], Conn],
    ) -> None:
        super().__init__(conn, target, scope)
        self._connect_more = connect_more
        self._scram_iterations = settings.lease_scram_iterations
        self._secret_tables = settings.secret_table_names()
        self._account_scram_iterations = settings.scram_iterations
        self.keys = ProbeKeys()
        parameters = conn.info.get_parameters()
        self._probe = _ProbeEndpoint(
            settings.probe_host or conn.info.host,
            settings.probe_port or conn.info.port,
            self._dbname,
            {k: parameters[k] for k in _PROBE_TLS_KEYS if k in parameters},
        )

    # ------------------------------------------------------------ reading

    def read(self) -> Snapshot:
        snapshot = self._read(sql.SQL(catalog.IN_SCOPE), self._scope_params())
        wanted = wanted_objects(self._scope.entitlements)
        if not wanted:
            return snapshot
        try:
            rows = self._conn.execute(catalog.OBJECTS, object_params(wanted)).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot read which objects exist", exc) from None
        unknown, room = objects(wanted, rows)
        return replace(snapshot, unknown=unknown, room=room)

    def read_account(self, account: str) -> Account | None:
        return self._read(sql.SQL(catalog.NAMED), {"name": account}).accounts.get(account)

    def _read(self, which: sql.Composable, params: Mapping[str, object]) -> Snapshot:
        try:
            rows = catalog.read_rows(self._conn, which, params)
        except psycopg.Error as exc:
            raise self._unreachable("cannot read", exc) from None
        return transform(self._target, *rows)

    # ------------------------------------------------------------ acting

    @contextmanager
    def _operation(self, op: Op, account: str, entitlement: str | None = None) -> Iterator[None]:
        self._guard(account)
        doing = f"{op} {account!r}" + (f" {entitlement!r}" if entitlement else "")
        with self._acting(doing):
            yield

    def create_account(self, account: str, secret: Secret) -> Credential:
        role = sql.Identifier(account)
        with self._operation(Op.CREATE_ACCOUNT, account), self._conn.transaction():
            self._conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    role, self.verifier(account, secret, Op.CREATE_ACCOUNT)
                )
            )
            self._mark(role)
        return Credential(username=account, secret=secret)

    def grant(self, account: str, entitlement: str) -> None:
        with self._operation(Op.GRANT, account, entitlement):
            parsed = grammar.parse(entitlement)
            self._conn.execute(catalog.privilege_statement(Op.GRANT, parsed, account))

    def revoke(self, account: str, entitlement: str) -> None:
        with self._operation(Op.REVOKE, account, entitlement):
            parsed = grammar.parse(entitlement)
            self._conn.execute(catalog.privilege_statement(Op.REVOKE, parsed, account))

    def suspend_account(self, account: str, secret: Secret) -> Credential:
        role = sql.Identifier(account)
        with self._operation(Op.SUSPEND_ACCOUNT, account):
            with self._conn.transaction():
                self._conn.execute(
                    sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD {}").format(
                        role, self.verifier(account, secret, Op.SUSPEND_ACCOUNT)
                    )
                )
                self._mark(role)
            # NOLOGIN stops new logins only: sessions already open must be ended too.
            self._end_sessions(account, self._role_oid(account))
        return Credential(username=account, secret=secret)

    def restore_account(self, account: str, secret: Secret) -> Credential:
        role = sql.Identifier(account)
        with self._operation(Op.RESTORE_ACCOUNT, account), self._conn.transaction():
            self._conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    role, self.verifier(account, secret, Op.RESTORE_ACCOUNT)
                )
            )
            # An expired VALID UNTIL would keep the restored account unusable; a future one
            # is someone's deliberate limit and stays.
            expired = self._conn.execute(
                "SELECT rolvaliduntil <= now() FROM pg_roles WHERE rolname = %s", (account,)
            ).fetchone()
            if expired is not None and expired[0]:
                self._conn.execute(sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(role))
        return Credential(username=account, secret=secret)

    def rotate_credential(self, account: str, secret: Secret) -> Credential:
        with self._operation(Op.ROTATE_CREDENTIAL, account):
            self._conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(account), self.verifier(account, secret, Op.ROTATE_CREDENTIAL)
                )
            )
        return Credential(username=account, secret=secret)

    def end_sessions(self, account: str) -> None:
        with self._operation(Op.END_SESSIONS, account):
            self._end_sessions(account, self._role_oid(account))

    def delete_account(self, account: str) -> None:
        with self._operation(Op.DELETE_ACCOUNT, account):
            oid = self._role_oid(account)
            owned = [row[0] for row in self._conn.execute(catalog.OWNED, (oid,)).fetchall()]
            if owned:
                raise ActionFailed(
                    f"delete_account {account!r}: the role owns {len(owned)} object(s) "
                    f"({first(owned)}); "
                    "lockstep never drops or reassigns objects: reassign them, then delete"
                )
            held = self.read_account(account)
            # One transaction: a DROP that fails leaves the role exactly as it was.
            with self._conn.transaction():
                for text in sorted(held.entitlements) if held else []:
                    self._conn.execute(
                        catalog.privilege_statement(Op.REVOKE, grammar.parse(text), account)
                    )
                self._conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(account)))
            # DROP ROLE leaves open sessions running as a role that no longer exists.
            self._end_sessions(account, oid)

    def _mark(self, role: sql.Identifier) -> None:
        self._conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(catalog.MARKER))
        )

    # ------------------------------------------------------------ probing

    def probe(self, credential: Credential) -> ProbeResult:
        endpoint = self._probe
        if is_socket(endpoint.host):
            raise TargetUnreachable(
                f"target {self._target}: the dsn connects over a unix socket; probes need TCP "
                "(a socket with trust authentication accepts any password): set probe_host"
            )
        keyed = self.keys.login(credential.secret)
        if keyed is not None and self._login(credential, keyed) is ProbeResult.ACCEPTED:
            return ProbeResult.ACCEPTED  # see ``keys``: only an acceptance is taken from it
        return self._login(credential, {"password": credential.secret.reveal()})

    def _login(self, credential: Credential, secret: Mapping[str, str]) -> ProbeResult:
        endpoint = self._probe
        try:
            params = exact_params(
                {
                    **endpoint.tls,
                    "host": endpoint.host,
                    "port": endpoint.port,
                    "dbname": endpoint.dbname,
                    "user": credential.username,
                    **secret,
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": PROBE_APPLICATION,
                }
            )
            with psycopg.connect(**params):
                return ProbeResult.ACCEPTED
        except psycopg.Error as exc:
            message = one_line(exc)
        verdict = _auth_verdict(message)
        if verdict is None:
            # Outside the handler: the driver error holds the password.
            raise TargetUnreachable(
                f"probe of {credential.username!r} on {self._target}: {message}"
            )
        return verdict


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
