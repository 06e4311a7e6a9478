"""Governance figures, side by side in one run.

``enforce``: a private PostgreSQL (lockstep.demo.localpg) and a real `lockstep run` on a
SQLite state store, its target passed every 30 s (the default). 100 grants, one after the
other, each of its own table privilege for a short window: from the journal entry of the
last approval to the entry that records the grant active (the privilege read back in
PostgreSQL), and from each grant's ``ends_at`` to the entry that records it ended (the
revocation read back). Baseline: the service's own interval, which an interval-driven loop
would wait up to; ``p99/interval`` shows the event path does not wait for it.

``api``: requests filed through ``POST /v1/requests`` of the same service per second, by
``--clients`` threads at once, each call authenticated with a personal token, checked,
committed with its journal entry. Baseline: ``GET /healthz`` at the same concurrency (the
HTTP stack alone), so the ratio is the share of it a filed request keeps.

``sod``: in process, the separation-of-duties check a request pays at filing, with 100k
identities, 10k active grants and 20 rules, over 2,000 requests for random identities; p50
and p99, and the same for a whole filing checked but not stored (``dry_run``). Baseline: the
check's own reads (the identity's grants and holdings, by index) with no evaluation.

    /tmp/venv/bin/python bench/governance.py                 # all three, ~3 minutes
    /tmp/venv/bin/python bench/governance.py sod --identities 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from pydantic import create_model
from sqlalchemy import insert, select

from lockstep.demo import localpg
from lockstep.governance.auth import Principal
from lockstep.governance.errors import GovernanceError
from lockstep.governance.requests import Ask, Requests
from lockstep.governance.tokens import PersonTokens
from lockstep.journal import Journal
from lockstep.model import (
    Access,
    Identity,
    Owner,
    OwnerStatus,
    Policy,
    Rules,
    SodRule,
    Target,
)
from lockstep.policy.load import LoadedPolicy
from lockstep.store import Store
from lockstep.store.tables import access_requests, sod_holdings

POLICY = """\
version: 1
targets:
  bench-db:
    type: postgres
    dsn: ${BENCH_DB_DSN}
owners:
  team: {contacts: [alice@example.com, amir@example.com]}
identities:
  payments-api:
    owner: team
    purpose: Benchmark
    access:
      - {target: bench-db, account: payments_api, entitlements: []}
governance:
  max_duration: {default: 30d}
