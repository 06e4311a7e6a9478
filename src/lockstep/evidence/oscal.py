"""A report as an OSCAL assessment-results document (OSCAL 1.2.3).

One result per report. Each control is reviewed; an assessed one (satisfied or not) gets a
finding whose objective status says so, tied to an observation that carries the evidence
(journal entries and their hashes) and the figures; a control not assessed gets only its
observation, saying what would be needed. UUIDs are derived from the content (version 5),
so the same report gives the same document."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

OSCAL_VERSION = "1.2.3"
NS = "https://lockstep.dev/ns/oscal"
_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "https://lockstep.dev/reports")


def oscal_document(report: Mapping[str, Any]) -> dict[str, Any]:
    head = report["journal_head"]
    seed = f"{report['framework']}/{head['seq']}/{head['hash']}"

    def uid(*parts: object) -> str:
        return str(uuid.uuid5(_ROOT, "/".join([seed, *map(str, parts)])))

    end = report["as_of"] or report["generated_at"]
    start = _first(report) if report["journal_head"]["at"] else end
    resource = uid("journal")
    observations, findings = [], []
    by_id = {f["id"]: f for f in report["findings"]}
    for control in report["controls"]:
        observation = _observation(control, uid, end, resource)
        observations.append(observation)
        if control["status"] != "not_assessed":
            findings.append(_finding(control, uid, observation["uuid"], by_id))
    result: dict[str, Any] = {
        "uuid": uid("result"),
        "title": f"Lockstep assessment against {report['framework_title']}",
        "description": (
            f"Controls of {report['framework_title']} assessed by lockstep from its state "
            f"store and journal (head entry {head['seq']}, hash {head['hash']})."
        ),
        "start": start,
        "end": end,
        "props": [
            _prop("journal-head-seq", str(head["seq"])),
            _prop("journal-head-hash", head["hash"]),
            _prop("journal-intact", "true" if report["journal"]["intact"] else "false"),
            *(
                _prop(f"controls-{k.replace('_', '-')}", str(v))
                for k, v in report["summary"].items()
            ),
        ],
        "reviewed-controls": {
            "control-selections": [
                {"include-controls": [{"control-id": c["oscal_id"]} for c in report["controls"]]}
            ]
        },
        "observations": observations,
    }
    if findings:
        result["findings"] = findings
    return {
        "assessment-results": {
            "uuid": uid("document"),
            "metadata": {
                "title": f"Lockstep: {report['framework_title']}",
                "last-modified": report["generated_at"],
                "version": f"journal-{head['seq']}",
                "oscal-version": OSCAL_VERSION,
                "props": [_prop("framework", report["framework"])],
            },
            "import-ap": {"href": f"#{resource}"},
            "results": [result],
            "back-matter": {
                "resources": [
                    {
                        "uuid": resource,
                        "title": "The lockstep journal",
                        "description": (
                            "The hash-chained journal every evidence entry belongs to; "
                            "`lockstep audit export` writes it and `lockstep audit verify` "
                            "checks it."
                        ),
                        "props": [
                            _prop("journal-head-seq", str(head["seq"])),
                            _prop("journal-head-hash", head["hash"]),
                        ],
                    }
                ]
            },
        }
    }


def _observation(
    control: Mapping[str, Any], uid: Any, collected: str, resource: str
) -> dict[str, Any]:
    lines = [f"{control['id']}: {control['status'].replace('_', ' ')}. {control['reason']}"]
    if control["needed"]:
        lines.append(f"Needed to assess it: {control['needed']}.")
    for figure in control["figures"]:
        lines.append(f"{figure['label']}: {_value(figure)}.")
    observation: dict[str, Any] = {
        "uuid": uid("observation", control["id"]),
        "title": f"{control['id']} {control['title']}"[:500],
        "description": "\n\n".join(lines),
        "props": [
            _prop("control", control["oscal_id"]),
            _prop("assessment-status", control["status"].replace("_", "-")),
            _prop("findings-held", str(len(control["findings"]))),
        ],
        "methods": ["TEST" if control["checks"] else "EXAMINE"],
        "types": ["control-objective"],
        "collected": collected,
    }
    if control["evidence"]:
        observation["relevant-evidence"] = [
            {
                "href": f"#{resource}",
                "description": f"Journal entry {e['seq']} ({e['kind']}, {e['at']}): {e['summary']}",
                "props": [
                    _prop("journal-seq", str(e["seq"])),
                    _prop("journal-hash", e["hash"]),
                ],
            }
            for e in control["evidence"]
        ]
    return observation


def _finding(
    control: Mapping[str, Any],
    uid: Any,
    observation: str,
    by_id: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    satisfied = control["status"] == "satisfied"
    finding: dict[str, Any] = {
        "uuid": uid("finding", control["id"]),
        "title": f"{control['id']} {control['title']}"[:500],
        "description": control["reason"] or control["description"],
        "target": {
            "type": "objective-id",
            "target-id": control["oscal_id"],
            "status": {
                "state": "satisfied" if satisfied else "not-satisfied",
                "reason": "pass" if satisfied else "fail",
            },
        },
        "related-observations": [{"observation-uuid": observation}],
    }
    if control["findings"]:
        finding["props"] = [
            _prop("lockstep-finding", f"{f['id']} {f['type']} {f['target']}/{f['account'] or '*'}")
            for f in (by_id[i] for i in control["findings"][:200])
        ]
    return finding


def _first(report: Mapping[str, Any]) -> str:
    times = [str(e["at"]) for c in report["controls"] for e in c["evidence"]]
    return min(times) if times else str(report["as_of"] or report["generated_at"])


def _prop(name: str, value: str) -> dict[str, str]:
    # An OSCAL string has no leading, trailing or line-breaking white space.
    return {"name": name, "ns": NS, "value": " ".join(value.split()) or "-"}


def _value(figure: Mapping[str, Any]) -> str:
    value = figure["value"]
    if value is None:
        return "unknown"
    if figure["unit"] == "share":
        return f"{value * 100:.1f}%"
    return f"{value} {figure['unit']}" if figure["unit"] != "count" else str(value)
