"""Findings as people read them: a summary by type and severity, the full list, and the
ledger's records with their lifecycle."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.text import Text

from lockstep.engine.catalog import KINDS, owasp_nhi
from lockstep.engine.inert import inert
from lockstep.model import Finding
from lockstep.store.findings import FindingRecord

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
SEVERITIES = ("critical", "high", "medium", "low")  # most severe first
SUMMARY = "summary"
ALL = "all"


def print_findings(
    console: Console,
    findings: Sequence[Finding],
    records: Sequence[FindingRecord] = (),
    mode: str = ALL,
    hint: str = "--findings all lists each",
) -> None:
    """``mode`` ``summary``: one line per type and severity; ``all``: one line per finding."""
    if not findings:
        return
    if mode == SUMMARY:
        print_summary(console, findings, hint)
        return
    by_id = {r.id: r for r in records}
    console.print(f"\n[bold]{len(findings)} finding(s):[/]")
    for f in findings:
        line = Text("  ")
        line.append(f"{f.severity:<8}", style=SEVERITY_STYLE.get(str(f.severity), ""))
        line.append(f" {f.type}", style="bold")
        line.append(inert(f"  {f.target}/{f.account or '*'}"))
        if f.entitlement:
            line.append(inert(f"  {f.entitlement}"))
        owasp = ",".join(owasp_nhi(f))
        line.append(f"  [{owasp or '-'} {','.join(KINDS[f.type].nist_csf)}] {f.id}", style="dim")
        rec = by_id.get(f.id)
        if rec is not None:
            line.append(f" {rec.status} since {rec.first_seen:%Y-%m-%d %H:%M}", style="dim")
        console.print(line)


def print_summary(console: Console, findings: Sequence[Finding], hint: str) -> None:
    counts = Counter((str(f.severity), str(f.type)) for f in findings)
    console.print(f"\n[bold]{len(findings)} finding(s)[/] ({hint}):")
    for (severity, type_), n in sorted(counts.items(), key=_summary_order):
        line = Text("  ")
        line.append(f"{severity:<8}", style=SEVERITY_STYLE.get(severity, ""))
        line.append(f" {n:>5}  {type_}")
        line.append(f"  {KINDS[type_].summary}", style="dim")  # type: ignore[index]
        console.print(line)


def _summary_order(item: tuple[tuple[str, str], int]) -> tuple[int, str]:
    (severity, type_), _ = item
    return (SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES), type_)


_LIFECYCLE_STYLE = {
    "open": "bold yellow",
    "remediated": "cyan",
    "accepted": "magenta",
    "verified": "green",
    "resolved": "green",
}
_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def finding_record_sort_key(record: FindingRecord) -> tuple[int, str, str, str, str]:
    f = record.finding
    return (
        _SEVERITY_ORDER.get(str(f.severity), len(_SEVERITY_ORDER)),
        f.target,
        str(f.type),
        f.account or "",
        f.entitlement or "",
    )


def print_finding_records(
    console: Console,
    records: Sequence[FindingRecord],
    owners: Mapping[str, str | None],
    statuses: Sequence[str] | None,
) -> None:
    """``owners``: each finding id's owner; ``statuses``: the filter shown (None: all)."""
    which = ", ".join(statuses) if statuses is not None else "any status"
    if not records:
        console.print(f"[green]No findings[/] ({which}).")
        return
    console.print(f"[bold]{len(records)} finding(s)[/] ({which}):")
    for r in records:
        f = r.finding
        line = Text("  ")
        line.append(f"{f.severity:<8}", style=SEVERITY_STYLE.get(str(f.severity), ""))
        line.append(f" {f.type}", style="bold")
        line.append(inert(f"  {f.target}/{f.account or '*'}"))
        if f.entitlement:
            line.append(inert(f"  {f.entitlement}"))
        owasp = ",".join(owasp_nhi(f))
        line.append(f"  [{owasp or '-'} {','.join(KINDS[f.type].nist_csf)}] {r.id}", style="dim")
        console.print(line)
        console.print(_lifecycle_line(r, owners.get(r.id)))
        if r.accepted_until is not None:
            console.print(
                Text(
                    inert(
                        f"           accepted by {r.accepted_by} until "
                        f"{r.accepted_until:%Y-%m-%d %H:%M}: {r.accepted_reason}"
                    ),
                    style="magenta",
                )
            )


def print_acceptance(console: Console, record: FindingRecord) -> None:
    f = record.finding
    what = f"{f.type} {f.target}/{f.account or '*'}"
    if f.entitlement:
        what += f" {f.entitlement}"
    line = Text("Accepted ", style="bold magenta")
    line.append(inert(f"{record.id} ({what})"))
    line.append(f" until {record.accepted_until:%Y-%m-%d %H:%M} UTC, by {record.accepted_by}: ")
    line.append(inert(record.accepted_reason or ""))
    console.print(line)
    console.print(
        "[dim]It stays accepted while seen until then, and reopens if still seen after.[/]"
    )


def _lifecycle_line(record: FindingRecord, owner: str | None) -> Text:
    line = Text("           ")
    line.append(record.status, style=_LIFECYCLE_STYLE.get(record.status, ""))
    line.append(
        f"  first seen {record.first_seen:%Y-%m-%d %H:%M}"
        f"  last seen {record.last_seen:%Y-%m-%d %H:%M}",
        style="dim",
    )
    if record.remediated_at is not None:
        line.append(f"  remediated {record.remediated_at:%Y-%m-%d %H:%M}", style="dim")
    if record.verified_at is not None:
        line.append(f"  verified {record.verified_at:%Y-%m-%d %H:%M}", style="dim")
    line.append(inert(f"  owner {owner or '(none)'}"), style="dim")
    return line
