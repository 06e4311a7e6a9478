"""Connector types, found through the ``lockstep.connectors`` entry-point group.

Only the types a policy names are imported, so a PostgreSQL-only policy does not pay for
importing boto3.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from lockstep.connectors.base import ConnectorType
from lockstep.errors import LockstepError

GROUP = "lockstep.connectors"


class UnknownConnector(LockstepError, LookupError):
    code = "unknown_connector"
    default_hint = "fix the target's type, or install the package that provides the connector"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@cache
def connector_type(name: str) -> ConnectorType:
    found = _entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise UnknownConnector(f"unknown target type {name!r} (known: {known})")
    connector: ConnectorType = found[name].load()()
    return connector


def connector_types() -> dict[str, ConnectorType]:
    """Every installed connector type by name, sorted so that listings are stable."""
    return {name: connector_type(name) for name in sorted(_entry_points())}
