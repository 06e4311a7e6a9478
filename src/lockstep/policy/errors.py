"""Policy errors that point at a file and line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lockstep.errors import LockstepError
from lockstep.model import Location


@dataclass(frozen=True, slots=True)
class PolicyError:
    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class PolicyInvalid(LockstepError):
    """Every error found in a policy, reported at once, in file and line order."""

    code = "policy_invalid"
    default_hint = "fix each FILE:LINE error above, then run lockstep validate"

    def __init__(self, errors: Iterable[PolicyError]) -> None:
        self.errors = sorted(
            set(errors), key=lambda e: (e.location.file, e.location.line, e.message)
        )
        super().__init__("\n".join(str(e) for e in self.errors))
