"""The failures users see as one line (no traceback): bad input, unreachable state, refusals."""

from __future__ import annotations

from lockstep.connectors.base import ConnectorError
from lockstep.connectors.registry import UnknownConnector
from lockstep.credentials.sinks import SinkError
from lockstep.credentials.vault import VaultError
from lockstep.demo.localpg import LocalPostgresError
from lockstep.journal import JournalError
from lockstep.store import StoreError

EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    ConnectorError,
    JournalError,
    LocalPostgresError,
    SinkError,
    StoreError,
    UnknownConnector,
    VaultError,
)
