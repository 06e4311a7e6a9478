"""Short-lived credentials from the command line: ``issue``, ``renew``, ``revoke``, ``leases``
and ``reap``. Registered on the main app by ``lockstep.cli.app``.

``issue`` is the one command that prints a secret: handing the new credential to its caller
is its whole purpose. It writes the credential to stdout only, once, and nowhere else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    JsonOpt,
    StateOpt,
    UsageError,
    emit_json,
    err,
    finishing_in_flight,
    out,
    workspace,
)
from lockstep.engine.inert import inert
from lockstep.policy.durations import parse_duration

if TYPE_CHECKING:
    from lockstep.leases.manager import Ended, Lease, LeaseManager

TtlOpt = Annotated[
    str | None,
    typer.Option("--ttl", help="How long the lease lives, e.g. 15m (default: the identity's)."),
]


@contextmanager
def _leases(config: Path | None, state: str | None) -> Iterator[LeaseManager]:
    from lockstep.leases.manager import LeaseError, LeaseManager

    with workspace(config, state) as ws:
        manager = LeaseManager.for_workspace(ws)
        try:
            yield manager
        except LeaseError as exc:
            raise CliError(str(exc)) from None
        finally:
            manager.close()


def _seconds(ttl: str | None) -> int | None:
    if ttl is None:
        return None
    try:
        return parse_duration(ttl)
    except ValueError as exc:
        raise CliError(f"--ttl: {exc}") from None


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue(
    identity: Annotated[str, typer.Argument(help="The identity the lease acts as.")],
    target: Annotated[str, typer.Option("--target", help="The target to log in to.")],
    ttl: TtlOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a short-lived credential (a lease), proven to work before it is shown."""
    with _leases(config, state) as manager, finishing_in_flight("issue") as stop:
        lease, credential = manager.issue(identity, target, _seconds(ttl))
        if stop():
            manager.journal_interrupted("issue", lease_id=lease.id)
    document: dict[str, Any] = {
        "lease_id": lease.id,
        "username": credential.username,
        "password": credential.secret.reveal(),
        "expires_at": _iso(lease.expires_at),
        "identity": lease.identity,
        "target": lease.target,
    }
    if credential.token is not None:
        document["session_token"] = credential.token.reveal()
    # Not through the redactor, which would mask the very credential asked for.
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write("".join(f"{key}: {value}\n" for key, value in document.items()))
    if stop():  # the lease was issued and is shown: only then does the command stop
        raise typer.Exit(stop.exit_code)


