"""Desired state and plan at scale, against a plain set difference of the same tuples.

Synthetic estates, generated deterministically from a seed: every identity holds one access
(one account, ~10 entitlements) on one of a few PostgreSQL-like targets, and the observed
snapshots drift from the policy the way real estates do (missing accounts and grants,
excess grants, orphans, expired access, departed owners, suspended accounts, stale
credentials, shared accounts, lease accounts).

Each size runs in a fresh subprocess, so that its peak RSS is its own. The baseline, timed in
the same process right after the plan, is what any diff of the estate must at least do: build
the set of (target, account, entitlement) tuples the policy grants and the set the targets
hold, and take both differences.

    /tmp/venv/bin/python bench/scale.py            # S and M
    /tmp/venv/bin/python bench/scale.py S M L      # L: 1M identities, one target at a time
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import create_model

from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.model import (
    LEASE_PREFIX,
    Access,
    Account,
    CredentialPolicy,
    Identity,
    Owner,
    OwnerStatus,
    Plan,
    Policy,
    Rules,
    Snapshot,
    Target,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


NO_SETTINGS = create_model("NoSettings")()  # of a target the pure plan never connects to
DAY = timedelta(days=1)
IDENTITIES_PER_OWNER = 50
ENTITLEMENTS_PER_TARGET = 500  # distinct grants a target offers: 50 roles, 450 table privileges
MEAN_ENTITLEMENTS = 10  # per identity: 5 to 15, uniformly
ROTATE_EVERY_S = 30 * 86400
Key = tuple[str, str]


@dataclass(frozen=True)
class Size:
    name: str
    identities: int
    targets: int
    # Chunked: plan one target at a time, each in its own policy and snapshot, so that only
    # one target's share of the estate is in memory at once.
    chunked: bool = False


SIZES = {
    "S": Size("S", 10_000, 4),
    "M": Size("M", 100_000, 4),
    "L": Size("L", 1_000_000, 10, chunked=True),
}


@dataclass(frozen=True)
class Drift:
    """Shares of identities (or of accounts, for orphans) that drift, each drawn independently."""

    missing_account: float = 0.02
    missing_grant: float = 0.03
    excess_grant: float = 0.03
    suspended: float = 0.01
    expired: float = 0.02
    departed_owner: float = 0.02  # share of owners
    orphan: float = 0.01
    shared: float = 0.005
    rotated: float = 0.10  # identities with a rotation period ...
    issued_known: float = 0.5  # ... of which lockstep issued the credential
    other_environment: float = 0.005
    lease: float = 0.001


DRIFT = Drift()


@dataclass
class Estate:
    policy: Policy
    observed: dict[str, Snapshot]
    issued: dict[Key, datetime]
    last_used: dict[Key, datetime]


def entitlement_pool(target: int) -> list[str]:
    roles = [f"role:app_role_{target}_{k}" for k in range(50)]
    privileges = ("SELECT", "INSERT", "UPDATE")
    tables = [
        f"{privileges[k % 3]} on table app_{target}.table_{k}"
        for k in range(ENTITLEMENTS_PER_TARGET - len(roles))
    ]
    return roles + tables


def owners(identities: int, seed: int) -> dict[str, Owner]:
    rng = random.Random(f"{seed}/owners")
    count = max(1, identities // IDENTITIES_PER_OWNER)
    return {
        f"team_{k}": Owner(
            f"team_{k}",
            (f"team_{k}@example.com",),
            OwnerStatus.DEPARTED if rng.random() < DRIFT.departed_owner else OwnerStatus.ACTIVE,
        )
        for k in range(count)
    }


def target_chunk(size: Size, index: int, seed: int, owner_names: list[str]) -> Estate:
    """The identities of one target, and that target as observed."""
    rng = random.Random(f"{seed}/{size.name}/{index}")
    name = f"pg_{index}"
    target = Target(name, "postgres", "prod", frozenset({"lockstep_admin"}), False, NO_SETTINGS)
    pool = entitlement_pool(index)
    per_target = size.identities // size.targets
    first = index * per_target
    identities: dict[str, Identity] = {}
    accounts: dict[str, Account] = {}
    issued: dict[Key, datetime] = {}
    last_used: dict[Key, datetime] = {}
    previous_account = ""
    for i in range(first, first + per_target):
        ident = f"svc_{i:07d}"
        account = ident
        if previous_account and rng.random() < DRIFT.shared:
            account = previous_account  # a second identity reusing the same account
        granted = frozenset(rng.sample(pool, rng.randint(5, 2 * MEAN_ENTITLEMENTS - 5)))
        expires = NOW - 3 * DAY if rng.random() < DRIFT.expired else NOW + 90 * DAY
        rotated = rng.random() < DRIFT.rotated
        identities[ident] = Identity(
            name=ident,
            owner=owner_names[i % len(owner_names)],
            purpose="synthetic workload",
            environment="dev" if rng.random() < DRIFT.other_environment else "prod",
            access=(Access(name, account, granted, expires),),
            credentials=CredentialPolicy(rotate_every_s=ROTATE_EVERY_S if rotated else None),
        )
        previous_account = account
        if rotated and rng.random() < DRIFT.issued_known:
            issued[(name, account)] = NOW - rng.randint(1, 60) * DAY
        last_used[(name, account)] = NOW - rng.randint(0, 120) * DAY
        if account in accounts or rng.random() < DRIFT.missing_account:
            continue
        held = set(granted)
        if rng.random() < DRIFT.missing_grant:
            held.discard(rng.choice(sorted(granted)))
        if rng.random() < DRIFT.excess_grant:
            held.add(rng.choice(pool))
        enabled = rng.random() >= DRIFT.suspended
        accounts[account] = Account(account, frozenset(held), enabled, rng.randint(0, 3))
    for k in range(int(per_target * DRIFT.orphan)):
        orphan = f"legacy_{index}_{k:06d}"
        accounts[orphan] = Account(orphan, frozenset(rng.sample(pool, 3)), True, 0)
    for k in range(int(per_target * DRIFT.lease)):
        lease = f"{LEASE_PREFIX}{index:02d}{k:06d}"
        accounts[lease] = Account(lease, frozenset(rng.sample(pool, 2)), True, 1)
    policy = Policy({name: target}, {}, identities, Rules(dormant_after_s=90 * 86400))
    return Estate(policy, {name: Snapshot(name, accounts)}, issued, last_used)


def chunks(size: Size, seed: int) -> Iterator[Estate]:
    """One estate per target, each with the whole owner directory. Nothing here keeps a
    chunk once it is handed out, so chunked sizes hold one target's share at a time."""
    directory = owners(size.identities, seed)
    names = sorted(directory)
    for index in range(size.targets):
        yield with_owners(target_chunk(size, index, seed, names), directory)


