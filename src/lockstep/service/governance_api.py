"""``/v1/requests`` and ``/v1/grants``: people ask for time-bound access, approve and deny.

Every call is authenticated by the service's ``Authenticators``
(``lockstep.service.principals``, which the dashboard's sign-in uses too): a person's personal
token or OIDC token, or the operator's token, which reads but acts for nobody. Errors have the API's
one shape, ``{"error": "…"}``: 401 no acceptable token, 403 not allowed (or a sod rule
forbids it), 404 unknown identity, target or request, 409 already decided or expired, 422
input outside the rules (grammar, durations, max_duration), 503 the state store is down.

When the last stage of a request is approved, the service is told at once (an event, not
the next interval) and enforces the grant.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import State

from lockstep.errors import LockstepError
from lockstep.governance.auth import AuthRefused
from lockstep.governance.errors import GovernanceError
from lockstep.governance.records import GRANTED, AccessRequest, RequestStatus
from lockstep.governance.requests import Ask, Requests
from lockstep.journal import Journal, JournalError
from lockstep.policy.durations import parse_duration
from lockstep.policy.load import LoadedPolicy
from lockstep.service.decisions import Decisions, Ring
from lockstep.service.logs import Log
from lockstep.service.notices import pending_approval
from lockstep.service.principals import Authenticators, Principal
from lockstep.service.responses import error_response
from lockstep.store import Store, StoreError

router = APIRouter(prefix="/v1", tags=["governance"])


class Governance:
    """What the routes need on ``app.state.governance``, made afresh for every policy the
    service loads (requests filed before keep the rules snapshotted into them)."""

    def __init__(
        self,
        store: Store,
        ring: Ring,
        log: Log,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._log = log
        self.clock = clock
        self._store = store
        self._journal = Journal(store)
        self._ring = ring
        self._state = State()

    def serve(self, state: State) -> None:
        self._state = state

    def load(self, loaded: LoadedPolicy) -> None:
        self._state.governance = Decisions(
            Requests(loaded, self._store, self._journal, self.clock), self._ring
        )

    def live(self) -> Decisions | None:
        """The decisions under the policy in force (None before the first is loaded)."""
        return decisions_of(self._state)

    def expire(self) -> None:
        """Mark the requests left pending past their window expired (the leader's chore)."""
        live = decisions_of(self._state)
        if live is None:
            return
        try:
            expired = live.requests.expire_pending()
        except LockstepError as exc:
            self._log.error(
                "pending requests not expired",
                target=None,
                op="expire",
                status="error",
                error=str(exc),
            )
            return
        for request_id in expired:
            self._log.info(
                "request expired", target=None, op="expire", status="expired", request=request_id
            )


def decisions_of(state: State) -> Decisions | None:
    """The decisions an app serves (its ``state.governance``), if governance is on."""
    found = getattr(state, "governance", None)
    return found if isinstance(found, Decisions) else None


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _live(request: Request) -> Decisions:
    live = decisions_of(request.app.state)
    if live is None:
        raise _Refused(error_response(HTTPStatus.SERVICE_UNAVAILABLE, "governance is off"))
    return live


def _signed_in(request: Request, authorization: str | None) -> Principal:
    """The caller, as the service's authenticators see them."""
    auth: Authenticators = request.app.state.authenticators
    scheme, _, token = (authorization or "").partition(" ")
    try:
        return auth.check(token if scheme.lower() == "bearer" else "", auth.clock())
    except AuthRefused as exc:
        raise _Refused(error_response(exc.status, exc.reason)) from None
    except StoreError as exc:
        raise _Refused(error_response(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))) from None


def _answer(call: Callable[[], Any], status: HTTPStatus = HTTPStatus.OK) -> JSONResponse:
    try:
        return JSONResponse(call(), status_code=status)
    except _Refused as refused:
        return refused.response
    except GovernanceError as exc:
        return error_response(exc.status, str(exc))
    except (StoreError, JournalError) as exc:
        return error_response(HTTPStatus.SERVICE_UNAVAILABLE, f"nothing changed: {exc}")
    except LockstepError as exc:
        return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))


Authorization = Annotated[str | None, Header()]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    identity: Name
    target: Name
    entitlements: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=1000)]],
        Field(min_length=1, max_length=50),
    ]
    duration: Annotated[str, Field(alias="for", description="e.g. 8h", min_length=1, max_length=20)]
    reason: Text


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Annotated[str, Field(max_length=2000)] = ""


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


