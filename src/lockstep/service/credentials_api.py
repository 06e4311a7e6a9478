"""``POST /v1/credentials``: a workload trades a JWT from a trusted issuer for a lease.

The workload presents ``Authorization: Bearer <JWT>`` and asks for one identity's
credential on one target. The token must be bound to that identity alone (see
``lockstep.leases.workload``); then the lease is issued, proven to work, journaled, and returned
once. Every refusal is journaled as ``workload_refused`` with its reason and what the token
claims to be (issuer, subject, key id), never the token.

Wiring: the service mounts ``router`` and provides, on ``app.state`` (or by overriding
``get_leases`` / ``get_workloads`` / ``get_journal`` through ``app.dependency_overrides``):

- ``app.state.leases``: ``LeaseManager.for_workspace(ws)`` (``close()`` it on shutdown)
- ``app.state.workloads``: ``WorkloadVerifier(ws.policy.identities, KeySets(sources))``,
  where ``sources`` maps issuer -> URL or ``file:PATH`` from ``--jwks ISSUER=...``
  (``lockstep.workload.parse_key_source``); issuers not named there use OIDC discovery
- ``app.state.journal``: ``ws.journal``, where refusals are recorded

Without them every request is answered 503. The service should also run
``LeaseManager.reap()`` when it starts and then every pass, so that leases past expiry, and
lease accounts whose record was lost, are ended even where the target cannot expire them.

Renewal and release are synchronous: FastAPI runs them in its thread pool, and the lease
manager is safe to share between threads. Issuing is asynchronous: the token is checked in
the thread pool, but the wait for the lease (issued in a batch with whatever else was
requested meanwhile) holds no thread, so that concurrent requests are not capped by the
pool's size and batch together.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lockstep.journal import Journal, JournalError
from lockstep.leases.admission import QuotaExceeded, Token, TokenReplayed
from lockstep.leases.manager import Lease, LeaseError, LeaseManager
from lockstep.leases.workload import TokenInfo, VerifiedWorkload, WorkloadRefused, WorkloadVerifier
from lockstep.policy.durations import parse_duration
from lockstep.service.responses import error_response
from lockstep.store import StoreError

router = APIRouter()

_BEARER = "bearer "
_T = TypeVar("_T")


def get_leases(request: Request) -> LeaseManager:
    return _state(request, "leases", LeaseManager)


def get_workloads(request: Request) -> WorkloadVerifier:
    return _state(request, "workloads", WorkloadVerifier)


def get_journal(request: Request) -> Journal:
    return _state(request, "journal", Journal)


def _state(request: Request, name: str, kind: type[_T]) -> _T:
    value = getattr(request.app.state, name, None)
    if not isinstance(value, kind):
        raise HTTPException(HTTPStatus.SERVICE_UNAVAILABLE, "short-lived credentials are off")
    return value


class CredentialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: Annotated[str, Field(min_length=1, max_length=200)]
    target: Annotated[str, Field(min_length=1, max_length=200)]
    ttl: Annotated[str | None, Field(description="e.g. 15m; default: the identity's")] = None


class CredentialResponse(BaseModel):
    lease_id: str
    username: str
    password: str
    expires_at: datetime
    identity: str
    target: str
    session_token: str | None = None


class _Refusal(Exception):
    def __init__(
        self,
        status: HTTPStatus,
        reason: str,
        token: TokenInfo,
        identity: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.token = token
        self.identity = identity  # of the lease asked about, when it exists
        self.target = target


@router.post(
    "/v1/credentials",
    status_code=HTTPStatus.CREATED,
    response_model=CredentialResponse,
    responses={401: {}, 403: {}, 422: {}, 429: {}, 503: {}},
)
async def issue_credential(
    body: CredentialRequest,
    leases: Annotated[LeaseManager, Depends(get_leases)],
    workloads: Annotated[WorkloadVerifier, Depends(get_workloads)],
    journal: Annotated[Journal, Depends(get_journal)],
    authorization: Annotated[str | None, Header()] = None,
) -> CredentialResponse | JSONResponse:
    try:
        # In the pool: verifying may fetch the issuer's keys.
        workload = await run_in_threadpool(_authenticate, workloads, authorization, body.identity)
        ttl_s = _ttl(body.ttl, workload)
    except _Refusal as refusal:
        return await run_in_threadpool(_refuse, journal, refusal, body.identity, body.target)
    spent = Token(workload.issuer, workload.jti, datetime.fromtimestamp(workload.expires_at, UTC))
    try:
        pending = leases.issue_later(body.identity, body.target, ttl_s, str(workload), spent)
        lease, credential = await asyncio.wrap_future(pending)
    except (TokenReplayed, QuotaExceeded) as exc:
        status = HTTPStatus.TOO_MANY_REQUESTS
        if isinstance(exc, TokenReplayed):
            status = HTTPStatus.UNAUTHORIZED
        refused = _Refusal(status, str(exc), TokenInfo(workload.issuer, workload.subject))
        return await run_in_threadpool(_refuse, journal, refused, body.identity, body.target)
    except LeaseError as exc:
        return _error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
    except (JournalError, StoreError) as exc:
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"nothing issued: {exc}")
    token = credential.token.reveal() if credential.token is not None else None
    return _response(lease, credential.secret.reveal(), token)


class RenewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl: Annotated[str | None, Field(description="e.g. 15m; default: the identity's")] = None


class LeaseResponse(BaseModel):
    lease_id: str
    status: str
    expires_at: datetime
    detail: str = ""


@router.post(
    "/v1/credentials/{lease_id}/renew",
    response_model=LeaseResponse,
    responses={401: {}, 404: {}, 422: {}, 503: {}},
)
def renew_credential(
    lease_id: str,
    body: RenewRequest,
    leases: Annotated[LeaseManager, Depends(get_leases)],
    workloads: Annotated[WorkloadVerifier, Depends(get_workloads)],
    journal: Annotated[Journal, Depends(get_journal)],
    authorization: Annotated[str | None, Header()] = None,
) -> LeaseResponse | JSONResponse:
    """Extend the caller's own lease, never past its maximum lifetime."""
    try:
        lease, workload = _callers_lease(leases, workloads, authorization, lease_id)
        ttl_s = _ttl(body.ttl, workload)
    except _Refusal as refusal:
        return _refuse(journal, refusal, refusal.identity, refusal.target)
    try:
        renewed = leases.renew(lease.id, ttl_s)
    except LeaseError as exc:
        return _error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
    except JournalError as exc:
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"not renewed: {exc}")
    return LeaseResponse(lease_id=renewed.id, status=renewed.status, expires_at=renewed.expires_at)


