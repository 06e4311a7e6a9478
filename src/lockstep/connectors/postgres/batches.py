"""Batches on PostgreSQL: many changes in one transaction, read back in one catalog read.

A batch's statements travel as one simple-protocol message, which PostgreSQL runs as one
implicit transaction: a round trip and a commit for hundreds of GRANTs, REVOKEs or ALTER
ROLEs. What would fail one change for certain (an excluded role, a role that is missing or
already there, an entitlement the grammar cannot express, a role that owns objects) is found
by one catalog query first and fails that change alone; if the transaction fails all the
same, it left nothing behind, and the changes are tried again one per transaction, so that
the one that fails is found and fails alone. Sessions of suspended and deleted roles are
ended together once the transaction has committed.

Verifiers are computed here (``leases.scram_verifier``: no round trip, and about three times
faster than libpq's), at PostgreSQL's own 4096 PBKDF2 rounds for the credentials workloads
use (``scram_iterations`` in the target's settings). A suspension password is one nobody is
ever given: its verifier takes few rounds, since rounds only slow the guessing of a weak
password and this one is 32 random characters. What that buys is that every later proof
that the account refuses a credential (its suspension password, the one it had before)
costs a login of a few rounds instead of 4096, and so does the server's own check of the
verifier when it is set.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Final

import psycopg
from psycopg import sql

from lockstep.connectors.base import (
    ActionFailed,
    Change,
    ConnectorError,
    Credential,
    GrammarError,
    Outcome,
    TargetUnreachable,
)
from lockstep.connectors.postgres import catalog, grammar
from lockstep.connectors.postgres.admin import SESSION_END_TIMEOUT_S, PostgresAdmin, first
from lockstep.connectors.postgres.keys import ProbeKeys
from lockstep.connectors.postgres.leases import DEFAULT_SCRAM_ITERATIONS, scram_material
from lockstep.connectors.postgres.transform import transform
from lockstep.model import Account, Op
from lockstep.secret import Secret

SUSPENSION_SCRAM_ITERATIONS: Final = 16
# Below this, computing PBKDF2 again at the probe costs less than keeping its keys.
KEYED_PROBE_ROUNDS: Final = 1024
# At most this many probes (each a process the server forks) at once, fewer when the server
# has few connection slots left.
MAX_PROBE_SLOTS: Final = 4
NAMES = "r.rolname IN (SELECT unnest(%(names)s::text[]))"
_ROLES = """
SELECT r.rolname, r.oid, coalesce(r.rolvaliduntil <= now(), false),
       EXISTS (SELECT FROM pg_shdepend s WHERE s.refclassid = 'pg_authid'::regclass
               AND s.refobjid = r.oid AND s.deptype = 'o')
