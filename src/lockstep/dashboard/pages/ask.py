"""Asking for access: a form for the people who may ask (an identity's owner's contacts, its
sponsor, admins), whose separation-of-duties and duration checks are shown before it is sent
(the API's dry run, as each field changes), then filed as the API files it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from lockstep.governance.errors import GovernanceError
from lockstep.governance.records import AccessRequest
from lockstep.governance.requests import MAX_ENTITLEMENTS, Ask
from lockstep.journal import JournalError
from lockstep.policy.durations import format_duration, parse_duration
from lockstep.store import StoreError

from ..app import Dashboard, SignedIn, Viewer
from .requests import decisions

SUGGESTED_MAX = 500  # identities offered in the field's list; any other may be typed
Field = Annotated[str, Form(max_length=2000)]


@dataclass(frozen=True)
class Asked:
    identity: str = ""
    target: str = ""
    entitlements: str = ""  # one a line, as typed
    duration: str = "8h"
    reason: str = ""

    def ask(self, checking: bool = False) -> Ask:
        """What the form asks for; ValueError (nothing sent) when it cannot be read. A
        check made while the form is being filled in does not need the reason yet."""
        lines = [e.strip() for e in self.entitlements.splitlines() if e.strip()]
        if len(lines) > MAX_ENTITLEMENTS:
            raise ValueError(f"a request names at most {MAX_ENTITLEMENTS} entitlements")
        try:
            seconds = parse_duration(self.duration)
        except ValueError as exc:
            raise ValueError(f"For: {exc}") from None
        reason = self.reason if self.reason.strip() or not checking else "(being written)"
        return Ask(self.identity.strip(), self.target.strip(), tuple(lines), seconds, reason)


def register(router: APIRouter, dash: Dashboard) -> None:
    def form(
        request: Request,
        viewer: Viewer,
        asked: Asked,
        check: tuple[str, str, AccessRequest | None] | None = None,
        status_code: int = 200,
        fragment: str | None = None,
    ) -> Response:
        policy = dash.estate.current()[0].policy
        mine = viewer.visible
        names = sorted(policy.identities) if mine is None else sorted(mine)
        identity = policy.identities.get(asked.identity)
        targets = (
            [a.target for a in identity.access] if identity is not None else sorted(policy.targets)
        )
        limits = {env: format_duration(s) for env, s in policy.governance.max_duration_s.items()}
        context: dict[str, Any] = {
            "title": "Ask for access",
            "section": "requests",
            "available": decisions(request) is not None,
            "may_ask": not viewer.principal.is_operator,
            "asked": asked,
            "identities": names[:SUGGESTED_MAX],
            "targets": targets,
            "limits": limits,
            "check": check,
        }
        return dash.render(
            request,
            "request_new.html",
            context,
            viewer,
            status_code=status_code,
            fragment=fragment,
        )

    def run(request: Request, viewer: Viewer, asked: Asked, dry_run: bool) -> Response:
        live = decisions(request)
        fragment = "_request_check.html" if dry_run else None
        if live is None:
            check = ("error", "Governance is off: nothing can be asked.", None)
            return form(request, viewer, asked, check, 503, fragment)
        try:
            answer = live.file(viewer.principal, asked.ask(dry_run), dry_run=dry_run)
        except ValueError as exc:
            return form(request, viewer, asked, ("error", str(exc), None), 422, fragment)
        except GovernanceError as exc:
            # A check that a rule refuses is an answer, not a failed call.
            code = 200 if dry_run else int(exc.status)
            return form(request, viewer, asked, ("error", str(exc), None), code, fragment)
        except (StoreError, JournalError) as exc:
            check = ("error", f"Nothing was filed: {exc}", None)
            return form(request, viewer, asked, check, 503, fragment)
        if dry_run:
            return form(request, viewer, asked, ("checked", "", answer), fragment=fragment)
        dash.estate.refresh()
        dash.log.info(
            "request filed",
            target=answer.target,
            op="request",
            status=str(answer.status),
            request=answer.id,
            person=viewer.principal.name,
        )
        return form(request, viewer, Asked(), ("filed", "", answer), 201)

    @router.get("/requests/new")
    def new(
        request: Request,
        viewer: SignedIn,
        identity: Annotated[str, Query(max_length=200)] = "",
        target: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        return form(request, viewer, Asked(identity=identity, target=target))

    @router.post("/requests/check")
    def check(
        request: Request,
        viewer: SignedIn,
        identity: Field = "",
        target: Field = "",
        entitlements: Annotated[str, Form(max_length=50_000)] = "",
        duration: Field = "",
        reason: Field = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        dash.sessions.check(request, csrf, viewer.session)
        asked = Asked(identity, target, entitlements, duration, reason)
        return run(request, viewer, asked, dry_run=True)

    @router.post("/requests/new")
    def file(
        request: Request,
        viewer: SignedIn,
        identity: Field = "",
        target: Field = "",
        entitlements: Annotated[str, Form(max_length=50_000)] = "",
        duration: Field = "",
        reason: Field = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        dash.sessions.check(request, csrf, viewer.session)
        asked = Asked(identity, target, entitlements, duration, reason)
        return run(request, viewer, asked, dry_run=False)
