"""Leases on PostgreSQL: one LOGIN role per lease, expiring natively with VALID UNTIL.

The server itself refuses a lease role after its VALID UNTIL, so expiry holds while lockstep
is down; lockstep only drops expired roles later to keep the catalog small. Issuing a batch
of leases is one round trip: the verifiers are computed here and every statement travels in
a single simple-protocol message, which PostgreSQL runs as one implicit transaction, so a
grant that fails leaves no half-made lease behind. Reading a batch back is two queries.

What a lease costs is mostly PBKDF2, twice: lockstep computes the verifier, and CREATE ROLE
then checks that the verifier does not match an empty password, which runs the same PBKDF2
on the server (about 2.5 ms of server CPU at 4096 iterations on PostgreSQL 15).

``PostgresLeases`` is the session's part that issues, renews, revokes and lists leases.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from lockstep.connectors.base import (
    ActionFailed,
    Credential,
    GrammarError,
    LeaseAccount,
    LeaseOrder,
)
from lockstep.connectors.postgres import catalog, grammar
from lockstep.connectors.postgres.admin import PostgresAdmin, first
from lockstep.model import LEASE_PREFIX, Op
from lockstep.secret import Secret

LEASE_MARKER = "managed by lockstep: lease"
# RFC 7677's floor, and what PostgreSQL itself uses; pgjdbc's SCRAM library refuses fewer.
DEFAULT_SCRAM_ITERATIONS = 4096
# Lease secrets are machine-generated: a short one would make a leaked verifier guessable
# whatever the iteration count.
MIN_SECRET_LENGTH = 24
_EXPIRY_TOLERANCE_S = 1.0  # VALID UNTIL keeps microseconds; a second covers any rendering
_SALT_BYTES = 16  # as PostgreSQL's own verifiers
# SASLprep (RFC 4013) leaves printable ASCII unchanged, so the verifier of such a password
# needs no normalisation to match what a client computes at login.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")

# Every role by lease prefix; expiries as the session's account read renders them.
LIST = """
SELECT rolname,
       CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil >= '9999-12-31 00:00+00' THEN NULL
            ELSE greatest(rolvaliduntil, '0001-01-01 00:00+00') END
FROM pg_roles
WHERE starts_with(rolname, %(prefix)s) AND rolname <> session_user
  AND rolname NOT IN (SELECT unnest(%(excluded)s::text[]))
ORDER BY rolname
"""
# What a role holds privileges on, here and on databases: every ACL entry naming a role has
# an 'a' row in pg_shdepend, reached through its index rather than by exploding every ACL of
# the catalog. Column privileges belong to their table, and go with it.
PRIVILEGED_OBJECTS = """
WITH held AS (
  SELECT classid, objid FROM pg_shdepend
  WHERE refclassid = 'pg_authid'::regclass AND refobjid = %(oid)s AND deptype = 'a'
    AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
)
SELECT 'TABLE', n.nspname, c.relname
FROM held JOIN pg_class c ON held.classid = 'pg_class'::regclass AND c.oid = held.objid
JOIN pg_namespace n ON n.oid = c.relnamespace
UNION
SELECT 'SCHEMA', NULL, n.nspname
FROM held JOIN pg_namespace n ON held.classid = 'pg_namespace'::regclass AND n.oid = held.objid
UNION
SELECT 'DATABASE', NULL, d.datname
FROM held JOIN pg_database d ON held.classid = 'pg_database'::regclass AND d.oid = held.objid
"""
# Read-back of a batch: the roles as they are, then each ordered entitlement that is not in
# effect for its lease (held directly or through membership, as a login would find it).
# Psycopg takes "%%" for a literal "%".
CHECK_ROLES = """
SELECT r.rolname, r.rolcanlogin,
       CASE WHEN r.rolvaliduntil IS NULL OR r.rolvaliduntil >= '9999-12-31 00:00+00' THEN NULL
            ELSE greatest(r.rolvaliduntil, '0001-01-01 00:00+00') END
FROM pg_roles r WHERE r.rolname IN (SELECT unnest(%(names)s::text[]))
"""
CHECK_ENTITLEMENTS = """
SELECT e.name, e.entitlement
FROM unnest(%(names)s::text[], %(entitlements)s::text[], %(kinds)s::text[],
            %(privileges)s::text[], %(first)s::text[], %(second)s::text[])
     AS e(name, entitlement, kind, privilege, first, second)
WHERE NOT CASE e.kind
    WHEN 'role' THEN pg_has_role(e.name, e.first, 'MEMBER')
    WHEN 'table' THEN has_table_privilege(e.name, format('%%I.%%I', e.first, e.second),
                                          e.privilege)
    WHEN 'schema' THEN has_schema_privilege(e.name, e.first, e.privilege)
    ELSE has_database_privilege(e.name, e.first, e.privilege) END
