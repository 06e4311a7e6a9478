"""docs/policy-reference.md is the page generated from ``lockstep schema``, as it stands: every
key of every section and of every target type, with its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lockstep.policy.jsonschema import policy_json_schema
from lockstep.policy.reference import policy_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "policy-reference.md"


def test_the_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == policy_reference(), (
        "docs/policy-reference.md is stale: run "
        "python -m lockstep.policy.reference docs/policy-reference.md"
    )


def _keys(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            found.add(key)
            found |= _keys(value)
        for value in node.values():
            if isinstance(value, dict | list):
                found |= _keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= _keys(value)
    return found


def test_every_key_is_documented_with_a_default_and_what_it_does() -> None:
    page = PAGE.read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1] for row in rows}
    assert _keys(policy_json_schema()) <= documented
    for row in rows:
        _, kind, default, what = (cell.strip() for cell in row.strip("|").split(" | "))
        assert kind and default and what, row
