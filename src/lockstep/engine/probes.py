"""Probing many credentials at once, as many at a time as each target takes.

A probe is a real login: PostgreSQL forks a process for it, LDAP binds, AWS signs a call.
How many run together is therefore each target's to say (``ProbesInParallel``), never the
number of credentials to try: ten thousand suspensions on one server still make at most
that server's slots of logins at a time, while probes of different targets run side by
side. A session without the capability is probed one credential at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from lockstep.connectors.base import Credential, ProbeResult, ProbesInParallel, Session
from lockstep.engine.verify import REAL_TIME, Inconclusive, Timer, probe_until

Answer = ProbeResult | Inconclusive


@dataclass(frozen=True)
class ProbeTask:
    session: Session
    credential: Credential
    want: ProbeResult
    window_s: float  # re-probed with backoff within it while the answer is not ``want``


def slots(session: Session) -> int:
    """How many probes ``session``'s target takes at once."""
    if isinstance(session, ProbesInParallel):
        return max(1, session.probe_slots())
    return 1


def probe_all(
    tasks: Sequence[ProbeTask],
    timer: Timer = REAL_TIME,
    done: Callable[[int], None] = lambda finished: None,
    slots: Callable[[Session], int] = slots,
) -> list[Answer]:
    """Each task's answer, in order: what ``probe_until`` returns, or the Inconclusive it
    raised. ``done`` hears how many have finished, as they finish (for progress); ``slots``
    says how many probes each session takes at once (asked of the session by default)."""
    answers: list[Answer | None] = [None] * len(tasks)
    finished = 0

    def run(index: int) -> None:
        task = tasks[index]
        try:
            answers[index] = probe_until(
                task.session, task.credential, task.want, task.window_s, timer
            )
        except Inconclusive as exc:
            answers[index] = exc

    by_session: dict[int, list[int]] = {}
    for index, task in enumerate(tasks):
        by_session.setdefault(id(task.session), []).append(index)
    pools = []
    try:
        futures: list[Future[None]] = []
        for indices in by_session.values():
            width = min(slots(tasks[indices[0]].session), len(indices))
            if width == 1 and len(by_session) == 1:
                for index in indices:  # one at a time, on this thread: nothing to gain
                    run(index)
                    finished += 1
                    done(finished)
                continue
            pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="lockstep-probe")
            pools.append(pool)
            futures += [pool.submit(run, index) for index in indices]
        pending = set(futures)
        while pending:
            ready, pending = wait(pending, return_when="FIRST_COMPLETED")
            for future in ready:
                future.result()  # a bug in a probe surfaces here, never as an answer
            finished += len(ready)
            done(finished)
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    complete = [answer for answer in answers if answer is not None]
    assert len(complete) == len(tasks), "a probe task ended without an answer"
    return complete
