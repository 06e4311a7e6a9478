"""Several `lockstep run` processes sharing one PostgreSQL state store share the targets: each
target is reconciled by one of them at a time, and a killed one's targets move to another."""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lockstep.demo import localpg
from support.policies import Access, Identity, Owner, Policy, Target, Var
from support.service_harness import Service, eventually

TARGETS = ("t0", "t1", "t2", "t3")


def policy() -> Policy:
    """One identity per target; each target leaves the other targets' accounts alone."""
    return Policy(
        targets={
            t: Target.postgres(
                Var(f"{t.upper()}_DSN"), exclude=[f"{o}_api" for o in TARGETS if o != t]
            )
            for t in TARGETS
        },
        owners={"team": Owner(["a@example.com"])},
        identities={
            f"{t}-api": Identity(
                owner="team",
                purpose="test",
                access=[Access(t, f"{t}_api", [f"CONNECT on database {t}"])],
            )
            for t in TARGETS
        },
    )


class Cluster:
    """Services started in one directory on one PostgreSQL state store."""

    def __init__(self, workdir: Path, pg: localpg.LocalPostgres) -> None:
        self.workdir = workdir
        self.pg = pg
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        self.env["LOCKSTEP_STATE"] = pg.dsn("lockstep_state")
        self.env.update({f"{t.upper()}_DSN": pg.dsn(t) for t in TARGETS})
        policy().write(workdir)
        self.services: list[Service] = []

    def start(self, *args: str) -> Service:
        service = Service(self.workdir, self.env, *args, name=f"svc{len(self.services)}")
        self.services.append(service)
        return service.wait_ready()

    def results(self, **fields: object) -> list[dict[str, Any]]:
        with psycopg.connect(self.pg.dsn("lockstep_state")) as conn:
            rows = conn.execute(
                "SELECT payload FROM journal WHERE kind = 'result' ORDER BY seq"
            ).fetchall()
        payloads = [json.loads(p) for (p,) in rows]
        return [p for p in payloads if all(p.get(k) == v for k, v in fields.items())]


@pytest.fixture
def cluster(pg: localpg.LocalPostgres, tmp_path: Path):
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE lockstep_state")
        for target in TARGETS:
            conn.execute(f"CREATE DATABASE {target}")
    cluster = Cluster(tmp_path, pg)
    yield cluster
    for service in cluster.services:
        if service.proc.poll() is None:
            service.kill()


def held(service: Service) -> set[str]:
    return set(service.health()["targets"])


def shared(a: Service, b: Service) -> bool:
    mine, theirs = held(a), held(b)
    return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == set(TARGETS)


def test_services_share_the_targets_and_take_over_those_of_a_killed_one(cluster: Cluster):
    first = cluster.start("--interval", "1s")
    second = cluster.start("--interval", "1s")
    eventually(lambda: shared(first, second), "the targets to be shared between the services")
    orphaned = held(second)

    second.kill()  # SIGKILL: no chance to hand anything over
    eventually(lambda: held(first) == set(TARGETS), "the survivor to hold every target")
    victim = sorted(orphaned)[0]
    with psycopg.connect(cluster.pg.dsn(victim), autocommit=True) as conn:
        conn.execute(f"GRANT CREATE ON DATABASE {victim} TO {victim}_api")
    eventually(
        lambda: cluster.results(
            op="revoke",
            target=victim,
            entitlement=f"CREATE on database {victim}",
            status="verified",
        ),
        "the survivor to repair drift on a target the killed service held",
    )
    assert first.events("lease acquired", target=victim)


def test_no_target_is_reconciled_by_two_services_at_once(cluster: Cluster):
    first = cluster.start("--interval", "500ms")
    eventually(lambda: held(first) == set(TARGETS), "the first service to hold every target")
    second = cluster.start("--interval", "500ms")  # the first hands half of them over
    eventually(lambda: shared(first, second), "the targets to be shared between the services")
    eventually(
        lambda: all(len(s.events("pass", target=t)) >= 3 for s in (first, second) for t in held(s)),
        "a few passes on every target after the hand-over",
    )
    assert first.stop() == 0 and second.stop() == 0

    passes: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for service in (first, second):
        for event in service.events("pass"):
            if event["status"] != "skipped":
                passes[event["target"]].append(
                    (
                        datetime.fromisoformat(event["started_at"]),
                        datetime.fromisoformat(event["finished_at"]),
                        event["instance"],
                    )
                )
    handed_over = [t for t, ps in passes.items() if len({i for _, _, i in ps}) == 2]
    assert handed_over, "no target changed hands: the test proved nothing"
    for target, spans in passes.items():
        spans.sort()
        for (_, end, holder), (start, _, next_holder) in itertools.pairwise(spans):
            assert holder == next_holder or end <= start, (
                f"{target}: {next_holder} started at {start} before {holder} finished at {end}"
            )
