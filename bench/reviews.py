"""Access reviews: what they add to a pass at 100k identities / 1M entitlements, and how
soon a `revoke` decision is proven in a real PostgreSQL.

1. ``pass``: `scale.py`'s size M (100k identities, ~1M entitlements, 4 targets, its drift),
   observed by a stand-in observer, over a SQLite state store, through the real
   ``engine.reconcile.observe`` (plan, findings ledger, reviews). The reviews' part of each
   pass (loading what reviews remember, overdue, their findings, the triggers, writing) is
   timed inside the same pass; the baseline is the rest of that pass, so the ratio is what
   reviews add to a pass without them. Passes: the first (every access seen for the first
   time: 100k rows written), steady ones (nothing due), and one where 1% of the access
   comes due at once (1,000 reviews opened).
2. ``revoke``: a private PostgreSQL, 100 identities, a real `lockstep run` (30 s interval);
   each trial posts `revoke` for one open review to the API and polls the review until it
   reads `revoked` (the account suspended, its password proven refused, sessions ended).
   The baseline is the service's interval: the decision must not wait for it.

    .venv/bin/python bench/reviews.py               # both
    .venv/bin/python bench/reviews.py pass          # one of them
    .venv/bin/python bench/reviews.py revoke --trials 50
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).parent))
from scale import NOW, SIZES, chunks, merged

from lockstep.credentials.vault import Vault, load_key
from lockstep.demo import localpg
from lockstep.engine import review_pass
from lockstep.engine.reconcile import observe
from lockstep.engine.workspace import Workspace
from lockstep.governance.subject_cache import move_versions
from lockstep.journal import Journal
from lockstep.model import DEFAULT_ENVIRONMENT, Observation
from lockstep.policy.load import LoadedPolicy
from lockstep.store import Store
from lockstep.store.findings import FindingLedger
from lockstep.store.tables import review_subjects, review_versions

PERIOD = timedelta(days=90)


class Observed:
    """Stands in for ``engine.observe.Observer``: the estate as read, no sessions."""

    def __init__(self, observed: dict[str, Observation]) -> None:
        self._observed = observed
        self.sessions: dict[str, Any] = {}
        self.connectors: dict[str, Any] = {}

    def observe(self) -> dict[str, Observation]:
        return self._observed


class Stopwatch:
    """Seconds spent in the reviews' steps of a pass (``Reviewing``'s methods)."""

    STEPS = ("begin", "overdue", "with_findings", "open", "settle")

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def installed(self) -> Iterator[None]:
        cls = review_pass.Reviewing
        saved = {name: cls.__dict__[name] for name in self.STEPS}
        for name, original in saved.items():
            setattr(cls, name, self._timed(original))
        try:
            yield
        finally:
            for name, original in saved.items():
                setattr(cls, name, original)

    def _timed(self, original: Any) -> Any:
        inner = original.__func__ if isinstance(original, classmethod) else original

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return classmethod(timed) if isinstance(original, classmethod) else timed


def bench_pass() -> None:
    estate = merged(chunks(SIZES["M"], 42))
    rules = replace(
        estate.policy.rules, review_every_s={DEFAULT_ENVIRONMENT: int(PERIOD.total_seconds())}
    )
    policy = replace(estate.policy, rules=rules)
    entitlements = sum(len(a.entitlements) for i in policy.identities.values() for a in i.access)
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-reviews-"))
    store = Store.open(f"sqlite:///{workdir}/state.db")
    now = [NOW]
    journal = Journal(store, lambda: now[0])
    ws = Workspace(
        LoadedPolicy(policy, (), workdir, {}),
        store,
        journal,
        Vault(store, load_key(workdir / ".lockstep")),
        FindingLedger(store),
        lambda: now[0],
    )
    observer = Observed(dict(estate.observed))
    watch = Stopwatch()
    print(
        f"review pass cost: {len(policy.identities):,} identities, {entitlements:,} "
        f"entitlements, {len(policy.targets)} targets (SQLite state)"
    )
    print(f"{'pass':<34}{'pass s':>9}{'reviews s':>11}{'baseline s':>12}{'ratio':>8}{'opened':>8}")

    def one(label: str, at: timedelta) -> float:
        now[0] = NOW + at
        watch.seconds = 0.0
        start = time.perf_counter()
        with watch.installed():
            seen = observe(ws, observer, ws.desired(now[0]))  # type: ignore[arg-type]
            assert seen.reviewing is not None
            seen.reviewing.settle(seen.observed, [], now[0])
        total = time.perf_counter() - start
        base = total - watch.seconds
        opened = len(seen.reviewing.opened)
        print(
            f"{label:<34}{total:>9.2f}{watch.seconds:>11.3f}{base:>12.2f}"
            f"{watch.seconds / base:>8.3f}{opened:>8,}"
        )
        return watch.seconds

    one("first (every access new)", timedelta(0))
    steady = [one(f"steady {k}", timedelta(minutes=k)) for k in (1, 2, 3)]
    due = sorted(policy.identities)[::100]
    with store.writing(review_subjects, review_versions) as conn:
        conn.execute(
            update(review_subjects)
            .where(review_subjects.c.identity.in_(due))
            .values(began_at=NOW - PERIOD)
        )
        move_versions(conn, policy.targets)  # as every writer of review_subjects does
    one("1% of the access comes due", timedelta(minutes=4))
    print(f"goal: <= 0.5 s added to a pass; steady median {statistics.median(steady):.3f} s")
    store.close()


# ---------------------------------------------------------------- revoke -> verified

POLICY_HEAD = """\
version: 1
targets:
  bench-db:
    type: postgres
    dsn: ${BENCH_DB_DSN}
