"""Findings, most severe first, filtered and a page at a time, read from the ledger as it is
now; a finding's risk accepted with a reason and an expiry by whoever may act on it."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import Response

from lockstep.engine.acceptance import accept_risk
from lockstep.engine.catalog import MAX_ACCEPTANCE, STATUSES
from lockstep.journal import JournalError
from lockstep.model import FindingType, Severity
from lockstep.store import StoreError
from lockstep.store.findings import FindingLedgerError

from ..app import Dashboard, SignedIn, Viewer
from ..queries import ALL, FindingFilter, findings_page

PAGE_SIZE = 50
Filter = Annotated[str, Query(max_length=500)]


def register(router: APIRouter, dash: Dashboard) -> None:
    def page(
        request: Request,
        viewer: Viewer,
        chosen: FindingFilter,
        number: int,
        message: tuple[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        rows, total = findings_page(
            dash.estate.store, chosen, viewer.visible, (number - 1) * PAGE_SIZE, PAGE_SIZE
        )
        today = datetime.now(UTC).date()
        query = urlencode({k: v for k, v in vars(chosen).items() if v})
        context: dict[str, Any] = {
            "title": "Findings",
            "section": "findings",
            "rows": rows,
            "total": total,
            "page": number,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "first": (number - 1) * PAGE_SIZE + 1,
            "f": chosen,
            "query": query,
            "statuses": (*STATUSES, ALL),
            "types": [str(t) for t in FindingType],
            "severities": [str(s) for s in reversed(Severity)],
            "targets": sorted(dash.estate.current()[0].policy.targets),
            "min_until": (today + timedelta(days=1)).isoformat(),
            "max_until": (today + MAX_ACCEPTANCE).isoformat(),
            "may_act": lambda row: viewer.authority.may_act_on(viewer.principal, [row["identity"]]),
            "message": message,
        }
        return dash.render(
            request,
            "findings.html",
            context,
            viewer,
            status_code=status_code,
            fragment="_findings_results.html",
        )

    @router.get("/findings")
    def findings(
        request: Request,
        viewer: SignedIn,
        status: Filter = "",
        type: Filter = "",
        severity: Filter = "",
        target: Filter = "",
        account: Filter = "",
        id: Filter = "",
        page_: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
    ) -> Response:
        chosen = FindingFilter(status, type, severity, target, account, id)
        return page(request, viewer, chosen, page_)

    @router.post("/findings/{finding_id}/accept")
    def accept(
        request: Request,
        viewer: SignedIn,
        finding_id: str,
        reason: Annotated[str, Form(max_length=2000)] = "",
        until: Annotated[str, Form(max_length=40)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        dash.sessions.check(request, csrf, viewer.session)
        ledger = dash.estate.ledger
        now = datetime.now(UTC)
        try:
            record = ledger.get(finding_id)
        except FindingLedgerError:
            raise HTTPException(404, "no finding of that id") from None
        if not viewer.authority.may_act_on(viewer.principal, [record.finding.identity]):
            raise HTTPException(403, "you may not accept the risk of this finding")
        shown = FindingFilter(status=ALL, id=finding_id)
        try:
            expires = _until(until)
            accepted = accept_risk(
                dash.estate.journal, ledger, record, viewer.principal.name, reason, expires, now
            )
        except (FindingLedgerError, ValueError) as exc:
            return page(request, viewer, shown, 1, ("error", str(exc)), status_code=422)
        except (JournalError, StoreError) as exc:
            return page(request, viewer, shown, 1, ("error", f"not accepted: {exc}"), 503)
        dash.estate.refresh()
        dash.log.info(
            "risk accepted",
            target=accepted.finding.target,
            op="accept",
            status="accepted",
            finding=accepted.id,
            person=viewer.principal.name,
        )
        until_text = f"{expires:%Y-%m-%d %H:%MZ}"
        message = ("done", f"Risk of finding {accepted.id} accepted until {until_text}.")
        return page(request, viewer, shown, 1, message)


def _until(text: str) -> datetime:
    """The expiry as the form gives it: a date (the end of that day, UTC)."""
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise ValueError("give the date the acceptance expires, as YYYY-MM-DD") from None
    return datetime.combine(day, time(23, 59, 59), UTC)
