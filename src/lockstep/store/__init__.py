"""The state store: journal, credential vault and findings ledger, in SQLite or PostgreSQL."""

from lockstep.store.db import Store, StoreError

__all__ = ["Store", "StoreError"]
