"""Reviews: by default the unanswered reviews the person is to decide, each with "Keep" and
"Revoke" (a reason required). Decided through ``lockstep.service.reviews_api.decide_review``,
the very code the API's routes call; a revoke reads ``revoking`` until the target is read
back without the access, then ``revoked``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from lockstep.engine.review_decisions import ReviewRefused, may_review
from lockstep.engine.review_model import STATUSES, UNANSWERED, Decision, Review
from lockstep.governance.errors import GovernanceError
from lockstep.journal import JournalError
from lockstep.model import Policy
from lockstep.policy.governance import normal_person
from lockstep.service.reviews_api import decide_review, desk_of
from lockstep.store import StoreError

from ..app import Dashboard, SignedIn, Viewer

PAGE_SIZE = 50  # rows on one page, the soonest due first
Page = Annotated[int, Query(alias="page", ge=1, le=1_000_000)]
MINE = "mine"  # unanswered, and the person's to decide
ALL = "all"
SHOWS = (MINE, *(str(s) for s in STATUSES), ALL)
Reason = Annotated[str, Form(max_length=2000)]


def register(router: APIRouter, dash: Dashboard) -> None:
    def page(
        request: Request,
        viewer: Viewer,
        show: str,
        message: tuple[str, str] | None = None,
        status_code: int = 200,
        number: int = 1,
    ) -> Response:
        desk = desk_of(request.app.state)
        first = (number - 1) * PAGE_SIZE
        rows: list[dict[str, Any]] = []
        total = 0
        if desk is not None and not (show == MINE and viewer.principal.is_operator):
            statuses, identities, excluded = _chosen(desk.policy, viewer, show)
            found, total = desk.reviews.page(statuses, identities, excluded, first, PAGE_SIZE)
            rows = [{"r": r, "may_decide": _may_decide(desk.policy, viewer, r)} for r in found]
        context: dict[str, Any] = {
            "title": "Reviews",
            "section": "reviews",
            "available": desk is not None,
            "rows": rows,
            "total": total,
            "page": number,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "first": first + 1,
            "show": show,
            "shows": SHOWS,
            "message": message,
        }
        return dash.render(
            request,
            "reviews.html",
            context,
            viewer,
            status_code=status_code,
            fragment="_reviews_results.html",
        )

    @router.get("/reviews")
    def reviews(
        request: Request,
        viewer: SignedIn,
        show: Annotated[str, Query(max_length=20)] = MINE,
        number: Page = 1,
    ) -> Response:
        return page(request, viewer, show if show in SHOWS else MINE, number=number)

    def decide(
        request: Request,
        viewer: Viewer,
        csrf: str | None,
        review_id: str,
        decision: Decision,
        reason: str,
    ) -> Response:
        dash.sessions.check(request, csrf, viewer.session)
        desk = desk_of(request.app.state)
        if desk is None:
            return page(request, viewer, MINE, ("error", "Reviews are off."), 503)
        try:
            decided = decide_review(desk, viewer.principal, review_id, decision, reason)
        except GovernanceError as exc:
            return page(request, viewer, MINE, ("error", str(exc)), int(exc.status))
        except (StoreError, JournalError) as exc:
            return page(request, viewer, MINE, ("error", f"Nothing changed: {exc}"), 503)
        dash.estate.refresh()
        dash.log.info(
            f"review {decision}",
            target=decided.target,
            op=str(decision),
            status=str(decided.status),
            review=decided.id,
            person=viewer.principal.name,
        )
        return page(request, viewer, MINE, ("done", _said(decided)))

    @router.post("/reviews/{review_id}/keep")
    def keep(
        request: Request,
        viewer: SignedIn,
        review_id: str,
        reason: Reason = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        return decide(request, viewer, csrf, review_id, Decision.KEEP, reason)

    @router.post("/reviews/{review_id}/revoke")
    def revoke(
        request: Request,
        viewer: SignedIn,
        review_id: str,
        reason: Reason = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        return decide(request, viewer, csrf, review_id, Decision.REVOKE, reason)


def _chosen(
    policy: Policy, viewer: Viewer, show: str
) -> tuple[list[str], frozenset[str] | None, frozenset[str]]:
    """The statuses and identities (None: any, but those excluded) a page shows: for
    ``mine``, the unanswered reviews of the identities the person reviews (their owners'
    and, for an admin, every one), never those of an agent they sponsor."""
    if show == ALL:
        return [], viewer.visible, frozenset()
    if show != MINE:
        return [show], viewer.visible, frozenset()
    who = normal_person(viewer.principal.name)
    sponsored = frozenset(n for n, i in policy.identities.items() if i.sponsor == who)
    unanswered = [str(s) for s in UNANSWERED]
    if viewer.visible is None:
        return unanswered, None, sponsored
    return unanswered, viewer.visible - sponsored, frozenset()


def _may_decide(policy: Policy, viewer: Viewer, r: Review) -> bool:
    """Whether to offer the buttons: the review store checks again (requesters included)."""
    if r.status not in UNANSWERED or viewer.principal.is_operator:
        return False
    try:
        may_review(policy, viewer.principal.name, r)
    except ReviewRefused:
        return False
    return True


def _said(r: Review) -> str:
    if r.decision is Decision.KEEP:
        return f"Review {r.id}: the access is kept; the next periodic review is pushed out."
    return (
        f"Review {r.id}: revoke recorded. The service removes the access now; the review "
        f"reads revoked once {r.target} is read back without it."
    )
