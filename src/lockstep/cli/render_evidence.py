"""How the evidence commands print for people (``--json`` and ``--csv`` are for scripts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from lockstep.cli.render import shown as escape

_STATUS_STYLE = {
    "managed": "green",
    "suspended": "yellow",
    "orphan": "red",
    "lease": "cyan",
    "excluded": "dim",
    "absent": "magenta",
    "unreachable": "bold red",
}


def print_inventory(console: Console, data: Mapping[str, Any]) -> None:
    for target in data["targets"]:
        if target["status"] == "unreachable":
            console.print(
                f"[bold red]{escape(target['target'])} is unreachable:[/] "
                f"{escape(target['error'] or '')} - its accounts are unknown, not empty"
            )
    table = Table(show_lines=False, header_style="bold")
    for column in ("target", "account", "status", "identity", "owner", "entitlements",
                   "issued", "last used", "findings"):  # fmt: skip
        table.add_column(column)
    for row in data["accounts"]:
        entitlements = row["entitlements"]
        table.add_row(
            escape(row["target"]),
            escape(row["account"] or "-"),
            f"[{_STATUS_STYLE.get(row['status'], '')}]{row['status']}[/]",
            escape(row["identity"] or "-"),
            escape(row["owner"] or "-"),
            "?" if entitlements is None else str(len(entitlements)),
            row["credential_issued_at"] or "-",
            row["last_used_at"] or "-",
            ", ".join(escape(f["type"]) for f in row["findings"]) or "-",
        )
    console.print(table)
    summary = ", ".join(f"{n} {status}" for status, n in data["summary"].items())
    console.print(f"{len(data['accounts'])} account(s): {summary}")


def print_explanation(console: Console, data: Mapping[str, Any]) -> None:
    if data.get("identity") is None:
        console.print(f"[bold]{escape(data['target'])}/{escape(data['account'])}[/]")
        for line in data["why"]:
            console.print(f"  {escape(line)}")
        return
    console.print(
        f"[bold]{escape(data['identity'])}[/] ({data['kind']}), owner "
        f"{escape(data['owner'])} ({data['owner_status']}): {escape(data['purpose'])}"
    )
    console.print(f"  declared at {_where(data['declared'])}")
    for account in data["accounts"]:
        console.print(
            f"  [bold]{escape(account['target'])}/{escape(account['account'])}[/]: "
            f"{account['status']}; declared at {_where(account['declared'])}"
        )
        console.print(f"    enforced: {_event(account['enforced'])}")
        console.print(f"    last verified: {_event(account['last_verified'])}")
        for ent in account["entitlements"]:
            why = "; ".join(_where(b) for b in ent["because"]) or escape(ent["why_not"] or "")
            console.print(f"    - {escape(ent['entitlement'])} [{ent['held']}]: {why}")
            console.print(f"        enforced {_event(ent['enforced'])}; "
                          f"last verified {_event(ent['last_verified'])}")  # fmt: skip
        for f in account["findings"]:
            console.print(f"    [red]{f['type']}[/] {f['id']} ({f['status']})")


def _where(place: Mapping[str, Any] | None) -> str:
    if not place:
        return "-"
    if place.get("source") == "request":
        approvers = ", ".join(place["approved_by"]) or "nobody yet"
        return escape(
            f"request {place['request']} by {place['requester']}, approved by {approvers}, "
            f"until {place['ends_at']} ({place['status']})"
        )
    text = f"{escape(place['file'])}:{place['line']}"
    commit = place.get("commit")
    if commit:
        text += f" (commit {commit['id'][:12]}, {escape(commit['summary'])})"
    elif place.get("uncommitted"):
        text += " (not committed)"
    return text


def _event(event: Mapping[str, Any] | None) -> str:
    if not event:
        return "never recorded"
    return f"#{event['seq']} {event['at']} ({escape(event['how'])})"
