"""Apply and verify at scale, end to end, against a baseline measured in the same run.

For each target type (a private PostgreSQL, redis-server and slapd, started here):

- apply: 1,000 identities, each one account with two entitlements (3,000 actions: create,
  grant, grant), through ``engine.reconcile`` as ``lockstep apply`` runs it, on the default
  SQLite state store (an fsync on every commit): intents journaled and secrets staged before
  each batch, every account read back, every new credential proven accepted by a real login,
  every result journaled.
- suspend: 5,000 orphan accounts under ``orphan_accounts: suspend``, each proven refused (its
  suspension password tried by a real login).
- verify: ``lockstep verify``'s check of everything the two runs left (6,000 accounts).

The baseline sends the same statements (the same verifiers, the same GRANTs and ALTER ROLEs;
on Redis the same ACL SETUSERs, on LDAP the same adds and modifies), in batched
transactions, with no read-back, no probe and no journal: what the target itself takes, so
that ``ratio`` is the share of it lockstep delivers with its bookkeeping and its proofs.
Each apply's time is split per action into the target's statements, the read-back, the
probes, and the state commits (journal and vault); the rest is planning and Python.

``pass`` times one pass of ``lockstep run`` (the service's gate over ``engine.reconcile``)
over 100,000 managed PostgreSQL accounts with 1 % drift: 500 grants made out of band
(revoked) and 500 taken away out of band (granted back).

    .venv/bin/python bench/apply.py                       # every section, about 10 minutes
    .venv/bin/python bench/apply.py postgres              # one or more of: postgres redis ldap pass
    .venv/bin/python bench/apply.py postgres --identities 200 --orphans 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from bench_apply.estates import ESTATES, Estate
from bench_apply.runs import Timers, pass_bench, run_apply, run_verify, workspace

from lockstep.demo import localpg


def section(estate: Estate, identities: int, orphans: int, root: Path) -> None:
    names = [f"svc{i:05d}" for i in range(identities)]
    lost = [f"orphan{i:05d}" for i in range(orphans)]
    print(f"\n== {estate.kind}: {identities:,} identities, {orphans:,} orphans")
    base_names = [f"base{i:05d}" for i in range(identities)]
    started = time.perf_counter()
    statements = estate.baseline_apply(base_names)
    baseline = time.perf_counter() - started
    estate.drop(base_names)
    with workspace(estate, names, root / f"{estate.kind}-apply", "report") as ws:
        timers = Timers()
        seconds, results = run_apply(ws, timers)
    actions = len(results)
    failed = sum(r.status != "verified" for r in results)
    rate, base_rate = actions / seconds, statements / baseline
    print(
        f"apply   {actions:>6,} actions in {seconds:6.2f} s = {rate:7,.0f}/s; baseline "
        f"{base_rate:7,.0f}/s ({baseline:.2f} s); ratio {rate / base_rate:.2f}; failed {failed}"
    )
    print("        per action: " + timers.split(actions, seconds))
    estate.make_orphans(lost)
    base_lost = [f"gone{i:05d}" for i in range(orphans)]
    estate.make_orphans(base_lost)
    started = time.perf_counter()
    estate.baseline_suspend(base_lost)
    baseline = time.perf_counter() - started
    estate.drop(base_lost)
    with workspace(estate, names, root / f"{estate.kind}-apply", "suspend") as ws:
        timers = Timers()
        seconds, results = run_apply(ws, timers)
        suspended = [r for r in results if str(r.action.op) == "suspend_account"]
        proven = sum(
            any(c.expected == "suspension password refused" and c.ok for c in r.checks)
            for r in suspended
        )
        rate, base_rate = len(suspended) / seconds, orphans / baseline
        print(
            f"suspend {len(suspended):>6,} accounts in {seconds:6.2f} s = {rate:7,.0f}/s "
            f"({proven:,} proven refused); baseline {base_rate:7,.0f}/s; "
            f"ratio {rate / base_rate:.2f}"
        )
        print("        per action: " + timers.split(len(suspended), seconds))
        seconds, in_sync, checks, probes = run_verify(ws)
        print(
            f"verify  {identities + orphans:>6,} accounts in {seconds:6.2f} s; {checks:,} "
            f"checks, {probes:,} probes; in sync: {in_sync}"
        )
    # Accounts are server-wide on PostgreSQL: the next section starts from none of these.
    estate.drop(names)
    estate.drop(lost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=[*ESTATES, "pass"])
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--orphans", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=100_000, help="for the pass")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-apply-") as tmp:
        root = Path(tmp)
        pg = (
            localpg.start(root / "pg")
            if any(s.startswith(("postgres", "pass")) for s in args.sections)
            else None
        )
        try:
            for name in args.sections:
                if name == "pass":
                    assert pg is not None
                    pass_bench(pg, args.accounts, root / "pass")
                    continue
                with ESTATES[name](pg, root) as estate:
                    section(estate, args.identities, args.orphans, root)
        finally:
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    main()
