"""Sign-in with a token (the field labelled "Token"), and sign-out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..app import Dashboard, SignInRequired
from ..sessions import CSRF_FIELD


def local_path(text: str | None) -> str:
    """Where to go after signing in: a path on this service, never another site."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/signin")
    def signin_page(request: Request, next: str | None = None) -> Response:
        return dash.render(
            request,
            "signin.html",
            {
                "title": "Sign in",
                "next": local_path(next),
                "configured": dash.authenticators.configured,
                "error": None,
            },
            None,
        )

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
            dash.log.warning(
                "dashboard sign-in refused",
                target=None,
                op="signin",
                status="refused",
                client=request.client.host if request.client else None,
            )
            return dash.render(
                request,
                "signin.html",
                {
                    "title": "Sign in",
                    "next": local_path(next),
                    "configured": dash.authenticators.configured,
                    "error": "That token is not valid: nothing was signed in.",
                },
                None,
                status_code=401,
            )
        response = RedirectResponse(local_path(next), status_code=303)
        dash.sessions.open(response, principal, now)
        dash.log.info(
            "dashboard sign-in",
            target=None,
            op="signin",
            status="ok",
            person=principal.name,
            kind=str(principal.kind),
        )
        return response

    @router.post("/signout")
    def signout(
        request: Request, csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None
    ) -> Response:
        session = dash.sessions.read(request, datetime.now(UTC))
        if session is None:
            raise SignInRequired("/")
        dash.sessions.check(request, csrf, session)
        response = RedirectResponse("/signin", status_code=303)
        dash.sessions.close(response)
        return response
