"""The estates ``bench/apply.py`` builds: per target type, the target, the entitlements each
identity holds, and the baseline (the same statements lockstep sends, in batches, with no
read-back, no probe and no journal)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from lockstep.connectors.postgres import batches as pg_batches
from lockstep.connectors.postgres.leases import DEFAULT_SCRAM_ITERATIONS, scram_verifier
from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.demo import localpg
from lockstep.model import Target
from lockstep.secret import Secret, generate_password

BATCH = 500  # as lockstep's batches


def chunks(items: Sequence[str], size: int = BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Estate:
    kind = ""
    entitlements: tuple[str, ...] = ()

    def __enter__(self) -> Estate:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        pass

    def target(self) -> Target:
        raise NotImplementedError

    def baseline_apply(self, names: Sequence[str]) -> int:
        """The apply's statements for ``names``; returns how many actions they stand for."""
        raise NotImplementedError

    def baseline_suspend(self, names: Sequence[str]) -> None:
        raise NotImplementedError

    def make_orphans(self, names: Sequence[str]) -> None:
        raise NotImplementedError

    def drop(self, names: Sequence[str]) -> None:
        raise NotImplementedError


class PostgresEstate(Estate):
    kind = "postgres"
    entitlements = ("CONNECT on database bench", "SELECT on table public.items")

    def __init__(self, pg: localpg.LocalPostgres | None, root: Path) -> None:
        assert pg is not None
        self.pg = pg
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        self.conn: psycopg.Connection[Any] = psycopg.connect(pg.dsn("bench"), autocommit=True)
        self.conn.execute("CREATE TABLE public.items (id int)")
        self.conn.execute("REVOKE CONNECT ON DATABASE bench FROM PUBLIC")

    def close(self) -> None:
        self.conn.close()

    def target(self) -> Target:
        settings = PostgresSettings.model_validate({"dsn": Secret(self.pg.dsn("bench"))})
        return Target("bench-db", "postgres", None, frozenset(), False, settings)

    def _send(
        self, names: Sequence[str], each: Callable[[sql.Identifier], list[sql.Composed]]
    ) -> None:
        for chunk in chunks(names):
            statements = [s for name in chunk for s in each(sql.Identifier(name))]
            self.conn.execute(sql.SQL("; ").join(statements), prepare=False)

    def baseline_apply(self, names: Sequence[str]) -> int:
        marker = sql.Literal("managed by lockstep")

        def each(role: sql.Identifier) -> list[sql.Composed]:
            verifier = sql.Literal(scram_verifier(generate_password(), DEFAULT_SCRAM_ITERATIONS))
            return [
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, verifier),
                sql.SQL("COMMENT ON ROLE {} IS {}").format(role, marker),
                sql.SQL("GRANT CONNECT ON DATABASE bench TO {}").format(role),
                sql.SQL("GRANT SELECT ON TABLE public.items TO {}").format(role),
            ]

        self._send(names, each)
        return 3 * len(names)

    def baseline_suspend(self, names: Sequence[str]) -> None:
        marker = sql.Literal("managed by lockstep")
        rounds = pg_batches.SUSPENSION_SCRAM_ITERATIONS

        def each(role: sql.Identifier) -> list[sql.Composed]:
            verifier = sql.Literal(scram_verifier(generate_password(), rounds))
            return [
                sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD {}").format(role, verifier),
                sql.SQL("COMMENT ON ROLE {} IS {}").format(role, marker),
            ]

        for chunk in chunks(names):
            self._send(chunk, each)
            self.conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE usename = ANY(%s)",
                (list(chunk),),
            )

    def make_orphans(self, names: Sequence[str]) -> None:
        def each(role: sql.Identifier) -> list[sql.Composed]:
            verifier = sql.Literal(scram_verifier(generate_password(), 16))
            return [sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, verifier)]

        self._send(names, each)

    def drop(self, names: Sequence[str]) -> None:
        for chunk in chunks(names):
            roles = sql.SQL(", ").join(sql.Identifier(n) for n in chunk)
            self.conn.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(roles, roles))


ESTATES: dict[str, Callable[[localpg.LocalPostgres | None, Path], Estate]] = {
    "postgres": PostgresEstate,
}
