"""``lockstep run`` (the service) and ``lockstep reconcile`` (ask a running service for a pass
now). Registered on the main app by ``lockstep.cli.app``."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    JsonOpt,
    StateOpt,
    Verdict,
    config_path,
    emit_json,
    options,
    out,
)
from lockstep.service.settings import BEARER_ENV, DEFAULT_LISTEN, LISTEN_ENV

_INTERVAL = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SETTLED = {"unchanged", "remediated"}  # pass outcomes that leave the target as the policy says

ListenOpt = Annotated[
    str | None,
    typer.Option(
        "--listen",
        help=f"HOST:PORT of the service (default: ${LISTEN_ENV}, else {DEFAULT_LISTEN}).",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("reconcile")(reconcile)


def run(
    listen: ListenOpt = None,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            help="Check every target at least this often, e.g. 30s, 500ms (default: each "
            "target's own interval: 30s, legacy targets 10s).",
        ),
    ] = None,
    jwks: Annotated[
        list[str] | None,
        typer.Option(
            "--jwks",
            help="ISSUER=URL or ISSUER=file:PATH: where a workload issuer's signing keys come "
            "from (repeatable; default: the issuer's OIDC discovery).",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Listen off loopback although neither LOCKSTEP_API_TOKEN nor "
            "governance.people is set (the API is then open to the network).",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Report only: read, plan and record findings on every pass, never apply.",
        ),
    ] = False,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """The service: reconcile every target continuously, serve /healthz, /metrics and the API."""
    host, port = parse_listen(listen)
    from lockstep.service.process import ServiceError, ServiceOptions, run_service

    service_options = ServiceOptions(
        config=config_path(config),
        state=state or options.state,
        host=host,
        port=port,
        interval_cap_s=parse_interval(interval) if interval else None,
        key_sources=_key_sources(jwks or []),
        insecure_no_auth=insecure_no_auth,
        dry_run=dry_run,
    )
    try:
        code = run_service(service_options)
    except ServiceError as exc:
        raise CliError(str(exc)) from None
    raise typer.Exit(code)


def reconcile(
    target: Annotated[str | None, typer.Option("--target", help="Only this target.")] = None,
    listen: ListenOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the passes and report their outcome.")
    ] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="How long --wait waits.")] = "60s",
    as_json: JsonOpt = False,
) -> None:
    """Ask the running service for a pass now (every target, or --target)."""
    host, port = parse_listen(listen)
    wait_s = parse_interval(timeout)
    query = {k: v for k, v in {"target": target, "wait": "true" if wait else None}.items() if v}
    if wait:
        query["timeout"] = str(wait_s)
    body = _post(f"http://{_authority(host, port)}/v1/reconcile?{urlencode(query)}", wait_s)
    if as_json:
        emit_json(body)
    else:
        _print(body)
    passes: dict[str, str | None] = body.get("passes", {})
    if wait and any(outcome not in _SETTLED for outcome in passes.values()):
        raise Verdict(2)


def _print(body: dict[str, Any]) -> None:
    for name in body.get("elsewhere", []):
        out.print(f"{name}: reconciled by another service; ask that one")
    passes = body.get("passes")
    for name in body.get("requested", []):
        if passes is None:
            out.print(f"{name}: pass requested")
        else:
            out.print(f"{name}: {passes.get(name) or 'no outcome yet (timed out)'}")


def _post(url: str, wait_s: float) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    token = os.environ.get(BEARER_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method="POST", headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=wait_s + 10) as response:  # noqa: S310
            body: dict[str, Any] = json.load(response)
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 504:
            timed_out: dict[str, Any] = json.load(exc)
            return timed_out
        body = json.load(exc)
        detail = body.get("error", body.get("detail", exc.reason))
        raise CliError(f"the service refused: {detail} (HTTP {exc.code})") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"no lockstep service answers at {url.split('/v1/')[0]} ({reason}); "
            "is `lockstep run` running, and is --listen right?"
        ) from None


def _key_sources(options: list[str]) -> dict[str, str]:
    from lockstep.leases.workload import KeySourceError, parse_key_source

    sources: dict[str, str] = {}
    for option in options:
        try:
            issuer, source = parse_key_source(option)
        except KeySourceError as exc:
            raise CliError(str(exc)) from None
        if issuer in sources:
            raise CliError(f"--jwks names issuer {issuer!r} twice")
        sources[issuer] = source
    return sources


def parse_listen(listen: str | None) -> tuple[str, int]:
    text = listen or os.environ.get(LISTEN_ENV) or DEFAULT_LISTEN
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"--listen {text!r}: write HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def parse_interval(text: str) -> float:
    """Seconds in ``text``: a number with ms, s, m or h (fractions allowed: 0.5s)."""
    match = _INTERVAL.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise CliError(f"{text!r} is not a duration: write e.g. 500ms, 0.5s, 30s, 5m or 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
