"""Sign-in with a token (the field labelled "Token") or, when ``governance.people`` names the
dashboard's OIDC client, through the people's issuer (``lockstep.dashboard.oidc``); and
sign-out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from lockstep.governance.auth import AuthRefused
from lockstep.service.principals import Principal

from ..app import Dashboard, SignInRequired
from ..oidc import SignInFailed
from ..sessions import CSRF_FIELD


def local_path(text: str | None) -> str:
    """Where to go after signing in: a path on this service, never another site."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text


def register(router: APIRouter, dash: Dashboard) -> None:
    def page(request: Request, next: str | None, error: str | None, status: int = 200) -> Response:
        people = dash.estate.current()[0].policy.governance.people
        return dash.render(
            request,
            "signin.html",
            {
                "title": "Sign in",
                "next": local_path(next),
                "configured": dash.authenticators.configured,
                "oidc": people.issuer if people is not None and people.client else None,
                "error": error,
            },
            None,
            status_code=status,
        )

    def refused(request: Request, next: str | None, why: str, shown: str, status: int) -> Response:
        dash.log.warning(
            "dashboard sign-in refused",
            target=None,
            op="signin",
            status="refused",
            error=why,
            client=request.client.host if request.client else None,
        )
        return page(request, next, shown, status)

    def signed_in(principal: Principal, next: str, now: datetime) -> Response:
        response = RedirectResponse(local_path(next), status_code=303)
        dash.sessions.open(response, principal, now)
        dash.log.info(
            "dashboard sign-in",
            target=None,
            op="signin",
            status="ok",
            person=principal.name,
            kind=str(principal.kind),
            via=principal.credential if not principal.is_operator else "operator",
        )
        return response

    @router.get("/signin")
    def signin_page(request: Request, next: str | None = None) -> Response:
        return page(request, next, None)

    @router.post("/signin")
    def signin(
        request: Request,
        token: Annotated[str, Form(max_length=4096)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/",
        csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    ) -> Response:
        dash.sessions.check(request, csrf, None)
        now = datetime.now(UTC)
        principal = dash.authenticators.authenticate(token, now)
        if principal is None:
            shown = "That token is not valid: nothing was signed in."
            return refused(request, next, "token", shown, 401)
        return signed_in(principal, next, now)

    @router.get("/signin/oidc")
    def oidc_start(request: Request, next: str | None = None) -> Response:
        people = dash.estate.current()[0].policy.governance.people
        if people is None or people.client is None:
            raise HTTPException(404, "no OIDC sign-in is configured")
        try:
            return dash.oidc.start(people, people.client, local_path(next))
        except SignInFailed as exc:
            return refused(request, next, str(exc), f"Sign-in unavailable: {exc}", 502)

    @router.get("/signin/oidc/callback")
    def oidc_callback(request: Request) -> Response:
        people = dash.estate.current()[0].policy.governance.people
        if people is None or people.client is None:
            raise HTTPException(404, "no OIDC sign-in is configured")
        spent = Response()
        try:
            back = dash.oidc.finish(request, spent, people, people.client)
            principal = dash.authenticators.check_id_token(back.id_token, back.nonce)
        except SignInFailed as exc:
            answer = refused(request, None, str(exc), f"Not signed in: {exc}.", 401)
        except AuthRefused as exc:
            answer = refused(request, None, exc.reason, f"Not signed in: {exc.reason}.", 401)
        else:
            answer = signed_in(principal, back.next, datetime.now(UTC))
        for cookie in spent.headers.getlist("set-cookie"):
            answer.headers.append("set-cookie", cookie)
        return answer

    @router.post("/signout")
    def signout(
        request: Request, csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None
    ) -> Response:
        now = datetime.now(UTC)
        session = dash.sessions.read(request, now)
        if session is None:
            raise SignInRequired("/")
        dash.sessions.check(request, csrf, session)
        response = RedirectResponse("/signin", status_code=303)
        dash.sessions.end(response, session, now)
        dash.log.info(
            "dashboard sign-out",
            target=None,
            op="signout",
            status="ok",
            person=session.principal.name,
        )
        return response
