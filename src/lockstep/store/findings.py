"""Findings kept across runs, each with its lifecycle.

    open ──an action of lockstep's addressed it──► remediated ──gone on a later read──► verified
    open ──gone without an action of lockstep's──► resolved
    open, remediated ──the owner accepts the risk──► accepted ──still seen after expiry──► open
    verified, resolved ──seen again──► open (a new occurrence: first_seen starts again)

A finding changes only on a pass that read its target in full: a target that could not be
read says nothing, so its findings stay as they were. A pass writes a finding only when
something about it changed; the last-seen time of a finding still held comes from the last
full read of its target (``target_passes``, one small write per target per pass).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, insert, select, update

from lockstep.engine.catalog import (
    ACCEPTED,
    HELD,
    MAX_ACCEPTANCE,
    OPEN,
    REMEDIATED,
    RESOLVED,
    VERIFIED,
)
from lockstep.errors import LockstepError
from lockstep.model import Finding, FindingType, Op, Result, Severity, Status
from lockstep.store import Store
from lockstep.store.tables import findings as table
from lockstep.store.tables import target_passes
from lockstep.store.usage import upsert_newer

_CHUNK = 500  # ids per IN (...): far below SQLite's and PostgreSQL's bind limits

# Which findings a verified action addresses, matched on the same target, account and
# entitlement: a rotation does nothing for dormancy, a suspension nothing for a stale key.
REMEDIES: Mapping[Op, frozenset[FindingType]] = {
    Op.GRANT: frozenset({FindingType.MISSING_ENTITLEMENT}),
    Op.REVOKE: frozenset({FindingType.EXCESS_ENTITLEMENT, FindingType.EXPIRED_ACCESS}),
    Op.ROTATE_CREDENTIAL: frozenset({FindingType.STALE_CREDENTIAL}),
    Op.SUSPEND_ACCOUNT: frozenset(
        {FindingType.ORPHAN_ACCOUNT, FindingType.OWNERLESS_IDENTITY, FindingType.EXPIRED_ACCESS}
    ),
    Op.DELETE_ACCOUNT: frozenset(
        {FindingType.ORPHAN_ACCOUNT, FindingType.OWNERLESS_IDENTITY, FindingType.EXPIRED_ACCESS}
    ),
}

_LIFECYCLE = ("remediated_at", "verified_at", "accepted_by", "accepted_reason", "accepted_until")
_ACCEPTANCE = ("accepted_by", "accepted_reason", "accepted_until")
_MUTABLE = ("severity", "detail", "first_seen", "last_seen", "status", *_LIFECYCLE)


class FindingLedgerError(LockstepError):
    """A lifecycle change that cannot be made (an unknown finding, a bad acceptance)."""

    code = "finding_change_refused"
    default_hint = "lockstep findings lists the ids and their status"


@dataclass(frozen=True)
class FindingRecord:
    finding: Finding
    id: str
    first_seen: datetime
    last_seen: datetime
    status: str  # one of STATUSES
    remediated_at: datetime | None = None
    verified_at: datetime | None = None
    accepted_by: str | None = None
    accepted_reason: str | None = None
    accepted_until: datetime | None = None


@dataclass(frozen=True)
class Transition:
    """One finding's change of status in a pass, for the caller to journal."""

    id: str
    finding: Finding
    before: str | None  # None: never seen before
    after: str


@dataclass(frozen=True)
class Reconciled:
    records: list[FindingRecord]  # one per finding given, in the order given
    transitions: list[Transition]


