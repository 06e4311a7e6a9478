"""``request``, ``requests``, ``approve``, ``deny`` and ``grants``: people's side of
governance, through the service's API at ``--url``/``LOCKSTEP_URL`` with the bearer token in
``LOCKSTEP_TOKEN``. A refusal is one line on stderr and exit 1; nothing is changed by it.

The client is the standard library's (``urllib``): the CLI stays free of the web stack.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import typer

from lockstep.cli.common import CliError, JsonOpt, emit_json, out
from lockstep.policy.durations import parse_duration

URL_ENV = "LOCKSTEP_URL"
TOKEN_ENV = "LOCKSTEP_TOKEN"  # noqa: S105 (a variable name, not a token)
DEFAULT_URL = "http://127.0.0.1:8787"
TIMEOUT_S = 60.0

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help=f"The service (default: ${URL_ENV} or {DEFAULT_URL})."),
]


def _call(url: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    base = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise CliError(f"set {TOKEN_ENV} to your token (lockstep token create, or your IdP's)")
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(  # noqa: S310 (the operator chooses the URL)
        base + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(call, timeout=TIMEOUT_S) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise CliError(_refusal(exc)) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach the service at {base}: {reason}") from None


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.load(exc)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    if isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"]:
        first = body["detail"][0]
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return f"the service answered {exc.code} {exc.reason}"


def _line(r: dict[str, Any]) -> str:
    ents = ", ".join(r["entitlements"])
    head = f"{r['id']}  {r['status']:<8} {r['identity']} on {r['target']}: {ents}"
    if r["status"] == "pending":
        stage = r["stages"][r["stage"] - 1] if r.get("stage") else None
        if stage is not None:
            who = ", ".join(stage["approvers"])
            head += f"  (stage {r['stage']} of {len(r['stages'])}: {who})"
        head += f"  by {r['requester']}"
    elif r.get("ends_at"):
        head += f"  until {r['ends_at']}"
    return head


def _show(document: Any, as_json: bool) -> None:
    if as_json:
        emit_json(document)
        return
    rows = document.get("requests", [document])
    if not rows:
        out.print("No requests.")
    for row in rows:
        out.print(_line(row), markup=False)


def request(
    identity: Annotated[str, typer.Argument(help="The identity that needs the access.")],
    target: Annotated[str, typer.Option("--target", help="Where (it must have access there).")],
    entitlement: Annotated[
        list[str], typer.Option("--entitlement", help="What, in the target's grammar (repeat).")
    ],
    duration: Annotated[str, typer.Option("--for", help="How long, e.g. 8h.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the approvers.")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for time-bound access for an identity; it is pending until every stage approves."""
    try:
        parse_duration(duration)
    except ValueError as exc:
        raise CliError(f"--for: {exc}") from None
    body = {
        "identity": identity,
        "target": target,
        "entitlements": entitlement,
        "for": duration,
        "reason": reason,
    }
    filed = _call(url, "POST", "/v1/requests", body)
    if as_json:
        emit_json(filed)
        return
    out.print(f"Request {filed['id']} is pending.", markup=False)
    out.print(_line(filed), markup=False)


def requests(
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only these (repeatable).")
    ] = None,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests, newest first."""
    query = "?" + urlencode([("status", s) for s in status]) if status else ""
    _show(_call(url, "GET", "/v1/requests" + query), as_json)


def approve(
    request_id: Annotated[str, typer.Argument(help="The request.")],
    comment: Annotated[str, typer.Option("--comment", help="For the journal.")] = "",
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve the request's current stage (exit 1 with the reason when you may not)."""
    decided = _call(url, "POST", f"/v1/requests/{quote(request_id, safe='')}/approve",
                    {"comment": comment})  # fmt: skip
    if as_json:
        emit_json(decided)
        return
    if decided["status"] == "pending":
        out.print(f"Approved; request {decided['id']} now waits for stage {decided['stage']}.")
    else:
        out.print(f"Approved: request {decided['id']} is {decided['status']}; enforcing it now.")


def deny(
    request_id: Annotated[str, typer.Argument(help="The request.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the requester.")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deny the request (exit 1 with the reason when you may not)."""
    path = f"/v1/requests/{quote(request_id, safe='')}/deny"
    decided = _call(url, "POST", path, {"reason": reason})
    if as_json:
        emit_json(decided)
        return
    out.print(f"Denied: request {decided['id']}.", markup=False)


def grants(url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Approved requests: approved, active, ending, ended or failed."""
    _show(_call(url, "GET", "/v1/grants"), as_json)


def register(app: typer.Typer) -> None:
    for command in (request, requests, approve, deny, grants):
        app.command()(command)