"""
INTERVAL_S = 30.0
POLL_S = 0.01
NO_SETTINGS = create_model("NoSettings")()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def line(label: str, values: list[float], unit: str, baseline: str) -> None:
    p50, p99 = statistics.median(values), percentile(values, 0.99)
    print(
        f"  {label:<44} n={len(values):<6} p50 {p50:.4f} {unit}  p99 {p99:.4f} {unit}  {baseline}"
    )


# ---------------------------------------------------------------- a real service


class Running:
    def __init__(self, workdir: Path, pg: localpg.LocalPostgres) -> None:
        self.workdir = workdir
        self.port = localpg.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        env["BENCH_DB_DSN"] = pg.dsn("bench")
        self.log = (workdir / "service.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lockstep", "run", "--listen", f"127.0.0.1:{self.port}"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                health = httpx.get(self.url + "/healthz", timeout=5).json()
                if health["targets"].get("bench-db", {}).get("last_pass"):
                    break
            except (httpx.TransportError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("lockstep run exited: see " + str(workdir / "service.log"))
            time.sleep(0.1)
        db = workdir / ".lockstep" / "state.db"
        store = Store.open(f"sqlite:///{db}")
        tokens = PersonTokens(store, Journal(store))
        self.tokens = {
            p: tokens.create(p, 86400)[1] for p in ("alice@example.com", "amir@example.com")
        }
        store.close()
        self.db = db

    def client(self, person: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[person]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()


def journal_at(db: Path, kind: str, request: str) -> datetime | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT at FROM journal WHERE kind = ? AND payload LIKE ? ORDER BY seq LIMIT 1",
            (kind, f'%"request":"{request}"%'),
        ).fetchone()
    return None if row is None else datetime.fromisoformat(row[0]).replace(tzinfo=UTC)


def wait_for(db: Path, kind: str, request: str, timeout_s: float = 120.0) -> datetime:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        at = journal_at(db, kind, request)
        if at is not None:
            return at
        time.sleep(POLL_S)
    raise TimeoutError(f"no {kind} for {request} within {timeout_s}s")


def enforce(service: Running, grants: int, window_s: int) -> None:
    alice, amir = service.client("alice@example.com"), service.client("amir@example.com")
    enforced: list[float] = []
    ids: list[tuple[str, datetime]] = []
    for i in range(grants):
        body = {
            "identity": "payments-api",
            "target": "bench-db",
            "entitlements": [f"SELECT on table public.t{i}"],
            "for": f"{window_s}s",
            "reason": "bench",
        }
        filed = alice.post("/v1/requests", json=body).json()
        approved = amir.post(f"/v1/requests/{filed['id']}/approve", json={}).json()
        assert approved["status"] == "approved", approved
        last = wait_for(service.db, "request_approved", filed["id"])
        active = wait_for(service.db, "grant_active", filed["id"])
        enforced.append((active - last).total_seconds())
        ids.append((filed["id"], datetime.fromisoformat(approved["ends_at"])))
    ended = [
        (wait_for(service.db, "grant_ended", request) - ends_at).total_seconds()
        for request, ends_at in ids
    ]
    print(f"grants on PostgreSQL through a real service (target interval {INTERVAL_S:.0f}s)")
    for label, values in (
        ("last approval -> privilege present, verified", enforced),
        ("window end -> removal verified", ended),
    ):
        ratio = percentile(values, 0.99) / INTERVAL_S
        line(label, values, "s", f"interval {INTERVAL_S:.0f} s (p99/interval {ratio:.3f})")
    print("  goal: p99 <= 1 s for both")


def api_rate(service: Running, total: int, clients: int) -> None:
    body = {
        "identity": "payments-api",
        "target": "bench-db",
        "entitlements": ["SELECT on table public.t0"],
        "for": "1h",
        "reason": "bench",
    }

    payload = json.dumps(body).encode()
    headers = {
        "Authorization": f"Bearer {service.tokens['alice@example.com']}",
        "Content-Type": "application/json",
    }

    def rate(method: str, path: str, data: bytes | None, expect: int) -> float:
        each = total // clients
        bad: list[int] = []

        def work() -> None:
            # The standard library's client, kept alive: a light client leaves the cores
            # to the service being measured.
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
            for _ in range(each):
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != expect:
                    bad.append(response.status)
            conn.close()

        threads = [threading.Thread(target=work) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert not bad, f"unexpected statuses {set(bad)}"
        return each * clients / elapsed

    health = rate("GET", "/healthz", None, 200)
    filed = rate("POST", "/v1/requests", payload, 201)
    print(f"requests filed through the API ({clients} clients, {total} requests)")
    print(
        f"  POST /v1/requests {filed:,.0f} per s   GET /healthz {health:,.0f} per s "
        f"(x{filed / health:.2f})   goal: >= 500 per s"
    )


# ---------------------------------------------------------------- sod, in process


def sod(identities: int, grants: int, rules_n: int, checks: int, workdir: Path) -> None:
    rng = random.Random(7)
    pool = [f"role:r{i}" for i in range(60)]
    targets = {
        t: Target(t, "postgres", None, frozenset(), False, NO_SETTINGS) for t in ("db", "cloud")
    }
    rules = tuple(
        SodRule(
            f"rule-{i}",
            ((rng.choice(list(targets)), a), (rng.choice(list(targets)), b)),
            30 * 86400,
        )
        for i in range(rules_n)
        for a, b in [rng.sample(pool, 2)]
    )
    people = ("alice@example.com", "amir@example.com")
    built = {}
    for i in range(identities):
        name = f"id-{i}"
        access = tuple(
            Access(t, f"acct_{i}", frozenset(rng.sample(pool, 3)), None) for t in targets
        )
        built[name] = Identity(name, "team", "bench", None, access)
    policy = Policy(
        targets,
        {"team": Owner("team", people, OwnerStatus.ACTIVE)},
        built,
        Rules(sod=rules),
    )
    loaded = LoadedPolicy(policy, (), workdir, {})
    store = Store.open(f"sqlite:///{workdir}/sod.db")
    now = datetime.now(UTC)
    rows = []
    for g in range(grants):
        holder = f"id-{rng.randrange(identities)}"
        target = rng.choice(list(targets))
        rows.append(
            {
                "id": f"R-{g:012x}", "identity": holder, "target": target, "account": "a",
                "entitlements": json.dumps([rng.choice(pool)]), "requester": people[0],
                "reason": "bench", "status": "active", "environment": None, "duration_s": 3600,
                "rules": json.dumps({"stages": [], "admins": [], "sponsor": None}),
                "created_at": now, "pending_until": now, "starts_at": now,
                "ends_at": now + timedelta(hours=1), "detail": "", "updated_at": now,
            }
        )  # fmt: skip
    holdings = [
        {
            "identity": f"id-{rng.randrange(identities)}", "target": rng.choice(list(targets)),
            "entitlement": rng.choice(pool), "account": "a", "first_seen": now,
            "last_seen": now, "held": rng.choice((0, 1)),
        }
        for _ in range(grants)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(insert(access_requests), rows)
        conn.execute(insert(sod_holdings).prefix_with("OR IGNORE"), holdings)
    requests = Requests(loaded, store, Journal(store))
    who = Principal(people[0], "bench")
    sample = [(f"id-{rng.randrange(identities)}", rng.choice(rules)) for _ in range(checks)]
    timed_check, timed_file, timed_reads = [], [], []
    with store.reading() as conn:
        for name, rule in sample:
            target, ent = rule.entitlements[0]
            identity = built[name]
            started = time.perf_counter()
            requests.separation.check(conn, identity, target, [ent], now, now + timedelta(hours=1))
            timed_check.append(time.perf_counter() - started)
            started = time.perf_counter()
            conn.execute(
                select(access_requests.c.id, access_requests.c.entitlements).where(
                    access_requests.c.identity == name
                )
            ).all()
            conn.execute(select(sod_holdings).where(sod_holdings.c.identity == name)).all()
            timed_reads.append(time.perf_counter() - started)
    refused: dict[str, int] = {}
    for name, rule in sample[:500]:
        target, ent = rule.entitlements[0]
        ask = Ask(name, target, (ent,), 3600, "bench")
        started = time.perf_counter()
        try:
            requests.file(who, ask, dry_run=True)
        except GovernanceError as exc:
            why = str(exc).split(":")[1].strip().split(" ")[0] if ":" in str(exc) else str(exc)
            refused[why] = refused.get(why, 0) + 1
        timed_file.append(time.perf_counter() - started)
    store.close()
    base = statistics.median(timed_reads)
    print(
        f"sod at request time: {identities:,} identities, {grants:,} active grants, {rules_n} rules"
    )
    ratio = statistics.median(timed_check) / base
    line("sod check", [t * 1000 for t in timed_check], "ms",
         f"its reads alone p50 {base * 1000:.4f} ms (x{ratio:.1f})")  # fmt: skip
    line("whole filing, dry run (incl. the check)", [t * 1000 for t in timed_file], "ms",
         f"refused: {sum(refused.values())} of {len(timed_file)} ({refused})")  # fmt: skip
    print("  goal: sod check p99 <= 10 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="*", default=["enforce", "api", "sod"])
    parser.add_argument("--grants", type=int, default=100)
    parser.add_argument("--window", type=int, default=5, help="each grant's seconds")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--active-grants", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-governance-"))
    if {"enforce", "api"} & set(args.steps):
        with localpg.start() as pg:
            with psycopg.connect(pg.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench")
            with psycopg.connect(pg.dsn("bench"), autocommit=True) as conn:
                for i in range(args.grants):
                    conn.execute(f"CREATE TABLE public.t{i} (id int)")
            (workdir / "lockstep.yaml").write_text(POLICY)
            service = Running(workdir, pg)
            try:
                if "enforce" in args.steps:
                    enforce(service, args.grants, args.window)
                if "api" in args.steps:
                    api_rate(service, args.requests, args.clients)
            finally:
                service.stop()
    if "sod" in args.steps:
        sod(args.identities, args.active_grants, args.rules, 2000, workdir)
    print(f"(workdir {workdir})")


if __name__ == "__main__":
    main()
