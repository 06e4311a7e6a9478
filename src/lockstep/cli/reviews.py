"""``reviews`` and ``review ID keep|revoke``: people's side of access reviews, through the
service's API at ``--url``/``LOCKSTEP_URL`` with the bearer token in ``LOCKSTEP_TOKEN``. A
refusal is one line on stderr and exit 1; nothing is changed by it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import typer

from lockstep.cli.common import JsonOpt, emit_json, out
from lockstep.cli.governance import UrlOpt
from lockstep.cli.governance import _call as call_service


class DecisionArg(StrEnum):
    KEEP = "keep"
    REVOKE = "revoke"


def _line(r: dict[str, Any]) -> str:
    what = f"{r['target']}/{r['account']}" + (f" {r['entitlement']}" if r["entitlement"] else "")
    head = f"{r['id']}  {r['status']:<8} {r['trigger']:<16} {r['identity']}: {what}"
    if r["decision"]:
        head += f"  {r['decision']} by {r['decided_by']}"
    else:
        head += f"  due {r['due']}, reviewers: {', '.join(r['reviewers']) or 'admins'}"
    return head


def reviews(
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only these (repeatable).")
    ] = None,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Access reviews, the soonest due first."""
    query = "?" + urlencode([("status", s) for s in status]) if status else ""
    document = call_service(url, "GET", "/v1/reviews" + query)
    if as_json:
        emit_json(document)
        return
    if not document["reviews"]:
        out.print("No reviews.")
    for row in document["reviews"]:
        out.print(_line(row), markup=False)


def review(
    review_id: Annotated[str, typer.Argument(help="The review (lockstep reviews).")],
    decision: Annotated[DecisionArg, typer.Argument(help="keep or revoke.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the journal.")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Keep or revoke the access a review is about (exit 1 with the reason when you may
    not). A revoke takes the access away at once, even while the policy declares it."""
    path = f"/v1/reviews/{quote(review_id, safe='')}/{decision.value}"
    decided = call_service(url, "POST", path, {"reason": reason})
    if as_json:
        emit_json(decided)
        return
    if decision is DecisionArg.KEEP:
        out.print(f"Kept: review {decided['id']} is {decided['status']}.", markup=False)
    else:
        out.print(
            f"Revoked: review {decided['id']} is {decided['status']} until the removal is "
            "verified in the target (lockstep reviews shows it).",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    for command in (reviews, review):
        app.command()(command)
