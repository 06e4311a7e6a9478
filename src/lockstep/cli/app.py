"""``lockstep``: plan and apply like Terraform, verify like an auditor.

Errors reach the user as one clear line on stderr (a traceback only with --debug), and every
line that leaves the process passes through the secret redactor. Commands import what they
use in their bodies (see ``cli.common``), so that ``--help`` and ``validate`` start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    JsonOpt,
    StateOpt,
    emit_json,
    err,
    options,
    out,
    workspace,
)
from lockstep.engine.inert import inert
from lockstep.errors import LockstepError
from lockstep.secret import redact

if TYPE_CHECKING:
    from lockstep.engine.reconcile import Pass
    from lockstep.engine.workspace import Workspace
    from lockstep.leases.manager import Ended
    from lockstep.model import Plan

app = typer.Typer(
    name="lockstep",
    help="Keeps identity governance and enforcement in lockstep for non-human identities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_options(
    config: ConfigOpt = None,
    state: StateOpt = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    if config is not None:
        options.config = config
    if state is not None:
        options.state = state
    options.debug = debug


@app.command()
def verify(
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail on any open finding (not accepted).")
    ] = False,
) -> None:
    """Re-read every target and probe every credential lockstep revoked or rotated.

    In sync (exit 0): nothing left for apply to do and every probe as expected. Findings the
    rules only report, and accepted ones, are listed and do not fail it (unless --strict).
    """
    from lockstep.cli import render
    from lockstep.engine.audit import verify_state

    with workspace(config, state) as ws, ws.observer() as (observer, desired):
        verification = verify_state(ws, observer, desired, strict)
    if as_json:
        emit_json(render.verification_json(verification))
    else:
        render.print_verification(out, verification)
    if not verification.in_sync:
        raise typer.Exit(2)


@app.command()
def rotate(
    identity: Annotated[str, typer.Argument(help="The identity whose credentials rotate.")],
    target: Annotated[str | None, typer.Option("--target", help="Only on this target.")] = None,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why, for the journal; 'leaked' also revokes the identity's leases."
        ),
    ] = "manual",
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rotate now: the new credential delivered and working, the old one refused."""
    from lockstep.cli import render
    from lockstep.engine.reconcile import reconcile
    from lockstep.engine.rotation import rotation_plan
    from lockstep.model import Status

    with workspace(config, state) as ws:
        with ws.observer() as (observer, desired):

            def gate(seen: Pass) -> Plan:
                plan = rotation_plan(ws.policy, seen.observed, identity, target, reason)
                ws.journal.append(
                    "rotation_requested",
                    {"identity": identity, "target": target, "reason": reason},
                )
                return plan

            done = reconcile(ws, observer, desired, gate, lambda r: None)
        assert done.applied is not None  # the gate always returns a plan
        plan, results = done.applied, done.results
        # A leaked secret may have been used to obtain short-lived credentials too: they end
        # in the same pass, each proven refused.
        ended = _revoke_leases(ws, identity, target) if reason == "leaked" else []
    if as_json:
        data = render.results_json(results, plan.unreachable)
        data["leases"] = [
            {
                "lease_id": e.lease_id,
                "target": e.target,
                "status": str(e.status),
                "detail": e.detail,
            }
            for e in ended
        ]
        emit_json(data)
    else:
        for name in plan.unreachable:
            err.print(
                inert(f"target {name} is unreachable: its credential was not rotated"),
                markup=False,
            )
        render.print_results(out, results)
        for e in ended:
            out.print(
                inert(f"  lease {e.lease_id} on {e.target}: {e.status} ({e.detail})"), markup=False
            )
    rotated = bool(results) and all(r.status is Status.VERIFIED for r in results)
    if plan.unreachable or not rotated or not all(e.verified for e in ended):
        raise typer.Exit(1)


def _revoke_leases(ws: Workspace, identity: str, target: str | None) -> list[Ended]:
    from lockstep.leases.manager import LeaseManager

    manager = LeaseManager.for_workspace(ws)
    try:
        return manager.revoke_where(identity=identity, target=target)
    finally:
        manager.close()


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Leave the demo server running.")] = False,
    workdir: Annotated[
        Path | None, typer.Option(help="Where the demo keeps its files (default: a temp dir).")
    ] = None,
) -> None:
    """A narrated, real run against a private PostgreSQL."""
    from lockstep.demo.tour import run_demo

    run_demo(out, keep=keep, workdir=workdir)


# Command modules: each registers its commands on `app` (one import and one call per module).
from lockstep.cli import audit as audit_commands  # noqa: E402
from lockstep.cli import credentials as credentials_commands  # noqa: E402
from lockstep.cli import enforce as enforce_commands  # noqa: E402
from lockstep.cli import evidence as evidence_commands  # noqa: E402
from lockstep.cli import findings as findings_commands  # noqa: E402
from lockstep.cli import governance as governance_commands  # noqa: E402
from lockstep.cli import offline as offline_commands  # noqa: E402
from lockstep.cli import paths as paths_commands  # noqa: E402
from lockstep.cli import service as service_commands  # noqa: E402
from lockstep.cli import tokens as token_commands  # noqa: E402

offline_commands.register(app)
enforce_commands.register(app)
audit_commands.register(app)
evidence_commands.register(app)
findings_commands.register(app)
credentials_commands.register(app)
service_commands.register(app)
token_commands.register(app)
governance_commands.register(app)
paths_commands.register(app)


def _fail(message: str, code: int) -> NoReturn:
    err.print(inert(redact(message)), markup=False, highlight=False)
    raise SystemExit(code)


def main() -> None:
    from lockstep.policy.errors import PolicyInvalid

    try:
        app()
    except CliError as exc:
        _fail(f"error: {exc}", exc.exit_code)
    except PolicyInvalid as exc:
        for error in exc.errors:
            err.print(inert(redact(str(error))), markup=False, highlight=False)
        _fail(f"policy invalid: {len(exc.errors)} error(s)", 1)
    except LockstepError as exc:
        if options.debug:
            raise
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        _fail(f"error: {exc}{hint}", 1)
    except Exception as exc:
        if options.debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug)", 1)
