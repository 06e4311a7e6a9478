"""Opening the state store: SQLite by default, PostgreSQL for shared deployments.

Opening migrates the schema to the newest revision. Every database error leaves this module
as a ``StoreError`` with one clear line that never holds the URL's password.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from lockstep.errors import LockstepError
from lockstep.secret import redact, register

_MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key that serialises migrations between processes ("lockstep" in hex).
_MIGRATION_LOCK = 0x6C6F636B73746570
_SQLITE_BEGIN = "lockstep_sqlite_begin"
_SQLITE_BUSY_TIMEOUT_S = 30.0
_PG_CONNECT_TIMEOUT_S = 10


class StoreError(LockstepError):
    """The state store cannot be opened, read or written. The message holds no secret."""

    code = "state_store_unavailable"
    default_hint = "check --state or LOCKSTEP_STATE, and that the store is reachable and writable"


class Store:
    """An open state store. Use ``Store.open``; the engine is shared by all threads."""

    def __init__(self, engine: Engine, shown_url: str) -> None:
        self.engine = engine
        self._shown_url = shown_url
        # SQLite makes a writer that finds the database locked sleep and retry (1 ms, then
        # 2, 5, 10...); writers of this process queue here instead and go in as soon as the
        # one before is done. Other processes still meet SQLite's own lock.
        self._sqlite_writer = threading.RLock()

    @classmethod
    def open(cls, url: str) -> Store:
        parsed = _parse(url)
        # Query parameters may carry credentials too (?password=...): never shown.
        shown = parsed.set(query={}).render_as_string(hide_password=True)
        store = cls(_create_engine(parsed), shown)
        try:
            with store._errors("cannot open"):
                store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction that sees one consistent snapshot throughout."""
        with self._errors("cannot read"), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def writing(self, lock: Table, *more: Table) -> Iterator[Connection]:
        """A transaction that holds the write lock on ``lock`` (and on ``more``, in that
        order) from its first statement.

        Read-modify-write sequences (the journal head, the current credential) are then
        serialised between threads and processes instead of racing. Transactions that take
        several locks take them in one order: the journal's first.
        """
        with ExitStack() as stack:
            if self.dialect == "sqlite":
                stack.enter_context(self._sqlite_writer)
            stack.enter_context(self._errors("cannot write"))
            conn = stack.enter_context(self.engine.connect())
            if self.dialect == "sqlite":
                conn = conn.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if self.dialect == "postgresql":
                    # EXCLUSIVE blocks other writers of the table but not plain readers.
                    for table in (lock, *more):
                        name = conn.dialect.identifier_preparer.quote(table.name)
                        conn.execute(text(f"LOCK TABLE {name} IN EXCLUSIVE MODE"))
                yield conn

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"{doing} state store {self._shown_url}: {_reason(exc)}") from None
        except CommandError as exc:
            # In practice: a revision this lockstep does not know, written by a newer one.
            raise StoreError(
                f"{doing} state store {self._shown_url}: {redact(str(exc))} "
                "(was it written by a newer lockstep?)"
            ) from None

    def _migrate(self) -> None:
        config = Config()
        # Config values go through configparser interpolation, where "%" is special.
        config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self.engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
        # Not at head: migrate under a lock, so that of two processes opening a new store at
        # once the second waits and then finds the schema already current.
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                config.attributes["connection"] = conn
                command.upgrade(config, "head")


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "the state URL is not a valid URL (expected sqlite:///PATH or postgresql://...)"
        ) from None
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StoreError("the SQLite state URL needs a file path: sqlite:///PATH")
        return parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        if parsed.password:
            # So that no error message, ours or a driver's, can carry it out.
            register(parsed.password)
        return parsed.set(drivername="postgresql+psycopg")
    raise StoreError(
        f"unsupported state URL scheme {parsed.drivername!r}: use sqlite or postgresql"
    )


def _create_engine(url: URL) -> Engine:
    if url.drivername == "sqlite":
        assert url.database is not None
        _prepare_sqlite_file(Path(url.database))
        engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S}
    )


def _prepare_sqlite_file(path: Path) -> None:
    # The state holds encrypted credentials and findings about the estate: owner-only.
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot create the state database {path}: {exc.strerror}") from None
    if info.st_uid != os.geteuid():
        raise StoreError(
            f"the state database {path} is owned by uid {info.st_uid}, not by the user "
            f"lockstep runs as ({os.geteuid()}): refused"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StoreError(
            f"the state database {path} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )


def _sqlite_connect(dbapi_conn: Any, _record: object) -> None:
    # Take transaction control away from the sqlite3 module, which would otherwise not BEGIN
    # before SELECTs or DDL; _sqlite_begin emits BEGIN itself.
    dbapi_conn.isolation_level = None
    # WAL: readers keep a snapshot without blocking writers, so `audit verify` on a long
    # journal does not stall the appends of a running service.
    dbapi_conn.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes can fail with "database is locked" without waiting once another writer won.
    mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _reason(exc: SQLAlchemyError) -> str:
    # The DBAPI error's own first line: SQLAlchemy's rendering would add the SQL statement
    # and its parameters.
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return redact(lines[0] if lines else type(exc).__name__)
