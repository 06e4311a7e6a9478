"""The service's HTTP face: health, Prometheus metrics, a small JSON API and the dashboard.

``/healthz`` and ``/metrics`` are open, as probes and scrapers expect. The ``/v1`` routes tell
about the estate (findings, targets) and trigger passes: when a token is configured
(``LOCKSTEP_API_TOKEN``, people's tokens) they require one as a bearer token, checked by
``lockstep.service.principals`` as the dashboard checks its sign-ins. Bind the service to
loopback otherwise (the default). The dashboard (``lockstep.dashboard``) is served at ``/``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import State

from lockstep.credentials.vault import Vault
from lockstep.engine.catalog import HELD, STATUSES
from lockstep.engine.shapes import finding_json
from lockstep.engine.workspace import Workspace
from lockstep.errors import LockstepError
from lockstep.journal import Journal
from lockstep.leases.manager import LeaseManager
from lockstep.leases.workload import KeySets, WorkloadVerifier
from lockstep.policy.load import LoadedPolicy
from lockstep.secret import Secret
from lockstep.service.controller import Controller, UnknownTarget
from lockstep.service.credentials_api import router as credentials_router
from lockstep.service.governance_api import Governance
from lockstep.service.governance_api import router as governance_router
from lockstep.service.http_limits import Limits, RequestLimits
from lockstep.service.logs import Log
from lockstep.service.metrics import Metrics
from lockstep.service.principals import OPERATOR, Authenticators, Authority, Kind, Principal
from lockstep.service.responses import one_shape
from lockstep.service.scaleout import pass_times
from lockstep.store import Store, StoreError
from lockstep.store.findings import FindingLedger

MAX_WAIT_S = 600.0
OPENAPI_PATH = "/v1/openapi.json"
ALL = "all"


def create_app(
    controller: Controller,
    credentials: Credentials,
    api_token: Secret | None = None,
    governance: Governance | None = None,
    authenticators: Authenticators | None = None,
) -> FastAPI:
    """The service's app. ``authenticators`` (default: the operator's ``api_token`` alone)
    decides who may call the API; the dashboard, mounted by the caller, shares them."""
    # The OpenAPI document is served below, behind authentication like the rest of /v1.
    app = FastAPI(title="lockstep", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestLimits, limits=Limits())
    one_shape(app)
    credentials.serve(app.state)
    auth = authenticators or Authenticators(
        lambda: controller.current()[0].policy, api_token, controller.store
    )
    app.state.authenticators = auth
    if governance is not None:
        governance.serve(app.state)

    # Async, so that it runs on the event loop and never waits for a worker thread that a
    # slow target or issuer is holding.
    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 while running, with the targets this service reconciles; 503 once stopping."""
        invalid_since = controller.policy_invalid_since
        body = {
            "status": "stopping" if controller.stopping else "ok",
            "instance": controller.instance,
            "mode": "dry-run" if controller.dry_run else "enforcing",
            # While the policy on disk does not load, the last valid one stays in force.
            "policy": "valid" if invalid_since is None else f"invalid since {_iso(invalid_since)}",
            "policy_errors": list(controller.policy_errors),
            "targets": {
                name: {"last_pass": _iso(s.last_pass), "up": s.up, "outcome": s.outcome}
                for name, s in sorted(controller.states().items())
            },
            "reaper": {"failing": credentials.reaper_failing},
        }
        return JSONResponse(body, status_code=503 if controller.stopping else 200)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    def metrics() -> Response:
        return Response(controller.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=[Depends(caller)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.include_router(_v1(controller))
    app.include_router(credentials_router)
    app.include_router(governance_router)
    return app


_OPEN = Principal(OPERATOR, Kind.OPERATOR, "operator:open", None)


def api_principal(request: Request, authorization: str | None) -> Principal:
    """The caller of an API route, from its bearer token; with no operator token configured,
    the operator (a service bound to loopback, as by default)."""
    auth: Authenticators = request.app.state.authenticators
    if not auth.operator_configured:
        return _OPEN
    # The scheme itself is required: a bare token is refused.
    scheme, _, given = (authorization or "").partition(" ")
    principal = (
        auth.authenticate(given.strip(), datetime.now(UTC)) if scheme.lower() == "bearer" else None
    )
    if principal is None:
        raise HTTPException(
            401,
            "a valid bearer token is required (LOCKSTEP_API_TOKEN, or a personal token)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return api_principal(request, authorization)


Caller = Annotated[Principal, Depends(caller)]


def _v1(controller: Controller) -> APIRouter:
    def operator(who: Caller) -> None:
        if not who.is_operator:
            raise HTTPException(403, "only the operator (LOCKSTEP_API_TOKEN) may do this")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(caller)])

    @v1.get("/findings")
    def findings(
        who: Caller,
        status: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        """Findings by status (repeatable; default: those still held, ``all`` for every),
        those the caller may see."""
        wanted = status or list(HELD)
        unknown = sorted(set(wanted) - {*STATUSES, ALL})
        if unknown:
            raise HTTPException(400, f"unknown status {unknown[0]!r}: use {', '.join(STATUSES)}")
        try:
            records = controller.findings(None if ALL in wanted else wanted)
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from None
        authority = Authority(controller.current()[0].policy)
        return {
            "findings": [
                finding_json(r.finding, r)
                for r in records
                if authority.may_see(who, [r.finding.identity])
            ]
        }

    @v1.get("/targets", dependencies=[Depends(operator)])
    def targets() -> dict[str, Any]:
        """Every target of the policy: who reconciles it, when any service last read it."""
        loaded, _ = controller.current()
        states = controller.states()
        try:
            holders = controller.leases.holders()
            last = pass_times(controller.store)
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from None
        rows = []
        for name, target in sorted(loaded.policy.targets.items()):
            state = states.get(name)
            rows.append(
                {
                    "name": name,
                    "type": target.type,
                    "environment": target.environment,
                    "legacy": target.legacy,
                    "interval_s": controller.interval_s(name),
                    "holder": controller.instance if state else holders.get(name),
                    "last_pass": _iso(last.get(name)),
                    "up": state.up if state else None,
                    "outcome": state.outcome if state else None,
                    "passes": state.passes if state else None,  # by this service
                }
            )
        return {"instance": controller.instance, "targets": rows}

    @v1.post("/reconcile", dependencies=[Depends(operator)])
    def reconcile(
        target: Annotated[str | None, Query()] = None,
        wait: Annotated[bool, Query()] = False,
        timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_S)] = 60.0,
    ) -> JSONResponse:
        if controller.stopping:
            raise HTTPException(503, "the service is stopping")
        try:
            tickets, elsewhere = controller.request(target, "requested")
        except UnknownTarget:
            raise HTTPException(404, f"unknown target {target!r}") from None
        body: dict[str, Any] = {
            "requested": [t.target for t in tickets],
            "elsewhere": elsewhere,  # held by another service: ask that one
        }
        if not wait:
            return JSONResponse(body, status_code=202)
        body["passes"] = controller.await_passes(tickets, timeout)
        finished = all(outcome is not None for outcome in body["passes"].values())
        return JSONResponse(body, status_code=200 if finished else 504)

    return v1


