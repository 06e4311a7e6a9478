"""What the routes tell people of through ``governance.notify``, whichever router they are
in: ``app.state.notices`` queues it (the review desk, see ``reviews_api``)."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.datastructures import State


class Notices(Protocol):
    def queue(self, kind: str, subject: str, body: dict[str, Any]) -> None: ...


def pending_approval(state: State, request_json: dict[str, Any]) -> None:
    """Tell people a request waits for their approval (when a webhook is set)."""
    notices: Notices | None = getattr(state, "notices", None)
    if notices is not None and request_json.get("status") == "pending":
        body = {"event": "approval_pending", "request": request_json}
        notices.queue("approval_pending", str(request_json["id"]), body)