"""
_KINDS = {"TABLE": sql.SQL("TABLE"), "SCHEMA": sql.SQL("SCHEMA"), "DATABASE": sql.SQL("DATABASE")}
# An expired lease stays expired: renewing it would bring a dead password back to life.
# A DO block, so that the check and the change are one statement.
_RENEW = """
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN
    RAISE EXCEPTION 'role % does not exist', {name};
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name} AND rolvaliduntil > now()) THEN
    RAISE EXCEPTION 'the lease has expired and cannot be renewed';
  END IF;
  EXECUTE format('ALTER ROLE %I VALID UNTIL %L', {name}, {until});
END
"""


def check_name(name: str) -> None:
    """A lease account must carry lockstep's lease prefix and be a storable role name."""
    if not name.startswith(LEASE_PREFIX) or name == LEASE_PREFIX:
        raise GrammarError(
            f"lease account {name!r}: lease accounts are named {LEASE_PREFIX}<id>, "
            "so that the reaper finds them even when their record is lost"
        )
    grammar.check_account(name)


def check_prefix(prefix: str) -> None:
    """Listing by a shorter prefix would report, and let the reaper drop, ordinary roles."""
    if not prefix.startswith(LEASE_PREFIX):
        raise GrammarError(f"lease prefix {prefix!r} must start with {LEASE_PREFIX!r}")


def valid_until(expires_at: datetime) -> sql.Literal:
    """The expiry as VALID UNTIL takes it: a string constant, in UTC."""
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise GrammarError(f"lease expiry {expires_at.isoformat()} has no time zone")
    return sql.Literal(expires_at.astimezone(UTC).isoformat())


