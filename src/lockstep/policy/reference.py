"""The policy reference page (docs/policy-reference.md), generated from ``lockstep schema``: every
key, where it goes, its type, its default and what it does. A test keeps the page current;
regenerate it with ``python -m lockstep.policy.reference docs/policy-reference.md``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lockstep.policy.jsonschema import policy_json_schema
from lockstep.policy.schema import DURATION_PATTERN, PERCENT_PATTERN, TIME_PATTERN

Schema = Mapping[str, Any]
_FORMS = {
    DURATION_PATTERN: "duration (`30s`, `15m`, `1h`, `30d`)",
    PERCENT_PATTERN: "percentage (`20%`)",
    TIME_PATTERN: "date or time (`2027-03-31`, `2027-03-31T00:00:00Z`; UTC)",
}
HEADER = """\
# Policy reference

Every key of a policy file (version 1), with its type and default. Generated from
`lockstep schema` by `python -m lockstep.policy.reference docs/policy-reference.md`: edit the
models in `src/lockstep/policy/schema.py` (and each connector's settings), not this page.

A value written `${VAR}` comes from the environment; secrets come in only as `${VAR}` or
`file:PATH`. Names (`NAME`) are your own: a target's, an owner's, an identity's.
"""


def policy_reference(schema: Schema | None = None) -> str:
    schema = schema or policy_json_schema()
    page = _Page(schema)
    page.table_of("Top level", "", schema["properties"], set(schema.get("required", [])))
    targets = schema["properties"]["targets"]["additionalProperties"]["oneOf"]
    spec = schema["$defs"]["TargetSpec"]
    common = spec["properties"]
    page.table_of(
        "targets.NAME: every target", "targets.NAME", common, set(spec.get("required", []))
    )
    page.section("targets.NAME.manage", "targets.NAME.manage", page.resolve(common["manage"]))
    for variant in targets:
        kind = variant["properties"]["type"]["const"]
        own = {k: v for k, v in variant["properties"].items() if k not in common}
        page.table_of(
            f"targets.NAME with type: {kind}",
            "targets.NAME",
            own,
            set(variant.get("required", [])),
            f"[{kind}.md]({kind}.md) has the details.",
        )
    for name in ("owners", "identities"):
        page.section(f"{name}.NAME", f"{name}.NAME", page.resolve(_value_of(schema, name)))
    for name in ("rules", "audit", "governance"):
        page.section(name, name, page.resolve(schema["properties"][name]))
    return HEADER + "".join(page.parts)


class _Page:
    def __init__(self, schema: Schema) -> None:
        self.defs: Mapping[str, Schema] = schema.get("$defs", {})
        self.parts: list[str] = []
        self.done: set[str] = set()

    def resolve(self, node: Schema) -> Schema:
        """``node`` without ``$ref`` and without the null of an optional value."""
        if "$ref" in node:
            return self.resolve(self.defs[node["$ref"].rsplit("/", 1)[-1]])
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:
            return self.resolve(options[0])
        return node

    def section(self, title: str, path: str, model: Schema) -> None:
        if path in self.done:
            return
        self.done.add(path)
        props = model.get("properties", {})
        self.table_of(title, path, props, set(model.get("required", [])))
        for key, prop in props.items():
            for sub, child in self._nested(f"{path}.{key}".lstrip("."), prop):
                self.section(sub, sub, child)

    def _nested(self, path: str, prop: Schema) -> Iterator[tuple[str, Schema]]:
        """The models inside ``prop``, each with the path it is written at."""
        node = self.resolve(prop)
        if "properties" in node and path not in ("targets",):
            yield path, node
        elif node.get("type") == "array" and "items" in node:
            yield from self._nested(f"{path}[]", node["items"])
        elif isinstance(node.get("additionalProperties"), dict):
            yield from self._nested(f"{path}.NAME", node["additionalProperties"])

    def table_of(
        self,
        title: str,
        path: str,
        props: Mapping[str, Schema],
        required: set[str],
        note: str = "",
    ) -> None:
        lines = [f"\n## `{title}`\n\n" if path else f"\n## {title}\n\n"]
        if note:
            lines.append(f"{note}\n\n")
        lines.append("| key | type | default | what it does |\n|---|---|---|---|\n")
        for key, prop in props.items():
            what = prop.get("description") or self.resolve(prop).get("description", "")
            default = _default(prop, key in required)
            if "$ref" in prop and default == "none":
                default = "each key's own"  # a section whose keys have their defaults
            lines.append(f"| `{key}` | {self.type_of(prop)} | {default} | {_cell(what)} |\n")
        self.parts.append("".join(lines))

    def type_of(self, prop: Schema) -> str:
        if "$ref" in prop:
            name = prop["$ref"].rsplit("/", 1)[-1]
            target = self.defs[name]
            return "mapping" if "properties" in target else self.type_of(target)
        options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
        if options:
            return " or ".join(self.type_of(o) for o in options)
        if "const" in prop:
            return f"`{json.dumps(prop['const'])}`"
        if "enum" in prop:
            return " \\| ".join(f"`{v}`" for v in prop["enum"])
        if prop.get("pattern") in _FORMS:
            return _FORMS[prop["pattern"]]
        kind = prop.get("type")
        if kind == "array":
            return f"list of {self.type_of(prop.get('items', {}))}"
        if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
            return f"mapping of NAME to {self.type_of(prop['additionalProperties'])}"
        if "oneOf" in prop:
            return "mapping"
        return {"string": "string", "integer": "integer", "number": "number"}.get(
            str(kind), "boolean" if kind == "boolean" else "mapping"
        )


def _value_of(schema: Schema, section: str) -> Schema:
    value: Schema = schema["properties"][section]["additionalProperties"]
    return value


def _default(prop: Schema, required: bool) -> str:
    if required:
        return "required"
    if "default" in prop:
        return "none" if prop["default"] is None else f"`{json.dumps(prop['default'])}`"
    kind = prop.get("type")
    return {"array": "`[]`", "object": "`{}`"}.get(str(kind), "none")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    page = policy_reference()
    if args:
        Path(args[0]).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)


if __name__ == "__main__":
    main()
