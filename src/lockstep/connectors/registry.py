"""Connector types, found through the ``lockstep.connectors`` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from lockstep.connectors.base import ConnectorType

GROUP = "lockstep.connectors"


class UnknownConnector(LookupError):
    pass


@cache
def connector_types() -> dict[str, ConnectorType]:
    """Every installed connector type by name, sorted so that listings are stable."""
    found: dict[str, ConnectorType] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        cls = ep.load()
        found[ep.name] = cls()
    return found


def connector_type(name: str) -> ConnectorType:
    types = connector_types()
    try:
        return types[name]
    except KeyError:
        known = ", ".join(types) or "none installed"
        raise UnknownConnector(f"unknown target type {name!r} (known: {known})") from None
