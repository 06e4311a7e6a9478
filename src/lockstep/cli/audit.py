"""``lockstep audit``: the journal an auditor can check alone. ``verify`` and ``export`` read
the state store (or an export) without loading the policy, so no policy variable needs to be
set and a read-only copy of the store will do; ``checkpoint`` signs the head with a key kept
outside the store. Registered on the main app by ``lockstep.cli.app``."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from lockstep.cli.common import CliError, ConfigOpt, JsonOpt, StateOpt, emit_json, err, options, out

if TYPE_CHECKING:
    from lockstep.journal import ChainReport

audit_app = typer.Typer(help="The tamper-evident journal.", no_args_is_help=True)

FileOpt = Annotated[
    Path | None,
    typer.Option("--file", help="Check this export (lockstep audit export) instead of the store."),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="A signed checkpoint (or a directory of them: the newest) the journal must hold.",
    ),
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option("--public-key", help="The PEM public key you trust to have signed it."),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key", help="The Ed25519 signing key (default: $LOCKSTEP_SIGNING_KEY); made if missing."
    ),
]
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write it ('-': stdout).")]


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


def _state_url(config: Path | None, state: str | None) -> str:
    from lockstep.evidence.state import default_state_url
    from lockstep.policy.load import DEFAULT_FILE

    return default_state_url(config or options.config or Path(DEFAULT_FILE), state or options.state)


@audit_app.command("verify")
def audit_verify(
    config: ConfigOpt = None,
    state: StateOpt = None,
    file: FileOpt = None,
    checkpoint: CheckpointOpt = None,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the journal's hash chain, offline: the state store, or an export with --file;
    with --checkpoint and --public-key, also that it was not rewritten or rolled back."""
    from lockstep.evidence import checkpoints

    signed = None
    if checkpoint is not None or public_key is not None:
        if checkpoint is None or public_key is None:
            raise CliError("--checkpoint and --public-key go together", exit_code=64)
        signed = checkpoints.read_checkpoint(checkpoint)
        checkpoints.check_signature(signed, _read_text(public_key))
    report = _verify(config, state, file, None if signed is None else signed.seq)
    problem = None
    if not report.ok:
        problem = f"journal broken at entry {report.first_bad}: {report.reason}"
        if signed is not None and report.first_bad is not None and report.first_bad <= signed.seq:
            problem += f" (before the checkpoint of entry {signed.seq})"
    elif signed is not None:
        problem = checkpoints.against(report, signed)
    if as_json:
        emit_json(
            {
                "ok": problem is None,
                "entries": report.entries,
                "first_bad": report.first_bad,
                "reason": problem or report.reason,
                "head": {"seq": report.last[0], "hash": report.last[1]},
                "checkpoint": None
                if signed is None
                else {"seq": signed.seq, "hash": signed.hash, "signed_at": signed.signed_at},
            }
        )
        if problem is not None:
            raise typer.Exit(1)
        return
    if problem is not None:
        raise CliError(problem)
    line = f"[green]Journal intact:[/] {report.entries} entries, hash chain verified"
    if signed is not None:
        line += (
            f"; it holds the checkpoint of entry {signed.seq} signed {signed.signed_at} "
            f"by key {checkpoints.key_id(signed.public_key)}"
        )
    out.print(line + ".")


def _verify(
    config: Path | None, state: str | None, file: Path | None, watch: int | None
) -> ChainReport:
    if file is not None:
        from lockstep.evidence.export import verify_export

        return verify_export(file, watch)
    from lockstep.evidence.state import reading
    from lockstep.journal import check_chain, raw_entries, read_head

    with reading(_state_url(config, state)) as conn:
        return check_chain(raw_entries(conn), read_head(conn), watch=watch)


@audit_app.command("export")
def audit_export(output: OutOpt, config: ConfigOpt = None, state: StateOpt = None) -> None:
    """Write the journal as JSON lines: the head first, then every entry with its hashes."""
    from lockstep.evidence.export import write_export
    from lockstep.evidence.state import reading

    with reading(_state_url(config, state)) as conn:
        if str(output) == "-":
            write_export(conn, sys.stdout)
            return
        with _atomic(output) as f:
            count = write_export(conn, f)
    err.print(f"Exported {count} journal entries to {output}.")


@audit_app.command("checkpoint")
def audit_checkpoint(
    output: OutOpt, key: KeyOpt = None, config: ConfigOpt = None, state: StateOpt = None
) -> None:
    """Sign the journal head (once its chain verifies) with an Ed25519 key kept outside the
    state store, and write the checkpoint, public key included."""
    from datetime import UTC, datetime

    from lockstep.evidence import checkpoints
    from lockstep.evidence.state import reading
    from lockstep.journal import check_chain, raw_entries, read_head
    from lockstep.store.tables import journal

    path = checkpoints.key_path(key)
    signing_key, created = checkpoints.load_or_create_key(path)
    if created:
        err.print(f"Created the signing key {path} (mode 0600); keep it off the state store.")
    with reading(_state_url(config, state)) as conn:
        report = check_chain(raw_entries(conn), read_head(conn))
        if not report.ok:
            raise CliError(
                f"not signed: journal broken at entry {report.first_bad}: {report.reason}"
            )
        seq, digest = report.last
        head_at = conn.execute(journal.select().where(journal.c.seq == seq)).one_or_none()
    at = None if head_at is None else checkpoints.iso(head_at.at)
    signed = checkpoints.sign(signing_key, seq, digest, at, datetime.now(UTC))
    if str(output) == "-":
        sys.stdout.write(signed.to_json())
    else:
        with _atomic(output) as f:
            f.write(signed.to_json())
        err.print(
            f"Signed entry {seq} with key {checkpoints.key_id(signed.public_key)}; "
            f"checkpoint written to {output}."
        )


@audit_app.command("public-key")
def audit_public_key(key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Print the signing key's public key (PEM), for auditors to verify checkpoints with."""
    from lockstep.evidence import checkpoints

    path = checkpoints.key_path(key)
    if not path.exists():
        raise CliError(f"no signing key at {path} (lockstep audit checkpoint creates one)")
    pem = checkpoints.public_pem(checkpoints.load_or_create_key(path)[0])
    if as_json:
        emit_json({"key_id": checkpoints.key_id(pem), "public_key": pem})
    else:
        sys.stdout.write(pem)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


@contextmanager
def _atomic(path: Path) -> Iterator[IO[str]]:
    """A file written under a temporary name beside ``path`` (mode 0600) and renamed over it
    once complete: a reader never sees half an export."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
