"""What a PostgreSQL session observes cheaply between full reads: who is using the server
now (``pg_stat_activity``), and a token that changes whenever a read would differ.

Both are single queries over the catalogs, readable by any role: no extension, no superuser.
``PostgresUsage`` is the session's part that runs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg import sql

from lockstep.connectors.base import TargetUnreachable, Usage
from lockstep.connectors.postgres import catalog
from lockstep.connectors.postgres.admin import PostgresAdmin, first
from lockstep.model import LEASE_PREFIX

# The application name of lockstep's probes, whose sessions are not use.
PROBE_APPLICATION = "lockstep-probe"

# Per in-scope account, when it was last seen using the server. A session running a
# statement or holding a transaction open is in use now; an idle one was last used when its
# last statement ended (state_change). Without track_activities the state is 'disabled' and
# only the login time is known. Lockstep's own probes are not use.
USAGE = """
WITH acct AS ({roles})
SELECT a.rolname,
       max(CASE WHEN s.state = 'idle' THEN coalesce(s.state_change, s.backend_start)
                WHEN s.state IN ('active', 'fastpath function call')
                     OR s.state LIKE 'idle in transaction%%' THEN now()
                ELSE s.backend_start END),
       bool_or(s.backend_start IS NULL)
FROM acct a
JOIN pg_stat_activity s ON s.usesysid = a.oid
WHERE s.pid <> pg_backend_pid() AND s.application_name IS DISTINCT FROM %(probe)s
GROUP BY a.rolname
"""

# One row of per-catalog summaries: a row count and an order-independent 64-bit hash of
# every row (XOR of per-row hashes, each seeded with the row's own key so rows never cancel)
# of exactly what a read renders: role names, login flag, expiry and comments; memberships;
# and the ACLs, names and owners of tables, schemas and databases. Content hashes, not xmin:
# pg_authid's xmin is hidden from non-superusers, and a rewrite (TRUNCATE, VACUUM FULL) or
# an unrelated temp table would change xmins without changing anything a read reports.
# The count of roles past their VALID UNTIL makes the token change when an expiry passes,
# which a read reports as the account no longer enabled. Lease roles, their comments and
# memberships are left out: they come and go by the thousand, and they are the lease
# reaper's, never the plan's. Lease memberships are XORed back out of the hash of all of
# them: a plain scan plus an index lookup per lease costs half of filtering every row.
CATALOG_SUMMARY = """
WITH lease AS (SELECT oid FROM pg_roles WHERE starts_with(rolname, %(lease_prefix)s))
SELECT * FROM
  (SELECT count(*),
          count(*) FILTER (WHERE rolvaliduntil <= now()),
          bit_xor(hashtextextended(rolname, oid::int8 | (rolcanlogin::int::int8 << 32))
                  # coalesce(hashfloat8extended(date_part('epoch', rolvaliduntil), oid::int8), 0))
   FROM pg_roles WHERE NOT starts_with(rolname, %(lease_prefix)s)) roles,
  (SELECT count(*), bit_xor(hashtextextended(description, objoid::int8))
   FROM pg_shdescription
   WHERE classoid = 'pg_authid'::regclass AND objoid NOT IN (SELECT oid FROM lease)) comments,
  (SELECT every.n - leased.n, every.h # coalesce(leased.h, 0) FROM
     (SELECT count(*) AS n,
             bit_xor(hashoidextended(member, (roleid::int8 << 32) | grantor::int8)) AS h
      FROM pg_auth_members) every,
     (SELECT count(*) AS n,
             bit_xor(hashoidextended(member, (roleid::int8 << 32) | grantor::int8)) AS h
      FROM pg_auth_members JOIN lease ON member = lease.oid) leased) memberships,
  (SELECT count(*),
          bit_xor(hash_array_extended(relacl, oid::int8)
                  # hashtextextended(relname, (relnamespace::int8 << 32) | relowner::int8))
   FROM pg_class
   WHERE relacl IS NOT NULL AND relkind IN ('r', 'v', 'm', 'p', 'f')) tables,
  (SELECT count(*),
          bit_xor(coalesce(hash_array_extended(nspacl, oid::int8), 0)
                  # hashtextextended(nspname, (oid::int8 << 32) | nspowner::int8))
   FROM pg_namespace) schemas,
  (SELECT count(*),
          bit_xor(coalesce(hash_array_extended(datacl, oid::int8), 0)
                  # hashtextextended(datname, (oid::int8 << 32) | datdba::int8))
   FROM pg_database) databases
"""


def token(summary: Sequence[object]) -> str:
    """The change token: a short digest of the catalog summaries, opaque to callers."""
    text = "|".join(map(str, summary))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class PostgresUsage(PostgresAdmin):
    def change_token(self) -> str:
        try:
            summary = self._conn.execute(CATALOG_SUMMARY, {"lease_prefix": LEASE_PREFIX}).fetchone()
        except psycopg.Error as exc:
            raise self._unreachable("cannot compute the change token", exc) from None
        assert summary is not None
        return token(summary)

    def observe_usage(self) -> list[Usage]:
        roles = sql.SQL(catalog.ROLES).format(which=sql.SQL(catalog.IN_SCOPE))
        params = {**self._scope_params(), "probe": PROBE_APPLICATION}
        try:
            rows = self._conn.execute(sql.SQL(USAGE).format(roles=roles), params).fetchall()
        except psycopg.Error as exc:
            raise self._unreachable("cannot read pg_stat_activity", exc) from None
        hidden = sorted(name for name, _, unseen in rows if unseen)
        if hidden:
            # An account whose sessions cannot be dated must not look dormant.
            raise TargetUnreachable(
                f"target {self._target}: cannot see when {len(hidden)} account(s) "
                f"({first(hidden)}) "
                "last used their sessions: grant the admin pg_read_all_stats"
            )
        return [Usage(name, last_used, source="pg_stat_activity") for name, last_used, _ in rows]
