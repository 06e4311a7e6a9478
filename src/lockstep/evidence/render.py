"""A report in each of its formats. Every format is deterministic: the same report gives
the same bytes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from lockstep.evidence.html_report import render_html
from lockstep.evidence.ocsf import render_ocsf
from lockstep.evidence.oscal import render_oscal


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


FORMATS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "json": render_json,
    "html": render_html,
    "oscal": render_oscal,
    "ocsf": render_ocsf,
}


def render_report(report: Mapping[str, Any], fmt: str) -> str:
    return FORMATS[fmt](report)
