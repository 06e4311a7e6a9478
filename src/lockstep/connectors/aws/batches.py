"""Batches on AWS: IAM has no batch API, so a batch's calls run side by side, a few at a
time, each change as its own one-operation method would make it.

IAM limits how fast an account may call it; botocore's adaptive retry mode (``client``)
backs off and slows down when AWS answers ``Throttling``, so running changes together never
turns a rate limit into failed actions. A change AWS refuses fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar, cast

from lockstep.connectors.base import Change, Outcome, Session, apply_each
from lockstep.model import Account

# Calls in flight at once: well within IAM's per-account request rates.
CONCURRENT_CALLS: Final = 8
PROBE_SLOTS: Final = 4
_T = TypeVar("_T")
_R = TypeVar("_R")


class AwsBatches:
    def read_account(self, account: str) -> Account | None:
        raise NotImplementedError  # the session's

    def read_accounts(self, accounts: Collection[str]) -> dict[str, Account | None]:
        names = sorted(accounts)
        return dict(zip(names, _side_by_side(self.read_account, names), strict=True))

    def probe_slots(self) -> int:
        return PROBE_SLOTS

    def apply_batch(self, changes: Sequence[Change]) -> list[Outcome]:
        session = cast(Session, self)
        return _side_by_side(lambda change: apply_each(session, [change])[0], changes)


def _side_by_side(call: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(min(CONCURRENT_CALLS, len(items)), "lockstep-aws") as pool:
        return list(pool.map(call, items))
