"""Running `lockstep run` as a real process, for the service tests (this module holds none):
start it on a free port, read its health, metrics, API and JSON logs, and wait for what it
does with bounded polling."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lockstep.demo import localpg

T = TypeVar("T")
WAIT_S = 90.0  # generous: the machine is shared, and no test asserts a duration


def eventually(check: Callable[[], T], what: str, timeout_s: float = WAIT_S) -> T:
    """The first truthy value of ``check()``, polled until ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Service:
    """One `lockstep run` process; its stdout and stderr go to a file (never a pipe that
    nobody reads, which would block it once full)."""

    def __init__(
        self, workdir: Path, env: dict[str, str], *args: str, name: str = "svc", port: int = 0
    ) -> None:
        self.workdir = workdir
        self.port = port or localpg.free_port()
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep",
                "run",
                "--listen",
                f"127.0.0.1:{self.port}",
                *args,
            ],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the service exited with {self.proc.returncode}:\n{self.text()}")
        try:
            return self.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self) -> Service:
        eventually(self.answers, "the service to answer /healthz")
        return self

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/healthz").json()
        return body

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def passes(self, target: str) -> float:
        text = self.get("/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "lockstep_passes_total" and sample.labels["target"] == target
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """Every complete JSON line the service wrote so far."""
        events = []
        for line in self.text().splitlines():
            if line.startswith("{") and line.endswith("}"):
                events.append(json.loads(line))
        return events

    def events(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs()
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            # Still failing, but a service that ignored the signal must not go on reconciling
            # the suite's shared servers under the tests that follow.
            self.kill()
            raise
        self.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        self.close()

    def close(self) -> None:
        self.http.close()
        self._log.close()


def journal(state_db: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Journal payloads, oldest first, read from a SQLite state store."""
    with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as conn:
        query = "SELECT kind, payload FROM journal ORDER BY seq"
        rows = conn.execute(query).fetchall()
    return [{"kind": k, **json.loads(p)} for k, p in rows if kind is None or k == kind]


def row_counts(state_db: Path, *tables: str) -> dict[str, int]:
    with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # noqa: S608
