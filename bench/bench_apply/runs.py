"""The timed runs of ``bench/apply.py``: an apply, a verify, and a service pass, through the
engine exactly as ``lockstep apply``, ``lockstep verify`` and ``lockstep run`` assemble them,
with each apply's time split by where it goes."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench_apply.service_estate import ServiceEstate
from lockstep.credentials.vault import Vault, load_key
from lockstep.engine import batches
from lockstep.engine import reconcile as reconcile_module
from lockstep.engine.audit import verify_state
from lockstep.engine.reconcile import Pass, reconcile
from lockstep.engine.workspace import Workspace
from lockstep.journal import Journal
from lockstep.model import (
    Access,
    CredentialPolicy,
    Identity,
    Owner,
    OwnerStatus,
    Plan,
    Policy,
    Result,
    RuleAction,
    Rules,
    Target,
)
from lockstep.policy.load import LoadedPolicy
from lockstep.store import Store
from lockstep.store.findings import FindingLedger


class Estate(Protocol):
    kind: str
    entitlements: tuple[str, ...]

    def target(self) -> Target: ...


@dataclass
class Timers:
    """Seconds spent in each kind of work while an apply runs."""

    spent: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def timed(self, what: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.spent[what] += time.perf_counter() - started

        return wrapper

    def timed_context(self, what: str, opener: Callable[..., Any]) -> Callable[..., Any]:
        @contextmanager
        def wrapper(*args: Any) -> Iterator[Any]:
            started = time.perf_counter()
            try:
                with opener(*args) as inner:
                    yield inner
            finally:
                self.spent[what] += time.perf_counter() - started

        return wrapper

    def split(self, actions: int, total: float) -> str:
        kinds = ("statement", "read-back", "probe", "commits")
        parts = [f"{k} {self.spent[k] / actions * 1000:.3f} ms" for k in kinds]  # probes overlap
        rest = total - sum(self.spent[k] for k in kinds)
        return ", ".join([*parts, f"other {rest / actions * 1000:.3f} ms"])


def policy(estate: Estate, names: list[str], orphans: str) -> Policy:
    target = estate.target()
    identities = {
        name: Identity(
            name,
            "team",
            "bench",
            None,
            (Access(target.name, name, frozenset(estate.entitlements), None),),
            CredentialPolicy(),
        )
        for name in names
    }
    return Policy(
        targets={target.name: target},
        owners={"team": Owner("team", ("bench@example.com",), OwnerStatus.ACTIVE)},
        identities=identities,
        rules=Rules(orphan_accounts=RuleAction(orphans)),
    )


@contextmanager
def workspace(estate: Estate, names: list[str], state: Path, orphans: str) -> Iterator[Workspace]:
    """A workspace as the CLI opens one, on the default SQLite store in ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    yield from _workspace(policy(estate, names, orphans), state)


def _workspace(built: Policy, state: Path) -> Iterator[Workspace]:
    store = Store.open(f"sqlite:///{state / 'state.db'}")
    try:
        loaded = LoadedPolicy(built, (), state, {})
        yield Workspace(
            loaded, store, Journal(store), Vault(store, load_key(state)), FindingLedger(store)
        )
    finally:
        store.close()


def run_apply(ws: Workspace, timers: Timers) -> tuple[float, list[Result]]:
    """One ``lockstep apply --yes --allow-mass-change``; the seconds from the plan's
    approval to the last result."""
    started = [0.0]
    module: Any = batches
    probe_all = module.probe_all
    with ws.observer() as (observer, desired):

        def gate(seen: Pass) -> Plan:
            for session in observer.sessions.values():
                for method, what in (("apply_batch", "statement"), ("read_accounts", "read-back")):
                    if hasattr(session, method):
                        setattr(session, method, timers.timed(what, getattr(session, method)))
            module.probe_all = timers.timed("probe", probe_all)
            journal: Any = ws.journal
            journal.recording = timers.timed_context("commits", ws.journal.recording)
            vault: Any = ws.vault
            vault.promote_all = timers.timed("commits", ws.vault.promote_all)
            vault.held = timers.timed("commits", ws.vault.held)
            started[0] = time.perf_counter()
            return seen.plan

        try:
            done = reconcile(ws, observer, desired, gate, lambda result: None)
        finally:
            module.probe_all = probe_all
    return time.perf_counter() - started[0], done.results


def run_verify(ws: Workspace) -> tuple[float, bool, int, int]:
    """One ``lockstep verify``: seconds, in sync, checks, probes."""
    started = time.perf_counter()
    with ws.observer() as (observer, desired):
        verification = verify_state(ws, observer, desired)
    seconds = time.perf_counter() - started
    probes = sum(c.expected.startswith("credential ") for c in verification.checks)
    return seconds, verification.in_sync, len(verification.checks), probes


def pass_bench(pg: Any, accounts: int, state: Path) -> None:
    """One service pass over ``accounts`` managed PostgreSQL accounts with 1 % drift, after
    a first pass has settled the estate (as a running service has)."""
    estate = ServiceEstate(pg, accounts)
    print(f"\n== pass: {accounts:,} managed PostgreSQL accounts, 1 % drift")
    started = time.perf_counter()
    estate.build()
    print(f"estate built in {time.perf_counter() - started:.1f} s (not timed)")
    state.mkdir(parents=True, exist_ok=True)
    for label, drift in (("settling pass", False), ("pass", True)):
        if drift:
            estate.drift()
        for ws in _workspace(estate.policy(), state):
            seconds, read_s, paths_s, results = run_pass(ws)
        failed = sum(r.status != "verified" for r in results)
        print(
            f"{label:<13} {seconds:6.2f} s (read and plan {read_s:.2f} s, of which escalation "
            f"paths {paths_s:.2f} s; apply {seconds - read_s:.2f} s); {len(results):,} actions, "
            f"failed {failed}"
        )


def run_pass(ws: Workspace) -> tuple[float, float, float, list[Result]]:
    """The service's pass: its gate never applies a plan the blast-radius guard stopped.
    Also how long the escalation-path analysis (its read included) took of it."""
    read = [0.0]
    paths = Timers()
    module: Any = reconcile_module
    analysis = module.escalation
    module.escalation = paths.timed("paths", analysis)
    started = time.perf_counter()
    try:
        with ws.observer() as (observer, desired):

            def gate(seen: Pass) -> Plan | None:
                read[0] = time.perf_counter() - started
                return None if seen.plan.blocked else seen.plan

            done = reconcile(ws, observer, desired, gate, lambda result: None)
    finally:
        module.escalation = analysis
    return time.perf_counter() - started, read[0], paths.spent["paths"], done.results
