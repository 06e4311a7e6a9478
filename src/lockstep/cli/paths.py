"""``lockstep paths``: who can obtain whose credential or privileges, through the targets'
own permissions and the sinks, from one fresh read of every target (the same read ``plan``
makes: its escalation findings are recorded). Changes nothing in the targets. Registered on
the main app by ``lockstep.cli.app``.

Exit 0; 1 when a target, or its permissions, could not be read: the listing is then
incomplete, and says which."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from lockstep.cli.common import CliError, ConfigOpt, JsonOpt, StateOpt, emit_json, out, workspace

if TYPE_CHECKING:
    from rich.console import Console

    from lockstep.model import Policy
    from lockstep.paths.analysis import PathReport


def register(app: typer.Typer) -> None:
    app.command("paths")(paths)


def paths(
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Only paths from this identity (or TARGET/ACCOUNT)."),
    ] = None,
    goal: Annotated[
        str | None, typer.Option("--to", help="Only paths to this identity (or secret store).")
    ] = None,
    max_paths: Annotated[
        int, typer.Option("--max-paths", min=1, help="Paths listed per source and goal.")
    ] = 10,
) -> None:
    """Every path from a source to an identity's credential or privileges, shortest first,
    with its steps and evidence, and the smallest set of edges that cuts them."""
    from lockstep.engine.reconcile import observe
    from lockstep.paths.analysis import DEFAULT_LIMIT, analyse
    from lockstep.paths.report import filtered, report_json

    with workspace(config, state) as ws:
        _check_names(ws.policy, source, goal)
        with ws.observer() as (observer, desired):
            seen = observe(ws, observer, desired)
        assert seen.paths is not None and seen.estate is not None
        report = seen.paths
        if max_paths != DEFAULT_LIMIT:
            accepted = {r.id for r in ws.ledger.current("accepted")}
            report = analyse(ws.policy, desired, seen.estate, max_paths, accepted)
    shown = filtered(report, source, goal)
    if as_json:
        emit_json(report_json(shown))
    else:
        _print(out, shown)
    if report.unread:
        raise typer.Exit(1)


def _check_names(policy: Policy, source: str | None, goal: str | None) -> None:
    """An identity's name that the policy does not have is a typo, not "no path"; a node's
    label (TARGET/ACCOUNT, "TARGET: table ...") is taken as given."""
    for option, name in (("--from", source), ("--to", goal)):
        if name is None or "/" in name or ":" in name or name in policy.identities:
            continue
        known = ", ".join(sorted(policy.identities)[:10]) or "none"
        raise CliError(f"{option}: no identity {name!r} in the policy (identities: {known})")


def _print(console: Console, report: PathReport) -> None:
    from rich.text import Text

    for target, why in report.unread:
        console.print(f"[red]not read:[/] {target}: {why}", markup=True, highlight=False)
    escalations = [p for p in report.paths if p.given_by is None]
    given = len(report.paths) - len(escalations)
    console.print(
        f"[bold]{len(escalations)} escalation path(s)[/], {given} given by the policy, "
        "an approved grant or lockstep's admin"
    )
    for path in report.paths:
        line = Text()
        line.append(f"{path.source}", style="bold")
        line.append(f" -> {path.to} ({path.target})  ")
        line.append(f"{path.confidence}", style="yellow" if path.conditions else "")
        if path.given_by:
            line.append(f"  given by {path.given_by}", style="dim")
        elif path.finding:
            line.append(f"  {path.finding}", style="dim")
        console.print(line)
        for step in path.steps:
            console.print(
                Text(f"    {step.source} -> {step.destination}  [{step.rule}] {step.evidence}")
            )
        for condition in path.conditions:
            console.print(Text(f"    only if: {condition}", style="yellow"))
    for cut in report.cuts:
        edges = "; ".join(f"{s.source} -> {s.destination} ({s.rule})" for s in cut.edges)
        console.print(Text(f"smallest fix for {cut.to} on {cut.target}: remove {edges}"))
        if cut.revocable:
            names = ", ".join(f"{s.source} -> {s.destination}" for s in cut.revocable)
            console.print(Text(f"  lockstep can revoke: {names} (rules.escalation_paths)"))
    if report.truncated:
        console.print("more paths exist than listed: raise --max-paths to see them")
    for gap in report.not_assessed:
        console.print(Text(f"not assessed: {gap.target or 'host'}: {gap.what}: {gap.reason}"))
