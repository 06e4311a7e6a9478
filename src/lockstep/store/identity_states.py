"""The owner and environment lockstep last enforced for each identity.

A change of either is an event: the identity's credentials are rotated, because the people
who could read them are no longer the people who should.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, insert, select

from lockstep.model import Identity
from lockstep.store import Store
from lockstep.store.tables import identity_states as table

State = tuple[str, str | None]  # (owner, environment)


def state_of(identity: Identity) -> State:
    return (identity.owner, identity.environment)


class IdentityStates:
    def __init__(self, store: Store) -> None:
        self._store = store

    def load(self) -> dict[str, State]:
        with self._store.reading() as conn:
            rows = conn.execute(select(table.c.identity, table.c.owner, table.c.environment))
            return {r.identity: (r.owner, r.environment) for r in rows}

    def changed(self, identities: Mapping[str, Identity]) -> dict[str, str]:
        """Identities whose owner or environment differs from what was last enforced, with
        why. An identity seen for the first time has not changed."""
        known = self.load()
        reasons = {}
        for name, identity in identities.items():
            before = known.get(name)
            if before is None or before == state_of(identity):
                continue
            what = "owner" if before[0] != identity.owner else "environment"
            reasons[name] = f"{what} changed from {before[0 if what == 'owner' else 1]!s}"
        return reasons

    def save(self, identities: Mapping[str, Identity], now: datetime) -> int:
        """Record the given identities' states; writes only rows that differ."""
        known = self.load()
        stale = {n: i for n, i in identities.items() if known.get(n) != state_of(i)}
        if not stale:
            return 0
        with self._store.writing(lock=table) as conn:
            conn.execute(delete(table).where(table.c.identity.in_(list(stale))))
            conn.execute(
                insert(table),
                [
                    {
                        "identity": n,
                        "owner": i.owner,
                        "environment": i.environment,
                        "updated_at": now,
                    }
                    for n, i in stale.items()
                ],
            )
        return len(stale)
