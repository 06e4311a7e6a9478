"""``lockstep findings`` besides text and JSON: CSV for spreadsheets, SARIF for code scanning
(each finding at its policy line), and the severity order ``--fail-on`` gates on."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from lockstep.evidence.sarif import Locate
from lockstep.model import Finding, Location, Severity
from lockstep.policy.load import LoadedPolicy
from lockstep.secret import redact

_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
COLUMNS = (
    "id",
    "type",
    "severity",
    "status",
    "target",
    "account",
    "entitlement",
    "identity",
    "owner",
    "owasp_nhi",
    "nist_csf",
    "first_seen",
    "last_seen",
    "detail",
)


def at_least(severity: Severity, threshold: Severity) -> bool:
    return _RANK[severity] >= _RANK[threshold]


def write_csv(stream: IO[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """One finding per row, lists joined with ``;``; through the redactor like every line."""
    writer = csv.writer(_Redacting(stream), lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])


class _Redacting:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return str(value)


def policy_locator(loaded: LoadedPolicy) -> Locate:
    """Where in the policy a finding belongs: the entitlement's line in the identity's
    access, else the identity, else the target; paths relative to the working directory
    when inside it (as code scanning expects of a repository's files)."""

    def locate(f: Finding) -> Location | None:
        found = None
        if f.identity is not None and f.entitlement is not None:
            found = loaded.entitlement_places.get((f.identity, f.target, f.entitlement))
        if found is None and f.identity is not None:
            found = loaded.locations.get(("identities", f.identity))
        if found is None:
            found = loaded.locations.get(("targets", f.target))
        return None if found is None else Location(_relative(found.file), found.line)

    return locate


def _relative(file: str) -> str:
    path = Path(file).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix() if os.sep == "/" else path.as_uri()
