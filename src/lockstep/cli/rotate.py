"""``lockstep rotate``: a credential rotated now, the new one delivered and working, the old
one refused; ``--reason leaked`` also ends the identity's leases. Registered on the main app
by ``lockstep.cli.app``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from lockstep.cli.common import (
    ConfigOpt,
    JsonOpt,
    StateOpt,
    emit_json,
    err,
    finishing_in_flight,
    out,
    workspace,
)
from lockstep.engine.inert import inert

if TYPE_CHECKING:
    from lockstep.engine.reconcile import Pass
    from lockstep.engine.workspace import Workspace
    from lockstep.leases.manager import Ended
    from lockstep.model import Plan


def register(app: typer.Typer) -> None:
    app.command()(rotate)


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
        opened = _review_leak(ws, identity, target) if reason == "leaked" else []
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
        data["reviews"] = opened
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
        for review_id in opened:
            out.print(f"  review {review_id} opened: the owner decides whether the access stays")
    if stop():
        raise typer.Exit(stop.exit_code)
    rotated = bool(results) and all(r.status is Status.VERIFIED for r in results)
    if plan.unreachable or not rotated or not all(e.verified for e in ended):
        raise typer.Exit(1)


def _review_leak(ws: Workspace, identity: str, target: str | None) -> list[str]:
    """A leaked credential puts the identity's access to review at once."""
    from lockstep.engine.review_pass import leaked

    entry = ws.journal.append(
        "credential_leaked", {"identity": identity, "target": target, "reason": "leaked"}
    )
    return [r.id for r in leaked(ws, identity, target, entry.at, entry.seq)]


def _revoke_leases(ws: Workspace, identity: str, target: str | None) -> list[Ended]:
    from lockstep.leases.manager import LeaseManager

    manager = LeaseManager.for_workspace(ws)
    try:
        return manager.revoke_where(identity=identity, target=target)
    finally:
        manager.close()
