"""Is every credential where its workload looks for it? Each sink of each working account
is read back and compared with the vault's current credential; a sink that lacks it (its
delivery failed, the file was removed or altered, a crash came first) is an
``undelivered_credential`` finding, delivered again by the next pass, and never "in sync"
for ``verify``, which also proves the sink's credential accepted by the target. Temporary
files a killed delivery left beside a file sink are removed on the way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lockstep.connectors.base import Credential, ProbeResult, Session
from lockstep.credentials.sinks import SinkError, read_delivered, remove_leftovers
from lockstep.credentials.vault import Vault
from lockstep.engine.delivery import Deliverer, sink_index
from lockstep.engine.probes import ProbeTask, probe_all
from lockstep.engine.verify import REAL_TIME, Inconclusive, Timer
from lockstep.model import (
    Check,
    Desired,
    Finding,
    FindingType,
    Observation,
    Policy,
    Severity,
    Snapshot,
)
from lockstep.secret import Secret, fingerprint, redact


@dataclass(frozen=True)
class SinkState:
    target: str
    account: str
    identity: str | None
    sink: str
    problem: str | None  # None: the sink holds the current credential
    delivered: Credential | None  # what the sink holds, when it holds a credential


def sink_states(
    policy: Policy, vault: Vault, desired: Desired, observed: Mapping[str, Observation]
) -> list[SinkState]:
    """Every sink of every account that should work, holds a current credential and reads
    back enabled, against what it holds now."""
    current = vault.current_fingerprints()
    sinks = sink_index(policy)  # every account's at once: not every identity per account
    states = []
    for (target, account), want in sorted(desired.accounts.items()):
        obs = observed.get(target)
        if not want.active or not isinstance(obs, Snapshot) or (target, account) not in current:
            continue
        held = obs.accounts.get(account)
        if held is None or not held.enabled:
            continue
        for sink in sinks.get((target, account), []):
            identity = want.identities[0] if want.identities else None
            states.append(_state(target, account, identity, sink, current[target, account]))
    return states


def _state(target: str, account: str, identity: str | None, sink: str, want: str) -> SinkState:
    try:
        document = read_delivered(sink, target)
    except SinkError as exc:
        return SinkState(target, account, identity, sink, redact(str(exc)), None)
    if document is None:
        return SinkState(target, account, identity, sink, "the sink holds nothing", None)
    username, password = str(document["username"]), str(document["password"])
    if fingerprint(password) != want:
        return SinkState(target, account, identity, sink, "the sink holds another credential", None)
    return SinkState(target, account, identity, sink, None, Credential(username, Secret(password)))


def undelivered_findings(states: Iterable[SinkState]) -> list[Finding]:
    seen: dict[tuple[str, str], Finding] = {}
    for s in states:
        if s.problem is not None and (s.target, s.account) not in seen:
            seen[s.target, s.account] = Finding(
                FindingType.UNDELIVERED_CREDENTIAL,
                Severity.HIGH,
                s.target,
                s.account,
                None,
                s.identity,
                f"{s.sink}: {s.problem}",
            )
    return list(seen.values())


def redeliver(
    deliverer: Deliverer, vault: Vault, states: Sequence[SinkState], skip: set[tuple[str, str]]
) -> list[str]:
    """Deliver the current credential again to the accounts whose sinks lack it (except
    ``skip``, the accounts this pass already changed), and remove what killed deliveries
    left beside file sinks; returns the problems left."""
    problems = []
    for state in states:
        remove_leftovers(state.sink, state.target)
    for target, account in sorted({(s.target, s.account) for s in states if s.problem} - skip):
        stored = vault.current(target, account)
        if stored is None:
            continue
        fields = {"target": target, "account": account, "identity": stored.identity}
        error = deliverer.deliver(
            fields, Credential(stored.username, stored.secret), kind="redelivery"
        )
        if error:
            problems.append(f"{target}/{account}: {error}")
    return problems


def sink_checks(
    states: Iterable[SinkState],
    sessions: Mapping[str, Session],
    windows: Mapping[str, float],
    timer: Timer = REAL_TIME,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[Check]:
    """For ``verify``: each sink holds the contract's document, its credential is the
    current one, and the target accepts it (the probe rotation uses; side by side, as many
    at a time as each target takes)."""
    states = list(states)
    tasks = [
        ProbeTask(sessions[s.target], s.delivered, ProbeResult.ACCEPTED, windows.get(s.target, 0))
        for s in states
        if s.problem is None and s.delivered is not None and s.target in sessions
    ]
    answers = iter(probe_all(tasks, timer, lambda done: progress(done, len(tasks))))
    checks = []
    for s in states:
        expected = f"credential delivered to {s.sink}"
        if s.problem is not None or s.delivered is None:
            actual = f"undelivered_credential: {s.problem}"
        else:
            got: object = next(answers) if s.target in sessions else "not probed"
            if isinstance(got, Inconclusive):
                got = f"unknown ({got})"
            actual = expected if got == ProbeResult.ACCEPTED else f"undelivered_credential: {got}"
        checks.append(Check(s.target, s.account, None, expected, actual, actual == expected))
    return checks
