"""Human and JSON renderings of plans, results, checks and findings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lockstep.connectors.base import ConnectorType
from lockstep.engine.catalog import KINDS
from lockstep.findings_ledger import FindingRecord
from lockstep.model import Check, Finding, Op, Plan, Result, Status

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
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def finding_json(f: Finding, record: FindingRecord | None = None) -> dict[str, Any]:
    kind = KINDS[f.type]
    return {
        "id": f.id,
        "type": str(f.type),
        "severity": str(f.severity),
        "target": f.target,
        "account": f.account,
        "entitlement": f.entitlement,
        "identity": f.identity,
        "detail": f.detail,
        "owasp_nhi": list(kind.owasp_nhi),
        "nist_csf": list(kind.nist_csf),
        "first_seen": record.first_seen.isoformat() if record else None,
        "last_seen": record.last_seen.isoformat() if record else None,
        "status": record.status if record else "open",
    }


def needed_permissions(plan: Plan, connectors: Mapping[str, ConnectorType]) -> dict[str, list[str]]:
    needed: dict[str, set[str]] = {}
    for action in plan.actions:
        perms = connectors[action.target].permissions.get(action.op, ())
        needed.setdefault(action.target, set()).update(perms)
    return {target: sorted(perms) for target, perms in sorted(needed.items())}


def plan_json(
    plan: Plan, records: Sequence[FindingRecord], permissions: Mapping[str, list[str]]
) -> dict[str, Any]:
    by_id = {r.id: r for r in records}
    return {
        "actions": [
            {
                "op": str(a.op),
                "target": a.target,
                "account": a.account,
                "entitlement": a.entitlement,
                "identity": a.identity,
                "reason": a.reason,
            }
            for a in plan.actions
        ],
        "findings": [finding_json(f, by_id.get(f.id)) for f in plan.findings],
        "unreachable": list(plan.unreachable),
        "blocked_by_mass_change": plan.blocked,
        "permissions": permissions,
    }


def results_json(results: Sequence[Result], unreachable: Sequence[str]) -> dict[str, Any]:
    return {
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


def checks_json(in_sync: bool, checks: Iterable[Check]) -> dict[str, Any]:
    return {
        "in_sync": in_sync,
        "checks": [
            {
                "target": c.target,
                "account": c.account,
                "entitlement": c.entitlement,
                "expected": c.expected,
                "actual": c.actual,
                "ok": c.ok,
            }
            for c in checks
        ],
    }


def print_plan(console: Console, plan: Plan, permissions: Mapping[str, list[str]]) -> None:
    for target in plan.unreachable:
        console.print(
            f"[bold red]! target {target} is unreachable: nothing is known about it, "
            "and nothing is planned for it[/]"
        )
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
                console.print(Text(f"  target {current}", style="bold"))
            sign, style = _OP_STYLE[action.op]
            what = f"{action.op} {action.account}"
            if action.entitlement:
                what += f"  {action.entitlement}"
            line = Text(f"    {sign} ", style=style)
            line.append(what, style=style)
            line.append(f"   # {action.reason}", style="dim")
            console.print(line)
        counts: dict[str, int] = {}
        for a in plan.actions:
            counts[str(a.op)] = counts.get(str(a.op), 0) + 1
        summary = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()))
        console.print(f"\nPlan: {summary}.")
        if permissions:
            console.print("[dim]Admin permissions this plan needs:[/]")
            for target, perms in permissions.items():
                console.print(f"[dim]  {target}: {', '.join(perms)}[/]")
    if plan.mass_change is not None:
        mc = plan.mass_change
        console.print(
            f"[bold red]Blast-radius guard: this plan suspends or deletes {mc.removals} of "
            f"{mc.managed} managed accounts (limit {mc.limit:.0%}). Apply refuses it unless "
            "--allow-mass-change is given.[/]"
        )
    print_findings(console, plan.findings)


def print_findings(
    console: Console, findings: Sequence[Finding], records: Sequence[FindingRecord] = ()
) -> None:
    if not findings:
        return
    by_id = {r.id: r for r in records}
    table = Table(title=f"{len(findings)} finding(s)", title_justify="left", show_lines=False)
    for column in ("id", "type", "severity", "target", "account", "entitlement", "owasp"):
        table.add_column(column)
    if records:
        table.add_column("first seen")
        table.add_column("status")
    for f in findings:
        row = [
            f.id,
            str(f.type),
            Text(str(f.severity), style=_SEVERITY_STYLE.get(str(f.severity), "")),
            f.target,
            f.account or "",
            f.entitlement or "",
            ",".join(KINDS[f.type].owasp_nhi),
        ]
        rec = by_id.get(f.id)
        if records:
            row += [
                rec.first_seen.strftime("%Y-%m-%d %H:%M") if rec else "",
                rec.status if rec else "",
            ]
        table.add_row(*row)
    console.print(table)


def print_results(console: Console, results: Sequence[Result]) -> None:
    if not results:
        console.print("[green]Nothing to do.[/]")
        return
    table = Table(title="Apply results", title_justify="left")
    for column in ("status", "op", "target", "account", "entitlement", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            Text(str(r.status), style=_STATUS_STYLE[r.status]),
            str(r.action.op),
            r.action.target,
            r.action.account,
            r.action.entitlement or "",
            r.detail,
        )
    console.print(table)
    verified = sum(r.status is Status.VERIFIED for r in results)
    console.print(f"{verified} of {len(results)} action(s) verified.")


def print_checks(console: Console, in_sync: bool, checks: Sequence[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        table = Table(title=f"{len(failed)} check(s) failed", title_justify="left")
        for column in ("target", "account", "entitlement", "expected", "actual"):
            table.add_column(column, overflow="fold")
        for c in failed:
            table.add_row(c.target, c.account, c.entitlement or "", c.expected, c.actual)
        console.print(table)
    verdict = "[green]In sync[/]" if in_sync else "[bold red]Not in sync[/]"
    console.print(f"{verdict}: {len(checks) - len(failed)} of {len(checks)} checks passed.")
