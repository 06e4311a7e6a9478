"""Why a governance call is refused, with the HTTP status the API answers it with. Each
message is one line that names the rule, and never holds a token or a secret."""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar

from lockstep.errors import LockstepError


class GovernanceError(LockstepError):
    code = "request_invalid"
    status: ClassVar[HTTPStatus] = HTTPStatus.UNPROCESSABLE_ENTITY


class UnknownName(GovernanceError):
    """An identity, target or request that does not exist."""

    code = "not_found"
    status = HTTPStatus.NOT_FOUND


class Forbidden(GovernanceError):
    """The policy does not let this person do this (or a sod rule forbids it)."""

    code = "forbidden"
    status = HTTPStatus.FORBIDDEN


class Conflict(GovernanceError):
    """The request is past the point where this could happen: decided, expired."""

    code = "conflict"
    status = HTTPStatus.CONFLICT