def with_owners(chunk: Estate, directory: dict[str, Owner]) -> Estate:
    p = chunk.policy
    chunk.policy = Policy(p.targets, directory, p.identities, p.rules)
    return chunk


def merged(parts: Iterator[Estate]) -> Estate:
    whole: Estate | None = None
    for part in parts:
        if whole is None:
            whole = part
            continue
        p = whole.policy
        whole.policy = Policy(
            {**p.targets, **part.policy.targets},
            p.owners,
            {**p.identities, **part.policy.identities},
            p.rules,
        )
        whole.observed.update(part.observed)
        whole.issued.update(part.issued)
        whole.last_used.update(part.last_used)
    assert whole is not None
    return whole


# ---------------------------------------------------------------- measuring


class GcClock:
    """Seconds spent in cyclic garbage collections while ``running``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.running = False
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if not self.running:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


@dataclass
class Run:
    desired_s: float
    plan_s: float
    cpu_s: float  # CPU time of desired + plan: what other processes on the machine don't inflate
    gc_s: float
    actions: int
    findings: int
    digest: str


def timed_plan(estate: Estate, gc_clock: GcClock, with_digest: bool) -> Run:
    """One desired state and plan; the plan is dropped before returning, so that repeats
    do not add up in the peak."""
    gc_clock.seconds, gc_clock.running = 0.0, True
    start, cpu_start = time.perf_counter(), time.process_time()
    desired = desired_state(estate.policy, NOW)
    mid = time.perf_counter()
    plan = make_plan(estate.policy, desired, estate.observed, NOW, estate.issued, estate.last_used)
    end, cpu_end = time.perf_counter(), time.process_time()
    gc_clock.running = False
    return Run(
        mid - start,
        end - mid,
        cpu_end - cpu_start,
        gc_clock.seconds,
        len(plan.actions),
        len(plan.findings),
        digest(plan) if with_digest else "",
    )


def timed_baseline(estate: Estate) -> tuple[float, float, int]:
    """Both set differences of the (target, account, entitlement) tuples: wall and CPU time."""
    start, cpu_start = time.perf_counter(), time.process_time()
    wanted = {
        (access.target, access.account, ent)
        for identity in estate.policy.identities.values()
        for access in identity.access
        for ent in access.entitlements
    }
    held = {
        (snapshot.target, account.name, ent)
        for snapshot in estate.observed.values()
        for account in snapshot.accounts.values()
        for ent in account.entitlements
    }
    drift = len(wanted - held) + len(held - wanted)
    return time.perf_counter() - start, time.process_time() - cpu_start, drift


def digest(plan: Plan) -> str:
    """Of everything the plan says: equal digests, equal plans (to check a speed-up)."""
    h = hashlib.sha256()
    for item in (*plan.actions, *plan.findings):
        h.update(repr(item).encode())
    h.update(repr((plan.unreachable, plan.mass_change)).encode())
    return h.hexdigest()[:16]


@dataclass
class Totals:
    """One size's figures; chunked sizes add up their chunks' times and counts."""

    desired_s: float = 0.0
    plan_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of desired + plan
    gc_s: float = 0.0  # cyclic GC within desired + plan
    baseline_s: float = 0.0
    baseline_cpu_s: float = 0.0
    generate_s: float = 0.0
    entitlements: int = 0
    actions: int = 0
    findings: int = 0
    drift_tuples: int = 0  # the baseline's answer: tuples in one set and not the other
    estate_mb: float = 0.0  # peak RSS once the estate is built
    plan_peak_mb: float = 0.0  # peak RSS once desired state and plan are done
    peak_mb: float = 0.0  # peak RSS at the end, baseline included
    digest: str = ""
    load_policy_s: float | None = None

    @property
    def total_s(self) -> float:
        return self.desired_s + self.plan_s


def measure(size: Size, seed: int, repeats: int, with_digest: bool) -> Totals:
    """Runs in the child: best of ``repeats`` for each chunk, the cyclic GC on as in production."""
    totals = Totals()
    gc_clock = GcClock()
    plan_digests = hashlib.sha256()
    start = time.perf_counter()
    parts = chunks(size, seed) if size.chunked else iter([merged(chunks(size, seed))])
    for estate in parts:
        totals.generate_s += time.perf_counter() - start
        totals.estate_mb = max(totals.estate_mb, peak_mb())
        runs = []
        for _ in range(repeats):
            gc.collect()
            runs.append(timed_plan(estate, gc_clock, with_digest))
        totals.plan_peak_mb = max(totals.plan_peak_mb, peak_mb())
        best = min(runs, key=lambda run: run.desired_s + run.plan_s)
        totals.desired_s += best.desired_s
        totals.plan_s += best.plan_s
        totals.cpu_s += min(run.cpu_s for run in runs)
        totals.gc_s += best.gc_s
        totals.actions += best.actions
        totals.findings += best.findings
        plan_digests.update(best.digest.encode())
        baselines = []
        for _ in range(repeats):
            gc.collect()
            baselines.append(timed_baseline(estate))
        totals.baseline_s += min(wall for wall, _, _ in baselines)
        totals.baseline_cpu_s += min(cpu for _, cpu, _ in baselines)
        totals.drift_tuples += baselines[0][2]
        totals.entitlements += sum(
            len(a.entitlements) for i in estate.policy.identities.values() for a in i.access
        )
        del estate
        gc.collect()
        start = time.perf_counter()
    totals.peak_mb = peak_mb()
    if with_digest:
        totals.digest = plan_digests.hexdigest()[:16]
    return totals


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_load_policy(size: Size, seed: int) -> float:
    """The same estate written as YAML and loaded the way `lockstep plan` loads it."""
    import yaml

    from lockstep.policy.load import load_policy

    estate = merged(chunks(size, seed))
    p = estate.policy
    document = {
        "version": 1,
        "targets": {
            t: {"type": "postgres", "dsn": "${BENCH_DSN}", "environment": "prod"} for t in p.targets
        },
        "owners": {
            o.name: {"contacts": list(o.contacts), "status": str(o.status)}
            for o in p.owners.values()
        },
        "identities": {
            i.name: {
                "owner": i.owner,
                "purpose": i.purpose,
                "environment": i.environment,
                "access": [
                    {
                        "target": a.target,
                        "account": a.account,
                        "entitlements": sorted(a.entitlements),
                        "expires": a.expires.isoformat() if a.expires else None,
                    }
                    for a in i.access
                ],
            }
            for i in p.identities.values()
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lockstep.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        start = time.perf_counter()
        loaded = load_policy(path, {"BENCH_DSN": "postgresql://lockstep_admin@127.0.0.1:1/b"})
        elapsed = time.perf_counter() - start
    assert len(loaded.policy.identities) == len(p.identities)
    return elapsed


# ---------------------------------------------------------------- driver


def child(args: argparse.Namespace) -> None:
    size = SIZES[args.child]
    totals = measure(size, args.seed, args.repeats, args.digest)
    if args.load_policy:
        totals.load_policy_s = time_load_policy(size, args.seed)
    json.dump(asdict(totals), sys.stdout)


def run_child(name: str, args: argparse.Namespace) -> Totals:
    cmd = [sys.executable, __file__, "--child", name]
    cmd += ["--seed", str(args.seed), "--repeats", str(args.repeats)]
    if args.digest:
        cmd.append("--digest")
    if args.load_policy and name == "S":
        cmd.append("--load-policy")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"size {name} failed:\n{done.stderr}")
    return Totals(**json.loads(done.stdout))


def report(rows: dict[str, Totals]) -> None:
    print(
        f"{'size':<5}{'identities':>11}{'entitlements':>13}{'desired s':>10}{'plan s':>8}"
        f"{'total s':>9}{'(GC s)':>8}{'baseline s':>11}{'ratio':>7}{'peak MB':>9}"
        f"{'estate MB':>10}{'actions':>9}{'findings':>10}"
    )
    for name, t in rows.items():
        print(
            f"{name:<5}{SIZES[name].identities:>11,}{t.entitlements:>13,}{t.desired_s:>10.2f}"
            f"{t.plan_s:>8.2f}{t.total_s:>9.2f}{t.gc_s:>8.2f}{t.baseline_s:>11.2f}"
            f"{t.total_s / t.baseline_s:>7.2f}{t.plan_peak_mb:>9.0f}{t.estate_mb:>10.0f}"
            f"{t.actions:>9,}{t.findings:>10,}"
        )
    for name, t in rows.items():
        notes = [
            f"CPU desired+plan {t.cpu_s:.2f} s, baseline {t.baseline_cpu_s:.2f} s, "
            f"ratio {t.cpu_s / t.baseline_cpu_s:.2f}",
            f"generated in {t.generate_s:.1f} s",
            f"baseline drift {t.drift_tuples:,} tuples",
            f"peak with baseline {t.peak_mb:.0f} MB",
        ]
        if SIZES[name].chunked:
            notes.append(f"one target at a time ({SIZES[name].targets} targets)")
        if t.load_policy_s is not None:
            notes.append(f"load_policy (YAML) {t.load_policy_s:.1f} s")
        if t.digest:
            notes.append(f"plan digest {t.digest}")
        print(f"{name}: " + "; ".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", help="S, M and/or L (default: S M)")
    parser.add_argument("--seed", type=int, default=20260601)
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--digest", action="store_true", help="print a digest of each plan")
    parser.add_argument("--load-policy", action="store_true", help="also time YAML loading (S)")
    parser.add_argument("--child", choices=sorted(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sizes = args.sizes or ["S", "M"]
    if unknown := set(sizes) - SIZES.keys():
        parser.error(f"unknown size(s) {sorted(unknown)}: choose among {sorted(SIZES)}")
    rows = {name: run_child(name, args) for name in sizes}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"best of {args.repeats}; cyclic GC on; load average {load} on {os.cpu_count()} CPUs")
    report(rows)


if __name__ == "__main__":
    main()
