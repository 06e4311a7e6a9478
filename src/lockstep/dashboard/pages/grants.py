"""Grants: the approved requests the person may see, from approved to ended, each with when
its access was read back held and, at its end, read back gone. While one is on its way
(approved, ending) the table refreshes itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lockstep.governance.records import GRANTED, RequestStatus

from ..app import Dashboard, SignedIn
from .requests import SHOWN_MAX, decisions

MOVING = (RequestStatus.APPROVED, RequestStatus.ENDING)


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/grants")
    def grants(request: Request, viewer: SignedIn) -> Response:
        live = decisions(request)
        found = [] if live is None else live.visible(viewer.principal, GRANTED)
        context: dict[str, Any] = {
            "title": "Grants",
            "section": "grants",
            "available": live is not None,
            "grants": found[:SHOWN_MAX],
            "total": len(found),
            "moving": any(g.status in MOVING for g in found),
        }
        return dash.render(request, "grants.html", context, viewer, fragment="_grants_results.html")
