"""Which `lockstep run` process reconciles which target.

SQLite state: one service per state store. An exclusive lock on a file beside the database
says so, and that service holds every target.

PostgreSQL state: several services share the targets. A service holds a target while it
holds a session-level advisory lock on it, on a connection kept for that purpose alone.
PostgreSQL grants such a lock to one session at a time and drops it the moment the session
ends, so no target is reconciled by two services at once, and a killed service's targets are
free at once: another claims them at its next lease round (about a second), not after a
lease runs out. Each service also holds an instance lock, by which the services count each
other (in ``pg_locks``) and claim a fair share each: ceil(targets / live services).

The ``target_leases`` rows (target, holder, expires_at) say who holds what, for operators and
``/v1/targets``; the advisory lock is what decides. The state store must be reached directly
or through a pooler in session mode: transaction pooling would hand the lock to strangers.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, NullPool, Table, create_engine, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from lockstep.secret import redact
from lockstep.service.logs import Log
from lockstep.store import Store, StoreError
from lockstep.store.tables import heartbeats, target_leases, target_passes

# classid of the instance locks (two-int form, objsubid 2): "lkst".
_INSTANCE_SPACE = 0x6C6B7374
# The lock whose holder runs the chores one service does for all (the lease reaper): "lksd".
_DUTY_SPACE, _DUTY_KEY = 0x6C6B7364, 1
_INSTANCE_KEY_ATTEMPTS = 16
_CONNECT_TIMEOUT_S = 10
# Notice a state store gone silent (a cut network, not a closed socket) within ~30 s.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5}


class ServiceLockError(StoreError):
    """Another service already uses this state store in a way that cannot be shared."""


class TargetLeases(Protocol):
    instance: str

    def rebalance(self, wanted: Mapping[str, float]) -> list[str]:
        """One lease round over ``wanted`` (target -> lease row lifetime in seconds): drop
        targets no longer wanted, claim free ones up to a fair share, keep the rows fresh.
        Returns held targets beyond the fair share, for the caller to release once idle."""
        ...

    def release(self, target: str) -> None: ...

    def holds(self, target: str) -> bool: ...

    def holders(self) -> dict[str, str]:
        """Who holds each target, as recorded."""
        ...

    def leads(self) -> bool:
        """Whether this service runs the chores one service does for all."""
        ...

    def close(self) -> None: ...


def open_leases(store: Store, instance: str, log: Log) -> TargetLeases:
    if store.dialect == "postgresql":
        return SharedLeases(store, instance, log)
    database = store.engine.url.database
    assert database is not None  # the store refuses SQLite URLs without a file
    return SoleLeases(Path(database), instance)


class SoleLeases:
    """Every target, for the one service allowed on a SQLite state store."""

    def __init__(self, database: Path, instance: str) -> None:
        self.instance = instance
        self._lock_path = database.with_name(database.name + ".run-lock")
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServiceLockError(
                f"another `lockstep run` already uses the state store {database}; "
                "to run several, keep the state in PostgreSQL (--state postgresql://...)"
            ) from None
        self._fd: int | None = fd
        self._wanted: frozenset[str] = frozenset()

    def rebalance(self, wanted: Mapping[str, float]) -> list[str]:
        self._wanted = frozenset(wanted)
        return []

    def release(self, target: str) -> None:
        """Nothing to release: no other service can take it."""

    def holds(self, target: str) -> bool:
        return self._fd is not None

    def holders(self) -> dict[str, str]:
        return dict.fromkeys(sorted(self._wanted), self.instance)

    def leads(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def target_key(target: str) -> int:
    """The advisory lock key of a target: 64 bits of a digest of its name."""
    digest = hashlib.sha256(b"lockstep.target\0" + target.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SharedLeases:
    """Targets shared between services through PostgreSQL advisory locks."""

    def __init__(self, store: Store, instance: str, log: Log) -> None:
        self.instance = instance
        self._store = store
        self._log = log
        # A connection of its own that no pool recycles: the locks live and die with it.
        self._engine = create_engine(
            store.engine.url,
            poolclass=NullPool,
            connect_args={"connect_timeout": _CONNECT_TIMEOUT_S, **_KEEPALIVES},
        )
        self._conn: Connection | None = None
        self._held: set[str] = set()
        self._leads = False
        self._guard = threading.Lock()

    def holds(self, target: str) -> bool:
        with self._guard:
            return target in self._held

    def leads(self) -> bool:
        with self._guard:
            return self._leads

    def rebalance(self, wanted: Mapping[str, float]) -> list[str]:
        try:
            conn = self._connection()
            for target in self._snapshot() - wanted.keys():
                self._unlock(conn, target)
            share = math.ceil(len(wanted) / self._live(conn))
            for target in self._preferred(wanted):
                if len(self._snapshot()) >= share:
                    break
                if target not in self._snapshot():
                    self._try_lock(conn, target, wanted[target])
            self._renew(conn, wanted)
            if not self.leads():
                self._lead(conn)
        except SQLAlchemyError as exc:
            self._lost(exc)
            return []
        held = self._snapshot()
        surplus = len(held) - share
        if surplus <= 0:
            return []
        least_preferred = sorted(held, key=self._score)
        return least_preferred[:surplus]

    def release(self, target: str) -> None:
        if self._conn is None:
            return
        try:
            self._unlock(self._conn, target)
        except SQLAlchemyError as exc:
            self._lost(exc)

    def holders(self) -> dict[str, str]:
        with self._store.reading() as conn:
            rows = conn.execute(select(target_leases.c.target, target_leases.c.holder))
            return {row.target: row.holder for row in rows}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(
                    delete(target_leases).where(target_leases.c.holder == self.instance)
                )
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            except SQLAlchemyError as exc:
                self._log.warning(
                    "lease rows not removed",
                    target=None,
                    op="lease",
                    status="error",
                    error=_reason(exc),
                )
            self._drop_connection()
        self._engine.dispose()

    # ------------------------------------------------------------ internals

    def _snapshot(self) -> frozenset[str]:
        with self._guard:
            return frozenset(self._held)

    def _connection(self) -> Connection:
        if self._conn is not None:
            self._conn.execute(text("SELECT 1"))  # a dead connection raises here
            return self._conn
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        # The instance key comes from the instance id; a clash with a live service (one in
        # two billion) just tries the next.
        for attempt in range(_INSTANCE_KEY_ATTEMPTS):
            digest = hashlib.sha256(f"{self.instance}\0{attempt}".encode()).digest()
            key = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
            if conn.execute(
                text("SELECT pg_try_advisory_lock(CAST(:space AS integer), CAST(:key AS integer))"),
                {"space": _INSTANCE_SPACE, "key": key},
            ).scalar_one():
                self._conn = conn
                return conn
        conn.close()
        raise ServiceLockError("no free instance lock in the state store")

    def _live(self, conn: Connection) -> int:
        count: int = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = CAST(:space AS oid) AND objsubid = 2"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"space": _INSTANCE_SPACE},
        ).scalar_one()
        return max(int(count), 1)

    def _score(self, target: str) -> bytes:
        # Rendezvous hashing: each service prefers a different, stable set of targets, so
        # that services starting together rarely contend for the same ones.
        return hashlib.sha256(f"{self.instance}\0{target}".encode()).digest()

    def _preferred(self, targets: Iterable[str]) -> list[str]:
        return sorted(targets, key=self._score, reverse=True)

    def _try_lock(self, conn: Connection, target: str, lifetime_s: float) -> None:
        got: bool = conn.execute(
            text("SELECT pg_try_advisory_lock(CAST(:key AS bigint))"), {"key": target_key(target)}
        ).scalar_one()
        if not got:
            return
        with self._guard:
            self._held.add(target)
        row = {"target": target, "holder": self.instance, "expires_at": _expiry(lifetime_s)}
        conn.execute(
            pg_insert(target_leases)
            .values(row)
            .on_conflict_do_update(
                index_elements=[target_leases.c.target],
                set_={"holder": row["holder"], "expires_at": row["expires_at"]},
            )
        )
        self._log.info("lease acquired", target=target, op="lease", status="acquired")

    def _lead(self, conn: Connection) -> None:
        got: bool = conn.execute(
            text("SELECT pg_try_advisory_lock(CAST(:space AS integer), CAST(:key AS integer))"),
            {"space": _DUTY_SPACE, "key": _DUTY_KEY},
        ).scalar_one()
        if got:
            with self._guard:
                self._leads = True
            self._log.info("chores taken on", target=None, op="lease", status="leading")

    def _unlock(self, conn: Connection, target: str) -> None:
        with self._guard:
            self._held.discard(target)
        conn.execute(
            delete(target_leases).where(
                target_leases.c.target == target, target_leases.c.holder == self.instance
            )
        )
        conn.execute(
            text("SELECT pg_advisory_unlock(CAST(:key AS bigint))"), {"key": target_key(target)}
        )
        self._log.info("lease released", target=target, op="lease", status="released")

    def _renew(self, conn: Connection, wanted: Mapping[str, float]) -> None:
        """Push out the rows' expiry once half of it is gone (rows are for reading only)."""
        now = datetime.now(UTC)
        for target in self._snapshot():
            half = timedelta(seconds=wanted[target] / 2)
            conn.execute(
                update(target_leases)
                .where(
                    target_leases.c.target == target,
                    target_leases.c.holder == self.instance,
                    target_leases.c.expires_at < now + half,
                )
                .values(expires_at=_expiry(wanted[target]))
            )

    def _lost(self, exc: SQLAlchemyError) -> None:
        with self._guard:
            lost = sorted(self._held)
            self._held.clear()
            self._leads = False
        self._drop_connection()
        self._log.error(
            "lease connection lost: every target released until it is back",
            target=None,
            op="lease",
            status="lost",
            targets=lost,
            error=_reason(exc),
        )

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except SQLAlchemyError as exc:
                self._log.debug(
                    "lease connection close",
                    target=None,
                    op="lease",
                    status="error",
                    error=_reason(exc),
                )
            self._conn = None


def _expiry(lifetime_s: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=lifetime_s)


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return redact(lines[0] if lines else type(exc).__name__)


# ---------------------------------------------------------------- heartbeats and pass times


def note_pass(store: Store, instance: str, passes: int, at: datetime) -> None:
    """The instance's heartbeat: with the targets' pass times, which the findings ledger
    marks, the only write of a pass that found nothing to change."""
    with store.writing(lock=heartbeats) as conn:
        _upsert(conn, heartbeats, ["instance"], {"instance": instance, "at": at, "passes": passes})


def pass_times(store: Store) -> dict[str, datetime]:
    """When each target was last read in full, by any service."""
    with store.reading() as conn:
        return {row.target: row.at for row in conn.execute(select(target_passes))}


def _upsert(conn: Connection, table: Table, key: list[str], row: dict[str, object]) -> None:
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
    changed = {k: v for k, v in row.items() if k not in key}
    conn.execute(insert.values(row).on_conflict_do_update(index_elements=key, set_=changed))