def renew(
    lease_id: Annotated[str, typer.Argument(help="The lease to extend.")],
    ttl: TtlOpt = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Extend a lease from now, for at most the identity's lease_max_ttl (a longer --ttl is
    refused, as issue refuses it), and never past the lease's maximum lifetime (then it says
    it capped)."""
    with _leases(config, state) as manager:
        lease = manager.renew(lease_id, _seconds(ttl))
    capped = lease.expires_at >= lease.max_expires_at
    if as_json:
        emit_json({**_lease_json(lease), "capped": capped})
        return
    out.print(f"Lease {lease.id} now expires at {_iso(lease.expires_at)}.", markup=False)
    if capped:
        out.print(
            "Capped at the lease's maximum lifetime (issued_at + lease_max_ttl): "
            "issue a new lease to go on.",
            markup=False,
        )


def revoke(
    lease_id: Annotated[str | None, typer.Argument(help="The lease to end.")] = None,
    identity: Annotated[
        str | None, typer.Option("--identity", help="Every lease of this identity.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Every lease on this target.")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Every lease whose id starts so.")
    ] = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """End leases now and prove their credentials refused (exit 1 unless every one is)."""
    from lockstep.cli import progress

    if lease_id is not None and (identity or target or prefix):
        raise UsageError("give a lease id, or --identity/--target/--prefix, not both")
    with _leases(config, state) as manager, finishing_in_flight("revoke") as stop:
        if lease_id is not None:
            ended = [manager.revoke(lease_id)]
        else:
            with progress.bar("revoking", enabled=not as_json) as bar:
                ended = manager.revoke_where(identity, target, prefix, bar)
        if stop():
            manager.journal_interrupted("revoke", ended=len(ended))
    _report(ended, {}, as_json)
    if stop():
        raise typer.Exit(stop.exit_code)
    if not all(e.verified for e in ended):
        raise typer.Exit(1)


def reap(config: ConfigOpt = None, state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """End every lease past its expiry and every lease account without a live record
    (exit 1 unless every one was proven refused and every target could be read)."""
    from lockstep.cli import progress

    with _leases(config, state) as manager, progress.bar("reaping", enabled=not as_json) as bar:
        report = manager.reap(progress=bar)
    _report(report.ended, report.unreachable, as_json)
    if not report.verified:
        raise typer.Exit(1)


def leases(
    identity: Annotated[str | None, typer.Option("--identity", help="Only this identity.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Only this target.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only active, revoked, expired or failed.")
    ] = None,
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The leases lockstep has issued (never their credentials)."""
    from lockstep.leases.records import LeaseStatus

    try:
        wanted = LeaseStatus(status) if status is not None else None
    except ValueError:
        raise CliError(f"--status {status!r}: expected one of {_statuses()}") from None
    with _leases(config, state) as manager:
        found = manager.list(identity=identity, target=target, status=wanted)
    if as_json:
        emit_json({"leases": [_lease_json(lease) for lease in found]})
        return
    if not found:
        out.print("No leases.")
    for lease in found:
        out.print(
            inert(
                f"{lease.id}  {lease.status:<8} {lease.identity}"
                f"{' (agent)' if lease.identity_kind == 'agent' else ''} on {lease.target} as "
                f"{lease.username}  expires {_iso(lease.expires_at)}"
                + ("  (awaiting the reaper)" if lease.awaiting_reaper else "")
            ),
            markup=False,
        )


def show_lease(
    lease_id: Annotated[str, typer.Argument(help="The lease's id, as issue or leases shows.")],
    config: ConfigOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One lease (never its credential): who holds it, on which target, until when."""
    with _leases(config, state) as manager:
        found = manager.get(lease_id)
    if as_json:
        emit_json(_lease_json(found))
        return
    for key, value in _lease_json(found).items():
        out.print(inert(f"{key + ':':<17} {'-' if value is None else value}"), markup=False)


def _statuses() -> str:
    from lockstep.leases.records import LeaseStatus

    return ", ".join(s.value for s in LeaseStatus)


def _lease_json(lease: Lease) -> dict[str, Any]:
    shown: dict[str, Any] = {
        key: _iso(value) if isinstance(value, datetime) else value
        for key, value in lease.fields().items()
    }
    shown["awaiting_reaper"] = lease.awaiting_reaper
    return shown


def _report(ended: Sequence[Ended], unreachable: dict[str, str], as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "ended": [
                    {
                        "lease_id": e.lease_id,
                        "target": e.target,
                        "account": e.account,
                        "status": str(e.status),
                        "detail": e.detail,
                    }
                    for e in ended
                ],
                "unreachable": unreachable,
            }
        )
        return
    if not ended and not unreachable:
        out.print("Nothing to end.")
    for e in ended:
        console = out if e.verified else err
        console.print(
            inert(f"{e.status}: {e.lease_id or e.account} on {e.target}: {e.detail}"),
            markup=False,
        )
    for name, why in sorted(unreachable.items()):
        err.print(inert(f"target {name} could not be read: {why}"), markup=False)


def register(app: typer.Typer) -> None:
    app.command()(issue)
    app.command()(renew)
    app.command()(revoke)
    app.command()(leases)
    app.command("lease")(show_lease)
    app.command()(reap)
