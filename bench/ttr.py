"""Time to remediate with `lockstep run`: from an out-of-band change in a real PostgreSQL to
the journal entry that shows its remediation verified, with no CLI call in between.

Starts a private PostgreSQL (lockstep.demo.localpg) and a real `lockstep run` on a SQLite state,
then runs trials that alternate two kinds of drift:

- GRANT of a privilege the policy does not grant to the managed account (revoked, verified);
- CREATE ROLE ... LOGIN, a new orphan account under `orphan_accounts: suspend` (suspended,
  its password proven refused).

Each trial's clock starts just before the change is committed and stops when the journal
holds the verified result (polled every 5 ms). Two configurations run one after the other:
each target's default interval (30 s) and `--interval 500ms`. The baseline is the interval
itself: a loop driven by its interval alone waits up to one interval to notice drift, so
p99 / interval says how much the change token (targets asked about every second whether
anything changed) and the event triggers beat it.

    /tmp/venv/bin/python bench/ttr.py                # 100 trials per configuration
    /tmp/venv/bin/python bench/ttr.py --trials 20    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from lockstep.demo import localpg

POLICY = """\
version: 1
targets:
  bench-db:
    type: postgres
    dsn: ${BENCH_DB_DSN}
owners:
  team:
    contacts: [bench@example.com]
identities:
  bench-api:
    owner: team
    purpose: benchmark
    access:
      - target: bench-db
        account: bench_api
        entitlements: [SELECT on table public.items]
rules:
  orphan_accounts: suspend
"""
POLL_S = 0.005
TRIAL_TIMEOUT_S = 120.0


@dataclass
class Config:
    label: str
    interval_s: float
    args: tuple[str, ...]


CONFIGS = (
    Config("default interval (30s)", 30.0, ()),
    Config("--interval 500ms", 0.5, ("--interval", "500ms")),
)


class Journal:
    """Reads the results the service journals, incrementally."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self._seen = 0

    def skip_to_end(self) -> None:
        with sqlite3.connect(f"file:{self._db}?mode=ro", uri=True) as conn:
            self._seen = conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]

    def wait_for(self, **fields: str) -> None:
        deadline = time.monotonic() + TRIAL_TIMEOUT_S
        while time.monotonic() < deadline:
            with sqlite3.connect(f"file:{self._db}?mode=ro", uri=True) as conn:
                rows = conn.execute(
                    "SELECT seq, payload FROM journal WHERE seq > ? AND kind = 'result' "
                    "ORDER BY seq",
                    (self._seen,),
                ).fetchall()
            for seq, payload in rows:
                self._seen = seq
                entry = json.loads(payload)
                if all(entry.get(k) == v for k, v in fields.items()):
                    return
            time.sleep(POLL_S)
        raise TimeoutError(f"no verified result {fields} within {TRIAL_TIMEOUT_S}s")


def start_service(
    workdir: Path, env: dict[str, str], config: Config
) -> tuple[subprocess.Popen[bytes], Path]:
    port = localpg.free_port()
    log = workdir / f"service-{config.interval_s}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep",
                "run",
                "--listen",
                f"127.0.0.1:{port}",
                *config.args,
            ],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            if health["targets"].get("bench-db", {}).get("last_pass"):
                return proc, log
        except (httpx.TransportError, ValueError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"lockstep run exited: {log.read_text()}")
        time.sleep(0.1)
    raise RuntimeError("lockstep run did not complete a first pass within 60s")


def run_trials(
    pg: localpg.LocalPostgres, journal: Journal, trials: int, budget_s: float, start: int
) -> list[float]:
    times: list[float] = []
    began = time.monotonic()
    with psycopg.connect(pg.dsn("bench"), autocommit=True) as conn:
        for i in range(start, start + trials):
            if time.monotonic() - began > budget_s:
                break
            journal.skip_to_end()
            if i % 2 == 0:
                t0 = time.monotonic()
                conn.execute("GRANT INSERT ON public.items TO bench_api")
                journal.wait_for(
                    op="revoke", entitlement="INSERT on table public.items", status="verified"
                )
            else:
                orphan = f"orphan_{i}"
                t0 = time.monotonic()
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'bench-orphan-pw'").format(
                        sql.Identifier(orphan)
                    )
                )
                journal.wait_for(op="suspend_account", account=orphan, status="verified")
            times.append(time.monotonic() - t0)
    return times


def triggers(log: Path) -> Counter[str]:
    """Why the passes that changed something started."""
    found: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "pass" and event.get("actions"):
                found.update(event["reasons"])
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per configuration")
    parser.add_argument(
        "--budget", type=float, default=140.0, help="seconds of trials per configuration at most"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lockstep-ttr-"))
    with localpg.start() as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        with psycopg.connect(pg.dsn("bench"), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.items (id int PRIMARY KEY)")
        (workdir / "lockstep.yaml").write_text(POLICY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        env["BENCH_DB_DSN"] = pg.dsn("bench")
        journal = Journal(workdir / ".lockstep" / "state.db")

        print(f"time to remediate, change -> verified in the journal ({args.trials} trials each)")
        print(
            f"{'configuration':<24}{'n':>5}{'p50 s':>9}{'p99 s':>9}{'max s':>9}"
            f"{'interval s':>12}{'p99/interval':>14}  triggers"
        )
        done = 0
        for config in CONFIGS:
            proc, log = start_service(workdir, env, config)
            try:
                times = run_trials(pg, journal, args.trials, args.budget, done)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            done += len(times)
            p50, p99 = statistics.median(times), percentile(times, 0.99)
            why = ", ".join(f"{k} {v}" for k, v in triggers(log).most_common())
            print(
                f"{config.label:<24}{len(times):>5}{p50:>9.3f}{p99:>9.3f}{max(times):>9.3f}"
                f"{config.interval_s:>12.1f}{p99 / config.interval_s:>14.3f}  {why}"
            )
            if len(times) < args.trials:
                print(f"  (stopped after {len(times)} trials: --budget {args.budget:.0f}s reached)")
        print(f"goal: p99 <= 5 s at the default interval, <= 1 s at 500ms   (workdir {workdir})")


if __name__ == "__main__":
    main()