def scram_verifier(secret: Secret, iterations: int) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``secret`` (RFC 5802, RFC 7677).

    Computed here rather than with libpq's ``PQencryptPasswordConn``, which first asks the
    server for ``password_encryption`` (a round trip) and hashes about three times slower.
    """
    return scram_material(secret, iterations)[0]


def scram_material(secret: Secret, iterations: int) -> tuple[str, Secret, Secret]:
    """The verifier of ``secret``, and the client and server keys (base64) it was made from:
    what a client holding them logs in with without computing PBKDF2 again (libpq 18's
    ``scram_client_key`` and ``scram_server_key``). The keys log in as well as the password
    does: they are secrets too."""
    password = secret.reveal()
    if len(password) < MIN_SECRET_LENGTH or not _PRINTABLE_ASCII.fullmatch(password):
        raise GrammarError(
            f"a lease secret must be at least {MIN_SECRET_LENGTH} printable ASCII characters"
        )
    salt = secrets.token_bytes(_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    verifier = f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"
    return verifier, Secret(_b64(client_key)), Secret(_b64(server_key))


def issue_statements(
    name: str, verifier: str, expires_at: datetime, grants: Iterable[sql.Composable]
) -> sql.Composed:
    """Every statement of one lease, to be sent as a single message (one transaction)."""
    role = sql.Identifier(name)
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL {}").format(
        role, sql.Literal(verifier), valid_until(expires_at)
    )
    comment = sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(LEASE_MARKER))
    return sql.SQL("; ").join([create, comment, *grants])


def entitlement_checks(
    orders: Sequence[LeaseOrder], present: Iterable[str]
) -> dict[str, list[str | None]]:
    """CHECK_ENTITLEMENTS' parameters for the orders whose role is ``present``: one array
    element per (lease, entitlement)."""
    params: dict[str, list[str | None]] = {
        key: [] for key in ("names", "entitlements", "kinds", "privileges", "first", "second")
    }
    found = set(present)
    for order in orders:
        if order.account not in found:
            continue
        for text in sorted(order.entitlements):
            parsed = grammar.parse(text)
            params["names"].append(order.account)
            params["entitlements"].append(text)
            params["kinds"].append(str(parsed.kind))
            params["privileges"].append(parsed.privilege)
            params["first"].append(parsed.names[0])
            params["second"].append(parsed.names[1] if len(parsed.names) > 1 else None)
    return params


def problems(
    orders: Sequence[LeaseOrder],
    roles: Sequence[tuple[str, bool, datetime | None]],
    missing: Iterable[tuple[str, str]],
) -> dict[str, str]:
    """What is wrong with each ordered lease, from the rows of CHECK_ROLES and of
    CHECK_ENTITLEMENTS."""
    found = {name: (can_login, until) for name, can_login, until in roles}
    lacking: dict[str, list[str]] = {}
    for name, entitlement in missing:
        lacking.setdefault(name, []).append(entitlement)
    wrong: dict[str, str] = {}
    for order in orders:
        if order.account not in found:
            wrong[order.account] = "the role is missing"
            continue
        can_login, until = found[order.account]
        if not can_login:
            wrong[order.account] = "the role cannot log in"
        elif until is None or abs((until - order.expires_at).total_seconds()) > _EXPIRY_TOLERANCE_S:
            shown = "no expiry" if until is None else f"expiry {until.isoformat()}"
            wrong[order.account] = f"the role has {shown}, not {order.expires_at.isoformat()}"
        elif order.account in lacking:
            wrong[order.account] = "not in effect: " + ", ".join(lacking[order.account])
    return wrong


def renew_statement(name: str, until: sql.Literal, conn: psycopg.Connection[Any]) -> sql.Composed:
    # The body is itself a string constant: every value in it is quoted twice, by
    # sql.Literal inside the body and again around the whole body.
    body = sql.SQL(_RENEW).format(name=sql.Literal(name), until=until).as_string(conn)
    return sql.SQL("DO {}").format(sql.Literal(body))


def disable_statements(name: str) -> sql.Composed:
    """NOLOGIN, committed as soon as the message completes, and the role's oid as the
    second result."""
    return sql.SQL("ALTER ROLE {} NOLOGIN; SELECT oid FROM pg_roles WHERE rolname = {}").format(
        sql.Identifier(name), sql.Literal(name)
    )


def drop_statements(name: str, privileged: Iterable[tuple[str, str | None, str]]) -> sql.Composed:
    """Revoke everything the role holds on ``privileged`` objects (rows of
    PRIVILEGED_OBJECTS) and drop it, as one message: one transaction. DROP ROLE ends
    memberships by itself; a privilege anywhere else makes it fail and changes nothing."""
    role = sql.Identifier(name)
    revokes = [
        sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
            _KINDS[kind], sql.Identifier(*(n for n in (schema, obj) if n is not None)), role
        )
        for kind, schema, obj in privileged
    ]
    return sql.SQL("; ").join([*revokes, sql.SQL("DROP ROLE {}").format(role)])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PostgresLeases(PostgresAdmin):
    # PBKDF2 rounds of lease verifiers, from the target's settings.
    _scram_iterations: int

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
        more = f" and {len(orders) - 1} more" if len(orders) > 1 else ""
        doing = f"issue_lease {orders[0].account!r}{more}"
        statements: list[sql.Composable] = []
        for order in orders:
            self._check_lease(order.account, doing)
            try:
                grants = [
                    catalog.privilege_statement(Op.GRANT, grammar.parse(e), order.account)
                    for e in sorted(order.entitlements)
                ]
                verifier = scram_verifier(order.secret, self._scram_iterations)
                statements.append(
                    issue_statements(order.account, verifier, order.expires_at, grants)
                )
            except GrammarError as exc:
                raise ActionFailed(f"{doing}: {exc}") from None
        with self._acting(doing):
            self._execute_retrying(sql.SQL("; ").join(statements))
        return [Credential(username=order.account, secret=order.secret) for order in orders]

    def lease_problems(self, orders: Sequence[LeaseOrder]) -> dict[str, str]:
        names = [order.account for order in orders]
        with self._acting(f"read back {len(names)} lease(s)"), self._conn.transaction():
            roles = self._conn.execute(CHECK_ROLES, {"names": names}).fetchall()
            checks = entitlement_checks(orders, (row[0] for row in roles))
            missing = self._conn.execute(CHECK_ENTITLEMENTS, checks).fetchall()
        return problems(orders, roles, missing)

    def renew_lease(self, lease_account: str, expires_at: datetime) -> None:
        """A new VALID UNTIL; a lease already past its own cannot be renewed."""
        doing = f"renew_lease {lease_account!r}"
        self._check_lease(lease_account, doing)
        try:
            until = valid_until(expires_at)
        except GrammarError as exc:
            raise ActionFailed(f"{doing}: {exc}") from None
        with self._acting(doing):
            self._conn.execute(renew_statement(lease_account, until, self._conn))

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
                    f"{doing}: the lease role owns {len(owned)} object(s) ({first(owned)}); "
                    "it can no longer log in and its sessions are ended, but lockstep never "
                    "drops or reassigns objects: reassign them, then revoke again"
                )
            privileged = self._conn.execute(PRIVILEGED_OBJECTS, {"oid": oid}).fetchall()
            self._execute_retrying(drop_statements(name, privileged))
            # A login that passed authentication just before NOLOGIN may have started since.
            self._end_sessions(name, oid)

    def _disable(self, name: str) -> int | None:
        """NOLOGIN now, committed; the role's oid, or None when there is no such role."""
        try:
            cursor = self._conn.execute(disable_statements(name), prepare=False)
        except psycopg.errors.UndefinedObject:
            return None
        cursor.nextset()
        row = cursor.fetchone()
        return None if row is None else int(row[0])

    def list_leases(self, prefix: str) -> list[LeaseAccount]:
        try:
            check_prefix(prefix)
        except GrammarError as exc:
            raise ActionFailed(str(exc)) from None
        params = {"prefix": prefix, "excluded": sorted(self._scope.excluded)}
        try:
            rows = self._conn.execute(LIST, params).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot list leases", exc) from None
        return [LeaseAccount(name, expires_at) for name, expires_at in rows]

    def _check_lease(self, name: str, doing: str) -> None:
        try:
            check_name(name)
        except GrammarError as exc:
            raise ActionFailed(f"{doing}: {exc}") from None
        self._guard(name)
