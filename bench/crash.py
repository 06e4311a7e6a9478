"""Random kill -9 trials: `lockstep apply` and `lockstep rotate` killed at a random moment
against a real PostgreSQL, then one more `apply`; a trial fails when, after it, `verify` is
not in sync, a sink's credential does not log in, a rotated-away password still does, or
the journal's chain is broken.

Each apply trial switches the policy to four new accounts (created, granted, delivered to
file sinks) while `orphan_accounts: delete` removes the previous four, so a kill can land in
a create, a grant, a delete or a delivery. Each rotate trial rotates one identity. The kill
comes at a uniformly random moment within the time an unkilled run of the same command took
(measured first, in the same run: the baseline). Nothing here uses the fault-injection hook:
these are the random trials; `tests/integration/test_crash_recovery.py` kills at every step.

    .venv/bin/python bench/crash.py                         # 50 apply + 20 rotate trials
    .venv/bin/python bench/crash.py --apply 10 --rotate 5   # quicker
    PYTHONPATH=/tmp/main/src .venv/bin/python bench/crash.py   # another checkout's lockstep
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg

from lockstep.demo import localpg

IDENTITIES = 4


def policy(generation: int, secrets: Path) -> str:
    identities = "".join(
        f"""
  svc{k}:
    owner: team
    purpose: crash trials
    access:
      - target: bench-db
        account: svc{k}_g{generation}
        entitlements: [CONNECT on database orders, SELECT on table public.items]
    credentials:
      sink: file:{secrets}/svc{k}.json
"""
        for k in range(IDENTITIES)
    )
    return f"""\
version: 1
targets:
  bench-db:
    type: postgres
    dsn: ${{BENCH_DB_DSN}}
owners:
  team:
    contacts: [bench@example.com]
identities:{identities}
rules:
  orphan_accounts: delete
"""


class Project:
    def __init__(self, workdir: Path, pg: localpg.LocalPostgres) -> None:
        self.workdir = workdir
        self.pg = pg
        self.secrets = workdir / "secrets"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        self.env["BENCH_DB_DSN"] = pg.dsn("orders")
        self.generation = 0

    def write(self) -> None:
        (self.workdir / "lockstep.yaml").write_text(policy(self.generation, self.secrets))

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lockstep", *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def timed(self, *args: str) -> float:
        start = time.monotonic()
        proc = self.run(*args)
        if proc.returncode != 0:
            raise SystemExit(f"unkilled {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return time.monotonic() - start

    def killed(self, delay: float, *args: str) -> bool:
        """Run, SIGKILL after ``delay`` s; True when the kill landed before it finished."""
        proc = subprocess.Popen(
            self.argv(*args),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True

    def sink_passwords(self) -> dict[str, tuple[str, str]]:
        found = {}
        for k in range(IDENTITIES):
            try:
                doc = json.loads((self.secrets / f"svc{k}.json").read_text())
                found[f"svc{k}"] = (doc["username"], doc["password"])
            except (OSError, ValueError, KeyError):
                continue
        return found

    def logs_in(self, user: str, password: str) -> bool:
        try:
            psycopg.connect(
                host="127.0.0.1",
                port=self.pg.port,
                dbname="orders",
                user=user,
                password=password,
                connect_timeout=5,
            ).close()
        except psycopg.OperationalError:
            return False
        return True

    def problems(self, retired: tuple[str, str] | None = None) -> list[str]:
        """One more pass, then everything a workload and an auditor would check."""
        found = []
        if self.run("apply", "--yes").returncode != 0:
            found.append("apply after the kill failed")
        if self.run("verify").returncode != 0:
            found.append("verify not in sync")
        if self.run("audit", "verify").returncode != 0:
            found.append("journal broken")
        delivered = self.sink_passwords()
        for k in range(IDENTITIES):
            got = delivered.get(f"svc{k}")
            if got is None:
                found.append("a sink is missing or unreadable")
            elif got[0] != f"svc{k}_g{self.generation}" or not self.logs_in(*got):
                found.append("a sink's credential does not log in")
        if retired is not None and retired != delivered.get("svc0") and self.logs_in(*retired):
            found.append("the rotated-away password still logs in")
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apply", type=int, default=50, help="apply trials (default 50)")
    parser.add_argument("--rotate", type=int, default=20, help="rotate trials (default 20)")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    import lockstep

    print(f"lockstep from {Path(lockstep.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="lockstep-crash-") as tmp, localpg.start() as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE orders")
        with psycopg.connect(pg.dsn("orders"), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.items (id int)")
        project = Project(Path(tmp), pg)
        project.write()
        apply_s = project.timed("apply", "--yes")
        rotate_s = project.timed("rotate", "svc0")
        print(f"baseline: unkilled apply {apply_s:.2f} s, unkilled rotate {rotate_s:.2f} s")
        runs = (("apply", args.apply, apply_s), ("rotate", args.rotate, rotate_s))
        for kind, trials, took in runs:
            failures: Counter[str] = Counter()
            failed = landed = 0
            for _ in range(trials):
                retired = None
                if kind == "apply":
                    project.generation += 1
                    project.write()
                    command: tuple[str, ...] = ("apply", "--yes")
                else:
                    retired = project.sink_passwords().get("svc0")
                    command = ("rotate", "svc0")
                landed += project.killed(rng.uniform(0.0, took), *command)
                problems = project.problems(retired)
                failed += bool(problems)
                failures.update(set(problems))
            print(f"{kind}: {trials} trials ({landed} killed mid-run), {failed} failures")
            for problem, count in failures.most_common():
                print(f"  {count:3d}  {problem}")


if __name__ == "__main__":
    main()
