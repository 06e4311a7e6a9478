"""Leases: the short-lived credentials alive now, each one revocable, the revocation done
only once its credential is proven refused."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from lockstep.journal import JournalError
from lockstep.leases.manager import LeaseManager
from lockstep.leases.records import LeaseError, LeaseStatus
from lockstep.store import StoreError

from ..app import Dashboard, SignedIn, Viewer

SHOWN = (LeaseStatus.ACTIVE, LeaseStatus.FAILED)


def _manager(request: Request) -> LeaseManager | None:
    manager = getattr(request.app.state, "leases", None)
    return manager if isinstance(manager, LeaseManager) else None


def register(router: APIRouter, dash: Dashboard) -> None:
    def page(request: Request, viewer: Viewer, message: tuple[str, str] | None = None,
             status_code: int = 200) -> Response:  # fmt: skip
        manager = _manager(request)
        leases = []
        if manager is not None:
            leases = [
                lease
                for status in SHOWN
                for lease in manager.list(status=status)
                if viewer.sees([lease.identity])
            ]
        context: dict[str, Any] = {
            "title": "Leases",
            "section": "leases",
            "leases": leases,
            "available": manager is not None,
            "message": message,
        }
        return dash.render(
            request, "leases.html", context, viewer, status_code=status_code,
            fragment="_leases_results.html",
        )  # fmt: skip

    @router.get("/leases")
    def leases(request: Request, viewer: SignedIn) -> Response:
        return page(request, viewer)

    @router.post("/leases/{lease_id}/revoke")
    def revoke(
        request: Request,
        viewer: SignedIn,
        lease_id: str,
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        dash.sessions.check(request, csrf, viewer.session)
        manager = _manager(request)
        if manager is None:
            raise HTTPException(503, "short-lived credentials are off")
        try:
            lease = manager.get(lease_id)
        except LeaseError:
            raise HTTPException(404, "no lease of that id") from None
        if not viewer.authority.may_act_on(viewer.principal, [lease.identity]):
            raise HTTPException(403, "you may not revoke this lease")
        try:
            dash.estate.journal.append(
                "lease_revoke_requested",
                {
                    "lease_id": lease.id,
                    "identity": lease.identity,
                    "target": lease.target,
                    "by": viewer.principal.name,
                    "via": "dashboard",
                },
            )
            ended = manager.revoke(lease.id)
        except (JournalError, StoreError) as exc:
            return page(request, viewer, ("error", f"not revoked: {exc}"), 503)
        dash.estate.refresh()
        dash.log.info(
            "lease revoked",
            target=lease.target,
            op="revoke",
            status=str(ended.status),
            lease_id=lease.id,
            person=viewer.principal.name,
        )
        if ended.verified:
            message = ("done", f"Lease {lease.id} revoked: its credential is proven refused.")
            return page(request, viewer, message)
        detail = f"Lease {lease.id} not proven revoked ({ended.detail}): the reaper retries."
        return page(request, viewer, ("error", detail), 502)
