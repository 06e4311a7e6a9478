"""What a PostgreSQL session reads for escalation paths: five catalog queries in one
REPEATABLE READ transaction, their rows turned into ``lockstep.paths.postgres`` facts.

Every role is read (not only those in scope): a chain may pass through a role lockstep never
manages. The server's own checks (``pg_has_role``, ``has_table_privilege``,
``has_function_privilege``) are asked alongside, so the facts say what the server confirms.

``pg_has_role`` is asked of the memberships on further connections that share the reading
transaction's snapshot (``pg_export_snapshot``), ``CONFIRM_CHUNK`` members each: a backend
searches its cached membership lists one by one (PostgreSQL 15), so asking it about 100,000
members costs the square of that, 67 s against 1.7 s in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from lockstep.connectors.postgres.admin import PostgresAdmin
from lockstep.connectors.postgres.catalog import Conn
from lockstep.paths.graph import PathRequest
from lockstep.paths.postgres import (
    PG16,
    PUBLIC,
    READS_ALL,
    PgDefiner,
    PgGrantee,
    PgMembership,
    PgRole,
    PgSecretTable,
    PgWrittenBy,
    PostgresFacts,
)

ROLES = """
SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles
"""
# Before PostgreSQL 16 a grant has no inherit or set option: the member's rolinherit decides
# inheritance, and any member may SET ROLE.
MEMBERSHIPS = """
SELECT a.member, a.roleid, m.rolname, r.rolname, a.admin_option, {inherit}, {set}
FROM pg_auth_members a
JOIN pg_roles m ON m.oid = a.member
JOIN pg_roles r ON r.oid = a.roleid
ORDER BY a.member
"""
CONFIRMED = """
SELECT a.member, a.roleid, pg_has_role(a.member, a.roleid, 'MEMBER'),
       pg_has_role(a.member, a.roleid, 'MEMBER WITH ADMIN OPTION')
FROM pg_auth_members a
WHERE a.member = ANY(%s::oid[])
"""
CONFIRM_CHUNK = 5000
_OPTIONS = {True: ("a.inherit_option", "a.set_option"), False: ("m.rolinherit", "true")}
READERS = """
WITH wanted AS (
    SELECT * FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(nsp, rel)
), found AS (
    SELECT w.nsp, w.rel, c.oid, c.relowner, c.relacl
    FROM wanted w
    JOIN pg_namespace n ON n.nspname = w.nsp
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel
)
SELECT f.nsp, f.rel, o.rolname, g.grantee, g.confirmed
FROM found f
JOIN pg_roles o ON o.oid = f.relowner
LEFT JOIN LATERAL (
    SELECT coalesce(r.rolname, '') AS grantee,
           has_table_privilege(coalesce(r.rolname, 'public'), f.oid, 'SELECT') AS confirmed
    FROM aclexplode(coalesce(f.relacl, acldefault('r', f.relowner))) p
    LEFT JOIN pg_roles r ON r.oid = p.grantee
    WHERE p.privilege_type = 'SELECT' AND p.grantee <> f.relowner
  UNION ALL
    SELECT %(reads_all)s, has_table_privilege(%(reads_all)s, f.oid, 'SELECT')
) g ON true
"""
DEFINERS = """
SELECT p.oid::regprocedure::text, o.rolname, coalesce(g.rolname, ''),
       has_function_privilege(coalesce(g.rolname, 'public'), p.oid, 'EXECUTE')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_roles o ON o.oid = p.proowner
CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
LEFT JOIN pg_roles g ON g.oid = a.grantee
WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
"""
WRITTEN = """
SELECT o.rolname, g.rolname, count(DISTINCT c.oid),
       min(quote_ident(n.nspname) || '.' || quote_ident(c.relname))
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_roles o ON o.oid = c.relowner
CROSS JOIN LATERAL unnest(c.relacl) item
CROSS JOIN LATERAL aclexplode(ARRAY[item]) p
JOIN pg_roles g ON g.oid = p.grantee
WHERE c.relkind IN ('r', 'p') AND p.grantee <> c.relowner
  AND p.privilege_type IN ('INSERT', 'UPDATE', 'DELETE')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
