"""Alembic environment: migrations run only through ``Store.open``.

``Store.open`` passes an open connection with the migration lock already held (an advisory
lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so that two processes opening a new
store at once do not both create it. Running Alembic on its own would skip that lock.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from lockstep.store.tables import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("lockstep migrations run through lockstep.store.Store.open only")
    # Batch mode lets later migrations alter SQLite tables, which lack most ALTER forms.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
