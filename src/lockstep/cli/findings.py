"""``lockstep findings``: the findings ledger after a fresh read of every target, and risk
acceptance. Registered on the main app by ``lockstep.cli.app``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lockstep.cli.common import CliError, ConfigOpt, JsonOpt, StateOpt, emit_json, out, workspace
from lockstep.engine.catalog import HELD, MAX_ACCEPTANCE, STATUSES
from lockstep.model import FindingType, Policy, Severity
from lockstep.policy.durations import parse_duration

if TYPE_CHECKING:
    from lockstep.store.findings import FindingRecord

ALL = "all"


class FindingsFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    CSV = "csv"


findings_app = typer.Typer()


@dataclass(frozen=True)
class _Where:
    """-c/--state given to the group, for its subcommands."""

    config: Path | None = None
    state: str | None = None


@dataclass(frozen=True)
class _Selection:
    statuses: list[str] | None  # None: every status
    types: list[str] | None
    targets: list[str]
    identities: list[str] | None


@findings_app.callback(invoke_without_command=True)
def list_findings(
    ctx: typer.Context,
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only findings of this type (repeatable)."),
    ] = None,
    targets: Annotated[
        list[str] | None,
        typer.Option("--target", help="Only findings about this target (repeatable)."),
    ] = None,
    owners: Annotated[
        list[str] | None,
        typer.Option(
            "--owner",
            help="Only findings about identities of this policy owner (repeatable). "
            "Orphan accounts belong to no identity, hence to no owner.",
        ),
    ] = None,
    statuses: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help=f"Only findings in this lifecycle status: {', '.join(STATUSES)}, or {ALL} "
            f"(repeatable; default: {', '.join(HELD)}).",
        ),
    ] = None,
    severities: Annotated[
        list[Severity] | None,
        typer.Option("--severity", help="Only findings of this severity (repeatable)."),
    ] = None,
    fail_on: Annotated[
        Severity | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding listed is of this severity or worse (a CI gate).",
        ),
    ] = None,
    output: Annotated[
        FindingsFormat,
        typer.Option("--format", help="text, json (as --json), sarif (code scanning) or csv."),
    ] = FindingsFormat.TEXT,
) -> None:
    """Current findings, read fresh from every target, with their lifecycle.

    open: seen, not addressed. remediated: an action of lockstep's addressed it.

    verified: gone on a read after it was remediated. resolved: gone on its own.

    accepted: its risk accepted until a date (`findings accept`), then open again.
    """
    ctx.obj = _Where(config, state)
    if ctx.invoked_subcommand is not None:
        return
    from lockstep.cli import render_findings
    from lockstep.cli.findings_output import at_least, policy_locator, write_csv
    from lockstep.engine.reconcile import observe
    from lockstep.engine.shapes import finding_record_json
    from lockstep.evidence.sarif import sarif_log

    with workspace(config, state) as ws:
        selection = _select(ws.policy, types, targets, owners, statuses)
        with ws.observer() as (observer, desired):
            observe(ws, observer, desired)
        records = ws.ledger.current(
            selection.statuses,
            types=selection.types,
            targets=selection.targets,
            identities=selection.identities,
        )
        owner_of = {r.id: _owner(ws.policy, r) for r in records}
        loaded = ws.loaded
    if severities:
        records = [r for r in records if r.finding.severity in severities]
    records.sort(key=render_findings.finding_record_sort_key)
    shape = FindingsFormat.JSON if as_json else output
    if shape is FindingsFormat.JSON:
        emit_json({"findings": [finding_record_json(r, owner_of[r.id]) for r in records]})
    elif shape is FindingsFormat.SARIF:
        emit_json(sarif_log(records, policy_locator(loaded)))
    elif shape is FindingsFormat.CSV:
        write_csv(sys.stdout, [finding_record_json(r, owner_of[r.id]) for r in records])
    else:
        render_findings.print_finding_records(out, records, owner_of, selection.statuses)
    if fail_on is not None and any(at_least(r.finding.severity, fail_on) for r in records):
        raise typer.Exit(1)


@findings_app.command()
def accept(
    ctx: typer.Context,
    finding_id: Annotated[
        str, typer.Argument(metavar="ID", help="The finding's id, as `lockstep findings` shows.")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why the risk is accepted.")],
    until: Annotated[
        str,
        typer.Option(
            "--until",
            help="When the acceptance expires: a date (2027-01-31, midnight UTC), a time "
            "(2027-01-31T12:00:00Z) or a duration from now (30d); at most "
            f"{MAX_ACCEPTANCE.days} days away.",
        ),
    ],
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Who accepts the risk (default: the owner of the finding's identity in "
            "the policy; required for findings with no owner, such as orphan accounts).",
        ),
    ] = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accept a finding's risk until a date (journaled).

    Seen until then, it stays accepted; still seen after, it reopens; gone, it resolves.
    """
    from lockstep.cli import render_findings
    from lockstep.engine.acceptance import accept_risk
    from lockstep.engine.shapes import finding_record_json
    from lockstep.store.findings import FindingLedgerError

    where = ctx.obj if isinstance(ctx.obj, _Where) else _Where()
    with workspace(config or where.config, state or where.state) as ws:
        now = ws.clock()
        expires = parse_until(until, now)
        try:
            record = ws.ledger.get(finding_id)
            accepted_by = by if by is not None else _owner(ws.policy, record)
            if accepted_by is None:
                raise CliError(
                    f"finding {record.id} ({record.finding.type}) has no owner in the policy: "
                    "name who accepts the risk with --by"
                )
            accepted = accept_risk(ws.journal, ws.ledger, record, accepted_by, reason, expires, now)
        except FindingLedgerError as exc:
            raise CliError(str(exc)) from None
        owner = _owner(ws.policy, accepted)
    if as_json:
        emit_json(finding_record_json(accepted, owner))
    else:
        render_findings.print_acceptance(out, accepted)