owners:
  team:
    contacts: [bench@example.com]
rules:
  review_every: {default: 1s}
identities:
"""
IDENTITY = """\
  bench-{n:03d}:
    owner: team
    purpose: benchmark
    access:
      - target: bench-db
        account: bench_{n:03d}
        entitlements: [SELECT on table public.items]
"""
OPERATOR = "bench-operator-token"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def wait(check: Callable[[], Any], what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.005)
    raise TimeoutError(what)


def bench_revoke(trials: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-revoke-"))
    with localpg.start() as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        with psycopg.connect(pg.dsn("bench"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE public.items (id int PRIMARY KEY)"))
        text = POLICY_HEAD + "".join(IDENTITY.format(n=n) for n in range(trials))
        (workdir / "lockstep.yaml").write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        env.update(BENCH_DB_DSN=pg.dsn("bench"), LOCKSTEP_API_TOKEN=OPERATOR)
        made = subprocess.run(
            [sys.executable, "-m", "lockstep", "token", "create", "bench@example.com",
             "--ttl", "1h"],
            cwd=workdir, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = made.stdout.strip()
        port = localpg.free_port()
        log = (workdir / "service.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lockstep", "run", "--listen", f"127.0.0.1:{port}"],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        person = {"Authorization": f"Bearer {token}"}
        try:
            wait(lambda: _answers(http), "the service to answer")
            operator = {"Authorization": f"Bearer {OPERATOR}"}
            http.post("/v1/reconcile?wait=true", headers=operator)  # the accounts, and their
            time.sleep(1.5)  # reviews' clocks start; a second later every review is due
            http.post("/v1/reconcile?wait=true", headers=operator)
            reviews = wait(
                lambda: [r for r in _reviews(http, person) if r["status"] == "open"],
                "the reviews to open",
            )
            times = []
            for review in reviews[:trials]:
                path = f"/v1/reviews/{review['id']}"
                start = time.monotonic()
                answer = http.post(f"{path}/revoke", json={"reason": "bench"}, headers=person)
                answer.raise_for_status()
                revoked = functools.partial(_revoked, http, path, person)
                wait(revoked, f"{path} to read revoked")
                times.append(time.monotonic() - start)
        finally:
            http.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            log.close()
    interval = 30.0
    p50, p99 = statistics.median(times), percentile(times, 0.99)
    print(f"\nrevoke decision -> removal verified in PostgreSQL ({len(times)} trials)")
    print(f"{'n':>5}{'p50 s':>9}{'p99 s':>9}{'max s':>9}{'interval s':>12}{'p99/interval':>14}")
    print(f"{len(times):>5}{p50:>9.3f}{p99:>9.3f}{max(times):>9.3f}{interval:>12.1f}"
          f"{p99 / interval:>14.3f}")  # fmt: skip
    print(f"goal: p99 <= 1 s   (workdir {workdir})")


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _revoked(http: httpx.Client, path: str, headers: dict[str, str]) -> bool:
    return bool(http.get(path, headers=headers).json()["status"] == "revoked")


def _reviews(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = http.get("/v1/reviews", headers=headers).json()["reviews"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="*", choices=("pass", "revoke"), default=[])
    parser.add_argument("--trials", type=int, default=100, help="revoke trials")
    args = parser.parse_args()
    steps = args.steps or ["pass", "revoke"]
    if "pass" in steps:
        bench_pass()
    if "revoke" in steps:
        bench_revoke(args.trials)


if __name__ == "__main__":
    main()
