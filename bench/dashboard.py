"""The dashboard at scale: server time per page at 100k identities / 1M entitlements, and each
page's first load in Chromium on loopback.

The estate is bench/scale.py's size M (100k identities, ~1M entitlements, 4 targets, its
drift), fed to the dashboard as the service's passes feed it; its state is a SQLite store with
the findings of one plan (73k held), current credentials, observed use, a journal of
``--entries`` entries (bench/evidence.py's), ``--requests-held`` access requests (half
pending, half active grants) and ``--reviews-held`` periodic reviews (three in four
unanswered). Pages are asked for through the dashboard's
real app (Starlette's test client: no network, the whole ASGI stack, sign-in cookie and all),
``--requests`` times each after one warm-up; the baseline, measured in the same run, is a
static file served through the same stack (what any request costs before a page does
anything). First loads: uvicorn on 127.0.0.1 and headless Chromium, a fresh browser context
per page (nothing cached), navigation start to the load event.

    /tmp/venv/bin/python bench/dashboard.py                  # about 3 minutes on 2 cores
    /tmp/venv/bin/python bench/dashboard.py --entries 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import quantiles

sys.path.insert(0, str(Path(__file__).parent))

from evidence import journal_rows
from scale import NOW, SIZES, chunks, merged

from lockstep.engine.desired import desired_state
from lockstep.engine.plan import make_plan
from lockstep.engine.reconcile import Pass
from lockstep.model import Location
from lockstep.policy.load import LoadedPolicy
from lockstep.store import Store
from lockstep.store.findings import FindingLedger

SEED = 20260601
TOKEN = "bench-operator-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"


def request_rows(e, count: int) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    """Access requests as governance stores them: half pending, half active grants."""
    rules = json.dumps({"stages": [{"approvers": ["owner"], "people": ["a@example.com"],
                        "required": 1}], "admins": [], "sponsor": None})  # fmt: skip
    names = list(e.policy.identities)
    stamp = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    rows: list[tuple[object, ...]] = []
    for i in range(count):
        identity = e.policy.identities[names[(i * 7919) % len(names)]]
        access = identity.access[0]
        active = i % 2 == 1
        rows.append((
            f"R-{i:012x}", identity.name, access.target, access.account,
            json.dumps([f"SELECT on table app.t{i % 450}"]), "a@example.com", "bench",
            "active" if active else "pending", None, 8 * 3600, rules, stamp, stamp,
            stamp if active else None, "b@example.com" if active else None,
            stamp if active else None, stamp if active else None,
            stamp if active else None, None, "", stamp,
        ))  # fmt: skip
    return rows


def review_rows(e, count: int) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    """Periodic reviews as the service opens them, to the owner's contacts: three in four
    unanswered (open or overdue), the rest kept."""
    names = list(e.policy.identities)
    stamp = NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
    rows: list[tuple[object, ...]] = []
    for i in range(count):
        identity = e.policy.identities[names[(i * 104_729) % len(names)]]
        access = identity.access[0]
        contacts = json.dumps(list(e.policy.owners[identity.owner].contacts))
        status = ("open", "overdue", "open", "kept")[i % 4]
        kept = status == "kept"
        rows.append((
            f"V-{i:012x}", identity.name, access.target, access.account, None, "periodic",
            str(i), contacts, json.dumps({"began_at": stamp}), stamp, stamp, status,
            "keep" if kept else None, "b@example.com" if kept else None,
            stamp if kept else None, "still needed" if kept else None, stamp,
        ))  # fmt: skip
    return rows


def build_state(path: Path, entries: int, requests: int, reviews: int):  # type: ignore[no-untyped-def]
    e = merged(chunks(SIZES["M"], SEED))
    store = Store.open(f"sqlite:///{path}")
    desired = desired_state(e.policy, NOW)
    plan = make_plan(e.policy, desired, e.observed, NOW, e.issued, e.last_used)
    FindingLedger(store).reconcile(plan.findings, list(e.observed), NOW)
    store.close()
    conn = sqlite3.connect(path)
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    with conn:
        conn.executemany(
            "INSERT INTO journal (seq, at, kind, payload, prev_hash, hash) VALUES (?,?,?,?,?,?)",
            journal_rows(e, entries),
        )
        conn.execute("UPDATE journal_head SET seq = ?, hash = (SELECT hash FROM journal "
                     "WHERE seq = ?)", (entries, entries))  # fmt: skip
        conn.executemany(
            "INSERT INTO credentials (target, account, identity, username, ciphertext,"
            " fingerprint, issued_at, status, created_at) VALUES (?,?,?,?,'x','f',?,'current',?)",
            [(t, a, a, a, at.strftime(stamp), at.strftime(stamp))
             for (t, a), at in e.issued.items()],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO usage (target, account, entitlement, last_seen, source)"
            " VALUES (?,?,'',?,'pg_stat_activity')",
            [(t, a, at.strftime(stamp)) for (t, a), at in e.last_used.items()],
        )
        conn.executemany(
            "INSERT INTO access_requests (id, identity, target, account, entitlements,"
            " requester, reason, status, environment, duration_s, rules, created_at,"
            " pending_until, decided_at, decided_by, starts_at, ends_at, verified_at, ended_at,"
            " detail, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            request_rows(e, requests),
        )
        conn.executemany(
            "INSERT INTO reviews (id, identity, target, account, entitlement, trigger,"
            " occurrence, reviewers, evidence, opened_at, due_at, status, decision, decided_by,"
            " decided_at, reason, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            review_rows(e, reviews),
        )
    conn.close()
    return e, desired, plan


def dashboard_app(path: Path, e, desired, plan):  # type: ignore[no-untyped-def]
    from cryptography.fernet import Fernet
    from fastapi import FastAPI

    from lockstep.credentials.vault import Vault
    from lockstep.dashboard.app import Dashboard, mount
    from lockstep.dashboard.estate import Estate
    from lockstep.dashboard.sessions import Sessions, session_key
    from lockstep.secret import Secret
    from lockstep.service.governance_api import Governance
    from lockstep.service.logs import get_logger
    from lockstep.service.principals import Authenticators
    from lockstep.service.reviews_api import ReviewDesk

    store = Store.open(f"sqlite:///{path}")
    key = Fernet.generate_key()
    locations = {("identities", n): Location("bench-policy.yaml", i + 1)
                 for i, n in enumerate(e.policy.identities)}  # fmt: skip
    loaded = LoadedPolicy(e.policy, (), path.parent, locations)
    estate = Estate(store, Vault(store, key), lambda: (loaded, 1), lambda t: True, get_logger())
    estate.seen(Pass(desired, dict(e.observed), plan, []), NOW)
    start, cpu = time.perf_counter(), time.process_time()
    picture = estate.rebuild(NOW)
    built = (time.perf_counter() - start, time.process_time() - cpu)
    auth = Authenticators(lambda: loaded.policy, Secret(TOKEN), store)
    app = FastAPI()
    governance = Governance(store, lambda target: None, get_logger())
    governance.serve(app.state)
    governance.load(loaded)
    desk = ReviewDesk(store, lambda target: None, get_logger())
    desk.serve(app.state)
    desk.load(loaded)
    sessions = Sessions(session_key(key), secure=False, store=store)
    mount(app, Dashboard(estate, auth, sessions, get_logger()))
    return app, picture, built


def pages(picture) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    identity = next(r["identity"] for r in picture.rows if r["status"] == "managed")
    return [
        ("overview", "/"),
        ("inventory", "/inventory"),
        ("inventory, page 500", "/inventory?page=500"),
        ("inventory, search", "/inventory?q=svc_00123"),
        ("inventory, filtered", "/inventory?status=orphan&target=pg_1"),
        ("identity", f"/identities/{identity}"),
        ("findings", "/findings"),
        ("findings, filtered", "/findings?severity=high&type=excess_entitlement&page=20"),
        ("requests, pending", "/requests"),
        ("requests, all", "/requests?status=all"),
        ("grants", "/grants"),
        ("reviews, assigned to me", "/reviews"),
        ("reviews, all", "/reviews?show=all"),
        ("leases", "/leases"),
        ("reports", "/reports"),
    ]


PERSON = "team_0@example.com"  # an owner's contact: sees that owner's identities
PERSON_PAGES = [
    ("overview, as a person", "/"),
    ("inventory, as a person", "/inventory"),
    ("findings, as a person", "/findings"),
    ("requests, as a person", "/requests?status=all"),
    ("reviews, as a person", "/reviews"),
]


def signed_in(app, token: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="http://127.0.0.1")
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text).group(1)  # type: ignore[union-attr]
    assert client.post("/signin", data={"token": token, "csrf": csrf},
                       follow_redirects=False).status_code == 303  # fmt: skip
    return client


def timed(client, name: str, path: str, requests: int) -> tuple[str, float, float]:  # type: ignore[no-untyped-def]
    assert client.get(path).status_code == 200, path
    took = []
    for _ in range(requests):
        start = time.perf_counter()
        client.get(path)
        took.append(time.perf_counter() - start)
    return name, sorted(took)[len(took) // 2], quantiles(took, n=20)[18]


def server_times(app, picture, requests: int) -> list[tuple[str, float, float]]:  # type: ignore[no-untyped-def]
    from lockstep.governance.tokens import PersonTokens
    from lockstep.journal import Journal

    client = signed_in(app, TOKEN)
    css = re.search(r'href="(/static/[^"]+\.css)"', client.get("/").text).group(1)  # type: ignore[union-attr]
    out = [timed(client, name, path, requests)
           for name, path in [("baseline: a static file", css), *pages(picture)]]  # fmt: skip
    store = app.state.dashboard.estate.store
    person = signed_in(app, PersonTokens(store, Journal(store)).create(PERSON, 3600)[1])
    out += [timed(person, name, path, requests) for name, path in PERSON_PAGES]
    return out


def first_loads(app, picture) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    import uvicorn
    from playwright.sync_api import sync_playwright

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        signer = browser.new_context(base_url=base)
        page = signer.new_page()
        page.goto("/signin")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        cookies = signer.cookies()
        signer.close()
        for name, path in pages(picture):
            context = browser.new_context(base_url=base)
            context.add_cookies(cookies)  # type: ignore[arg-type]
            page = context.new_page()
            page.goto(path, wait_until="load")
            took = page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " return n.loadEventEnd - n.startTime; }"
            )
            out.append((name, float(took) / 1000))
            context.close()
        browser.close()
    server.should_exit = True
    thread.join(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000, help="journal entries")
    parser.add_argument("--requests", type=int, default=40, help="requests per page")
    parser.add_argument("--requests-held", type=int, default=2000, help="access requests")
    parser.add_argument("--reviews-held", type=int, default=20_000, help="access reviews")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-dashboard-") as tmp:
        path = Path(tmp) / "state.db"
        start = time.perf_counter()
        e, desired, plan = build_state(path, args.entries, args.requests_held, args.reviews_held)
        held = sum(len(a.entitlements) for s in e.observed.values() for a in s.accounts.values())
        print(f"state built in {time.perf_counter() - start:.0f} s: "
              f"{len(e.policy.identities):,} identities, {held:,} entitlements held, "
              f"{args.entries:,} journal entries, "
              f"{args.requests_held:,} access requests, "
              f"{args.reviews_held:,} access reviews")  # fmt: skip
        app, picture, (built_s, built_cpu) = dashboard_app(path, e, desired, plan)
        load = os.getloadavg()
        print(f"picture built (off the request path) in {built_s:.1f} s wall, {built_cpu:.1f} s "
              f"CPU: {len(picture.rows):,} inventory rows; load average {load[0]:.1f} on "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        times = server_times(app, picture, args.requests)
        base = times[0][2]
        print(f"\n{'server time per page':32} {'p50 ms':>8} {'p95 ms':>8} {'p95/base':>9}  goal")
        for name, p50, p95 in times:
            met = "met" if p95 <= 0.2 else "NOT met"
            goal = "" if name.startswith("baseline") else f"p95 <= 200 ms: {met}"
            print(f"{name:32} {p50 * 1000:8.1f} {p95 * 1000:8.1f} {p95 / base:9.1f}  {goal}")
        print(f"\n{'first load in Chromium':32} {'s':>8}  goal")
        for name, took in first_loads(app, picture):
            print(f"{name:32} {took:8.3f}  <= 1 s: {'met' if took <= 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
