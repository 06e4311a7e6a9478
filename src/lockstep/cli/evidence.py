"""``lockstep inventory``, ``explain`` and ``report``: evidence for auditors. Each reads, and
changes nothing in the targets or the store. Registered on the main app by
``lockstep.cli.app``."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from lockstep.cli.common import CliError, ConfigOpt, JsonOpt, StateOpt, emit_json, out, workspace

if TYPE_CHECKING:
    from lockstep.engine.workspace import Workspace
    from lockstep.evidence.facts import StoreFacts

CsvOpt = Annotated[bool, typer.Option("--csv", help="CSV, one row per account.")]


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory)
    app.command("explain")(explain)
    app.command("report")(report)


def inventory(config: ConfigOpt = None, state: StateOpt = None, as_json: JsonOpt = False,
              as_csv: CsvOpt = False) -> None:  # fmt: skip
    """Every NHI account in every target, managed or not: orphans, leases, suspended and
    excluded accounts, with identity, owner, entitlements, credential age, use and findings.
    Reads each target once; a target that cannot be read is listed as unreachable."""
    from lockstep.cli import render_evidence
    from lockstep.evidence.inventory import (
        build_inventory,
        write_inventory_csv,
        write_inventory_json,
    )

    if as_json and as_csv:
        raise CliError("--json and --csv go one at a time", exit_code=64)
    with workspace(config, state) as ws, ws.observer() as (observer, desired):
        observed = observer.observe()
        facts = _facts(ws)
        live = _live_findings(ws, desired, observed, facts)
        data = build_inventory(ws.policy, desired, observed, facts, live)
    if as_json:
        write_inventory_json(data, _Redacted(sys.stdout))
    elif as_csv:
        write_inventory_csv(data, _Redacted(sys.stdout))
    else:
        render_evidence.print_inventory(out, data)


def explain(
    name: Annotated[
        str,
        typer.Argument(
            metavar="IDENTITY",
            help="An identity; or TARGET/ACCOUNT (or an account name) to ask about an "
            "account no identity declares.",
        ),
    ],
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why an identity holds each of its accounts and entitlements (policy file and line,
    and the git commit of that line), when each was enforced and last verified and how
    (journal entries, what was probed), and its findings; or why an account is an orphan."""
    from lockstep.cli import render_evidence
    from lockstep.evidence.explain import explain_account, explain_identity

    with workspace(config, state) as ws, ws.observer() as (observer, desired):
        observed = observer.observe()
        facts = _facts(ws)
        live = _live_findings(ws, desired, observed, facts)
        if name in ws.policy.identities:
            data = explain_identity(ws, name, desired, observed, facts, live)
        else:
            data = explain_account(ws, name, desired, observed, facts, live)
    if as_json:
        emit_json(data)
    else:
        render_evidence.print_explanation(out, data)


def report(
    framework: Annotated[
        str,
        typer.Option(
            "--framework",
            help="owasp-nhi-2025, nist-csf-2.0, nist-800-53-r5 or nist-ai-rmf.",
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="json (default), html, oscal or ocsf (JSON lines).")
    ] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """A report against a framework from the state store: each control satisfied, not
    satisfied or not assessed, with its findings, evidence (journal entries and hashes) and
    figures. Re-running it on the same state gives the same bytes but for generated_at."""
    from lockstep.evidence.frameworks import FRAMEWORKS, load_framework
    from lockstep.evidence.render import FORMATS, write_report
    from lockstep.evidence.report import build_report, gather

    if framework not in FRAMEWORKS:
        raise CliError(
            f"unknown framework {framework!r} (known: {', '.join(FRAMEWORKS)})", exit_code=64
        )
    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})", exit_code=64)
    with workspace(config, state) as ws:
        built = build_report(load_framework(framework), gather(ws.policy, ws.store), _now())
    if output is None:
        write_report(built, fmt, _Redacted(sys.stdout))
        return
    try:
        with output.open("w", encoding="utf-8", newline="\n") as f:
            write_report(built, fmt, _Redacted(f))
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None


def _now() -> datetime:
    """When the report is generated: ``SOURCE_DATE_EPOCH`` when set (reproducible builds'
    convention), so that a run can be compared byte for byte with another."""
    from datetime import UTC

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        try:
            return datetime.fromtimestamp(int(epoch), UTC)
        except ValueError:
            raise CliError("SOURCE_DATE_EPOCH is not a number of seconds") from None
    return datetime.now(UTC)


def _facts(ws: Workspace) -> StoreFacts:
    from lockstep.evidence.facts import read_store_facts

    return read_store_facts(ws.store, ws.policy)


def _live_findings(ws: Workspace, desired: Any, observed: Any, facts: StoreFacts) -> Any:
    """The findings of a plan over this read (pure; nothing is recorded or applied)."""
    from lockstep.engine.plan import make_plan

    accepted = {r.id for r in facts.findings if r.status == "accepted"}
    plan = make_plan(
        ws.policy, desired, observed, ws.clock(), facts.issued, facts.last_used, accepted=accepted
    )
    return plan.findings


class _Redacted:
    """A text stream whose every write goes through the secret redactor."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str, /) -> int:
        from lockstep.secret import redact

        return self._out.write(redact(text))
