"""A report as JSON lines of OCSF Compliance Findings (class 2003, OCSF 1.5.0): one event
per finding that defeats a control, one per control satisfied or failed by a check, and
one per control not assessed (status Warning, with what would be needed).

A report at scale has 100k findings, each behind a few controls: each line is put together
from the parts it shares with others (the control's, the finding's), each encoded once."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from hashlib import sha256
from typing import Any

from lockstep.engine.inert import inert_json
from lockstep.evidence.streams import TextSink

OCSF_VERSION = "1.5.0"
CLASS_UID = 2003
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
_STATUS = {"satisfied": (1, "Pass"), "not_satisfied": (3, "Fail"), "not_assessed": (2, "Warning")}
_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"),
             "critical": (5, "Critical")}  # fmt: skip
_encode = json.JSONEncoder(ensure_ascii=False).encode


def write_ocsf(report: Mapping[str, Any], out: TextSink) -> None:
    for line in lines(report):
        out.write(inert_json(line) + "\n")


def events(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The events as objects (what ``write_ocsf`` writes, one per line)."""
    for line in lines(report):
        yield json.loads(line)


def lines(report: Mapping[str, Any]) -> Iterator[str]:
    time = _ms(report["generated_at"])
    head = report["journal_head"]
    by_id = {f["id"]: f for f in report["findings"]}
    resources: dict[str, str] = {}
    for control in report["controls"]:
        if not control["findings"]:
            yield _line(report, control, time, head, None, "")
            continue
        for fid in control["findings"]:
            finding = by_id[fid]
            shared = resources.get(fid)
            if shared is None:
                shared = resources[fid] = _finding_parts(finding)
            yield _line(report, control, time, head, finding, shared)


def _line(
    report: Mapping[str, Any],
    control: Mapping[str, Any],
    time: int,
    head: Mapping[str, Any],
    finding: Mapping[str, Any] | None,
    finding_parts: str,
) -> str:
    status = _STATUS["not_satisfied" if finding is not None else control["status"]]
    severity = (
        _SEVERITY.get(finding["severity"], (0, "Unknown")) if finding else (1, "Informational")
    )
    key = f"{report['framework']}/{control['id']}/{finding['id'] if finding else '-'}"
    lockstep: dict[str, Any] = {"journal_head": {"seq": head["seq"], "hash": head["hash"]}}
    if finding is None:
        # The control's own event carries its evidence; a finding's points at the head.
        lockstep["evidence"] = [{"seq": e["seq"], "hash": e["hash"]} for e in control["evidence"]]
    event = {
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Compliance Finding: Create",
        "time": time,
        "severity_id": severity[0],
        "severity": severity[1],
        "status_id": 1,
        "status": "New",
        "message": f"{control['id']} {control['title']}: {status[1]}",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": sha256(f"{key}/{head['seq']}/{head['hash']}".encode()).hexdigest()[:32],
            "product": {"name": "Lockstep", "vendor_name": "Lockstep", "uid": "lockstep"},
            "event_code": control["id"],
            "sequence": head["seq"],
        },
        "finding_info": {
            "uid": f"{finding['id']}:{control['id']}"
            if finding
            else f"{report['framework']}:{control['id']}",
            "title": f"{control['id']} {control['title']}",
            "desc": finding["detail"] if finding and finding["detail"] else control["reason"],
            "types": [finding["type"]] if finding else [control["status"]],
            "data_sources": ["lockstep journal", "lockstep findings ledger"],
        },
        "compliance": {
            "standards": [report["framework_title"]],
            "control": control["id"],
            "requirements": [control["title"]],
            "status_id": status[0],
            "status": status[1],
            "status_detail": control["needed"]
            if control["status"] == "not_assessed"
            else control["reason"],
        },
        "unmapped": {"lockstep": lockstep},
    }
    text = _encode(event)
    return f"{text[:-1]},{finding_parts}}}" if finding_parts else text


def _finding_parts(finding: Mapping[str, Any]) -> str:
    """What an event of ``finding`` holds whatever the control: when it was first seen, and
    the account it is about; encoded, without the braces."""
    parts = {
        "start_time": _ms(finding["first_seen"]),
        "resources": [
            {
                "type": "NHI account",
                "uid": f"{finding['target']}/{finding['account'] or '*'}",
                "name": finding["account"] or finding["target"],
                "group": {"name": finding["target"]},
                "data": {"identity": finding["identity"], "entitlement": finding["entitlement"]},
            }
        ],
    }
    return _encode(parts)[1:-1]


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)