class FindingLedger:
    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self, findings: Sequence[Finding], targets_read: Collection[str], now: datetime
    ) -> list[FindingRecord]:
        """Record one pass's findings; returns their records, in the order given."""
        return self.reconcile(findings, targets_read, now).records

    def reconcile(
        self, findings: Sequence[Finding], targets_read: Collection[str], now: datetime
    ) -> Reconciled:
        """Record one pass's findings and mark ``targets_read`` as read in full at ``now``.

        A held finding of a read target that is not among ``findings`` is gone. The pass is
        marked here, in the same transaction, because a gone finding's last sighting is the
        target's previous full read.
        """
        ids = [f.id for f in findings]
        latest = dict(zip(ids, findings, strict=True))
        read = set(targets_read)
        with self._store.writing(lock=table) as conn:
            held = conn.execute(
                select(table).where(table.c.status.in_(HELD), table.c.target.in_(sorted(read)))
            )
            stored = {row.id: _values(row) for row in held}
            gone = [values for fid, values in stored.items() if fid not in latest]
            # Most findings seen are held ones of a read target, already loaded above.
            unloaded = [fid for fid in latest if fid not in stored]
            stored.update({row.id: _values(row) for row in _rows(conn, unloaded)})
            before = {t: at for t, at in _last_reads(conn, read).items() if at < now}

            inserts: list[dict[str, Any]] = []
            changes: list[tuple[dict[str, Any], dict[str, Any]]] = []
            for fid, f in latest.items():
                old = stored.get(fid)
                if old is None:
                    stored[fid] = _new(f, now)
                    inserts.append(stored[fid])
                    continue
                stored[fid] = _sighted(old, f, now, f.target in read)
                changes.append((old, stored[fid]))
            changes += [(old, _gone(old, now, before.get(old["target"]))) for old in gone]
            updates = [new for old, new in changes if new != old]

            if inserts:
                conn.execute(insert(table), inserts)
            if updates:
                conn.execute(_UPDATE, [_bound(new) for new in updates])
            _mark(conn, read, now)

        transitions = [Transition(v["id"], latest[v["id"]], None, OPEN) for v in inserts]
        transitions += [
            Transition(new["id"], _finding(new), old["status"], new["status"])
            for old, new in changes
            if new["status"] != old["status"]
        ]
        records = [_seen_record(latest[fid], stored[fid], now) for fid in ids]
        return Reconciled(records, transitions)

    def mark_pass(self, targets: Iterable[str], now: datetime) -> None:
        """Note that ``targets`` were read in full at ``now`` (a heartbeat: one row each).

        ``reconcile`` already does this; call it only for a pass that records findings."""
        with self._store.writing(lock=target_passes) as conn:
            _mark(conn, set(targets), now)

    def remediated(self, ids: Iterable[str], now: datetime) -> int:
        """Mark open or accepted findings as remediated by an action of lockstep's; returns
        how many changed (an id that is unknown or no longer held changes nothing)."""
        wanted = list(dict.fromkeys(ids))
        changed = 0
        with self._store.writing(lock=table) as conn:
            for start in range(0, len(wanted), _CHUNK):
                result = conn.execute(
                    update(table)
                    .where(
                        table.c.id.in_(wanted[start : start + _CHUNK]),
                        table.c.status.in_((OPEN, ACCEPTED)),
                    )
                    .values(
                        status=REMEDIATED,
                        remediated_at=now,
                        **dict.fromkeys(_ACCEPTANCE),
                    )
                )
                changed += result.rowcount
        return changed

    def accept(
        self, finding_id: str, by: str, reason: str, until: datetime, now: datetime
    ) -> FindingRecord:
        """Accept the risk of a held finding until ``until``; it reopens if still seen then."""
        with self._store.writing(lock=table) as conn:
            row = conn.execute(select(table).where(table.c.id == finding_id)).one_or_none()
            if row is None:
                raise FindingLedgerError(_unknown(finding_id))
            check_acceptance(_record(_values(row)), by, reason, until, now)
            accepted = {
                "status": ACCEPTED,
                "accepted_by": by.strip(),
                "accepted_reason": reason.strip(),
                "accepted_until": until,
            }
            conn.execute(update(table).where(table.c.id == finding_id).values(**accepted))
            last_read = _last_reads(conn, [row.target]).get(row.target)
        return _record({**_values(row), **accepted}, last_read=last_read)

    def get(self, finding_id: str) -> FindingRecord:
        """One finding by id, whatever its status; FindingLedgerError when unknown."""
        with self._store.reading() as conn:
            row = conn.execute(select(table).where(table.c.id == finding_id)).one_or_none()
            if row is None:
                raise FindingLedgerError(_unknown(finding_id))
            last_read = _last_reads(conn, [row.target]).get(row.target)
        return _record(_values(row), last_read=last_read)

    def current(
        self,
        status: str | Collection[str] | None = OPEN,
        *,
        types: Collection[str] | None = None,
        targets: Collection[str] | None = None,
        identities: Collection[str] | None = None,
    ) -> list[FindingRecord]:
        """Findings with ``status`` (one or several; every status for None), oldest first.

        ``identities`` keeps the findings about those identities only (an owner's), which
        leaves out findings about no identity at all, such as orphan accounts."""
        query: Select[Any] = select(table).order_by(table.c.first_seen, table.c.id)
        if status is not None:
            query = query.where(table.c.status.in_([status] if isinstance(status, str) else status))
        if types is not None:
            query = query.where(table.c.type.in_(list(types)))
        if targets is not None:
            query = query.where(table.c.target.in_(list(targets)))
        if identities is not None:
            query = query.where(table.c.identity.in_(list(identities)))
        with self._store.reading() as conn:
            rows = [_values(row) for row in conn.execute(query)]
            last_reads = _last_reads(conn, {row["target"] for row in rows})
        return [_record(row, last_read=last_reads.get(row["target"])) for row in rows]


def check_acceptance(
    record: FindingRecord, by: str, reason: str, until: datetime, now: datetime
) -> None:
    """Raise FindingLedgerError unless ``record`` may be accepted so."""
    if record.status not in HELD:
        raise FindingLedgerError(
            f"finding {record.id} is {record.status}: only a current finding "
            f"({', '.join(HELD)}) can be accepted"
        )
    if not by.strip():
        raise FindingLedgerError("a risk acceptance needs the owner who accepts it")
    if not reason.strip():
        raise FindingLedgerError("a risk acceptance needs a reason")
    if until <= now:
        raise FindingLedgerError(
            f"a risk acceptance must expire in the future, not {until:%Y-%m-%dT%H:%M:%SZ}"
        )
    if until - now > MAX_ACCEPTANCE:
        raise FindingLedgerError(
            f"a risk acceptance lasts at most {MAX_ACCEPTANCE.days} days: "
            f"{until:%Y-%m-%dT%H:%M:%SZ} is too far"
        )


