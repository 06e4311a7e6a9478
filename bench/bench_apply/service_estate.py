"""The estate of the service-pass figure: many managed PostgreSQL accounts, each a member of
one of 50 groups and granted SELECT on one of 100 tables, and the drift made out of band."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.model import Access, Identity, Owner, OwnerStatus, Policy, Target
from lockstep.secret import Secret

GROUPS, TABLES, CHUNK = 50, 100, 2000


class ServiceEstate:
    def __init__(self, pg: Any, accounts: int) -> None:
        self.pg = pg
        self.names = [f"acct{i:06d}" for i in range(accounts)]

    def _held(self, i: int) -> tuple[str, str]:
        return f"g{i % GROUPS:02d}", f"t{i % TABLES:03d}"

    def policy(self) -> Policy:
        settings = PostgresSettings.model_validate({"dsn": Secret(self.pg.dsn("estate"))})
        target = Target("estate-db", "postgres", None, frozenset(), False, settings)
        identities = {}
        for i, name in enumerate(self.names):
            group, table = self._held(i)
            entitlements = frozenset({f"role:{group}", f"SELECT on table public.{table}"})
            access = (Access(target.name, name, entitlements, None),)
            identities[name] = Identity(name, "team", "bench", None, access)
        return Policy(
            targets={target.name: target},
            owners={"team": Owner("team", ("bench@example.com",), OwnerStatus.ACTIVE)},
            identities=identities,
        )

    def _run(self, statements: list[sql.Composed]) -> None:
        with psycopg.connect(self.pg.dsn("estate"), autocommit=True) as conn:
            for start in range(0, len(statements), CHUNK):
                conn.execute(sql.SQL("; ").join(statements[start : start + CHUNK]), prepare=False)

    def build(self) -> None:
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE estate")
        made: list[sql.Composed] = []
        made += [
            sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"g{g:02d}"))
            for g in range(GROUPS)
        ]
        made += [
            sql.SQL("CREATE TABLE public.{} (id int)").format(sql.Identifier(f"t{t:03d}"))
            for t in range(TABLES)
        ]
        for i, name in enumerate(self.names):
            role = sql.Identifier(name)
            group, table = self._held(i)
            made.append(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            made.append(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), role))
            made.append(
                sql.SQL("GRANT SELECT ON public.{} TO {}").format(sql.Identifier(table), role)
            )
        self._run(made)

    def drift(self) -> None:
        """1 %: half of it an out-of-band grant (to revoke), half a membership taken away
        (to grant back)."""
        step = 100
        changed: list[sql.Composed] = []
        for n, i in enumerate(range(0, len(self.names), step)):
            role = sql.Identifier(self.names[i])
            group = self._held(i)[0]
            if n % 2:
                changed.append(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), role))
            else:
                other = sql.Identifier(f"t{(i + 1) % TABLES:03d}")
                changed.append(sql.SQL("GRANT SELECT ON public.{} TO {}").format(other, role))
        self._run(changed)
