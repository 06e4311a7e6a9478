"""A JSON Schema for editors: the policy's shape with each installed connector's target keys."""

from __future__ import annotations

from typing import Any

from lockstep.connectors.registry import connector_types
from lockstep.policy.schema import PolicySpec


def policy_json_schema() -> dict[str, Any]:
    schema = PolicySpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Lockstep policy, version 1"
    defs = schema.setdefault("$defs", {})
    variants = []
    for name, connector in connector_types().items():
        settings = connector.settings_model().model_json_schema()
        defs.update(settings.pop("$defs", {}))
        props = dict(settings.get("properties", {}))
        props["type"] = {"const": name}
        variants.append(
            {
                "type": "object",
                "title": f"{name} target",
                "properties": {**defs["TargetSpec"]["properties"], **props},
                "required": sorted({"type", *settings.get("required", [])}),
                "additionalProperties": False,
            }
        )
    # One variant per connector, told apart by ``type`` (its const); ``discriminator`` (as
    # OpenAPI spells it) is an annotation for editors that use it to pick the variant.
    schema["properties"]["targets"]["additionalProperties"] = {
        "oneOf": variants,
        "discriminator": {"propertyName": "type"},
    }
    return schema