@router.delete(
    "/v1/credentials/{lease_id}",
    response_model=LeaseResponse,
    responses={401: {}, 404: {}, 503: {}},
)
def release_credential(
    lease_id: str,
    leases: Annotated[LeaseManager, Depends(get_leases)],
    workloads: Annotated[WorkloadVerifier, Depends(get_workloads)],
    journal: Annotated[Journal, Depends(get_journal)],
    authorization: Annotated[str | None, Header()] = None,
) -> LeaseResponse | JSONResponse:
    """End the caller's own lease now; 200 only once its credential was proven refused."""
    try:
        lease, _ = _callers_lease(leases, workloads, authorization, lease_id)
    except _Refusal as refusal:
        return _refuse(journal, refusal, refusal.identity, refusal.target)
    try:
        ended = leases.revoke(lease.id)
    except JournalError as exc:
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"not revoked: {exc}")
    if not ended.verified:
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"revocation not proven: {ended.detail}")
    return LeaseResponse(
        lease_id=lease.id, status=ended.status, expires_at=lease.expires_at, detail=ended.detail
    )


_NO_SUCH_LEASE = "no such lease for this workload"


def _callers_lease(
    leases: LeaseManager, workloads: WorkloadVerifier, authorization: str | None, lease_id: str
) -> tuple[Lease, VerifiedWorkload]:
    """The lease, once the caller proved to be the workload bound to it. Neither answer
    tells whether a lease exists: without a genuine token it is 401 whatever the id, and a
    lease that does not exist and one bound to another workload are both 404."""
    token = _bearer_token(authorization)
    try:
        lease = leases.get(lease_id)
    except LeaseError:
        try:
            info = workloads.authenticate(token)
        except WorkloadRefused as exc:
            raise _Refusal(exc.status, exc.reason, exc.token) from None
        raise _Refusal(HTTPStatus.NOT_FOUND, _NO_SUCH_LEASE, info) from None
    try:
        workload = workloads.verify(token, lease.identity)
    except WorkloadRefused as exc:
        status, reason = exc.status, exc.reason
        if status is HTTPStatus.FORBIDDEN:
            status, reason = HTTPStatus.NOT_FOUND, _NO_SUCH_LEASE
        raise _Refusal(status, reason, exc.token, lease.identity, lease.target) from None
    return lease, workload


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.lower().startswith(_BEARER):
        raise _Refusal(
            HTTPStatus.UNAUTHORIZED, "a workload token is required: Bearer <JWT>", TokenInfo()
        )
    return authorization[len(_BEARER) :].strip()


def _authenticate(
    workloads: WorkloadVerifier, authorization: str | None, identity: str
) -> VerifiedWorkload:
    token = _bearer_token(authorization)
    try:
        return workloads.verify(token, identity)
    except WorkloadRefused as exc:
        raise _Refusal(exc.status, exc.reason, exc.token) from None


def _ttl(text: str | None, workload: VerifiedWorkload) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        info = TokenInfo(workload.issuer, workload.subject)
        raise _Refusal(HTTPStatus.UNPROCESSABLE_ENTITY, f"ttl: {exc}", info) from None


def _refuse(
    journal: Journal, refusal: _Refusal, identity: str | None, target: str | None
) -> JSONResponse:
    try:
        journal.append(
            "workload_refused",
            {
                "identity": identity,
                "target": target,
                "status": int(refusal.status),
                "reason": refusal.reason,
                **refusal.token.fields(),
            },
        )
    except JournalError as exc:
        # Still refused: an unrecorded refusal is better than an unrecorded grant.
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal.reason} (not journaled: {exc})")
    return _error(refusal.status, refusal.reason)


_error = error_response


def _response(lease: Lease, password: str, session_token: str | None) -> CredentialResponse:
    return CredentialResponse(
        lease_id=lease.id,
        username=lease.username,
        password=password,
        expires_at=lease.expires_at.astimezone(UTC),
        identity=lease.identity,
        target=lease.target,
        session_token=session_token,
    )
