"""What separation of duties counts for one identity, gathered from the policy and the state
store: the policy's access (with its FILE:LINE), the grants approved, active, ending or
ended within the longest window, and what passes saw it hold in the targets (kept in
``sod_holdings`` whatever brought it). The rules themselves are ``engine.sod``'s.

Every pass also brings ``sod_holdings`` up to date for the targets it read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update

from lockstep.engine.sod import Conflict, Holding, SodIndex, conflicts
from lockstep.governance.records import RequestStatus
from lockstep.model import Desired, Identity, Snapshot
from lockstep.policy.load import LoadedPolicy
from lockstep.store.tables import access_requests, sod_holdings

_GRANTED = (
    RequestStatus.APPROVED,
    RequestStatus.ACTIVE,
    RequestStatus.FAILED,
    RequestStatus.ENDING,
    RequestStatus.ENDED,
)


class Separation:
    """Sod checks over one loaded policy (the index is built once)."""

    def __init__(self, loaded: LoadedPolicy) -> None:
        self.loaded = loaded
        self.index = SodIndex(loaded.policy.rules.sod)
        windows = [r.within_s for r in loaded.policy.rules.sod if r.within_s is not None]
        self._longest = timedelta(seconds=max(windows, default=0))

    def holdings(
        self, conn: Connection, identity: Identity, now: datetime, skip: str | None = None
    ) -> list[Holding]:
        """What ``identity`` holds, is granted, or held within the longest window, of the
        entitlements sod rules name (``skip``: a request not to count, the one decided)."""
        if not self.index:
            return []
        found = list(self._declared(identity))
        since = now - self._longest
        rows = conn.execute(
            select(
                access_requests.c.id,
                access_requests.c.target,
                access_requests.c.entitlements,
                access_requests.c.status,
                access_requests.c.starts_at,
                access_requests.c.ends_at,
                access_requests.c.ended_at,
            ).where(
                access_requests.c.identity == identity.name,
                access_requests.c.status.in_([str(s) for s in _GRANTED]),
                or_(access_requests.c.ended_at.is_(None), access_requests.c.ended_at >= since),
            )
        )
        for row in rows:
            if row.id == skip:
                continue
            status = RequestStatus(row.status)
            end = row.ends_at
            if status is RequestStatus.ENDING:
                end = None  # still being removed
            elif status is RequestStatus.ENDED:
                end = row.ended_at
            for ent in json.loads(row.entitlements):
                if self.index.names((row.target, ent)):
                    found.append(Holding(row.target, ent, row.starts_at, end, f"request {row.id}"))
        for row in conn.execute(
            select(sod_holdings).where(sod_holdings.c.identity == identity.name)
        ):
            if not self.index.names((row.target, row.entitlement)):
                continue
            if row.held:
                source = f"target {row.target}, where account {row.account} holds it"
                found.append(Holding(row.target, row.entitlement, row.first_seen, None, source))
            elif row.last_seen >= since:
                until = f"{row.last_seen:%Y-%m-%dT%H:%M:%SZ}"
                source = f"target {row.target}, where account {row.account} held it until {until}"
                found.append(
                    Holding(row.target, row.entitlement, row.first_seen, row.last_seen, source)
                )
        return found

    def _declared(self, identity: Identity) -> Iterable[Holding]:
        places = self.loaded.entitlement_places
        for access in identity.access:
            for ent in sorted(access.entitlements):
                if self.index.names((access.target, ent)):
                    where = places.get((identity.name, access.target, ent))
                    source = f"policy {where}" if where is not None else "the policy"
                    yield Holding(access.target, ent, None, access.expires, source)

    def check(
        self,
        conn: Connection,
        identity: Identity,
        target: str,
        entitlements: Sequence[str],
        start: datetime,
        end: datetime,
        skip: str | None = None,
    ) -> list[Conflict]:
        if not self.index:
            return []
        wanted = [Holding(target, e, start, end, "this request") for e in entitlements]
        if not any(self.index.names(w.key) for w in wanted):
            return []
        return conflicts(self.index, self.holdings(conn, identity, start, skip), wanted)


def record_holdings(
    conn: Connection,
    index: SodIndex,
    desired: Desired,
    observed: Mapping[str, Snapshot],
    now: datetime,
) -> None:
    """Bring ``sod_holdings`` up to date with what the read ``observed`` targets hold, for
    every identity declaring an account there. Rows change only when something did."""
    if not index:
        return
    for name, snapshot in observed.items():
        names = {ent for (target, ent) in index.entitlements if target == name}
        if not names:
            continue
        seen: dict[tuple[str, str], str] = {}
        for account, want in desired.for_target(name).items():
            actual = snapshot.accounts.get(account)
            if actual is None:
                continue
            for ent in actual.entitlements & names:
                for identity in want.identities:
                    seen[(identity, ent)] = account
        rows = {
            (r.identity, r.entitlement): r
            for r in conn.execute(select(sod_holdings).where(sod_holdings.c.target == name))
        }
        key = (sod_holdings.c.identity, sod_holdings.c.entitlement)
        for (identity, ent), account in seen.items():
            row = rows.get((identity, ent))
            values = {"account": account, "last_seen": now, "held": 1}
            if row is None:
                conn.execute(
                    insert(sod_holdings).values(
                        identity=identity, target=name, entitlement=ent, first_seen=now, **values
                    )
                )
            else:
                start = row.first_seen if row.held else now
                conn.execute(
                    update(sod_holdings)
                    .where(sod_holdings.c.target == name, key[0] == identity, key[1] == ent)
                    .values(first_seen=start, **values)
                )
        for (identity, ent), row in rows.items():
            if row.held and (identity, ent) not in seen:
                conn.execute(
                    update(sod_holdings)
                    .where(sod_holdings.c.target == name, key[0] == identity, key[1] == ent)
                    .values(held=0)
                )
            elif not row.held and not index.names((name, ent)):
                conn.execute(
                    delete(sod_holdings).where(
                        sod_holdings.c.target == name, key[0] == identity, key[1] == ent
                    )
                )


def held_now(conn: Connection, index: SodIndex, targets: Iterable[str]) -> dict[str, list[Holding]]:
    """What each identity was last seen holding on ``targets`` (those a pass did not read),
    of the entitlements sod rules name."""
    wanted = set(targets)
    found: dict[str, list[Holding]] = {}
    if not index or not wanted:
        return found
    for row in conn.execute(
        select(sod_holdings).where(sod_holdings.c.held == 1, sod_holdings.c.target.in_(wanted))
    ):
        if index.names((row.target, row.entitlement)):
            source = f"target {row.target}, where account {row.account} holds it"
            found.setdefault(row.identity, []).append(
                Holding(row.target, row.entitlement, row.first_seen, None, source)
            )
    return found
