"""The journal as a file an auditor keeps: JSON lines, the head first, then every entry.

Each entry line is the record its hash covers with the hashes appended, so that checking it
needs nothing but the line: for the line
``{"at":…,"kind":…,"payload":{…},"seq":N,"prev_hash":"P","hash":"H"}``, H is the SHA-256 of
P followed by the line up to ``,"prev_hash"`` with a closing ``}``. The payload is the text
the store holds, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from lockstep.errors import LockstepError
from lockstep.journal import ChainReport, RawEntry, check_chain, raw_entries, read_head, record_text

FORMAT = "lockstep-journal"
VERSION = 1
_HASHES = len(',"prev_hash":"') + 64 + len('","hash":"') + 64 + len('"}')


class ExportError(LockstepError):
    """An export file that cannot be read as one."""

    code = "journal_export_unreadable"
    default_hint = "export it again with lockstep audit export -o FILE"


def export_lines(conn: Connection) -> Iterator[str]:
    """The head line, then one line per entry, read in the caller's transaction."""
    head = read_head(conn)
    yield _canonical(
        {
            "format": FORMAT,
            "version": VERSION,
            "head": None if head is None else {"seq": head[0], "hash": head[1]},
        }
    )
    for entry in raw_entries(conn):
        yield entry_line(entry)


def entry_line(entry: RawEntry) -> str:
    """One entry as an export line: its record with the two hashes appended."""
    seq, at, kind, payload, prev_hash, digest = entry
    record = record_text(seq, at, _kind_json(kind), payload)
    return f'{record[:-1]},"prev_hash":"{prev_hash}","hash":"{digest}"}}'


def write_export(conn: Connection, out: IO[str]) -> int:
    """Write the export to ``out``; returns how many entries it holds."""
    count = -1
    for count, line in enumerate(export_lines(conn)):  # noqa: B007 - the count is the result
        out.write(line + "\n")
    return count


def verify_export(path: Path, watch: int | None = None) -> ChainReport:
    """Check the export's chain the way ``Journal.verify`` checks the store's."""
    try:
        with path.open(encoding="utf-8", newline="\n") as lines:
            head = _head(next(lines, ""), path)
            return check_chain(_entries(lines, path), head, watch=watch)
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path} is not UTF-8 text: not a journal export") from None


def _head(line: str, path: Path) -> tuple[int, str] | None:
    try:
        header: Any = json.loads(line, object_pairs_hook=_no_duplicates)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ExportError(f"{path}:1: not a lockstep journal export (no head line)")
    if header.get("version") != VERSION:
        raise ExportError(f"{path}:1: export version {header.get('version')!r} is not {VERSION}")
    head = header.get("head")
    if head is None:
        return None
    if (
        not isinstance(head, dict)
        or not isinstance(head.get("seq"), int)
        or not isinstance(head.get("hash"), str)
    ):
        raise ExportError(f"{path}:1: the head is not {{'seq': N, 'hash': H}}")
    return int(head["seq"]), str(head["hash"])


def _entries(lines: Iterator[str], path: Path) -> Iterator[RawEntry]:
    for number, line in enumerate(lines, start=2):
        entry = parse_entry_line(line.rstrip("\n"))
        if entry is None:
            raise ExportError(f"{path}:{number}: not a journal entry line (edited or cut)")
        yield entry


def parse_entry_line(line: str) -> RawEntry | None:
    """The entry on one export line, or None when the line is not laid out as lockstep
    writes it (which makes its hash meaningless)."""
    if len(line) <= _HASHES or not line.startswith('{"at":"'):
        return None
    tail = line[-_HASHES:]
    prev_hash, digest = tail[14:78], tail[88:152]
    if tail != f',"prev_hash":"{prev_hash}","hash":"{digest}"}}':
        return None
    record = line[:-_HASHES] + "}"
    at_end = record.find('"', 7)
    if at_end < 0 or not record.startswith('","kind":"', at_end):
        return None
    at = record[7:at_end]
    try:
        kind, kind_end = json.decoder.scanstring(record, at_end + 10)  # type: ignore[attr-defined]
    except ValueError:
        return None
    if not record.startswith(',"payload":', kind_end):
        return None
    seq_at = record.rfind(',"seq":')
    seq_text = record[seq_at + 7 : -1]
    if seq_at < kind_end or not seq_text.isdigit():
        return None
    seq = int(seq_text)
    payload = record[kind_end + 11 : seq_at]
    if record != record_text(seq, at, _kind_json(kind), payload):
        return None
    return seq, at, kind, payload, prev_hash, digest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


@lru_cache(maxsize=1024)
def _kind_json(kind: str) -> str:
    return _canonical(kind)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
