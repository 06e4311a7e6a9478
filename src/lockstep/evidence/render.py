"""A report in each of its formats, written to a text stream as it is rendered (an OCSF
report of 100k findings is never one string in memory). Every format is deterministic: the
same report gives the same bytes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from lockstep.engine.inert import inert_json
from lockstep.evidence.html_report import render_html
from lockstep.evidence.ocsf import write_ocsf
from lockstep.evidence.oscal import oscal_document
from lockstep.evidence.streams import TextSink


def _json(report: Mapping[str, Any], out: TextSink) -> None:
    _dump(report, out)


def _oscal(report: Mapping[str, Any], out: TextSink) -> None:
    _dump(oscal_document(report), out)


def _html(report: Mapping[str, Any], out: TextSink) -> None:
    out.write(render_html(report))


def _dump(value: object, out: TextSink) -> None:
    for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(value):
        out.write(inert_json(chunk))
    out.write("\n")


FORMATS: Mapping[str, Callable[[Mapping[str, Any], TextSink], None]] = {
    "json": _json,
    "html": _html,
    "oscal": _oscal,
    "ocsf": write_ocsf,
}


def write_report(report: Mapping[str, Any], fmt: str, out: TextSink) -> None:
    FORMATS[fmt](report, out)
