"""An identity's page: its ``explain`` (why it holds each entitlement, where the policy says
so, when it was enforced and last verified and how), its leases, findings and journal
entries; and an account no identity declares, with why it is an orphan."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from lockstep.evidence.explain import UnknownName, explain_account, explain_identity
from lockstep.leases.manager import LeaseManager
from lockstep.leases.records import LeaseStatus

from ..app import Dashboard, SignedIn


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/identities/{name:path}")
    def identity(request: Request, viewer: SignedIn, name: str) -> Response:
        picture = dash.estate.picture()
        if picture is None:
            return dash.render(request, "identity.html", {"title": name, "data": None}, viewer)
        loaded = picture.loaded
        if name not in loaded.policy.identities or not viewer.sees([name]):
            raise HTTPException(404, "no identity of that name that you may see")
        dash.estate.history.catch_up(wait=False)  # what was journaled since the picture
        data = explain_identity(
            dash.estate.workspace(loaded),
            name,
            picture.desired,
            picture.observed,
            picture.facts,
            picture.live,
            picture.known,
        )
        manager = getattr(request.app.state, "leases", None)
        leases = (
            manager.list(identity=name, status=LeaseStatus.ACTIVE)
            if isinstance(manager, LeaseManager)
            else []
        )
        return dash.render(
            request,
            "identity.html",
            {"title": name, "section": "inventory", "data": data, "leases": leases},
            viewer,
        )

    @router.get("/accounts/{target}/{account:path}")
    def account(request: Request, viewer: SignedIn, target: str, account: str) -> Response:
        picture = dash.estate.picture()
        if picture is None or not viewer.authority.may_operate(viewer.principal):
            if picture is not None:
                raise HTTPException(404, "no account of that name that you may see")
            return dash.render(request, "account.html", {"title": account, "data": None}, viewer)
        dash.estate.history.catch_up(wait=False)
        try:
            data = explain_account(
                dash.estate.workspace(picture.loaded),
                f"{target}/{account}",
                picture.desired,
                picture.observed,
                picture.facts,
                picture.live,
                picture.known,
            )
        except UnknownName:
            raise HTTPException(404, "no account of that name") from None
        return dash.render(
            request,
            "account.html",
            {"title": f"{target}/{account}", "section": "inventory", "data": data},
            viewer,
        )
