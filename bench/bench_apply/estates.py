"""The estates ``bench/apply.py`` builds: per target type, the target, the entitlements each
identity holds, and the baseline (the same statements lockstep sends, in batches, with no
read-back, no probe and no journal)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import ldap3  # type: ignore[import-untyped, unused-ignore]
import psycopg
from psycopg import sql

from lockstep.connectors.postgres import batches as pg_batches
from lockstep.connectors.postgres.leases import DEFAULT_SCRAM_ITERATIONS, scram_verifier
from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.connectors.redis.acl import RESET_PERMISSIONS, RULES_KEY, apply_order
from lockstep.connectors.redis.admin import call
from lockstep.connectors.redis.connector import RedisSettings
from lockstep.demo import localpg
from lockstep.model import Target
from lockstep.secret import Secret, generate_password
from services import redis_server, slapd

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
    rounds = DEFAULT_SCRAM_ITERATIONS  # the target's scram_iterations
    database = "bench"

    def __init__(self, pg: localpg.LocalPostgres | None, root: Path) -> None:
        assert pg is not None
        self.pg = pg
        self.entitlements = (f"CONNECT on database {self.database}", "SELECT on table public.items")
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self.conn: psycopg.Connection[Any] = psycopg.connect(pg.dsn(self.database), autocommit=True)
        self.conn.execute("CREATE TABLE public.items (id int)")
        revoke = sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC")
        self.conn.execute(revoke.format(sql.Identifier(self.database)))

    def close(self) -> None:
        self.conn.close()

    def target(self) -> Target:
        settings = PostgresSettings.model_validate(
            {"dsn": Secret(self.pg.dsn(self.database)), "scram_iterations": self.rounds}
        )
        return Target("bench-db", "postgres", None, frozenset(), False, settings)

    def _send(
        self, names: Sequence[str], each: Callable[[sql.Identifier], list[sql.Composed]]
    ) -> None:
        for chunk in chunks(names):
            statements = [s for name in chunk for s in each(sql.Identifier(name))]
            self.conn.execute(sql.SQL("; ").join(statements), prepare=False)

    def baseline_apply(self, names: Sequence[str]) -> int:
        marker = sql.Literal("managed by lockstep")
        database = sql.Identifier(self.database)

        def each(role: sql.Identifier) -> list[sql.Composed]:
            verifier = sql.Literal(scram_verifier(generate_password(), self.rounds))
            return [
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, verifier),
                sql.SQL("COMMENT ON ROLE {} IS {}").format(role, marker),
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role),
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


class FastPostgresEstate(PostgresEstate):
    """The same with ``scram_iterations: 1024`` (as ``lease_scram_iterations`` allows for
    leases): PBKDF2 is most of what creating and proving a credential costs."""

    kind = "postgres-1024"
    rounds = 1024
    database = "bench_fast"


class RedisEstate(Estate):
    kind = "redis"
    entitlements = ("~items:*", "+get")

    def __init__(self, pg: localpg.LocalPostgres | None, root: Path) -> None:
        self.server = redis_server.start(aclfile=True)
        self.client = self.server.admin()

    def close(self) -> None:
        self.client.close()
        self.server.stop()

    def target(self) -> Target:
        settings = RedisSettings(url=Secret(self.server.url()))
        return Target("bench-cache", "redis", None, frozenset(), False, settings)

    def _send(self, names: Sequence[str], each: Callable[[str], list[tuple[str, ...]]]) -> None:
        for chunk in chunks(names):
            pipe = self.client.pipeline(transaction=False)
            for name in chunk:
                for command in each(name):
                    call(pipe, *command)
            call(pipe, "ACL", "SAVE")
            pipe.execute()

    def baseline_apply(self, names: Sequence[str]) -> int:
        rules = apply_order(self.entitlements)
        self._send(
            names,
            lambda n: [
                (
                    "ACL",
                    "SETUSER",
                    n,
                    "reset",
                    "resetchannels",
                    "on",
                    ">" + generate_password().reveal(),
                ),
                ("HDEL", RULES_KEY, n),
            ],
        )
        self._send(
            names,
            lambda n: [
                ("ACL", "SETUSER", n, *RESET_PERMISSIONS, *rules),
                ("HSET", RULES_KEY, n, json.dumps(rules)),
            ],
        )
        return 3 * len(names)

    def baseline_suspend(self, names: Sequence[str]) -> None:
        def each(name: str) -> list[tuple[str, ...]]:
            password = ">" + generate_password().reveal()
            return [
                ("ACL", "SETUSER", name, "off", "resetpass", password),
                ("CLIENT", "KILL", "USER", name),
            ]

        for chunk in chunks(names):
            self._send(chunk, each)
            call(self.client, "CLIENT", "LIST")

    def make_orphans(self, names: Sequence[str]) -> None:
        self._send(
            names, lambda n: [("ACL", "SETUSER", n, "on", ">" + generate_password().reveal())]
        )

    def drop(self, names: Sequence[str]) -> None:
        for chunk in chunks(names):
            call(self.client, "ACL", "DELUSER", *chunk)


class LdapEstate(Estate):
    kind = "ldap"
    entitlements = ("group:readers", "group:writers")

    def __init__(self, pg: localpg.LocalPostgres | None, root: Path) -> None:
        self.server = slapd.start()
        slapd.reset_directory(self.server)
        self.conn = self.server.connect()

    def close(self) -> None:
        self.conn.unbind()
        self.server.stop()

    def target(self) -> Target:
        return slapd.ldap_target_for(self.server, "bench-directory")

    def _dn(self, name: str) -> str:
        return f"uid={name},{self.server.people_dn}"

    def _group(self, cn: str) -> str:
        return f"cn={cn},{self.server.groups_dn}"

    def _add(self, name: str, marker: bool) -> None:
        attributes = {"uid": name, "userPassword": generate_password().reveal()}
        if marker:
            attributes["description"] = "managed by lockstep"
        self.conn.add(self._dn(name), ["account", "simpleSecurityObject"], attributes)

    def baseline_apply(self, names: Sequence[str]) -> int:
        for chunk in chunks(names):
            for name in chunk:
                self._add(name, marker=True)
            for cn in ("readers", "writers"):
                members = [self._dn(n) for n in chunk]
                self.conn.modify(self._group(cn), {"member": [(ldap3.MODIFY_ADD, members)]})
        return 3 * len(names)

    def baseline_suspend(self, names: Sequence[str]) -> None:
        for name in names:
            password = generate_password().reveal()
            self.conn.modify(self._dn(name), {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]})
            lock = {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
            self.conn.modify(self._dn(name), lock)

    def make_orphans(self, names: Sequence[str]) -> None:
        for name in names:
            self._add(name, marker=False)

    def drop(self, names: Sequence[str]) -> None:
        for chunk in chunks(names):
            for cn in ("readers", "writers"):
                members = [self._dn(n) for n in chunk]
                self.conn.modify(self._group(cn), {"member": [(ldap3.MODIFY_DELETE, members)]})
        for name in names:
            self.conn.delete(self._dn(name))


ESTATES: dict[str, Callable[[localpg.LocalPostgres | None, Path], Estate]] = {
    "postgres": PostgresEstate,
    "postgres-1024": FastPostgresEstate,
    "redis": RedisEstate,
    "ldap": LdapEstate,
}
