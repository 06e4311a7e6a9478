"""The state store opened for reading only, without the policy: what ``audit verify`` and
``audit export`` need, so that an auditor runs them with no policy variable set, on a copy
of the store they may not write (no migration, no file created, no WAL written)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from lockstep.engine.workspace import STATE_ENV, state_dir
from lockstep.secret import redact, register
from lockstep.store import StoreError


def default_state_url(config: Path, explicit: str | None) -> str:
    """``--state``, else ``LOCKSTEP_STATE``, else the SQLite file beside the policy at
    ``config`` (a file or a directory), found without loading it."""
    url = explicit or os.environ.get(STATE_ENV)
    if url:
        return url
    base = config if config.is_dir() else config.parent
    return f"sqlite:///{state_dir(base) / 'state.db'}"


@contextmanager
def reading(url: str) -> Iterator[Connection]:
    """One read-only transaction on the store at ``url`` (one consistent snapshot)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("the state URL is not a valid URL") from None
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "sqlite":
        engine = create_engine("sqlite://", creator=_sqlite_reader(parsed.database or ""))
    elif backend in ("postgresql", "postgres"):
        if parsed.password:
            register(parsed.password)
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"))
    else:
        raise StoreError(f"unsupported state URL scheme {parsed.drivername!r}")
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        lines = str(orig if orig is not None else exc).strip().splitlines()
        reason = redact(lines[0] if lines else type(exc).__name__)
        raise StoreError(f"cannot read state store {shown}: {reason}") from None
    finally:
        engine.dispose()


def _sqlite_reader(database: str) -> object:
    path = Path(database)
    if not database or not path.is_file():
        raise StoreError(f"no state store at {path} (give --state URL, or LOCKSTEP_STATE)")
    # A store we may not write is read as an immutable copy: SQLite would otherwise need to
    # create its shared-memory file beside it to read a WAL database.
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    mode = "mode=ro" if writable else "immutable=1"
    uri = f"file:{quote(str(path.resolve()))}?{mode}"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return connect
