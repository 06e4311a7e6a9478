"""Names the evidence estate (``support.evidence_estate``) uses, for the tests to import."""

from __future__ import annotations

from pathlib import Path

HOSTILE = "o'brien;\"<b>x</b>"


def line_of(path: Path, text: str, after: str = "") -> int:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and text in line) + 1