FROM pg_roles r WHERE r.rolname IN (SELECT unnest(%(names)s::text[]))
"""
_SLOTS = """
SELECT current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
"""
_TERMINATE_MANY = """
SELECT s.usesysid, count(pg_terminate_backend(s.pid)) FROM pg_stat_activity s
WHERE s.usesysid IN (SELECT unnest(%(oids)s::oid[])) AND s.pid <> pg_backend_pid()
GROUP BY s.usesysid
"""
# Operations on a role that must already exist, and those that end its sessions after.
_EXISTING = frozenset(Op) - {Op.CREATE_ACCOUNT}
_ENDING = frozenset({Op.SUSPEND_ACCOUNT, Op.END_SESSIONS, Op.DELETE_ACCOUNT})
# Operations that leave the role with the change's secret as its credential.
_SETS = frozenset({Op.CREATE_ACCOUNT, Op.SUSPEND_ACCOUNT, Op.RESTORE_ACCOUNT, Op.ROTATE_CREDENTIAL})


class _Role:
    """What the catalog says of one role a batch changes."""

    def __init__(self, oid: int, expired: bool, owns: bool) -> None:
        self.oid, self.expired, self.owns = oid, expired, owns


class PostgresBatches(PostgresAdmin):
    # PBKDF2 rounds of the verifiers of workloads' passwords, from the target's settings.
    _account_scram_iterations: int = DEFAULT_SCRAM_ITERATIONS
    # The keys of the passwords this session set, for the probes that prove them.
    keys: ProbeKeys

    def read_accounts(self, accounts: Collection[str]) -> dict[str, Account | None]:
        try:
            rows = catalog.read_rows(self._conn, sql.SQL(NAMES), {"names": sorted(accounts)})
        except psycopg.Error as exc:
            raise self._unreachable("cannot read", exc) from None
        found = transform(self._target, *rows).accounts
        return {name: found.get(name) for name in accounts}

    def probe_slots(self) -> int:
        try:
            row = self._conn.execute(_SLOTS).fetchone()
        except psycopg.Error:
            return 1  # unknown: the safe answer
        free = int(row[0]) if row is not None and row[0] is not None else 1
        return max(1, min(MAX_PROBE_SLOTS, free // 2))

    def apply_batch(self, changes: Sequence[Change]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(changes)
        deleted = [c.account for c in changes if c.op is Op.DELETE_ACCOUNT]
        try:
            roles = self._roles([c.account for c in changes])
            held = self.read_accounts(deleted) if deleted else {}
        except TargetUnreachable as exc:
            return [exc] * len(changes)
        statements: dict[int, sql.Composed] = {}
        for index, change in enumerate(changes):
            try:
                statements[index] = self._statements(change, roles.get(change.account), held)
            except ActionFailed as exc:
                outcomes[index] = exc
        try:
            self._execute_retrying(sql.SQL("; ").join(statements.values()))
        except psycopg.Error as exc:
            if self._conn.broken or self._conn.closed:
                lost = self._unreachable(
                    f"lost the connection during a batch of {changes[0].op}", exc
                )
                return [lost] * len(changes)
            for index in statements:  # nothing was changed: find which one fails
                outcomes[index] = self._alone(changes[index], statements[index])
        ending = [i for i in statements if changes[i].op in _ENDING and outcomes[i] is None]
        for index, failure in self._end_sessions_of(changes, ending, roles).items():
            outcomes[index] = failure
        for index, change in enumerate(changes):
            if outcomes[index] is None and change.secret is not None and change.op in _SETS:
                outcomes[index] = Credential(change.account, change.secret)
        return outcomes

    # ------------------------------------------------------------ before

    def _roles(self, names: Sequence[str]) -> dict[str, _Role]:
        try:
            rows = self._conn.execute(_ROLES, {"names": sorted(set(names))}).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot read the roles of a batch", exc) from None
        return {
            name: _Role(int(oid), bool(expired), bool(owns)) for name, oid, expired, owns in rows
        }

    def _statements(
        self, change: Change, role: _Role | None, held: Mapping[str, Account | None]
    ) -> sql.Composed:
        """The change's statements, or ActionFailed for a change that cannot succeed."""
        account, op = change.account, change.op
        doing = f"{op} {account!r}" + (f" {change.entitlement!r}" if change.entitlement else "")
        self._guard(account)
        if op is Op.CREATE_ACCOUNT and role is not None:
            raise ActionFailed(f"{doing}: role {account!r} already exists")
        if op in _EXISTING and role is None:
            raise ActionFailed(f"{doing}: role {account!r} does not exist on {self._target}")
        name = sql.Identifier(account)
        if op in (Op.GRANT, Op.REVOKE):
            try:
                parsed = grammar.parse(change.entitlement or "")
            except GrammarError as exc:
                raise ActionFailed(f"{doing}: {exc}") from None
            return catalog.privilege_statement(op, parsed, account)
        if op is Op.END_SESSIONS:
            return sql.Composed([sql.SQL("SELECT 1")])
        if op is Op.DELETE_ACCOUNT:
            return self._drop(account, doing, role, held.get(account))
        secret = change.secret
        if secret is None:
            raise ActionFailed(f"{doing}: no new secret given")
        verifier = self.verifier(account, secret, op)
        template = {
            Op.CREATE_ACCOUNT: "CREATE ROLE {} LOGIN PASSWORD {}",
            Op.SUSPEND_ACCOUNT: "ALTER ROLE {} NOLOGIN PASSWORD {}",
            Op.RESTORE_ACCOUNT: "ALTER ROLE {} LOGIN PASSWORD {}",
            Op.ROTATE_CREDENTIAL: "ALTER ROLE {} PASSWORD {}",
        }[op]
        parts = [sql.SQL(template).format(name, verifier)]
        if op in (Op.CREATE_ACCOUNT, Op.SUSPEND_ACCOUNT):
            parts.append(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(name, sql.Literal(catalog.MARKER))
            )
        if op is Op.RESTORE_ACCOUNT and role is not None and role.expired:
            # An expired VALID UNTIL would keep the restored account unusable; a future one
            # is someone's deliberate limit and stays.
            parts.append(sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(name))
        return sql.SQL("; ").join(parts)

    def _drop(
        self, account: str, doing: str, role: _Role | None, held: Account | None
    ) -> sql.Composed:
        """Revoke what the role holds and drop it, in the batch's transaction: a DROP that
        fails leaves the role exactly as it was."""
        if role is not None and role.owns:
            owned = [r[0] for r in self._conn.execute(catalog.OWNED, (role.oid,)).fetchall()]
            raise ActionFailed(
                f"{doing}: the role owns {len(owned)} object(s) ({first(owned)}); "
                "lockstep never drops or reassigns objects: reassign them, then delete"
            )
        revokes = [
            catalog.privilege_statement(Op.REVOKE, grammar.parse(text), account)
            for text in sorted(held.entitlements if held else ())
        ]
        return sql.SQL("; ").join(
            [*revokes, sql.SQL("DROP ROLE {}").format(sql.Identifier(account))]
        )

    def verifier(self, name: str, secret: Secret, op: Op) -> sql.Literal:
        """The password as the server stores it (SCRAM), never the password."""
        suspended = op is Op.SUSPEND_ACCOUNT
        rounds = SUSPENSION_SCRAM_ITERATIONS if suspended else self._account_scram_iterations
        try:
            verifier, client_key, server_key = scram_material(secret, rounds)
        except GrammarError:
            # Not a generated password (short, or not printable ASCII, which SASLprep would
            # normalise): libpq's own hashing applies the rules.
            hashed = self._conn.pgconn.encrypt_password(
                secret.reveal().encode(), name.encode(), None
            )
            return sql.Literal(hashed.decode("ascii"))
        if rounds >= KEYED_PROBE_ROUNDS:
            self.keys.remember(secret, client_key, server_key)
        return sql.Literal(verifier)

    # ------------------------------------------------------------ after

    def _alone(self, change: Change, statements: sql.Composed) -> ConnectorError | None:
        doing = f"{change.op} {change.account!r}" + (
            f" {change.entitlement!r}" if change.entitlement else ""
        )
        try:
            with self._acting(doing):
                self._execute_retrying(statements)
        except ConnectorError as exc:
            return exc
        return None

    def _end_sessions_of(
        self, changes: Sequence[Change], indices: Sequence[int], roles: dict[str, _Role]
    ) -> dict[int, ConnectorError]:
        """End the open sessions of every role in ``indices`` together (NOLOGIN and DROP ROLE
        stop new logins only); the changes whose sessions outlive the wait fail."""
        oids = {roles[changes[i].account].oid: i for i in indices if changes[i].account in roles}
        if not oids:
            return {}
        deadline = time.monotonic() + SESSION_END_TIMEOUT_S
        left: dict[int, int] = {}
        try:
            with self._acting(f"ending the sessions of {len(oids)} role(s)"):
                while True:
                    left = dict(
                        self._conn.execute(_TERMINATE_MANY, {"oids": list(oids)}).fetchall()
                    )
                    left = {oid: n for oid, n in left.items() if n}
                    if not left or time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
        except ConnectorError as exc:
            return {i: exc for i in oids.values()}
        return {
            oids[oid]: ActionFailed(
                f"{n} session(s) of {changes[oids[oid]].account!r} still open after "
                f"{SESSION_END_TIMEOUT_S:g}s (does the admin have pg_signal_backend?)"
            )
            for oid, n in left.items()
        }
