"""The inventory: every account in every target, managed or not, searchable and filtered by
target, owner and status, a page at a time (usable at 100k accounts: the rows are the
picture's, only sliced here)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..app import Dashboard, SignedIn
from ..picture import Picture
from .overview import STATUS_ORDER

PAGE_SIZE = 50
Filter = Annotated[str | None, Query(max_length=500)]


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/inventory")
    def inventory(
        request: Request,
        viewer: SignedIn,
        q: Filter = None,
        target: Filter = None,
        owner: Filter = None,
        status: Filter = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> Response:
        picture = dash.estate.picture()
        chosen = {
            "q": q or "",
            "target": target or "",
            "owner": owner or "",
            "status": status or "",
        }
        context: dict[str, Any] = {"title": "Inventory", "section": "inventory", "f": chosen}
        if picture is not None:
            found = select(picture, viewer.visible, **chosen)
            pages = max(1, -(-len(found) // PAGE_SIZE))
            page = min(page, pages)
            start = (page - 1) * PAGE_SIZE
            loaded, _ = dash.estate.current()
            owners = sorted(
                loaded.policy.owners
                if viewer.visible is None
                else {loaded.policy.identities[n].owner for n in viewer.visible}
            )
            context.update(
                rows=[picture.rows[i] for i in found[start : start + PAGE_SIZE]],
                total=len(found),
                page=page,
                pages=pages,
                first=start + 1,
                targets=sorted(loaded.policy.targets),
                owners=owners,
                statuses=STATUS_ORDER,
                query=_query(chosen),
            )
        return dash.render(
            request, "inventory.html", context, viewer, fragment="_inventory_results.html"
        )


def select(
    picture: Picture,
    visible: frozenset[str] | None,
    q: str = "",
    target: str = "",
    owner: str = "",
    status: str = "",
) -> list[int]:
    """The indices of the rows that match every filter given, in the inventory's order."""
    rows = picture.rows
    found = picture.visible_rows(visible)
    if target:
        found = [i for i in found if rows[i]["target"] == target]
    if owner:
        found = [i for i in found if rows[i]["owner"] == owner]
    if status:
        found = [i for i in found if rows[i]["status"] == status]
    needle = q.strip().lower()
    if needle:
        hay = picture.hay
        found = [i for i in found if needle in hay[i]]
    return found


def _query(chosen: dict[str, str]) -> str:
    return urlencode({k: v for k, v in chosen.items() if v})
