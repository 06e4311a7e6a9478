"""Sessions to the policy's targets for lease work, kept open between requests.

A connector session is one connection and serves one thread at a time; the service issues
leases from many threads at once. So each target keeps a small pool: a thread takes an idle
session or opens one, and gives it back when done. A session whose target became
unreachable is closed rather than given back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lockstep.connectors.base import ActionFailed, Scope, Session
from lockstep.connectors.registry import connector_type
from lockstep.engine.verify import propagation_window
from lockstep.model import Policy, Target

MAX_IDLE = 8  # sessions kept open per target beyond that are closed when given back


class TargetSessions:
    def __init__(
        self,
        policy: Policy,
        opener: Callable[[Target, Scope], Session] | None = None,
    ) -> None:
        self._policy = policy
        self._opener = opener or _open
        self._idle: dict[str, list[Session]] = {name: [] for name in policy.targets}
        self._lock = threading.Lock()

    def propagation_window_s(self, target: str) -> float:
        spec = self._policy.targets[target]
        return propagation_window(spec, connector_type(spec.type))

    @contextmanager
    def session(self, target: str) -> Iterator[Session]:
        """A session to ``target`` for the duration of the block. Raises TargetUnreachable."""
        session = self._take(target)
        try:
            yield session
        except ActionFailed:
            # The target refused one request and is still there.
            self._give_back(target, session)
            raise
        except BaseException:
            # Unreachable, or interrupted mid-conversation: the connection is not reused.
            session.close()
            raise
        self._give_back(target, session)

    def _take(self, target: str) -> Session:
        with self._lock:
            idle = self._idle[target]
            if idle:
                return idle.pop()
        spec = self._policy.targets[target]
        return self._opener(spec, _scope(self._policy, spec))

    def _give_back(self, target: str, session: Session) -> None:
        with self._lock:
            idle = self._idle[target]
            if len(idle) < MAX_IDLE:
                idle.append(session)
                return
        session.close()

    def close(self) -> None:
        with self._lock:
            sessions = [s for idle in self._idle.values() for s in idle]
            for idle in self._idle.values():
                idle.clear()
        for session in sessions:
            session.close()


def _open(target: Target, scope: Scope) -> Session:
    return connector_type(target.type).open(target, scope)


def _scope(policy: Policy, target: Target) -> Scope:
    declared = frozenset(
        access.account
        for identity in policy.identities.values()
        for access in identity.access
        if access.target == target.name
    )
    return Scope(declared=declared - target.exclude, excluded=target.exclude)
