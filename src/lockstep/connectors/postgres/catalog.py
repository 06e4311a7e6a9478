"""What the PostgreSQL connector reads from the catalog and how it writes grants: the catalog
queries (their rows become a snapshot in ``transform``) and the GRANT and REVOKE statements
built from the grammar. The session runs them and turns driver errors into the connector's.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from lockstep.connectors.postgres import grammar
from lockstep.model import Op

Conn = psycopg.Connection[TupleRow]

# The comment on every role lockstep creates: a suspended one (NOLOGIN) stays in scope by it.
MARKER = "managed by lockstep"

ROLES = """
SELECT r.oid, r.rolname, r.rolcanlogin, r.rolvaliduntil, r.rolsuper, r.rolreplication
FROM pg_roles r
LEFT JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
WHERE {which}
"""
# Declared and excluded names go through IN (subquery) so that they are hashed once, not
# compared row by row against every role. A role bearing the lease prefix stays in scope when
# it cannot log in: the prefix is lockstep's, and one lockstep never issued is an impostor.
IN_SCOPE = """
r.rolname !~ '^pg_' AND r.rolname <> session_user
AND r.rolname NOT IN (SELECT unnest(%(excluded)s::text[]))
AND (r.rolcanlogin OR d.description = %(marker)s
     OR left(r.rolname, length(%(lease_prefix)s)) = %(lease_prefix)s
     OR r.rolname IN (SELECT unnest(%(declared)s::text[])))
"""
NAMED = "r.rolname = %(name)s"
# psycopg cannot load infinite or year-10000 timestamps: from 9999 on an expiry is "never",
# and -infinity is "long ago". The last column says why a role is privileged: superusers,
# replication roles, and the roles the admin connection depends on (those it is a member
# of, however indirectly, and the owner of the database it connects to) are never acted on
# unless declared. Membership is read from pg_auth_members: pg_has_role counts a superuser a
# member of every role.
ACCOUNTS = """
WITH RECURSIVE acct AS ({roles}),
admin_roles(oid) AS (
    SELECT m.roleid FROM pg_auth_members m
    WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = session_user)
  UNION
    SELECT m.roleid FROM pg_auth_members m JOIN admin_roles r ON m.member = r.oid
)
SELECT a.rolname,
       a.rolcanlogin,
       coalesce(a.rolvaliduntil <= now(), false),
       CASE WHEN a.rolvaliduntil IS NULL OR a.rolvaliduntil >= '9999-12-31 00:00+00' THEN NULL
            ELSE greatest(a.rolvaliduntil, '0001-01-01 00:00+00') END,
       coalesce(s.n, 0),
       CASE WHEN a.rolsuper THEN 'superuser'
            WHEN a.rolreplication THEN 'replication role'
            WHEN a.oid IN (SELECT oid FROM admin_roles)
                THEN 'the admin connection is a member of it'
            WHEN a.oid = (SELECT datdba FROM pg_database WHERE datname = current_database())
                THEN 'owns the database the admin connects to'
       END
FROM acct a
LEFT JOIN (SELECT usesysid, count(*) AS n FROM pg_stat_activity GROUP BY usesysid) s
       ON s.usesysid = a.oid
