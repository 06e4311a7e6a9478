"""Group commit: requests from many threads, handled in batches by a few worker threads.

Whatever arrives while the workers are busy forms the next batch, so a lone request waits
for nothing and a burst of requests pays one round trip and one commit per batch instead of
one per request. No request waits for a batch to fill up.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()
IDLE_S = 60.0  # a worker with nothing to do for this long stops


class Batcher(Generic[T, R]):
    """``submit`` blocks until ``handle`` has dealt with its item, in a batch of at most
    ``max_batch`` items, and returns the item's result or raises the item's exception.
    ``handle`` returns one result or exception per item, in order; if it raises, every item
    of its batch gets that exception.

    Workers start with the first item and stop after ``idle_s`` without one, so that a
    batcher nobody uses any more (the service keeps the lease managers of earlier policy
    versions) holds no thread."""

    def __init__(
        self,
        handle: Callable[[Sequence[T]], Sequence[R | Exception]],
        workers: int,
        max_batch: int,
        name: str,
        idle_s: float = IDLE_S,
    ) -> None:
        if workers < 1 or max_batch < 1:
            raise ValueError("a batcher needs at least one worker and one item per batch")
        self._handle = handle
        self._workers = workers
        self._max_batch = max_batch
        self._name = name
        self._idle_s = idle_s
        self._queue: queue.SimpleQueue[tuple[T, Future[R]] | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, item: T) -> R:
        return self.enqueue(item).result()

    def enqueue(self, item: T) -> Future[R]:
        """``submit`` without waiting: the item's result (or exception) comes as a future,
        for callers that wait otherwise (an event loop)."""
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._queue.put((item, future))
            while len(self._threads) < self._workers:
                self._start_one()
        return future

    def close(self) -> None:
        """Finish what was submitted, then stop the workers."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
            for _ in threads:
                self._queue.put(_STOP)
        for thread in threads:
            thread.join()

    def _start_one(self) -> None:
        thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    # Items are put under this lock: an empty queue now stays empty until
                    # this worker is gone from the list, and enqueue starts another.
                    if self._queue.empty():
                        self._threads.remove(threading.current_thread())
                        return
                continue
            if first is _STOP:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)
            self._run(batch)
            if stopping:
                return

    def _run(self, batch: list[tuple[T, Future[R]] | object]) -> None:
        pending: list[tuple[T, Future[R]]] = [entry for entry in batch if isinstance(entry, tuple)]
        try:
            outcomes = self._handle([item for item, _ in pending])
            if len(outcomes) != len(pending):
                raise RuntimeError(f"{self._name}: {len(outcomes)} results for {len(pending)}")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            for _, future in pending:
                future.set_exception(exc)
            return
        for (_, future), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
