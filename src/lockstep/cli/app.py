"""``lockstep``: plan and apply like Terraform, verify like an auditor.

Errors reach the user as one clear line on stderr (a traceback only with --debug), and every
line that leaves the process passes through the secret redactor. Commands import what they
use in their bodies (see ``cli.common``), so that ``--help`` and ``validate`` start fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, NoReturn

import typer

from lockstep import __version__
from lockstep.cli.common import (
    CliError,
    ConfigOpt,
    StateOpt,
    Verdict,
    err,
    options,
    out,
    plain_output,
)
from lockstep.engine.inert import inert
from lockstep.errors import LockstepError
from lockstep.secret import redact

EX_USAGE = 64  # sysexits.h: the command was used incorrectly
# Accepted anywhere on the command line, before or after the command.
ANYWHERE = ("--debug", "--no-color")
HELP_OPTIONS = ["-h", "--help"]

app = typer.Typer(
    name="lockstep",
    help="Keeps identity governance and enforcement in lockstep for non-human identities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": HELP_OPTIONS},
)


def _version(value: bool) -> None:
    if value:
        out.print(f"lockstep {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def main_options(
    config: ConfigOpt = None,
    state: StateOpt = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (also after the command).")
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours or styles (as NO_COLOR=1).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    if config is not None:
        options.config = config
    if state is not None:
        options.state = state
    options.debug = options.debug or debug


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Leave the demo server running.")] = False,
    workdir: Annotated[
        Path | None, typer.Option(help="Where the demo keeps its files (default: a temp dir).")
    ] = None,
) -> None:
    """A narrated, real run against a private PostgreSQL."""
    from lockstep.demo.tour import run_demo

    run_demo(out, keep=keep, workdir=workdir)


# Command modules: each registers its commands on `app` (one import and one call per module).
from lockstep.cli import audit as audit_commands  # noqa: E402
from lockstep.cli import credentials as credentials_commands  # noqa: E402
from lockstep.cli import enforce as enforce_commands  # noqa: E402
from lockstep.cli import evidence as evidence_commands  # noqa: E402
from lockstep.cli import findings as findings_commands  # noqa: E402
from lockstep.cli import governance as governance_commands  # noqa: E402
from lockstep.cli import offline as offline_commands  # noqa: E402
from lockstep.cli import paths as paths_commands  # noqa: E402
from lockstep.cli import reviews as review_commands  # noqa: E402
from lockstep.cli import rotate as rotate_commands  # noqa: E402
from lockstep.cli import service as service_commands  # noqa: E402
from lockstep.cli import tokens as token_commands  # noqa: E402
from lockstep.cli import verify as verify_commands  # noqa: E402

offline_commands.register(app)
enforce_commands.register(app)
verify_commands.register(app)
rotate_commands.register(app)
audit_commands.register(app)
evidence_commands.register(app)
findings_commands.register(app)
credentials_commands.register(app)
service_commands.register(app)
token_commands.register(app)
governance_commands.register(app)
review_commands.register(app)
paths_commands.register(app)


def _fail(message: str, code: int) -> NoReturn:
    err.print(inert(redact(message)), markup=False, highlight=False)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    from lockstep.policy.errors import PolicyInvalid

    args = _anywhere(list(sys.argv[1:] if argv is None else argv))
    command = typer.main.get_command(app)
    _plain_metavars(command)
    try:
        command(args, prog_name="lockstep")
    except SystemExit as exc:
        # Click's own exit 2 is a usage error (an unknown option, a missing argument, no
        # command): 64, as sysexits.h has it. A command's own 2 comes as a Verdict.
        raise SystemExit(EX_USAGE if exc.code == 2 else exc.code) from None
    except Verdict as verdict:
        raise SystemExit(verdict.exit_code) from None
    except CliError as exc:
        _fail(f"error: {exc}", exc.exit_code)
    except PolicyInvalid as exc:
        for error in exc.errors:
            err.print(inert(redact(str(error))), markup=False, highlight=False)
        _fail(f"policy invalid: {len(exc.errors)} error(s)", 1)
    except LockstepError as exc:
        if options.debug:
            raise
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        _fail(f"error: {exc}{hint}", 1)
    except Exception as exc:
        if options.debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug)", 1)


def _anywhere(args: list[str]) -> list[str]:
    """``args`` without the options accepted anywhere (up to a ``--``), which take effect
    here: ``lockstep plan --debug`` works as ``lockstep --debug plan`` does."""
    end = args.index("--") if "--" in args else len(args)
    given = {a for a in args[:end] if a in ANYWHERE}
    options.debug = options.debug or "--debug" in given
    if "--no-color" in given or os.environ.get("NO_COLOR"):
        plain_output()
    return [a for a in args[:end] if a not in ANYWHERE] + args[end:]


def _plain_metavars(command: Any) -> None:
    """Help that reads as other CLIs': a flag takes no value, so it shows none (typer would
    print ``<bool>``), and an option's value is named after it (``--reason REASON``)."""
    # The help option is made when first asked for (and then kept): made here, it is fixed too.
    helper = command.get_help_option(SimpleNamespace(help_option_names=HELP_OPTIONS))
    for param in [*command.params, *([helper] if helper is not None else [])]:
        if getattr(param, "is_flag", None) is None or param.metavar is not None:
            continue  # an argument, or a name already given
        if param.is_flag:
            param.metavar = ""
        elif not param.type_descriptor.is_choice:
            param.metavar = (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)
