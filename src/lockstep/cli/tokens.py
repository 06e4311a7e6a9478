"""``lockstep token create|list|revoke``: personal tokens, made by the operator against the
state store (no service needed). ``create`` prints the token once, alone on one line of
stdout; what is said about it goes to stderr."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    JsonOpt,
    StateOpt,
    emit_json,
    err,
    out,
    workspace,
)
from lockstep.policy.durations import parse_duration

token_app = typer.Typer(
    name="token",
    help="Personal tokens people sign in to the API with.",
    no_args_is_help=True,
)


@token_app.command("create")
def create(
    person: Annotated[str, typer.Argument(help="The person (an email the policy names).")],
    ttl: Annotated[str, typer.Option("--ttl", help="How long it works, e.g. 8h (at most 90d).")],
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """Make a token for PERSON; it is shown once and only its hash is kept."""
    from lockstep.governance.people import is_named
    from lockstep.governance.tokens import PersonTokens, TokenError
    from lockstep.policy.governance import normal_person

    try:
        ttl_s = parse_duration(ttl)
    except ValueError as exc:
        raise CliError(f"--ttl: {exc}") from None
    with workspace(config, state) as ws:
        who = normal_person(person)
        if not is_named(ws.policy, who):
            raise CliError(
                f"{person!r} is not a person the policy names (an owner's contact, a member "
                "of governance.groups, an admin or a sponsor)"
            )
        try:
            record, token = PersonTokens(ws.store, ws.journal, ws.clock).create(who, ttl_s)
        except TokenError as exc:
            raise CliError(str(exc)) from None
    # Not through the redactor: the token is what was asked for, shown this once.
    sys.stdout.write(token + "\n")
    expires = record.fields(record.created_at)["expires_at"]
    err.print(
        f"token {record.id} for {record.person}, expires {expires} "
        "(shown once: keep it in LOCKSTEP_TOKEN)",
        markup=False,
    )


@token_app.command("list")
def list_tokens(config: ConfigOpt = None, state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Every personal token's id, person, lifetime and status (never the token)."""
    from lockstep.governance.tokens import PersonTokens

    with workspace(config, state) as ws:
        now = ws.clock()
        rows = [r.fields(now) for r in PersonTokens(ws.store, ws.journal, ws.clock).list()]
    if as_json:
        emit_json({"tokens": rows})
        return
    if not rows:
        out.print("No tokens.")
    for row in rows:
        out.print(
            f"{row['id']}  {row['status']:<8} {row['person']}  expires {row['expires_at']}",
            markup=False,
        )


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (lockstep token list).")],
    config: ConfigOpt = None,
    state: StateOpt = None,
) -> None:
    """End a token now, in every service sharing the state store."""
    from lockstep.governance.tokens import PersonTokens, TokenError

    with workspace(config, state) as ws:
        try:
            record = PersonTokens(ws.store, ws.journal, ws.clock).revoke(token_id)
        except TokenError as exc:
            raise CliError(str(exc)) from None
    out.print(f"Token {record.id} of {record.person} revoked.", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app)
