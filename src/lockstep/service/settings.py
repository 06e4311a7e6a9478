"""The environment the service and its clients agree on: names and defaults only."""

from __future__ import annotations

BEARER_ENV = "LOCKSTEP_API_TOKEN"  # the operator's token for the /v1 API
LISTEN_ENV = "LOCKSTEP_LISTEN"
DEFAULT_LISTEN = "127.0.0.1:8787"
