"""What people ask for and decide, under the policy in force: the one code path behind the
API's ``/v1/requests`` routes and the dashboard's requests and grants pages. Who may see a
request, approve or deny it is ``Authority``'s answer; whether an approval or denial counts is
``lockstep.governance.requests``' (it decides again, inside the transaction that records it).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import ColumnElement, or_

from lockstep.governance.errors import UnknownName
from lockstep.governance.records import AccessRequest, RequestStatus
from lockstep.governance.requests import Ask, Requests
from lockstep.policy.governance import normal_person
from lockstep.service.principals import Authority, Principal
from lockstep.store.tables import access_requests as t

Ring = Callable[[str], None]  # a grant on this target changed: pass it now
_NAMED_MAX = 5000  # identities named in one condition; a person seeing more is filtered after


class Decisions:
    def __init__(self, requests: Requests, ring: Ring) -> None:
        self.requests = requests
        self.authority = Authority(requests.loaded.policy)
        self._ring = ring

    def visible(
        self,
        who: Principal,
        statuses: tuple[RequestStatus, ...] | None = None,
        identity: str | None = None,
    ) -> list[AccessRequest]:
        """The requests ``who`` may see, newest first."""
        return [
            r
            for r in self.requests.list(statuses, identity)
            if self.authority.may_see_request(who, r)
        ]

    def page(
        self,
        who: Principal,
        statuses: tuple[RequestStatus, ...] | None,
        offset: int,
        limit: int,
    ) -> tuple[list[AccessRequest], int]:
        """One page of the requests ``who`` may see, newest first, and how many there are:
        what ``visible`` lists, without reading every request (the dashboard's pages)."""
        where: list[ColumnElement[bool]] = []
        if statuses is not None:
            where.append(t.c.status.in_([str(s) for s in statuses]))
        narrowed = self._narrowed(who)
        if narrowed is not None:
            where.append(narrowed)
        found, total = self.requests.page(where, offset, limit)
        return [r for r in found if self.authority.may_see_request(who, r)], total

    def _narrowed(self, who: Principal) -> ColumnElement[bool] | None:
        """What ``Authority.may_see_request`` lets ``who`` see, as a condition the store can
        use: the identities they see, their own requests, and those whose snapshotted rules
        name them (the rules are JSON: a person appears there as a quoted string). None:
        every request (or too many identities to name; the page is filtered all the same)."""
        visible = self.authority.visible_identities(who)
        if visible is None or len(visible) > _NAMED_MAX:
            return None
        person = normal_person(who.name)
        quoted = json.dumps(person).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return or_(
            t.c.identity.in_(sorted(visible)),
            t.c.requester == person,
            t.c.rules.like(f"%{quoted}%", escape="\\"),
        )

    def get(self, who: Principal, request_id: str) -> AccessRequest:
        found = self.requests.get(request_id)
        if not self.authority.may_see_request(who, found):
            raise UnknownName(f"unknown request {request_id[:80]!r}")  # never say it exists
        return found

    def file(self, who: Principal, ask: Ask, dry_run: bool = False) -> AccessRequest:
        return self.requests.file(who.actor, ask, dry_run=dry_run)

    def approve(self, who: Principal, request_id: str, comment: str = "") -> AccessRequest:
        """Approve the request's current stage; the last approval has the grant enforced at
        once (the service is rung, it does not wait for the next interval)."""
        decided = self.requests.approve(who.actor, request_id, comment)
        if decided.status is RequestStatus.APPROVED:
            self._ring(decided.target)
        return decided

    def deny(self, who: Principal, request_id: str, reason: str) -> AccessRequest:
        return self.requests.deny(who.actor, request_id, reason)