def register(app: typer.Typer) -> None:
    app.add_typer(findings_app, name="findings")


def parse_until(text: str, now: datetime) -> datetime:
    """An expiry as the user writes it: a duration from ``now``, a date or a time (UTC when
    no offset is given)."""
    text = text.strip()
    if text[-1:] in ("s", "m", "h", "d"):
        try:
            return now + timedelta(seconds=parse_duration(text))
        except ValueError as exc:
            raise CliError(f"--until: {exc}") from None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"--until {text!r}: write a date (2027-01-31), a time (2027-01-31T12:00:00Z) "
            "or a duration (30d)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _select(
    policy: Policy,
    types: Sequence[str] | None,
    targets: Sequence[str] | None,
    owners: Sequence[str] | None,
    statuses: Sequence[str] | None,
) -> _Selection:
    _known("finding type", types, [str(t) for t in FindingType])
    _known("status", statuses, [*STATUSES, ALL])
    _known("target", targets, policy.targets)
    _known("owner", owners, policy.owners)
    identities = None
    if owners:
        identities = [name for name, i in policy.identities.items() if i.owner in owners]
    if not statuses:
        chosen: list[str] | None = list(HELD)
    else:
        chosen = None if ALL in statuses else list(dict.fromkeys(statuses))
    return _Selection(
        statuses=chosen,
        types=list(types) if types else None,
        # Findings about targets no longer in the policy are never read again: not shown.
        targets=list(targets) if targets else sorted(policy.targets),
        identities=identities,
    )


def _known(what: str, given: Sequence[str] | None, known: Iterable[str]) -> None:
    names = sorted(known)
    for name in given or ():
        if name not in names:
            raise CliError(f"unknown {what} {name!r}; one of: {', '.join(names) or '(none)'}")


def _owner(policy: Policy, record: FindingRecord) -> str | None:
    identity = policy.identities.get(record.finding.identity or "")
    return identity.owner if identity is not None else None
