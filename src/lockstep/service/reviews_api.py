"""``/v1/reviews``: people keep or revoke access, and the notifier that tells them of reviews
and approvals without polling.

Every call is authenticated as the other governance routes are (a person's token, or the
operator's, which reads but acts for nobody), and errors have the API's one shape
``{"error": "…"}``: 401, 403 not a reviewer (or an NHI, the sponsor, the requester), 404
unknown review, 409 decided already, 422 no reason, 503 the state store is down. A revoke,
and a keep that lifts a suspension, make the target pass at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import State

from lockstep.engine.review_model import STATUSES, Decision, Review
from lockstep.errors import LockstepError
from lockstep.governance.errors import GovernanceError, UnknownName
from lockstep.governance.notify import Notifier, enqueue, shown
from lockstep.governance.review_records import review_json
from lockstep.governance.reviews import ReviewStore
from lockstep.journal import Journal
from lockstep.model import Policy
from lockstep.policy.load import LoadedPolicy
from lockstep.service.governance_api import (
    ERRORS,
    Authorization,
    _answer,
    _Refused,
    _signed_in,
)
from lockstep.service.logs import Log
from lockstep.service.principals import Authority, Principal
from lockstep.service.responses import error_response
from lockstep.store import Store
from lockstep.store.tables import notifications

router = APIRouter(prefix="/v1", tags=["reviews"])
NOTIFY_POLL_S = 1.0  # how often the notifier looks for notifications due (retries)

Ring = Callable[[str], None]


class ReviewDesk:
    """What the review routes need on ``app.state.reviews``, made afresh for every policy
    the service loads; and the notifier's thread."""

    def __init__(
        self,
        store: Store,
        ring: Ring,
        log: Log,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._ring = ring
        self._log = log
        self._clock = clock
        self._state = State()
        self._webhook: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._notifier = Notifier(store, clock)
        self._thread: threading.Thread | None = None

    def serve(self, state: State) -> None:
        self._state = state
        state.notices = self

    def load(self, loaded: LoadedPolicy) -> None:
        notify = loaded.policy.governance.notify
        self._webhook = notify.webhook if notify is not None else None
        journal = Journal(self._store, self._clock)
        self._state.reviews = _Desk(
            loaded.policy, ReviewStore(self._store, journal, self._clock), self._ring, self
        )
        self._wake.set()

    def queue(self, kind: str, subject: str, body: dict[str, Any]) -> None:
        """Queue a notification (a pending approval) when a webhook is set; sent soon."""
        if self._webhook is None:
            return
        with self._store.writing(notifications) as conn:
            enqueue(conn, kind, subject, body, self._clock())
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lockstep-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(NOTIFY_POLL_S)
            self._wake.clear()
            self.send()

    def send(self) -> None:
        """Send what is due; each attempt logged, the webhook shown by its host only."""
        try:
            attempts = self._notifier.send_due(self._webhook)
        except LockstepError as exc:
            self._log.error(
                "notifications not sent", target=None, op="notify", status="error", error=str(exc)
            )
            return
        for a in attempts:
            log = self._log.info if a.ok else self._log.warning
            log(
                "notification",
                target=None,
                op="notify",
                status="sent" if a.ok else ("given_up" if a.given_up else "retrying"),
                kind=a.kind,
                subject=a.subject,
                attempts=a.attempts,
                webhook=shown(self._webhook or ""),
                error=a.error,
            )


class _Desk:
    def __init__(self, policy: Policy, reviews: ReviewStore, ring: Ring, desk: ReviewDesk) -> None:
        self.policy = policy
        self.reviews = reviews
        self.ring = ring
        self.desk = desk


def desk_of(state: State) -> _Desk | None:
    """The reviews the service serves under the policy in force; None before the first."""
    desk = getattr(state, "reviews", None)
    return desk if isinstance(desk, _Desk) else None


def _desk(request: Request) -> _Desk:
    desk = desk_of(request.app.state)
    if desk is None:
        raise _Refused(error_response(HTTPStatus.SERVICE_UNAVAILABLE, "reviews are off"))
    return desk


def decide_review(
    desk: _Desk, who: Principal, review_id: str, decision: Decision, reason: str
) -> Review:
    """A person's keep or revoke, for the API and the dashboard alike: checked and recorded
    by the review store (GovernanceError when refused); a revoke, and a keep that lifts a
    suspension, make the target's pass run at once."""
    actor = who.actor
    decided = desk.reviews.decide(desk.policy, review_id, actor.person, actor.via, decision, reason)
    if decided.status == "revoking" or decided.lifted_at is not None:
        desk.ring(decided.target)
    return decided


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


@router.get("/reviews", responses=ERRORS)
def list_reviews(
    request: Request,
    authorization: Authorization = None,
    status: Annotated[list[str] | None, Query()] = None,
    identity: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    """Reviews, the soonest due first (``status`` repeatable; ``identity`` one identity's)."""

    def call() -> dict[str, Any]:
        who = _signed_in(request, authorization)
        unknown = sorted(set(status or ()) - set(STATUSES))
        if unknown:
            known = ", ".join(STATUSES)
            raise GovernanceError(f"unknown status {unknown[0]!r}: use {known}")
        desk = _desk(request)
        authority = Authority(desk.policy)
        found = desk.reviews.list(status, identity)
        # A person sees the reviews of the identities they may see (their owner's, their
        # sponsored agents', every one for an admin), as everywhere else in the service.
        return {"reviews": [review_json(r) for r in found if authority.may_see(who, [r.identity])]}

    return _answer(call)


@router.get("/reviews/{review_id}", responses=ERRORS)
def get_review(
    request: Request, review_id: str, authorization: Authorization = None
) -> JSONResponse:
    def call() -> dict[str, Any]:
        who = _signed_in(request, authorization)
        desk = _desk(request)
        found = desk.reviews.get(review_id)
        if not Authority(desk.policy).may_see(who, [found.identity]):
            raise UnknownName(f"no review {review_id[:80]!r} (lockstep reviews lists them)")
        return review_json(found)

    return _answer(call)


def _decide(
    request: Request, review_id: str, decision: Decision, reason: str, authorization: str | None
) -> JSONResponse:
    def call() -> dict[str, Any]:
        who = _signed_in(request, authorization)
        return review_json(decide_review(_desk(request), who, review_id, decision, reason))

    return _answer(call)


@router.post("/reviews/{review_id}/keep", responses=ERRORS)
def keep_review(
    request: Request, review_id: str, body: DecisionBody, authorization: Authorization = None
) -> JSONResponse:
    """Keep the access: recorded, the next periodic review pushed out, and a suspension an
    overdue review brought lifted."""
    return _decide(request, review_id, Decision.KEEP, body.reason, authorization)


@router.post("/reviews/{review_id}/revoke", responses=ERRORS)
def revoke_review(
    request: Request, review_id: str, body: DecisionBody, authorization: Authorization = None
) -> JSONResponse:
    """Revoke the access now, even while the policy declares it; the review is ``revoked``
    once the removal is verified."""
    return _decide(request, review_id, Decision.REVOKE, body.reason, authorization)