"""
# An owner's implicit privileges are ownership, not grants: they are left out whether or
# not the ACL spells them out. Grants to PUBLIC (grantee 0) match no account.
# aclexplode re-reads its whole ACL for every row it returns (quadratic in an ACL's length on
# PostgreSQL 15): exploding one item at a time returns the same rows about 3x faster.
GRANTS = """
WITH acct AS ({roles})
SELECT a.rolname, g.kind, g.privilege, g.ns, g.obj
FROM (
    SELECT m.member AS grantee, 'role' AS kind, NULL AS privilege, NULL AS ns, o.rolname AS obj
    FROM pg_auth_members m JOIN pg_roles o ON o.oid = m.roleid
  UNION ALL
    SELECT p.grantee, 'table', p.privilege_type, n.nspname, c.relname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL unnest(c.relacl) item
    CROSS JOIN LATERAL aclexplode(ARRAY[item]) p
    WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND p.grantee <> c.relowner
  UNION ALL
    SELECT p.grantee, 'schema', p.privilege_type, NULL, n.nspname
    FROM pg_namespace n
    CROSS JOIN LATERAL unnest(n.nspacl) item
    CROSS JOIN LATERAL aclexplode(ARRAY[item]) p
    WHERE p.grantee <> n.nspowner
  UNION ALL
    SELECT p.grantee, 'database', p.privilege_type, NULL, d.datname
    FROM pg_database d
    CROSS JOIN LATERAL unnest(d.datacl) item
    CROSS JOIN LATERAL aclexplode(ARRAY[item]) p
    WHERE p.grantee <> d.datdba
) g
JOIN acct a ON a.oid = g.grantee
"""
# Whether each object the policy grants exists, and for tables the size of the pg_class row
# that holds its ACL: that row cannot outgrow a page (PostgreSQL refuses a grant with "row is
# too big"; schemas and databases have TOAST tables, so their ACLs have no such limit).
OBJECTS = """
SELECT w.kind, w.ns, w.name,
       CASE w.kind
         WHEN 'role' THEN (SELECT 0 FROM pg_roles WHERE rolname = w.name)
         WHEN 'table' THEN (
           SELECT pg_column_size(c.*) FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = w.ns AND c.relname = w.name AND c.relkind IN ('r','v','m','p','f'))
         WHEN 'schema' THEN (SELECT 0 FROM pg_namespace WHERE nspname = w.name)
         WHEN 'database' THEN (SELECT 0 FROM pg_database WHERE datname = w.name)
       END,
       CASE w.kind WHEN 'table' THEN (
           SELECT coalesce(pg_column_size(c.relacl)::float8 / nullif(cardinality(c.relacl), 0), 0)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = w.ns AND c.relname = w.name AND c.relkind IN ('r','v','m','p','f'))
       END,
       current_setting('block_size')::int
FROM unnest(%(kinds)s::text[], %(nss)s::text[], %(names)s::text[]) AS w(kind, ns, name)
"""
OWNED = """
SELECT CASE WHEN s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
            THEN (SELECT o.type || ' ' || o.identity
                  FROM pg_identify_object(s.classid, s.objid, s.objsubid) o)
            ELSE 'an object in database ' || quote_ident(d.datname) END
FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %s AND s.deptype = 'o'
"""
TERMINATE = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE usesysid = %s AND pid <> pg_backend_pid()
"""


def read_rows(
    conn: Conn, which: sql.Composable, params: Mapping[str, object]
) -> tuple[list[TupleRow], list[TupleRow]]:
    """The ACCOUNTS and GRANTS rows of the roles ``which`` selects, read in one transaction:
    on the session's REPEATABLE READ connection, one consistent snapshot. Driver errors
    propagate."""
    roles = sql.SQL(ROLES).format(which=which)
    with conn.transaction():
        accounts = conn.execute(sql.SQL(ACCOUNTS).format(roles=roles), params).fetchall()
        grants = conn.execute(sql.SQL(GRANTS).format(roles=roles), params).fetchall()
    return accounts, grants


def privilege_statement(op: Op, entitlement: grammar.Entitlement, account: str) -> sql.Composed:
    grant = op is Op.GRANT
    grantee = sql.Identifier(account)
    if entitlement.kind is grammar.Kind.ROLE:
        template = "GRANT {} TO {}" if grant else "REVOKE {} FROM {}"
        return sql.SQL(template).format(sql.Identifier(entitlement.names[0]), grantee)
    template = "GRANT {} ON {} {} TO {}" if grant else "REVOKE {} ON {} {} FROM {}"
    # The privilege and kind words come from the grammar's fixed lists, never from input.
    return sql.SQL(template).format(
        sql.SQL(str(entitlement.privilege)),
        sql.SQL(entitlement.kind.upper()),
        sql.Identifier(*entitlement.names),
        grantee,
    )
