"""The commands that touch no target and need no secret: ``validate``, ``permissions`` and
``schema``. ``validate --offline`` is what a pre-commit hook runs (``.pre-commit-hooks.yaml``):
a ``${VAR}`` that is not set, and a ``file:`` secret, are not read; everything else is
checked. Registered on the main app by ``lockstep.cli.app``."""

from __future__ import annotations

from typing import Annotated

import typer

from lockstep.cli.common import ConfigOpt, JsonOpt, config_path, emit_json, err, out
from lockstep.secret import redact


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(permissions)
    app.command()(schema)


def validate(
    config: ConfigOpt = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Accept unset ${VAR}s and unread file: secrets (pre-commit)."
        ),
    ] = False,
) -> None:
    """Check the policy without touching any target (errors as FILE:LINE: message)."""
    from lockstep.policy.load import load_policy
    from lockstep.policy.warnings import policy_warnings

    loaded = load_policy(config_path(config), offline=offline)
    for warning in policy_warnings(loaded):
        err.print(redact(str(warning)), markup=False, highlight=False)
    p = loaded.policy
    out.print(
        f"[green]Policy valid:[/] {len(p.targets)} target(s), {len(p.owners)} owner(s), "
        f"{len(p.identities)} identit{'y' if len(p.identities) == 1 else 'ies'} "
        f"in {len(loaded.files)} file(s)" + (" (offline)." if offline else ".")
    )


def permissions(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Show every admin permission lockstep may need on each target (offline: no secret)."""
    from lockstep.cli import render
    from lockstep.connectors.registry import connector_type
    from lockstep.policy.load import load_policy

    policy = load_policy(config_path(config), offline=True).policy
    needed = render.target_permissions(
        {name: connector_type(t.type) for name, t in policy.targets.items()}
    )
    if as_json:
        emit_json(needed)
    else:
        render.print_target_permissions(out, needed)


def schema() -> None:
    """Print the policy's JSON Schema (for editors and CI checks)."""
    from lockstep.policy.jsonschema import policy_json_schema

    emit_json(policy_json_schema())
