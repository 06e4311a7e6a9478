"""Human and JSON renderings of plans, results, checks and findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lockstep.cli.render_findings import SUMMARY, print_findings
from lockstep.connectors.base import (
    AppliesBatches,
    ConnectorType,
    HoldsTwoCredentials,
    IssuesLeaseBatches,
    IssuesLeases,
    ObservesUsage,
    ProbesInParallel,
    WatchesChanges,
)
from lockstep.engine.enforcement import Enforcement, IdentityEnforcement
from lockstep.engine.inert import inert
from lockstep.engine.shapes import finding_json
from lockstep.model import Action, FindingType, Op, Plan, Result, Status
from lockstep.store.findings import FindingRecord

if TYPE_CHECKING:
    from lockstep.engine.audit import Verification

_OP_STYLE = {
    Op.CREATE_ACCOUNT: ("+", "green"),
    Op.RESTORE_ACCOUNT: ("+", "green"),
    Op.GRANT: ("+", "green"),
    Op.REVOKE: ("-", "red"),
    Op.ROTATE_CREDENTIAL: ("~", "yellow"),
    Op.SUSPEND_ACCOUNT: ("-", "red"),
    Op.END_SESSIONS: ("-", "red"),
    Op.DELETE_ACCOUNT: ("-", "bold red"),
}
_STATUS_STYLE = {Status.VERIFIED: "green", Status.FAILED: "bold red", Status.UNVERIFIED: "yellow"}


def shown(value: object) -> str:
    """``value`` for a string that Rich reads as markup: inert, its brackets escaped."""
    return escape(inert(str(value)))


def needed_permissions(plan: Plan, connectors: Mapping[str, ConnectorType]) -> dict[str, list[str]]:
    needed: dict[str, set[str]] = {}
    for action in plan.actions:
        perms = connectors[action.target].permissions.get(action.op, ())
        needed.setdefault(action.target, set()).update(perms)
    return {target: sorted(perms) for target, perms in sorted(needed.items())}


# What lockstep does with each optional capability, for whoever grants its permissions.
CAPABILITY_USES: Mapping[type, str] = {
    WatchesChanges: "lockstep run notices out-of-band changes within a second",
    ObservesUsage: "lockstep run records last use (dormant identities, usage reviews)",
    HoldsTwoCredentials: "rotation without downtime (new credential before the old goes)",
    IssuesLeases: "lockstep issue, POST /v1/credentials and the lease reaper",
    IssuesLeaseBatches: "issuing many leases at once",
    AppliesBatches: "applying and reading back many actions at once (apply, lockstep run)",
    ProbesInParallel: "proving many credentials accepted or refused side by side",
}


def target_permissions(targets: Mapping[str, ConnectorType]) -> dict[str, Any]:
    """Every admin permission lockstep may need on each target (name -> its connector): to
    read it, for each operation, and for each optional capability with what it is used
    for."""
    return {
        name: {
            "type": connector.name,
            "read": list(connector.read_permissions),
            "paths": list(connector.paths_permissions),
            "operations": {str(op): list(perms) for op, perms in connector.permissions.items()},
            "capabilities": {
                capability.__name__: {
                    "permissions": list(perms),
                    "used_for": CAPABILITY_USES[capability],
                }
                for capability, perms in connector.capability_permissions.items()
            },
        }
        for name, connector in sorted(targets.items())
    }


def print_target_permissions(console: Console, permissions: Mapping[str, Any]) -> None:
    for name, target in permissions.items():
        console.print(Text(f"target {inert(name)} ({target['type']})", style="bold"))
        console.print(f"  read (plan, verify, findings): {', '.join(target['read'])}")
        console.print(f"  escalation paths (lockstep paths): {', '.join(target['paths'])}")
        console.print("  operations (plan lists those its actions need):")
        for op, perms in target["operations"].items():
            console.print(f"    {op}: {', '.join(perms) or 'nothing'}")
        if target["capabilities"]:
            console.print("  capabilities:")
        for capability, needs in target["capabilities"].items():
            console.print(
                f"    {capability}: {', '.join(needs['permissions']) or 'nothing'}",
                Text(f"  # {needs['used_for']}", style="dim"),
            )


def enforcement_json(report: Mapping[str, IdentityEnforcement]) -> dict[str, Any]:
    return {
        name: {"status": str(e.status), "targets": list(e.targets), "lagging": list(e.lagging)}
        for name, e in report.items()
    }


def print_enforcement(console: Console, report: Mapping[str, IdentityEnforcement]) -> None:
    for e in report.values():
        if e.status in (Enforcement.PARTIAL, Enforcement.UNKNOWN):
            console.print(
                f"[bold yellow]! identity {shown(e.identity)} is {e.status}: not in step on "
                f"{shown(', '.join(e.lagging))}; retried on the next pass[/]"
            )


def plan_json(
    plan: Plan,
    records: Sequence[FindingRecord],
    permissions: Mapping[str, list[str]],
    report: Mapping[str, IdentityEnforcement],
) -> dict[str, Any]:
    by_id = {r.id: r for r in records}
    return {
        "identities": enforcement_json(report),
        "actions": [action_json(a) for a in plan.actions],
        "findings": [finding_json(f, by_id.get(f.id)) for f in plan.findings],
        "unreachable": list(plan.unreachable),
        "blocked_by_mass_change": plan.blocked,
        "warnings": list(plan.warnings),
        "permissions": permissions,
    }


def results_json(
    results: Sequence[Result],
    unreachable: Sequence[str],
    report: Mapping[str, IdentityEnforcement] | None = None,
) -> dict[str, Any]:
    return {
        "identities": enforcement_json(report or {}),
        "results": [
            {
                "op": str(r.action.op),
                "target": r.action.target,
                "account": r.action.account,
                "entitlement": r.action.entitlement,
                "identity": r.action.identity,
                "status": str(r.status),
                "detail": r.detail,
            }
            for r in results
        ],
        "unreachable": list(unreachable),
    }


def verification_json(v: Verification) -> dict[str, Any]:
    by_id = {r.id: r for r in v.findings}
    return {
        "in_sync": v.in_sync,
        "strict": v.strict,
        "checks": [
            {
                "target": c.target,
                "account": c.account,
                "entitlement": c.entitlement,
                "expected": c.expected,
                "actual": c.actual,
                "ok": c.ok,
            }
            for c in v.checks
        ],
        "pending": [action_json(a) for a in v.plan.actions],
        "findings": [finding_json(f, by_id.get(f.id)) for f in v.plan.findings],
        "unreachable": list(v.plan.unreachable),
    }


def action_json(a: Action) -> dict[str, Any]:
    return {
        "op": str(a.op),
        "target": a.target,
        "account": a.account,
        "entitlement": a.entitlement,
        "identity": a.identity,
        "reason": a.reason,
        "request": a.request,
    }


def print_unreachable(console: Console, plan: Plan) -> None:
    """Each target that could not be read, with the cause."""
    causes = {f.target: f.detail for f in plan.findings if f.type is FindingType.TARGET_UNREACHABLE}
    for target in plan.unreachable:
        line = Text(f"! target {inert(target)} is unreachable: ", style="bold red")
        line.append(inert(causes.get(target) or "not read"))
        line.append("; nothing is known about it, and nothing is planned for it", style="red")
        console.print(line)


def print_plan(
    console: Console,
    plan: Plan,
    records: Sequence[FindingRecord] = (),
    *,
    permissions: Mapping[str, list[str]] | None = None,
    findings: str = SUMMARY,
) -> None:
    """``permissions``: the admin permissions the plan needs, shown when given (``plan
    --permissions``); ``findings``: ``summary`` (by type and severity) or ``all``."""
    print_unreachable(console, plan)
    if not plan.actions:
        if plan.unreachable:
            console.print("[yellow]No changes planned for the targets that could be read.[/]")
        else:
            console.print("[green]No changes. Every target matches the policy.[/]")
    else:
        console.print(f"[bold]Lockstep will perform {len(plan.actions)} action(s):[/]\n")
        current = None
        for action in plan.actions:
            if action.target != current:
                current = action.target
                console.print(Text(f"  target {inert(current)}", style="bold"))
            sign, style = _OP_STYLE[action.op]
            what = f"{action.op} {action.account}"
            if action.entitlement:
                what += f"  {action.entitlement}"
            line = Text(f"    {sign} ", style=style)
            line.append(inert(what), style=style)
            line.append(f"   # {inert(action.reason)}", style="dim")
            console.print(line)
        counts: dict[str, int] = {}
        for a in plan.actions:
            counts[str(a.op)] = counts.get(str(a.op), 0) + 1
        summary = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
        console.print(f"\nPlan: {summary}.")
        if permissions:
            console.print("[dim]Admin permissions this plan needs:[/]")
            for target, perms in permissions.items():
                console.print(f"[dim]  {shown(target)}: {', '.join(perms)}[/]")
    if plan.mass_change is not None:
        mc = plan.mass_change
        console.print(
            f"[bold red]Blast-radius guard: this plan suspends or deletes {mc.removals} of "
            f"{mc.managed} managed accounts (limit {mc.limit:.0%}). Apply refuses it unless "
            "--allow-mass-change is given.[/]"
        )
    for warning in plan.warnings:
        console.print(Text(f"warning: {inert(warning)}", style="bold yellow"))
    print_findings(console, plan.findings, records, findings)


def print_results(console: Console, results: Sequence[Result]) -> None:
    if not results:
        console.print("[green]Nothing to do.[/]")
        return
    console.print("\n[bold]Results:[/]")
    for r in results:
        line = Text("  ")
        line.append(f"{r.status:<10}", style=_STATUS_STYLE[r.status])
        line.append(inert(f" {r.action.op} {r.action.target}/{r.action.account}"))
        if r.action.entitlement:
            line.append(inert(f"  {r.action.entitlement}"))
        line.append(f"  ({inert(r.detail)})", style="dim")
        console.print(line)
    verified = sum(r.status is Status.VERIFIED for r in results)
    style = "green" if verified == len(results) else "bold red"
    console.print(f"[{style}]{verified} of {len(results)} action(s) verified.[/]")


def print_verification(console: Console, v: Verification, findings: str = SUMMARY) -> None:
    failed = [c for c in v.checks if not c.ok]
    if failed:
        table = Table(title=f"{len(failed)} check(s) failed", title_justify="left")
        for column in ("target", "account", "entitlement", "expected", "actual"):
            table.add_column(column, overflow="fold")
        for c in failed:
            cells = (c.target, c.account, c.entitlement or "", c.expected, c.actual)
            table.add_row(*(Text(inert(cell)) for cell in cells))
        console.print(table)
    print_findings(
        console, v.plan.findings, v.findings, findings, "verify --findings all lists each"
    )
    passed = f"{len(v.checks) - len(failed)} of {len(v.checks)} checks passed"
    if v.in_sync:
        console.print(f"[green]In sync[/]: {passed}.")
    elif not failed and v.strict:
        console.print(
            f"[bold red]Not in sync (--strict)[/]: {passed}, "
            f"but {len(v.open_findings)} finding(s) are open."
        )
    else:
        console.print(f"[bold red]Not in sync[/]: {passed}.")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
