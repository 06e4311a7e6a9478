"""Requests: those the person may see, pending first, each pending one with "Approve" and
"Deny" for a person who may decide it. Decided through ``lockstep.service.decisions``, the
very code the API's routes call: the same checks, the same journal entries, and the last
approval has the service enforce the grant at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from lockstep.engine.approvals import current_stage
from lockstep.governance.errors import GovernanceError
from lockstep.governance.records import AccessRequest, RequestStatus
from lockstep.journal import JournalError
from lockstep.policy.durations import format_duration
from lockstep.service.decisions import Decisions
from lockstep.service.governance_api import decisions_of
from lockstep.store import StoreError

from ..app import Dashboard, SignedIn, Viewer

PAGE_SIZE = 50  # rows on one page, newest first
Page = Annotated[int, Query(alias="page", ge=1, le=1_000_000)]
ALL = "all"
STATUSES = tuple(str(s) for s in RequestStatus)


def decisions(request: Request) -> Decisions | None:
    return decisions_of(request.app.state)


def register(router: APIRouter, dash: Dashboard) -> None:
    def page(
        request: Request,
        viewer: Viewer,
        status: str,
        message: tuple[str, str] | None = None,
        status_code: int = 200,
        number: int = 1,
    ) -> Response:
        live = decisions(request)
        rows: list[dict[str, Any]] = []
        total = 0
        if live is not None:
            wanted = None if status == ALL else (RequestStatus(status),)
            offset = (number - 1) * PAGE_SIZE
            found, total = live.page(viewer.principal, wanted, offset, PAGE_SIZE)
            rows = [_row(live, viewer, r) for r in found]
        context: dict[str, Any] = {
            "title": "Requests",
            "section": "requests",
            "available": live is not None,
            "rows": rows,
            "total": total,
            "page": number,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "first": (number - 1) * PAGE_SIZE + 1,
            "status": status,
            "statuses": (*STATUSES, ALL),
            "may_ask": not viewer.principal.is_operator,
            "message": message,
        }
        return dash.render(
            request,
            "requests.html",
            context,
            viewer,
            status_code=status_code,
            fragment="_requests_results.html",
        )

    @router.get("/requests")
    def requests(
        request: Request,
        viewer: SignedIn,
        status: Annotated[str, Query(max_length=20)] = str(RequestStatus.PENDING),
        number: Page = 1,
    ) -> Response:
        chosen = status if status in (*STATUSES, ALL) else ALL
        return page(request, viewer, chosen, number=number)

    def decide(
        request: Request,
        viewer: Viewer,
        csrf: str | None,
        request_id: str,
        call: Callable[[Decisions], AccessRequest],
        said: Callable[[AccessRequest], str],
        op: str,
    ) -> Response:
        dash.sessions.check(request, csrf, viewer.session)
        live = decisions(request)
        pending = str(RequestStatus.PENDING)
        if live is None:
            return page(request, viewer, pending, ("error", "Governance is off."), 503)
        try:
            decided = call(live)
        except GovernanceError as exc:
            return page(request, viewer, pending, ("error", str(exc)), int(exc.status))
        except (StoreError, JournalError) as exc:
            return page(request, viewer, pending, ("error", f"Nothing changed: {exc}"), 503)
        dash.estate.refresh()
        dash.log.info(
            f"request {op}",
            target=decided.target,
            op=op,
            status=str(decided.status),
            request=decided.id,
            person=viewer.principal.name,
        )
        return page(request, viewer, pending, ("done", said(decided)))

    @router.post("/requests/{request_id}/approve")
    def approve(
        request: Request,
        viewer: SignedIn,
        request_id: str,
        comment: Annotated[str, Form(max_length=2000)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        return decide(
            request,
            viewer,
            csrf,
            request_id,
            lambda live: live.approve(viewer.principal, request_id, comment.strip()),
            _approved,
            "approve",
        )

    @router.post("/requests/{request_id}/deny")
    def deny(
        request: Request,
        viewer: SignedIn,
        request_id: str,
        reason: Annotated[str, Form(max_length=2000)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        return decide(
            request,
            viewer,
            csrf,
            request_id,
            lambda live: live.deny(viewer.principal, request_id, reason),
            lambda r: f"Request {r.id} denied: nothing is granted.",
            "deny",
        )


def _row(live: Decisions, viewer: Viewer, r: AccessRequest) -> dict[str, Any]:
    who = viewer.principal
    return {
        "r": r,
        "duration": format_duration(r.duration_s),
        "stage": _stage(r),
        "may_approve": live.authority.may_approve(who, r),
        "may_deny": live.authority.may_deny(who, r),
    }


def _stage(r: AccessRequest) -> str:
    """Where a pending request stands: the stage waiting, its approvers and its count."""
    stage = current_stage(r.rules, r.given)
    if r.status is not RequestStatus.PENDING or stage is None:
        return ""
    rule = r.rules.stages[stage]
    given = sum(g.stage == stage for g in r.given)
    # Those who can still give it: never the requester, the sponsor, nor an earlier approver.
    excluded = {r.requester, r.rules.sponsor, *(g.by for g in r.given)}
    people = ", ".join(sorted(rule.people - excluded)) or "nobody but an admin"
    return (
        f"stage {stage + 1} of {len(r.rules.stages)}: {', '.join(rule.approvers)} ({people}); "
        f"{given} of {rule.required} approval(s)"
    )


def _approved(r: AccessRequest) -> str:
    if r.status is RequestStatus.APPROVED:
        return (
            f"Request {r.id} approved: every stage has passed. The service enforces it now; "
            f"it shows as active once {r.target} is read back holding it."
        )
    return f"Your approval of request {r.id} is recorded; next: {_stage(r)}."
