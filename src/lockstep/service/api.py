"""The service's HTTP face: health, Prometheus metrics and a small JSON API.

``/healthz`` and ``/metrics`` are open, as probes and scrapers expect. The ``/v1`` routes tell
about the estate (findings, targets) and trigger passes: when ``LOCKSTEP_API_TOKEN`` is set
they require it as a bearer token. Bind the service to loopback otherwise (the default).
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from lockstep.cli.render import finding_json
from lockstep.findings_ledger import HELD, STATUSES
from lockstep.secrets import Secret
from lockstep.service.controller import Controller, UnknownTarget
from lockstep.service.credentials_api import router as credentials_router
from lockstep.service.scaleout import pass_times
from lockstep.store import StoreError

MAX_WAIT_S = 600.0
ALL = "all"


def create_app(controller: Controller, api_token: Secret | None = None) -> FastAPI:
    app = FastAPI(title="lockstep", docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json")

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 while running, with the targets this service reconciles; 503 once stopping."""
        body = {
            "status": "stopping" if controller.stopping else "ok",
            "instance": controller.instance,
            "targets": {
                name: {"last_pass": _iso(s.last_pass), "up": s.up, "outcome": s.outcome}
                for name, s in sorted(controller.states().items())
            },
        }
        return JSONResponse(body, status_code=503 if controller.stopping else 200)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(controller.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(_v1(controller, api_token))
    app.include_router(credentials_router)
    return app


def _v1(controller: Controller, api_token: Secret | None) -> APIRouter:
    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if api_token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, api_token.reveal().encode()):
            raise HTTPException(401, "a valid bearer token is required (LOCKSTEP_API_TOKEN)")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorised)])

    @v1.get("/findings")
    def findings(
        status: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        """Findings by status (repeatable; default: those still held, ``all`` for every)."""
        wanted = status or list(HELD)
        unknown = sorted(set(wanted) - {*STATUSES, ALL})
        if unknown:
            raise HTTPException(400, f"unknown status {unknown[0]!r}: use {', '.join(STATUSES)}")
        try:
            records = controller.findings(None if ALL in wanted else wanted)
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from None
        return {"findings": [finding_json(r.finding, r) for r in records]}

    @v1.get("/targets")
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
                }
            )
        return {"instance": controller.instance, "targets": rows}

    @v1.post("/reconcile")
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


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
