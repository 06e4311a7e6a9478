"""The group-commit batcher, with a handler of our own."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from lockstep.leases.batcher import Batcher


class Recorder:
    """A handler that records each batch, can be held at its first call, and fails the
    items it is told to."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


def submit_in_threads(
    batcher: Batcher[int, int], items: list[int], results: dict[int, object]
) -> list[threading.Thread]:
    """Submit each item from its own thread; each outcome lands in ``results``."""

    def one(item: int) -> None:
        try:
            results[item] = batcher.submit(item)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            results[item] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    return threads


def wait_queued(batcher: Batcher[int, int], count: int) -> None:
    deadline = time.monotonic() + 10
    while batcher._queue.qsize() < count:
        assert time.monotonic() < deadline, "the items were never queued"
        time.sleep(0.001)


def wait_submitted(batcher: Batcher[int, int], handler: Recorder, count: int) -> None:
    """Wait until ``count`` items are queued or in the handler, so none is still on its
    way into ``submit`` when the test goes on."""
    deadline = time.monotonic() + 10
    while batcher._queue.qsize() + sum(len(b) for b in handler.batches) < count:
        assert time.monotonic() < deadline, "the items were never submitted"
        time.sleep(0.001)


def while_busy(max_batch: int, first: int, rest: list[int]) -> tuple[Recorder, dict[int, object]]:
    """Submit ``first`` and hold the one worker in it while ``rest`` is submitted; then let
    it go on. The handler's record of batches, and each item's outcome."""
    handler = Recorder(hold_first=True)
    batcher = Batcher(handler, workers=1, max_batch=max_batch, name="test")
    results: dict[int, object] = {}
    try:
        threads = submit_in_threads(batcher, [first], results)
        assert handler.entered.wait(10)
        threads += submit_in_threads(batcher, rest, results)
        wait_queued(batcher, len(rest))
        handler.release.set()
        for t in threads:
            t.join()
    finally:
        batcher.close()
    return handler, results


def test_a_lone_request_is_handled_at_once_in_a_batch_of_one() -> None:
    handler = Recorder()
    batcher = Batcher(handler, workers=1, max_batch=8, name="test")
    try:
        assert batcher.submit(3) == 30
    finally:
        batcher.close()
    assert handler.batches == [[3]]


def test_enqueue_answers_with_a_future_instead_of_waiting() -> None:
    batcher = Batcher(Recorder(), workers=1, max_batch=8, name="test")
    try:
        assert batcher.enqueue(4).result(10) == 40
        with pytest.raises(ValueError, match="bad -1"):
            batcher.enqueue(-1).result(10)
    finally:
        batcher.close()


def test_what_arrives_while_the_worker_is_busy_forms_the_next_batch() -> None:
    handler, results = while_busy(8, 1, [2, 3, 4, 5])
    assert handler.batches[0] == [1]
    assert sorted(handler.batches[1]) == [2, 3, 4, 5]
    assert results == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}


def test_batches_never_exceed_their_maximum() -> None:
    handler, _ = while_busy(3, 0, list(range(1, 8)))
    assert [len(b) for b in handler.batches] == [1, 3, 3, 1]


def test_an_items_exception_reaches_its_own_caller_only() -> None:
    _, results = while_busy(8, 1, [2, -3])
    assert results[2] == 20
    assert isinstance(results[-3], ValueError) and str(results[-3]) == "bad -3"


def test_a_handler_that_raises_fails_every_item_of_its_batch_and_the_worker_goes_on() -> None:
    calls = []

    def handler(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("the store is gone")
        return list(items)

    batcher = Batcher(handler, workers=1, max_batch=8, name="test")
    try:
        with pytest.raises(RuntimeError, match="the store is gone"):
            batcher.submit(1)
        assert batcher.submit(2) == 2
    finally:
        batcher.close()


def test_a_handler_returning_the_wrong_number_of_results_fails_the_batch() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: [], workers=1, max_batch=8, name="t")
    try:
        with pytest.raises(RuntimeError, match="0 results for 1"):
            batcher.submit(1)
    finally:
        batcher.close()


def test_close_finishes_what_was_submitted_then_refuses_more() -> None:
    handler = Recorder(hold_first=True)
    batcher = Batcher(handler, workers=2, max_batch=8, name="test")
    results: dict[int, object] = {}
    threads = submit_in_threads(batcher, [1, 2, 3], results)
    assert handler.entered.wait(10)
    wait_submitted(batcher, handler, 3)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    handler.release.set()
    closer.join(10)
    for t in threads:
        t.join()
    assert results == {1: 10, 2: 20, 3: 30}
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(4)


def test_idle_workers_stop_and_the_next_item_starts_them_again() -> None:
    batcher = Batcher(Recorder(), workers=2, max_batch=8, name="test", idle_s=0.05)
    try:
        assert batcher.submit(1) == 10
        deadline = time.monotonic() + 10
        while batcher._threads:
            assert time.monotonic() < deadline, "idle workers never stopped"
            time.sleep(0.01)
        assert batcher.submit(2) == 20  # answered: workers started again
    finally:
        batcher.close()
    assert batcher._threads == []


def test_a_batcher_needs_a_worker_and_room_for_an_item() -> None:
    with pytest.raises(ValueError):
        Batcher(Recorder(), workers=0, max_batch=1, name="test")
    with pytest.raises(ValueError):
        Batcher(Recorder(), workers=1, max_batch=0, name="test")
