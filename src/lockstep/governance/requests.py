"""Filing, approving, denying and expiring access requests.

Each decision is one transaction that holds the journal's lock: the request's new state and
the journal entry that records it, with the person and how they signed in, commit together or
not at all. A refusal changes nothing; refusals of a signed-in person's filing or decision are
journaled as refusals, never as done.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, insert, select, update

from lockstep.connectors.base import GrammarError
from lockstep.connectors.registry import connector_type
from lockstep.engine.approvals import (
    Given,
    NotAllowed,
    check_may_deny,
    current_stage,
    environment_of,
    rules_for,
    stage_for,
    unsatisfiable,
)
from lockstep.engine.desired import own_access
from lockstep.governance.auth import Principal
from lockstep.governance.entries import (
    decision_refused_entry,
    filed_entry,
    refused_entry,
    request_row,
)
from lockstep.governance.errors import Conflict, Forbidden, GovernanceError, UnknownName
from lockstep.governance.people import may_request
from lockstep.governance.records import (
    AccessRequest,
    Approval,
    Ask,
    RequestStatus,
    iso,
    read_requests,
)
from lockstep.governance.separation import Separation
from lockstep.journal import LOCK, Journal
from lockstep.leases.batcher import Batcher
from lockstep.model import DEFAULT_ENVIRONMENT, Identity
from lockstep.policy.durations import format_duration
from lockstep.policy.load import LoadedPolicy
from lockstep.store import Store
from lockstep.store.tables import access_requests, request_approvals

__all__ = ["Ask", "Requests"]

MAX_REASON = 2000
FILING_BATCH = 64  # requests filed at once share one transaction, up to this many
MAX_ENTITLEMENTS = 50
_ID_BYTES = 6


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Filing:
    who: Principal
    ask: Ask
    identity: Identity
    request: AccessRequest
    dry_run: bool


class Requests:
    """The requests of one state store, decided under one loaded policy (a new one is made
    for every policy the service loads; requests filed earlier keep their own rules)."""

    def __init__(
        self,
        loaded: LoadedPolicy,
        store: Store,
        journal: Journal,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.loaded = loaded
        self.separation = Separation(loaded)
        self._store = store
        self._journal = journal
        self._clock = clock
        self._filer = Batcher(
            self._file_batch, workers=1, max_batch=FILING_BATCH, name="request-filer"
        )

    # ------------------------------------------------------------ filing

    def file(self, who: Principal, ask: Ask, dry_run: bool = False) -> AccessRequest:
        """A new pending request; GovernanceError (nothing filed) when it breaks a rule."""
        person = _person(who, "file a request")
        now = self._clock().replace(microsecond=0)
        identity, account, entitlements = self._checked(person, ask, now)
        environment = environment_of(self.loaded.policy, identity, ask.target)
        rules = rules_for(self.loaded.policy, identity, environment)
        why = unsatisfiable(rules, person)
        if why is not None:
            raise GovernanceError(f"request refused: {why}")
        request = AccessRequest(
            id="R-" + secrets.token_hex(_ID_BYTES),
            identity=identity.name,
            target=ask.target,
            account=account,
            entitlements=entitlements,
            requester=person,
            reason=ask.reason.strip(),
            status=RequestStatus.PENDING,
            environment=environment,
            duration_s=ask.duration_s,
            rules=rules,
            created_at=now,
            pending_until=now
            + timedelta(seconds=self.loaded.policy.governance.pending_expires_after_s),
            decided_at=None,
            decided_by=None,
            starts_at=None,
            ends_at=None,
            verified_at=None,
            ended_at=None,
            detail="",
        )
        return self._filer.submit(_Filing(who, ask, identity, request, dry_run))

    def _file_batch(self, batch: Sequence[_Filing]) -> list[AccessRequest | Exception]:
        """Requests filed at once from several threads, checked against sod and stored in
        one transaction with their journal entries (group commit: one commit a batch)."""
        answers: list[AccessRequest | Exception] = []
        entries: list[tuple[str, dict[str, Any]]] = []
        with self._store.writing(LOCK, access_requests) as conn:
            for f in batch:
                refusal = self._sod(conn, f.identity, f.request, f.request.created_at)
                if refusal is not None:
                    if not f.dry_run:  # a check (a form's) attempts nothing
                        entries.append(refused_entry("file", f.who, f.ask, refusal))
                    answers.append(Forbidden(f"request refused: {refusal}"))
                    continue
                if not f.dry_run:
                    conn.execute(insert(access_requests).values(**request_row(f.request)))
                    entries.append(("request_filed", filed_entry(f.request, f.who)))
                answers.append(f.request)
            self._journal.append_in(conn, entries)
        return answers

    def _checked(
        self, person: str, ask: Ask, now: datetime
    ) -> tuple[Identity, str, tuple[str, ...]]:
        policy = self.loaded.policy
        identity = policy.identities.get(ask.identity)
        if identity is None:
            raise UnknownName(f"unknown identity {ask.identity!r}")
        target = policy.targets.get(ask.target)
        if target is None:
            raise UnknownName(f"unknown target {ask.target!r}")
        access = next((a for a in identity.access if a.target == ask.target), None)
        if access is None:
            raise GovernanceError(
                f"identity {ask.identity!r} has no access on target {ask.target!r}: a request "
                "adds to an access the policy declares"
            )
        if not may_request(policy, person, identity):
            raise Forbidden(
                f"{person} may not ask access for identity {ask.identity!r}: its owner's "
                "contacts, its sponsor and admins may"
            )
        if not ask.reason.strip():
            raise GovernanceError("a request needs a reason")
        if len(ask.reason) > MAX_REASON:
            raise GovernanceError(f"the reason is longer than {MAX_REASON} characters")
        if not ask.entitlements:
            raise GovernanceError("a request names at least one entitlement")
        if len(ask.entitlements) > MAX_ENTITLEMENTS:
            raise GovernanceError(f"a request names at most {MAX_ENTITLEMENTS} entitlements")
        connector = connector_type(target.type)
        entitlements = set()
        for text in ask.entitlements:
            try:
                entitlements.add(connector.parse_entitlement(text))
            except GrammarError as exc:
                raise GovernanceError(f"entitlement {text[:200]!r}: {exc}") from None
        self._check_duration(identity, ask.target, ask.duration_s)
        own = own_access(policy, identity, access, now)
        if access.expires is not None and access.expires <= now:
            raise GovernanceError(
                f"identity {ask.identity!r}'s access on {ask.target!r} expired at "
                f"{iso(access.expires)}"
            )
        if not own.active:
            raise GovernanceError(f"identity {ask.identity!r} is suspended: {own.suspend_reason}")
        return identity, access.account, tuple(sorted(entitlements))

    def _check_duration(self, identity: Identity, target: str, duration_s: int) -> None:
        if duration_s <= 0:
            raise GovernanceError("a request's duration must be at least 1s")
        gov = self.loaded.policy.governance
        env = environment_of(self.loaded.policy, identity, target)
        key = env if env is not None and env in gov.max_duration_s else DEFAULT_ENVIRONMENT
        limit = gov.max_duration_s.get(key)
        if limit is not None and duration_s > limit:
            raise GovernanceError(
                f"request refused: {format_duration(duration_s)} is longer than "
                f"governance.max_duration allows in {key} ({format_duration(limit)})"
            )

    def _sod(
        self, conn: Connection, identity: Identity, request: AccessRequest, start: datetime
    ) -> str | None:
        end = start + timedelta(seconds=request.duration_s)
        found = self.separation.check(
            conn, identity, request.target, request.entitlements, start, end, skip=request.id
        )
        return found[0].message() if found else None

    # ------------------------------------------------------------ deciding

    def approve(self, who: Principal, request_id: str, comment: str = "") -> AccessRequest:
        person = _person(who, "approve")
        now = self._clock().replace(microsecond=0)
        refusal: GovernanceError | None = None
        with self._store.writing(LOCK, access_requests, request_approvals) as conn:
            request = self._open(conn, request_id, now)
            if isinstance(request, GovernanceError):
                refusal = request
            else:
                try:
                    stage = stage_for(request.rules, request.requester, request.given, person)
                except NotAllowed as exc:
                    refusal = Forbidden(str(exc))
                    stage = -1
                identity = self.loaded.policy.identities.get(request.identity)
                if refusal is None and identity is not None:
                    sod = self._sod(conn, identity, request, now)
                    if sod is not None:
                        refusal = Forbidden(f"approval refused: {sod}")
                if refusal is not None:
                    self._journal.append_in(
                        conn, [decision_refused_entry("approve", who, request_id, str(refusal))]
                    )
                else:
                    request = self._record_approval(conn, who, request, stage, comment, now)
        if refusal is not None:
            raise refusal
        assert isinstance(request, AccessRequest)
        return request

    def _record_approval(
        self,
        conn: Connection,
        who: Principal,
        request: AccessRequest,
        stage: int,
        comment: str,
        now: datetime,
    ) -> AccessRequest:
        person = str(who)
        conn.execute(
            insert(request_approvals).values(
                request_id=request.id, by=person, stage=stage, at=now, comment=comment
            )
        )
        given = [*request.given, Given(person, stage)]
        approvals = (*request.approvals, Approval(person, stage, now, comment))
        entries: list[tuple[str, dict[str, Any]]] = [
            (
                "request_approval",
                {
                    "request": request.id,
                    "by": person,
                    "via": who.via,
                    "stage": stage + 1,
                    "comment": comment,
                },
            )
        ]
        done = current_stage(request.rules, given) is None
        request = replace(request, approvals=approvals)
        if done:
            ends = now + timedelta(seconds=request.duration_s)
            values = {
                "status": str(RequestStatus.APPROVED),
                "decided_at": now,
                "decided_by": person,
                "starts_at": now,
                "ends_at": ends,
                "updated_at": now,
            }
            conn.execute(
                update(access_requests).where(access_requests.c.id == request.id).values(values)
            )
            request = replace(
                request,
                status=RequestStatus.APPROVED,
                decided_at=now,
                decided_by=person,
                starts_at=now,
                ends_at=ends,
            )
            entries.append(
                (
                    "request_approved",
                    {
                        "request": request.id,
                        "by": person,
                        "identity": request.identity,
                        "target": request.target,
                        "account": request.account,
                        "entitlements": list(request.entitlements),
                        "starts_at": iso(now),
                        "ends_at": iso(ends),
                    },
                )
            )
        self._journal.append_in(conn, entries)
        return request

    def deny(self, who: Principal, request_id: str, reason: str) -> AccessRequest:
        person = _person(who, "deny")
        if not reason.strip():
            raise GovernanceError("a denial needs a reason")
        if len(reason) > MAX_REASON:
            raise GovernanceError(f"the reason is longer than {MAX_REASON} characters")
        now = self._clock().replace(microsecond=0)
        refusal: GovernanceError | None = None
        with self._store.writing(LOCK, access_requests) as conn:
            request = self._open(conn, request_id, now)
            if isinstance(request, GovernanceError):
                refusal = request
            else:
                try:
                    check_may_deny(request.rules, request.requester, request.given, person)
                except NotAllowed as exc:
                    refusal = Forbidden(str(exc))
                    self._journal.append_in(
                        conn, [decision_refused_entry("deny", who, request_id, str(exc))]
                    )
            if refusal is None:
                assert isinstance(request, AccessRequest)
                values = {
                    "status": str(RequestStatus.DENIED),
                    "decided_at": now,
                    "decided_by": person,
                    "detail": reason.strip(),
                    "updated_at": now,
                }
                conn.execute(
                    update(access_requests).where(access_requests.c.id == request_id).values(values)
                )
                self._journal.append_in(
                    conn,
                    [
                        (
                            "request_denied",
                            {"request": request_id, "by": person, "via": who.via, "reason": reason},
                        )
                    ],
                )
                request = replace(
                    request,
                    status=RequestStatus.DENIED,
                    decided_at=now,
                    decided_by=person,
                    detail=reason.strip(),
                )
        if refusal is not None:
            raise refusal
        assert isinstance(request, AccessRequest)
        return request

    def _open(
        self, conn: Connection, request_id: str, now: datetime
    ) -> AccessRequest | GovernanceError:
        """The pending request, or why it cannot be decided; one found past its pending
        window is marked expired (in the caller's transaction) on the way."""
        found = read_requests(conn, [access_requests.c.id == request_id])
        if not found:
            return UnknownName(f"unknown request {request_id[:80]!r}")
        request = found[0]
        if request.status is RequestStatus.PENDING and request.pending_until <= now:
            self._expire(conn, [request], now)
            return Conflict(f"request {request_id} expired at {iso(request.pending_until)}")
        if request.status is not RequestStatus.PENDING:
            return Conflict(f"request {request_id} is {request.status} already")
        return request

    def expire_pending(self) -> list[str]:
        """Mark every request left pending past its window expired; their ids."""
        now = self._clock()
        with self._store.writing(LOCK, access_requests) as conn:
            due = read_requests(
                conn,
                [
                    access_requests.c.status == str(RequestStatus.PENDING),
                    access_requests.c.pending_until <= now,
                ],
            )
            self._expire(conn, due, now)
        return [r.id for r in due]

    def _expire(self, conn: Connection, due: list[AccessRequest], now: datetime) -> None:
        if not due:
            return
        ids = [r.id for r in due]
        conn.execute(
            update(access_requests)
            .where(access_requests.c.id.in_(ids))
            .values(status=str(RequestStatus.EXPIRED), decided_at=now, updated_at=now)
        )
        self._journal.append_in(
            conn,
            [
                ("request_expired", {"request": r.id, "pending_until": iso(r.pending_until)})
                for r in due
            ],
        )

    # ------------------------------------------------------------ reading

    def get(self, request_id: str) -> AccessRequest:
        with self._store.reading() as conn:
            found = read_requests(conn, [access_requests.c.id == request_id])
        if not found:
            raise UnknownName(f"unknown request {request_id[:80]!r}")
        return found[0]

    def list(
        self, statuses: tuple[RequestStatus, ...] | None = None, identity: str | None = None
    ) -> list[AccessRequest]:
        where: list[ColumnElement[bool]] = []
        if statuses is not None:
            where.append(access_requests.c.status.in_([str(s) for s in statuses]))
        if identity is not None:
            where.append(access_requests.c.identity == identity)
        with self._store.reading() as conn:
            return read_requests(conn, where)

    def page(
        self, where: Sequence[ColumnElement[bool]], offset: int, limit: int
    ) -> tuple[Sequence[AccessRequest], int]:
        """One page of the requests matching ``where``, newest first, and how many match."""
        counted = select(func.count()).select_from(access_requests)
        for condition in where:
            counted = counted.where(condition)
        with self._store.reading() as conn:
            total = int(conn.execute(counted).scalar_one())
            return read_requests(conn, where, limit, offset), total


def _person(who: Principal, doing: str) -> str:
    if who.person is None:
        raise Forbidden(
            f"the operator's token acts for nobody: {doing} with a personal token or an "
            "OIDC token of the person"
        )
    return who.person