def _json(requests: list[AccessRequest]) -> dict[str, Any]:
    return {"requests": [r.json() for r in requests]}


def _statuses(status: list[str] | None) -> tuple[RequestStatus, ...] | None:
    if not status:
        return None
    try:
        return tuple(RequestStatus(s) for s in status)
    except ValueError:
        known = ", ".join(s.value for s in RequestStatus)
        raise GovernanceError(f"unknown status in {status!r}: use {known}") from None


# The one error shape, as the OpenAPI document shows it: the review routes use it too.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": '{"error": "one line"}'} for code in (401, 403, 404, 409, 422, 503)
}


@router.get("/requests", responses=ERRORS)
def list_requests(
    request: Request,
    authorization: Authorization = None,
    status: Annotated[list[str] | None, Query()] = None,
    identity: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    """The requests the caller may see, newest first (``status`` repeatable; ``identity``
    one identity's): those of identities they see, their own, and those they may approve."""

    def call() -> dict[str, Any]:
        live = _live(request)
        who = _signed_in(request, authorization)
        return _json(live.visible(who, _statuses(status), identity))

    return _answer(call)


@router.post("/requests", status_code=201, responses=ERRORS)
def file_request(
    request: Request,
    body: RequestBody,
    authorization: Authorization = None,
    dry_run: Annotated[bool, Query(description="Check it, file nothing")] = False,
) -> JSONResponse:
    """File a request for time-bound access; refused at once when it breaks max_duration
    or a sod rule. ``dry_run`` checks it (a form showing the sod check) and files nothing."""

    def call() -> dict[str, Any]:
        live = _live(request)
        who = _signed_in(request, authorization)
        try:
            duration = parse_duration(body.duration)
        except ValueError as exc:
            raise GovernanceError(f"for: {exc}") from None
        ask = Ask(body.identity, body.target, tuple(body.entitlements), duration, body.reason)
        filed = live.file(who, ask, dry_run=dry_run).json()
        if not dry_run:
            pending_approval(request.app.state, filed)
        return filed

    return _answer(call, HTTPStatus.OK if dry_run else HTTPStatus.CREATED)


@router.get("/requests/{request_id}", responses=ERRORS)
def get_request(
    request: Request, request_id: str, authorization: Authorization = None
) -> JSONResponse:
    def call() -> dict[str, Any]:
        live = _live(request)
        who = _signed_in(request, authorization)
        return live.get(who, request_id).json()

    return _answer(call)


@router.post("/requests/{request_id}/approve", responses=ERRORS)
def approve_request(
    request: Request, request_id: str, body: ApproveBody, authorization: Authorization = None
) -> JSONResponse:
    """Approve the request's current stage; once every stage is approved the grant is
    enforced at once."""

    def call() -> dict[str, Any]:
        live = _live(request)
        who = _signed_in(request, authorization)
        shown = live.approve(who, request_id, body.comment).json()
        pending_approval(request.app.state, shown)  # its next stage waits for people
        return shown

    return _answer(call)


@router.post("/requests/{request_id}/deny", responses=ERRORS)
def deny_request(
    request: Request, request_id: str, body: DenyBody, authorization: Authorization = None
) -> JSONResponse:
    def call() -> dict[str, Any]:
        live = _live(request)
        who = _signed_in(request, authorization)
        return live.deny(who, request_id, body.reason).json()

    return _answer(call)


@router.get("/grants", responses=ERRORS)
def list_grants(request: Request, authorization: Authorization = None) -> JSONResponse:
    """The approved requests the caller may see (approved, active, ending, ended, failed),
    newest first."""

    def call() -> dict[str, Any]:
        live = _live(request)
        who = _signed_in(request, authorization)
        return _json(live.visible(who, GRANTED))

    return _answer(call)


@router.get("/me", responses=ERRORS)
def whoami(request: Request, authorization: Authorization = None) -> JSONResponse:
    """Who the token signs in as."""

    def call() -> dict[str, Any]:
        _live(request)
        who = _signed_in(request, authorization).actor
        return {"person": who.person, "via": who.via, "operator": who.operator}

    return _answer(call)
