"""``lockstep plan`` and ``lockstep apply``, with saved plans as Terraform has them: ``plan -o
PLANFILE`` writes the plan sealed with the digests it was computed from, ``apply PLANFILE``
executes exactly it or refuses it as stale (naming what changed), and ``--target`` narrows
both. Registered on the main app by ``lockstep.cli.app``."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    FindingsOpt,
    FindingsShown,
    JsonOpt,
    StateOpt,
    StopRequest,
    TargetsOpt,
    UsageError,
    Verdict,
    emit_json,
    err,
    finishing_in_flight,
    out,
    workspace,
)
from lockstep.engine.inert import inert

if TYPE_CHECKING:
    from lockstep.cli.progress import Bar
    from lockstep.engine.planfile import SavedPlan
    from lockstep.engine.reconcile import Pass
    from lockstep.engine.workspace import Workspace
    from lockstep.model import Plan, Result


def register(app: typer.Typer) -> None:
    app.command()(plan)
    app.command()(apply)


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
    save: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="PLANFILE", help="Save the plan for `lockstep apply PLANFILE`."
        ),
    ] = None,
    targets: TargetsOpt = None,
    show_permissions: Annotated[
        bool, typer.Option("--permissions", help="Also show the admin permissions it needs.")
    ] = False,
    findings: FindingsOpt = FindingsShown.SUMMARY,
) -> None:
    """Read every target (or --target) and show what apply would change, and the findings."""
    from lockstep.cli import render
    from lockstep.engine.enforcement import enforcement
    from lockstep.engine.reconcile import observe

    with workspace(config, state) as opened, opened.observer_for(targets) as (ws, observer):
        p = observe(ws, observer, observer.desired)
        needed = render.needed_permissions(p.plan, observer.connectors)
        report = enforcement(ws.policy, p.plan)
        if save is not None:
            _save(save, ws, p)
        if as_json:
            emit_json(render.plan_json(p.plan, p.findings, needed, report))
        else:
            render.print_plan(
                out,
                p.plan,
                p.findings,
                permissions=needed if show_permissions else None,
                findings=findings,
            )
            render.print_enforcement(out, report)
            if save is not None:
                out.print(f"Saved the plan to {save}: apply it with `lockstep apply {save}`.")
    if exit_code and p.plan.unreachable:
        raise typer.Exit(1)
    if exit_code and p.plan.actions:
        raise Verdict(2)


def apply(
    planfile: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PLANFILE]", help="A plan saved by `lockstep plan -o`: applied exactly."
        ),
    ] = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    as_json: JsonOpt = False,
    allow_mass_change: Annotated[
        bool, typer.Option("--allow-mass-change", help="Lift the blast-radius guard.")
    ] = False,
    targets: TargetsOpt = None,
    findings: FindingsOpt = FindingsShown.SUMMARY,
) -> None:
    """Compute a fresh plan (or take a saved one), execute it, and verify every action."""
    from lockstep.cli import progress, render
    from lockstep.engine.enforcement import enforcement
    from lockstep.engine.reconcile import reconcile
    from lockstep.model import Status

    stop = StopRequest()
    with workspace(config, state) as opened, ExitStack() as applying:
        saved = _read_saved(planfile, opened, targets)
        chosen = list(saved.targets) if saved is not None else targets
        with opened.observer_for(chosen) as (ws, observer):

            def gate(seen: Pass) -> Plan:
                plan = seen.plan if saved is None else _as_saved(saved, ws, seen)
                if not as_json:
                    render.print_plan(out, plan, seen.findings, findings=findings)
                blocked = plan.blocked or (saved is not None and saved.blocked)
                if blocked and not allow_mass_change:
                    raise CliError(
                        "apply refused: the plan trips the blast-radius guard "
                        "(rules.mass_change_limit); review it and re-run with --allow-mass-change"
                    )
                if plan.actions and not yes:
                    _confirm()
                # From here a signal no longer cuts the plan short mid-action (the question
                # above stays interruptible with Ctrl-C).
                applying.enter_context(finishing_in_flight("apply", stop))
                bar.start(len(plan.actions))
                return plan

            with progress.bar("applying", enabled=not as_json) as bar:
                done = reconcile(ws, observer, observer.desired, gate, _step(bar), stop)
            applied = done.applied or done.seen.plan
            results = done.results
            report = enforcement(ws.policy, applied, results)
        if as_json:
            data = render.results_json(results, applied.unreachable, report)
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
    if applied.unreachable or failed or done.undelivered:
        raise typer.Exit(1)


def _step(bar: Bar) -> Callable[[Result], None]:
    def advance(result: Result) -> None:
        a = result.action
        what = f"{a.op} {a.target}/{a.account}" + (f" {a.entitlement}" if a.entitlement else "")
        bar.advance(f"{result.status}: {what}")

    return advance


def _confirm() -> None:
    if not sys.stdin.isatty():
        raise CliError("apply needs --yes when there is no terminal to ask on")
    if not typer.confirm("Apply these changes?", default=False):
        raise CliError("apply cancelled; nothing changed")


def _save(path: Path, ws: Workspace, seen: Pass) -> None:
    """The plan, sealed, written atomically (a half-written plan file never exists)."""
    from lockstep.engine.planfile import SavedPlan, encode, policy_digests, state_digests

    saved = SavedPlan(
        created_at=ws.clock(),
        targets=tuple(sorted(ws.policy.targets)),
        policy=policy_digests(ws.policy),
        state=state_digests(seen.observed),
        actions=seen.plan.actions,
        blocked=seen.plan.blocked,
    )
    data = encode(saved, ws.vault.seal)
    directory = path.resolve().parent
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write the plan file {path}: {exc.strerror}") from None


def _read_saved(
    planfile: Path | None, ws: Workspace, targets: list[str] | None
) -> SavedPlan | None:
    from lockstep.engine.planfile import PlanFileError, decode

    if planfile is None:
        return None
    if targets:
        raise UsageError("--target is given with a plan file: the plan file names its targets")
    try:
        data = planfile.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the plan file {planfile}: {exc.strerror}") from None
    try:
        return decode(data, ws.vault.seal)
    except PlanFileError as exc:
        raise CliError(f"{planfile}: {exc}") from None


def _as_saved(saved: SavedPlan, ws: Workspace, seen: Pass) -> Plan:
    """The saved plan's actions, if nothing they were computed from changed since."""
    from dataclasses import replace

    from lockstep.engine.planfile import policy_digests, staleness

    changes = staleness(saved, policy_digests(ws.policy), seen.observed)
    if changes:
        more = f"; and {len(changes) - 10} more" if len(changes) > 10 else ""
        shown = "; ".join(changes[:10]) + more
        raise CliError(
            f"the saved plan is stale, nothing applied: {shown}. Run lockstep plan -o again"
        )
    return replace(seen.plan, actions=saved.actions)
