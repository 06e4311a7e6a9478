"""``lockstep verify``: re-read every target and prove what lockstep did still holds. It agrees
with ``plan``: in sync when nothing is left for apply to do and every probe is as expected.
Registered on the main app by ``lockstep.cli.app``."""

from __future__ import annotations

from typing import Annotated

import typer

from lockstep.cli.common import (
    ConfigOpt,
    FindingsOpt,
    FindingsShown,
    JsonOpt,
    StateOpt,
    Verdict,
    emit_json,
    out,
    workspace,
)


def register(app: typer.Typer) -> None:
    app.command()(verify)


def verify(
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail on any open finding (not accepted).")
    ] = False,
    findings: FindingsOpt = FindingsShown.SUMMARY,
    probe_all: Annotated[
        bool,
        typer.Option(
            "--probe-all",
            help="Also probe credentials nobody was handed (that the read already settles).",
        ),
    ] = False,
) -> None:
    """Re-read every target and probe every credential lockstep revoked, rotated or delivered.

    In sync (exit 0): nothing left for apply to do and every probe as expected. Findings the
    rules only report, and accepted ones, are listed and do not fail it (unless --strict).
    """
    from lockstep.cli import progress, render
    from lockstep.engine.audit import verify_state

    with (
        workspace(config, state) as ws,
        ws.observer() as (observer, desired),
        progress.bar("probing credentials", enabled=not as_json) as bar,
    ):
        verification = verify_state(
            ws, observer, desired, strict, probe_all=probe_all, progress=bar.reach
        )
    if as_json:
        emit_json(render.verification_json(verification))
    else:
        render.print_verification(out, verification, findings)
    if not verification.in_sync:
        raise Verdict(2)
