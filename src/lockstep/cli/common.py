"""What every command module shares: the global options, the consoles, the option types,
and opening the workspace.

This module, like the command modules' top levels, imports nothing heavy: ``lockstep --help``
and ``validate`` must not pay for the state store, the web stack or a cloud SDK. Commands
import what they use inside their bodies.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from lockstep.errors import LockstepError
from lockstep.secret import redact

if TYPE_CHECKING:
    from lockstep.engine.workspace import Workspace

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def plain_output() -> None:
    """No escape code at all (``NO_COLOR``, ``--no-color``): rich's own NO_COLOR support
    drops colours but keeps bold and dim, so the colour system itself is switched off."""
    import typer.rich_utils

    typer.rich_utils.COLOR_SYSTEM = None  # typer's help and usage errors
    for console in (out, err):
        # rich offers no public switch once a console exists; this is what
        # Console(color_system=None) sets.
        console._color_system = None


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", metavar="PATH", help="Policy file, or a directory of *.yaml files."
    ),
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="URL",
        help="State store URL (default: sqlite at .lockstep/state.db).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", metavar="TARGET", help="Only this target (repeatable)."),
]


class FindingsShown(StrEnum):
    SUMMARY = "summary"
    ALL = "all"


FindingsOpt = Annotated[
    FindingsShown,
    typer.Option("--findings", help="Findings by type and severity (summary), or each one (all)."),
]


@dataclass
class Options:
    """The options given before the command, for every command to fall back on."""

    config: Path | None = None
    state: str | None = None
    debug: bool = False


options = Options()


class CliError(LockstepError):
    """A failure to report as one line, with an exit code."""

    code = "cli"

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Verdict(Exception):
    """A command's result as an exit code other than 0 and 1 (``plan --exit-code`` 2: changes
    pending; ``verify`` 2: drift). Raised past click, which exits 2 on a usage error itself:
    so the two stay apart, and a usage error can exit 64."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class UsageError(CliError):
    """A command line that cannot be run as written: exits 64 (EX_USAGE), like click's own."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=64)


def config_path(config: Path | None) -> Path:
    """The policy file or directory: the command's -c, else the global one, else
    ``lockstep.yaml`` in the working directory."""
    from lockstep.policy.load import DEFAULT_FILE

    path = config or options.config or Path(DEFAULT_FILE)
    if not path.exists():
        raise CliError(f"{path}: no such policy file or directory (use -c/--config PATH)")
    return path


@contextmanager
def workspace(config: Path | None, state: str | None) -> Iterator[Workspace]:
    from lockstep.engine.workspace import Workspace

    with Workspace.open(config_path(config), state or options.state) as ws:
        yield ws


@dataclass
class StopRequest:
    """Set by SIGINT or SIGTERM while a command that changes targets runs."""

    signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)


@contextmanager
def finishing_in_flight(command: str, stop: StopRequest | None = None) -> Iterator[StopRequest]:
    """While the block runs, SIGINT and SIGTERM only ask it to stop (``stop``, or a new
    request): the action in flight finishes (and is verified and journaled), then the
    command stops before the next one, instead of leaving what a kill leaves."""
    stop = stop if stop is not None else StopRequest()

    def asked(signum: int, _frame: FrameType | None) -> None:
        if stop.signum is None:
            err.print(
                f"{signal.Signals(signum).name}: {command} finishes the action in flight, "
                "then stops",
                markup=False,
            )
        stop.signum = signum

    previous = {s: signal.signal(s, asked) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def emit_json(data: Any) -> None:
    """``data`` as JSON on stdout, through the redactor like every line that leaves."""
    sys.stdout.write(redact(json.dumps(data, indent=2, default=str)) + "\n")