class Credentials:
    """What ``POST /v1/credentials`` needs on ``app.state``, made afresh for every policy the
    service loads; and the lease reaper, which the leading service runs. ``create_app``
    hands it the app's state before the controller starts loading policies into it."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        key_sources: Mapping[str, str],
        log: Log,
        metrics: Metrics | None = None,
    ) -> None:
        self._state = State()
        self._metrics = metrics
        # What the reaper's last run could not end: /healthz shows it, so a reaper failing
        # every run is seen rather than retried in silence.
        self.reaper_failing: list[dict[str, str | None]] = []
        self._store = store
        self._journal = Journal(store)
        self._vault = vault
        self.keys = KeySets(key_sources)  # one cache of issuers' keys across policy edits
        self._log = log
        self._managers: list[LeaseManager] = []
        self._lock = threading.Lock()

    def load(self, loaded: LoadedPolicy) -> None:
        workspace = Workspace(
            loaded, self._store, self._journal, self._vault, FindingLedger(self._store)
        )
        manager = LeaseManager.for_workspace(workspace)
        with self._lock:
            # Earlier managers stay open until shutdown: a request may still be using one.
            self._managers.append(manager)
        self._state.journal = self._journal
        self._state.workloads = WorkloadVerifier(loaded.policy.identities, self.keys)
        self._state.leases = manager

    def serve(self, state: State) -> None:
        self._state = state

    def reap(self) -> None:
        """End leases past their expiry, or no longer allowed, and lease accounts whose
        record was lost; each one proven refused."""
        manager: LeaseManager = self._state.leases
        try:
            report = manager.reap()
        except LockstepError as exc:
            self._log.error(
                "lease reaper failed", target=None, op="reap", status="error", error=str(exc)
            )
            return
        failing = [e for e in report.ended if not e.verified]
        self.reaper_failing = [
            {"target": e.target, "account": e.account, "lease_id": e.lease_id, "detail": e.detail}
            for e in failing
        ]
        if self._metrics is not None:
            gauge = self._metrics.lease_reap_failures
            for target in {*manager.policy.targets, *(e.target for e in failing)}:
                gauge.labels(target=target).set(sum(e.target == target for e in failing))
        for ended in failing:
            self._log.warning(
                "lease reaper could not end a lease account: retried every run",
                target=ended.target,
                op="reap",
                status=str(ended.status),
                account=ended.account,
                lease_id=ended.lease_id,
                error=ended.detail,
            )
        for ended in report.ended:
            if ended in failing:
                continue
            self._log.info(
                "lease ended",
                target=ended.target,
                op="reap",
                status=str(ended.status),
                account=ended.account,
                lease_id=ended.lease_id,
                detail=ended.detail,
            )
        for target, why in sorted(report.unreachable.items()):
            self._log.warning(
                "lease reaper: target unreachable",
                target=target,
                op="reap",
                status="unreachable",
                error=why,
            )

    def close(self) -> None:
        with self._lock:
            for manager in self._managers:
                manager.close()
            self._managers.clear()


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