GROUP BY o.rolname, g.rolname
"""


class PostgresPaths(PostgresAdmin):
    _secret_tables: tuple[tuple[str, str], ...] = ()
    _connect_more: Callable[[], Conn]  # another admin connection to the same target

    def read_paths(self, request: PathRequest) -> PostgresFacts:
        schemas = [s for s, _ in self._secret_tables]
        tables = [t for _, t in self._secret_tables]
        try:
            with self._conn.transaction():
                version = int(self._conn.info.server_version)
                inherit, set_ = _OPTIONS[version >= PG16]
                roles = self._conn.execute(ROLES).fetchall()
                snapshot = self._conn.execute("SELECT pg_export_snapshot()").fetchone()
                members = self._conn.execute(
                    MEMBERSHIPS.format(inherit=inherit, set=set_)
                ).fetchall()
                assert snapshot is not None
                confirmed = self._confirm(str(snapshot[0]), [row[0] for row in members])
                secret = self._conn.execute(
                    READERS, {"schemas": schemas, "tables": tables, "reads_all": READS_ALL}
                ).fetchall()
                definers = self._conn.execute(DEFINERS).fetchall()
                written = self._conn.execute(WRITTEN).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot read the catalogs for escalation paths", exc) from None
        found = {(row[0], row[1]) for row in secret}
        return PostgresFacts(
            target=self._target,
            version=version,
            admin=self._admin,
            roles=tuple(PgRole(*row) for row in roles),
            memberships=tuple(_membership(row, confirmed) for row in members),
            secret_tables=_secret_tables(secret),
            definers=_definers(definers),
            written=tuple(PgWrittenBy(*row) for row in written),
            missing_tables=tuple(f"{s}.{t}" for s, t in self._secret_tables if (s, t) not in found),
        )

    def _confirm(
        self, snapshot: str, members: list[int]
    ) -> dict[tuple[int, int], tuple[bool, bool]]:
        """``pg_has_role`` of every membership row of ``members`` (sorted), asked in chunks
        on connections that see the reading transaction's own snapshot."""
        distinct = sorted(set(members))
        confirmed: dict[tuple[int, int], tuple[bool, bool]] = {}
        for start in range(0, len(distinct), CONFIRM_CHUNK):
            with self._connect_more() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                for member, role, is_member, is_admin in conn.execute(
                    CONFIRMED, (distinct[start : start + CONFIRM_CHUNK],)
                ):
                    confirmed[member, role] = (bool(is_member), bool(is_admin))
        return confirmed


def _membership(
    row: Sequence[Any], confirmed: dict[tuple[int, int], tuple[bool, bool]]
) -> PgMembership:
    member_oid, role_oid, member, role, admin, inherit, set_ = row
    is_member, is_admin = confirmed.get((int(member_oid), int(role_oid)), (False, False))
    return PgMembership(
        str(member), str(role), bool(admin), bool(inherit), bool(set_), is_member, is_admin
    )


def _secret_tables(rows: Sequence[Sequence[object]]) -> tuple[PgSecretTable, ...]:
    owners: dict[str, str] = {}
    readers: dict[str, list[PgGrantee]] = {}
    for schema, table, owner, grantee, confirmed in rows:
        name = f"{schema}.{table}"
        owners[name] = str(owner)
        if grantee is not None:
            readers.setdefault(name, []).append(PgGrantee(str(grantee), bool(confirmed)))
    return tuple(
        PgSecretTable(name, owner, tuple(readers.get(name, ())))
        for name, owner in sorted(owners.items())
    )


def _definers(rows: Sequence[Sequence[object]]) -> tuple[PgDefiner, ...]:
    grouped: dict[tuple[str, str], list[PgGrantee]] = {}
    for function, owner, grantee, confirmed in rows:
        role = PUBLIC if grantee == "" else str(grantee)
        grouped.setdefault((str(function), str(owner)), []).append(PgGrantee(role, bool(confirmed)))
    return tuple(PgDefiner(f, o, tuple(g)) for (f, o), g in sorted(grouped.items()))
