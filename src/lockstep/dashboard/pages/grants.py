"""Grants: the approved requests the person may see, from approved to ended, each with when
its access was read back held and, at its end, read back gone. While one is on its way
(approved, ending) the table refreshes itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lockstep.governance.records import GRANTED, AccessRequest, RequestStatus

from ..app import Dashboard, SignedIn
from .requests import PAGE_SIZE, Page, decisions

MOVING = (RequestStatus.APPROVED, RequestStatus.ENDING)


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/grants")
    def grants(request: Request, viewer: SignedIn, number: Page = 1) -> Response:
        live = decisions(request)
        found: list[AccessRequest] = []
        total = 0
        if live is not None:
            offset = (number - 1) * PAGE_SIZE
            found, total = live.page(viewer.principal, GRANTED, offset, PAGE_SIZE)
        context: dict[str, Any] = {
            "title": "Grants",
            "section": "grants",
            "available": live is not None,
            "grants": found,
            "total": total,
            "page": number,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "first": (number - 1) * PAGE_SIZE + 1,
            "moving": any(g.status in MOVING for g in found),
        }
        return dash.render(request, "grants.html", context, viewer, fragment="_grants_results.html")
