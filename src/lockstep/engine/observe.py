"""Reading every target at once, keeping the sessions open for apply and verify."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from lockstep.connectors.base import ConnectorType, Scope, Session, TargetUnreachable
from lockstep.connectors.registry import connector_type
from lockstep.model import Desired, Observation, Policy, Snapshot, Target, Unreachable
from lockstep.paths.graph import PathRequest, TargetFacts
from lockstep.secret import redact


class Observer:
    """Opens one session per target; ``observe`` reads them all, in parallel."""

    def __init__(self, policy: Policy, desired: Desired) -> None:
        self.policy = policy
        self.desired = desired
        self.sessions: dict[str, Session] = {}
        self.connectors: dict[str, ConnectorType] = {
            name: connector_type(t.type) for name, t in policy.targets.items()
        }

    def __enter__(self) -> Observer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def observe(self) -> dict[str, Observation]:
        targets = sorted(self.policy.targets.values(), key=lambda t: t.name)
        if not targets:
            return {}
        with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
            return dict(zip([t.name for t in targets], pool.map(self._read, targets), strict=True))

    def read_paths(
        self, names: Iterable[str], request: PathRequest
    ) -> tuple[dict[str, TargetFacts], dict[str, str]]:
        """The escalation facts of the targets ``names`` (read already, so their sessions are
        open), in parallel; and why each that could not be read was not."""
        wanted = sorted(n for n in names if n in self.sessions)
        if not wanted:
            return {}, {}
        facts: dict[str, TargetFacts] = {}
        unread: dict[str, str] = {}

        def read(name: str) -> None:
            try:
                facts[name] = self.sessions[name].read_paths(request)
            except TargetUnreachable as exc:
                unread[name] = redact(str(exc))

        with ThreadPoolExecutor(max_workers=min(8, len(wanted))) as pool:
            list(pool.map(read, wanted))
        return facts, unread

    def _read(self, target: Target) -> Observation:
        try:
            session = self.sessions.get(target.name)
            if session is None:
                session = self.connectors[target.name].open(target, self._scope(target))
                self.sessions[target.name] = session
            snapshot: Snapshot = session.read()
        except TargetUnreachable as exc:
            self._drop(target.name)
            return Unreachable(target.name, redact(str(exc)))
        return snapshot

    def _scope(self, target: Target) -> Scope:
        wants = self.desired.for_target(target.name)
        granted = frozenset().union(*(w.entitlements for w in wants.values()))
        return Scope(
            declared=frozenset(wants) - target.exclude,
            excluded=target.exclude,
            entitlements=granted,
        )

    def _drop(self, name: str) -> None:
        session = self.sessions.pop(name, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        for name in list(self.sessions):
            self._drop(name)