def remediated_ids(results: Iterable[Result], findings: Iterable[Finding]) -> list[str]:
    """The ids of ``findings`` that verified ``results`` addressed (see REMEDIES)."""
    done: dict[tuple[str, str, str | None], set[FindingType]] = {}
    for r in results:
        if r.status is Status.VERIFIED and r.action.op in REMEDIES:
            key = (r.action.target, r.action.account, r.action.entitlement)
            done.setdefault(key, set()).update(REMEDIES[r.action.op])
    return list(
        dict.fromkeys(
            f.id
            for f in findings
            if f.account is not None
            and f.type in done.get((f.target, f.account, f.entitlement), ())
        )
    )


_UPDATE = (
    update(table)
    .where(table.c.id == bindparam("b_id"))
    .values(**{name: bindparam(f"b_{name}") for name in _MUTABLE})
)


def _bound(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"b_id": values["id"], **{f"b_{name}": values[name] for name in _MUTABLE}}


def _new(finding: Finding, now: datetime) -> dict[str, Any]:
    return {
        "id": finding.id,
        "type": str(finding.type),
        "severity": str(finding.severity),
        "target": finding.target,
        "account": finding.account,
        "entitlement": finding.entitlement,
        "identity": finding.identity,
        "detail": finding.detail,
        "first_seen": now,
        "last_seen": now,
        "status": OPEN,
        **dict.fromkeys(_LIFECYCLE),
    }


def _sighted(
    old: dict[str, Any], finding: Finding, now: datetime, target_read: bool
) -> dict[str, Any]:
    new = {**old, "severity": str(finding.severity), "detail": finding.detail}
    status = old["status"]
    if status in (VERIFIED, RESOLVED):
        new.update(dict.fromkeys(_LIFECYCLE), status=OPEN, first_seen=now)
    elif status == REMEDIATED:
        # Lockstep acted, yet the finding still holds: the action did not settle it.
        new.update(dict.fromkeys(_LIFECYCLE), status=OPEN)
    elif status == ACCEPTED and old["accepted_until"] <= now:
        new.update(dict.fromkeys(_ACCEPTANCE), status=OPEN)
    if new != old or not target_read:
        # A write is a sighting. A finding about a target that was not read in full (it
        # is unreachable) has no pass to date it: its own row is its heartbeat.
        new["last_seen"] = now
    return new


def _gone(old: dict[str, Any], now: datetime, last_read: datetime | None) -> dict[str, Any]:
    last_seen = max(old["last_seen"], last_read) if last_read else old["last_seen"]
    if old["status"] == REMEDIATED:
        return {**old, "status": VERIFIED, "verified_at": now, "last_seen": last_seen}
    return {**old, **dict.fromkeys(_ACCEPTANCE), "status": RESOLVED, "last_seen": last_seen}


def _mark(conn: Connection, targets: Collection[str], now: datetime) -> None:
    upsert_newer(conn, target_passes, [{"target": t, "at": now} for t in sorted(targets)], "at")


def _last_reads(conn: Connection, targets: Iterable[str]) -> dict[str, datetime]:
    wanted = list(set(targets))
    reads: dict[str, datetime] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = select(target_passes.c.target, target_passes.c.at).where(
            target_passes.c.target.in_(wanted[start : start + _CHUNK])
        )
        reads.update({row.target: row.at for row in conn.execute(query)})
    return reads


def _rows(conn: Connection, ids: list[str]) -> Iterator[Row[Any]]:
    for start in range(0, len(ids), _CHUNK):
        yield from conn.execute(select(table).where(table.c.id.in_(ids[start : start + _CHUNK])))


def _values(row: Row[Any]) -> dict[str, Any]:
    return row._asdict()


def _seen_record(finding: Finding, values: Mapping[str, Any], now: datetime) -> FindingRecord:
    return FindingRecord(
        finding,
        values["id"],
        values["first_seen"],
        now,
        values["status"],
        *(values[name] for name in _LIFECYCLE),
    )


def _finding(values: Mapping[str, Any]) -> Finding:
    return Finding(
        type=FindingType(values["type"]),
        severity=Severity(values["severity"]),
        target=values["target"],
        account=values["account"],
        entitlement=values["entitlement"],
        identity=values["identity"],
        detail=values["detail"],
    )


def _record(values: Mapping[str, Any], *, last_read: datetime | None = None) -> FindingRecord:
    """``last_read``: when its target was last read in full, which a finding still held was
    seen on."""
    seen = values["last_seen"]
    if values["status"] in HELD and last_read is not None and last_read > seen:
        seen = last_read
    return FindingRecord(
        _finding(values),
        values["id"],
        values["first_seen"],
        seen,
        values["status"],
        *(values[name] for name in _LIFECYCLE),
    )


def _unknown(finding_id: str) -> str:
    return f"no finding {finding_id!r} (see `lockstep findings --status all` for the ids)"
