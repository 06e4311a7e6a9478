"""The dashboard, mounted on the service's app by ``mount``: pages rendered on the server
from Jinja2 templates (autoescaped: every name from a target is hostile input), htmx from
the package for partial updates, sessions and CSRF from ``sessions``, and who may see and
do what from ``lockstep.service.principals``, exactly as the API decides it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from lockstep.policy.durations import format_duration
from lockstep.service.logs import Log
from lockstep.service.principals import Authenticators, Authority, Principal

from . import charts, formats
from .assets import Assets, SecurityHeaders
from .estate import Estate
from .oidc import OidcSignIn
from .sessions import CSRF_FIELD, Session, Sessions

NAV = (
    ("overview", "/", "Overview"),
    ("inventory", "/inventory", "Inventory"),
    ("findings", "/findings", "Findings"),
    ("requests", "/requests", "Requests"),
    ("grants", "/grants", "Grants"),
    ("reviews", "/reviews", "Reviews"),
    ("leases", "/leases", "Leases"),
    ("reports", "/reports", "Reports"),
)


class SignInRequired(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class Viewer:
    """The signed-in person (or operator) behind a request, and what they may see."""

    session: Session
    authority: Authority
    visible: frozenset[str] | None  # identities; None: all

    @property
    def principal(self) -> Principal:
        return self.session.principal

    def sees(self, identities: list[str | None] | tuple[str | None, ...]) -> bool:
        return self.authority.may_see(self.principal, identities)


class Dashboard:
    def __init__(
        self,
        estate: Estate,
        authenticators: Authenticators,
        sessions: Sessions,
        log: Log,
    ) -> None:
        self.estate = estate
        self.authenticators = authenticators
        self.sessions = sessions
        self.log = log
        self.assets = Assets()
        self.oidc = OidcSignIn(sessions)
        env = Environment(
            loader=PackageLoader("lockstep.dashboard", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(static=self.assets.url, nav=NAV, charts=charts, fmt=formats)
        env.filters.update(
            when=formats.when, age=formats.age, duration=formats.duration, period=format_duration
        )
        self.templates = Jinja2Templates(env=env)
        self._authority: tuple[int, Authority] | None = None

    # ------------------------------------------------------------ who is asking

    def authority(self) -> Authority:
        loaded, generation = self.estate.current()
        cached = self._authority
        if cached is None or cached[0] != generation:
            cached = (generation, Authority(loaded.policy))
            self._authority = cached
        return cached[1]

    def viewer(self, request: Request) -> Viewer:
        now = datetime.now(UTC)
        session = self.sessions.read(request, now)
        if session is None or not self.authenticators.still_valid(session.principal, now):
            raise SignInRequired(request.url.path)
        authority = self.authority()
        return Viewer(session, authority, authority.visible_identities(session.principal))

    # ------------------------------------------------------------ rendering

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        viewer: Viewer | None,
        *,
        status_code: int = 200,
        fragment: str | None = None,
    ) -> HTMLResponse:
        """``template``, or ``fragment`` alone for htmx's partial updates."""
        partial = request.headers.get("hx-request") == "true" and fragment is not None
        csrf = viewer.session.csrf if viewer is not None else self.sessions.csrf_for(request)
        chosen = fragment if partial and fragment is not None else template
        page = self.templates.get_template(chosen).render(
            {
                "request": request,
                "viewer": viewer,
                "csrf": csrf,
                "csrf_field": CSRF_FIELD,
                "picture": self.estate.picture(),
                **context,
            }
        )
        out = HTMLResponse(page, status_code=status_code)
        self.sessions.keep_csrf(request, out, csrf)
        out.headers["vary"] = "HX-Request, Cookie"
        return out

    def done(self, request: Request, to: str) -> Response:
        """After a form: back to ``to`` (htmx follows ``HX-Location`` without a reload)."""
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Location": to})
        return RedirectResponse(to, status_code=303)


def mount(app: FastAPI, dashboard: Dashboard) -> None:
    """Serve the dashboard from ``app``: its pages at ``/``, its files at ``/static``."""
    from .pages import (
        ask,
        findings,
        grants,
        identity,
        inventory,
        leases,
        overview,
        reports,
        requests,
        reviews,
        signin,
    )

    app.add_middleware(SecurityHeaders)
    app.state.dashboard = dashboard
    app.include_router(dashboard.assets.router())
    router = APIRouter(include_in_schema=False)
    pages = (
        signin,
        overview,
        inventory,
        identity,
        findings,
        ask,
        requests,
        grants,
        reviews,
        leases,
        reports,
    )
    for page in pages:
        page.register(router, dashboard)
    app.include_router(router)

    @app.exception_handler(SignInRequired)
    def sign_in(request: Request, exc: SignInRequired) -> Response:
        to = "/signin" if exc.path in ("/", "") else f"/signin?next={quote(exc.path)}"
        if request.headers.get("hx-request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": to})
        return RedirectResponse(to, status_code=303)


def viewer_of(request: Request) -> Viewer:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard.viewer(request)


SignedIn = Annotated[Viewer, Depends(viewer_of)]
