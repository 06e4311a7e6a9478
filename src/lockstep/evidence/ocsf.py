"""A report as JSON lines of OCSF Compliance Findings (class 2003, OCSF 1.5.0): one event
per finding that defeats a control, one per control satisfied or failed by a check, and
one per control not assessed (status Warning, with what would be needed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from lockstep.evidence.streams import TextSink

OCSF_VERSION = "1.5.0"
CLASS_UID = 2003
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
_STATUS = {"satisfied": (1, "Pass"), "not_satisfied": (3, "Fail"), "not_assessed": (2, "Warning")}
_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"),
             "critical": (5, "Critical")}  # fmt: skip
_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "https://lockstep.dev/ocsf")


def write_ocsf(report: Mapping[str, Any], out: TextSink) -> None:
    encode = json.JSONEncoder(ensure_ascii=False).encode
    for event in events(report):
        out.write(encode(event) + "\n")


def events(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    time = _ms(report["generated_at"])
    head = report["journal_head"]
    by_id = {f["id"]: f for f in report["findings"]}
    for control in report["controls"]:
        if control["findings"]:
            for fid in control["findings"]:
                yield _event(report, control, time, head, by_id[fid])
        else:
            yield _event(report, control, time, head, None)


def _event(
    report: Mapping[str, Any],
    control: Mapping[str, Any],
    time: int,
    head: Mapping[str, Any],
    finding: Mapping[str, Any] | None,
) -> dict[str, Any]:
    status_id, status = _STATUS[control["status"]]
    if finding is not None:
        status_id, status = _STATUS["not_satisfied"]
    severity_id, severity = (
        _SEVERITY.get(finding["severity"], (0, "Unknown")) if finding else (1, "Informational")
    )
    key = f"{report['framework']}/{control['id']}/{finding['id'] if finding else '-'}"
    event: dict[str, Any] = {
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Compliance Finding: Create",
        "time": time,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "message": f"{control['id']} {control['title']}: {status}",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": str(uuid.uuid5(_ROOT, f"{key}/{head['seq']}/{head['hash']}")),
            "product": {"name": "Lockstep", "vendor_name": "Lockstep", "uid": "lockstep"},
            "event_code": control["id"],
            "sequence": head["seq"],
        },
        "finding_info": {
            "uid": finding["id"] if finding else f"{report['framework']}:{control['id']}",
            "title": f"{control['id']} {control['title']}",
            "desc": finding["detail"] if finding and finding["detail"] else control["reason"],
            "types": [finding["type"]] if finding else [control["status"]],
            "data_sources": ["lockstep journal", "lockstep findings ledger"],
        },
        "compliance": {
            "standards": [report["framework_title"]],
            "control": control["id"],
            "requirements": [control["title"]],
            "status_id": status_id,
            "status": status,
            "status_detail": control["needed"]
            if control["status"] == "not_assessed"
            else control["reason"],
        },
        "unmapped": {"lockstep": {"journal_head": {"seq": head["seq"], "hash": head["hash"]}}},
    }
    if finding is None:
        # The control's own event carries its evidence; a finding's points at the head.
        event["unmapped"]["lockstep"]["evidence"] = [
            {"seq": e["seq"], "hash": e["hash"]} for e in control["evidence"]
        ]
    if finding is not None:
        event["finding_info"]["first_seen_time"] = _ms(finding["first_seen"])
        event["resources"] = [
            {
                "type": "NHI account",
                "uid": f"{finding['target']}/{finding['account'] or '*'}",
                "name": finding["account"] or finding["target"],
                "group": {"name": finding["target"]},
                "data": {"identity": finding["identity"], "entitlement": finding["entitlement"]},
            }
        ]
    return event


def _ms(text: str) -> int:
    at = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)
