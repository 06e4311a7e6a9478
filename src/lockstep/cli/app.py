"""``lockstep``: plan and apply like Terraform, verify like an auditor.

Errors reach the user as one clear line on stderr (a traceback only with --debug), and every
line that leaves the process passes through the secret redactor. Commands import what they
use in their bodies (see ``cli.common``), so that ``--help`` and ``validate`` start fast.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    JsonOpt,
    StateOpt,
    StopRequest,
    config_path,
    emit_json,
    err,
    finishing_in_flight,
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
def validate(config: ConfigOpt = None) -> None:
    """Check the policy without touching any target."""
    from lockstep.policy.load import load_policy

    loaded = load_policy(config_path(config))
    p = loaded.policy
    for name, target in sorted(p.targets.items()):
        if target.insecure_transport is not None:
            where = loaded.locations.get(("targets", name))
            err.print(
                inert(f"warning: {where}: target {name}: {target.insecure_transport}"),
                markup=False,
                highlight=False,
            )
    out.print(
        f"[green]Policy valid:[/] {len(p.targets)} target(s), {len(p.owners)} owner(s), "
        f"{len(p.identities)} identit{'y' if len(p.identities) == 1 else 'ies'} "
        f"in {len(loaded.files)} file(s)."
    )


@app.command()
def permissions(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show every admin permission lockstep may need on each target, without touching any."""
    from lockstep.cli import render
    from lockstep.connectors.registry import connector_type
    from lockstep.policy.load import load_policy

    policy = load_policy(config_path(config)).policy
    needed = render.target_permissions(
        {name: connector_type(t.type) for name, t in policy.targets.items()}
    )
    if as_json:
        emit_json(needed)
    else:
        render.print_target_permissions(out, needed)


@app.command()
def schema() -> None:
    """Print the policy's JSON Schema (for editors)."""
    from lockstep.policy.jsonschema import policy_json_schema

    emit_json(policy_json_schema())


@app.command()
def plan(
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code", help="Exit 2 when there are actions, 1 when a target is unreadable."
        ),
    ] = False,
) -> None:
    """Read every target and show what apply would change, and the findings."""
    from lockstep.cli import render
    from lockstep.engine.enforcement import enforcement
    from lockstep.engine.reconcile import observe

    with workspace(config, state) as ws, ws.observer() as (observer, desired):
        p = observe(ws, observer, desired)
        permissions = render.needed_permissions(p.plan, observer.connectors)
        report = enforcement(ws.policy, p.plan)
        if as_json:
            emit_json(render.plan_json(p.plan, p.findings, permissions, report))
        else:
            render.print_plan(out, p.plan, permissions, p.findings)
            render.print_enforcement(out, report)
    if exit_code and p.plan.unreachable:
        raise typer.Exit(1)
    if exit_code and p.plan.actions:
        raise typer.Exit(2)


@app.command()
def apply(
    config: ConfigOpt = None,
    state: StateOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    as_json: JsonOpt = False,
    allow_mass_change: Annotated[
        bool, typer.Option("--allow-mass-change", help="Lift the blast-radius guard.")
    ] = False,
) -> None:
    """Compute a fresh plan, execute it, and verify every action."""
    from lockstep.cli import render
    from lockstep.engine.enforcement import enforcement
    from lockstep.engine.reconcile import reconcile
    from lockstep.model import Status

    console = err if as_json else out
    stop = StopRequest()
    with (
        workspace(config, state) as ws,
        ws.observer() as (observer, desired),
        ExitStack() as applying,
    ):

        def gate(seen: Pass) -> Plan:
            plan = seen.plan
            if not as_json:
                permissions = render.needed_permissions(plan, observer.connectors)
                render.print_plan(out, plan, permissions, seen.findings)
            if plan.blocked and not allow_mass_change:
                raise CliError(
                    "apply refused: the plan trips the blast-radius guard "
                    "(rules.mass_change_limit); review it and re-run with --allow-mass-change"
                )
            if plan.actions and not yes:
                _confirm()
            # From here a signal no longer cuts the plan short mid-action (the question
            # above stays interruptible with Ctrl-C).
            applying.enter_context(finishing_in_flight("apply", stop))
            return plan

        done = reconcile(
            ws,
            observer,
            desired,
            gate,
            lambda r: console.print(
                inert(f"  {r.status}: {r.action.op} {r.action.account}"), style="dim", markup=False
            ),
            stop,
        )
        plan, results = done.seen.plan, done.results
        report = enforcement(ws.policy, plan, results)
        if as_json:
            data = render.results_json(results, plan.unreachable, report)
            data["undelivered"] = done.undelivered
            emit_json(data)
        else:
            render.print_results(out, results)
            render.print_enforcement(out, report)
        for problem in done.undelivered:
            err.print(inert(f"undelivered_credential: {problem}"), markup=False, highlight=False)
    if stop():
        raise typer.Exit(stop.exit_code)
    failed = any(r.status is not Status.VERIFIED for r in results)
    if plan.unreachable or failed or done.undelivered:
        raise typer.Exit(1)


def _confirm() -> None:
    if not sys.stdin.isatty():
        raise CliError("apply needs --yes when there is no terminal to ask on")
    if not typer.confirm("Apply these changes?", default=False):
        raise CliError("apply cancelled; nothing changed")


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

    with workspace(config, state) as ws, finishing_in_flight("rotate") as stop:
        with ws.observer() as (observer, desired):

            def gate(seen: Pass) -> Plan:
                plan = rotation_plan(ws.policy, seen.observed, identity, target, reason)
                ws.journal.append(
                    "rotation_requested",
                    {"identity": identity, "target": target, "reason": reason},
                )
                return plan

            done = reconcile(ws, observer, desired, gate, lambda r: None, stop)
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
    if stop():
        raise typer.Exit(stop.exit_code)
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
from lockstep.cli import evidence as evidence_commands  # noqa: E402
from lockstep.cli import findings as findings_commands  # noqa: E402
from lockstep.cli import governance as governance_commands  # noqa: E402
from lockstep.cli import service as service_commands  # noqa: E402
from lockstep.cli import tokens as token_commands  # noqa: E402

audit_commands.register(app)
evidence_commands.register(app)
findings_commands.register(app)
credentials_commands.register(app)
service_commands.register(app)
token_commands.register(app)
governance_commands.register(app)


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
