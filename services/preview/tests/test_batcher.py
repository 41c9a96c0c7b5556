"""The preview batcher: what queues while the worker is busy runs together, key by key, oldest first."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from services.common.errors import Unavailable
from services.preview.batcher import Batcher

TIMEOUT = 5


class Recorder:
    """A `run` that records its calls and, while `hold` is set, blocks the first call until `release` is set."""

    def __init__(self, *, hold: bool = True) -> None:
        self.calls: list[tuple[str, list[object]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail_on: set[str] = set()

    def __call__(self, key: str, payloads: list[object]) -> list[object]:
        self.calls.append((key, list(payloads)))
        self.started.set()
        assert self.release.wait(TIMEOUT), "the test never released the first batch"
        if key in self.fail_on:
            raise RuntimeError(f"batch {key} failed")
        return [f"{key}:{payload}" for payload in payloads]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_batcher() -> Iterator:
    made: list[Batcher] = []

    def make(run: Recorder, max_batch: int = 8) -> Batcher:
        batcher = Batcher(run, max_batch=max_batch, name="test-batcher")
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close()


def _busy(batcher: Batcher, recorder: Recorder) -> list:
    """Submit one item under key "busy" and wait until the worker is blocked running it."""
    futures = batcher.submit("busy", ["first"])
    assert recorder.started.wait(TIMEOUT)
    return futures


def test_items_queued_while_busy_with_one_key_run_together_in_arrival_order(recorder, make_batcher) -> None:
    batcher = make_batcher(recorder)
    first = _busy(batcher, recorder)
    a = batcher.submit("k", ["a1", "a2"])
    b = batcher.submit("k", ["b1"])
    assert batcher.queue_depth == 3
    recorder.release.set()

    assert [f.result(TIMEOUT) for f in a + b] == ["k:a1", "k:a2", "k:b1"]
    assert first[0].result(TIMEOUT) == "busy:first"
    assert recorder.calls == [("busy", ["first"]), ("k", ["a1", "a2", "b1"])]
    assert batcher.queue_depth == 0


def test_a_batch_is_capped_at_max_batch_and_the_rest_runs_next(recorder, make_batcher) -> None:
    batcher = make_batcher(recorder, max_batch=2)
    _busy(batcher, recorder)
    futures = batcher.submit("k", ["p1", "p2", "p3", "p4", "p5"])
    recorder.release.set()

    assert [f.result(TIMEOUT) for f in futures] == ["k:p1", "k:p2", "k:p3", "k:p4", "k:p5"]
    assert recorder.calls[1:] == [("k", ["p1", "p2"]), ("k", ["p3", "p4"]), ("k", ["p5"])]


def test_different_keys_run_as_separate_calls_oldest_key_first(recorder, make_batcher) -> None:
    batcher = make_batcher(recorder)
    _busy(batcher, recorder)
    x1 = batcher.submit("x", ["1"])
    y1 = batcher.submit("y", ["1"])
    x2 = batcher.submit("x", ["2"])
    z1 = batcher.submit("z", ["1"])
    y2 = batcher.submit("y", ["2"])
    recorder.release.set()

    assert [f.result(TIMEOUT) for f in x1 + x2] == ["x:1", "x:2"]
    assert [f.result(TIMEOUT) for f in y1 + y2] == ["y:1", "y:2"]
    assert z1[0].result(TIMEOUT) == "z:1"
    assert recorder.calls[1:] == [("x", ["1", "2"]), ("y", ["1", "2"]), ("z", ["1"])]


def test_each_future_gets_the_result_of_its_own_payload(make_batcher) -> None:
    recorder = Recorder(hold=False)
    batcher = make_batcher(recorder)
    futures = batcher.submit("k", [3, 1, 2])
    assert [f.result(TIMEOUT) for f in futures] == ["k:3", "k:1", "k:2"]
    assert batcher.submit("k", []) == []


def test_an_exception_in_run_reaches_every_future_of_the_batch_and_the_worker_goes_on(recorder, make_batcher) -> None:
    recorder.fail_on = {"bad"}
    batcher = make_batcher(recorder)
    _busy(batcher, recorder)
    bad = batcher.submit("bad", ["1", "2"])
    good = batcher.submit("good", ["1"])
    recorder.release.set()

    for future in bad:
        with pytest.raises(RuntimeError, match="batch bad failed"):
            future.result(TIMEOUT)
    assert good[0].result(TIMEOUT) == "good:1"
    later = batcher.submit("bad-free", ["x"])
    assert later[0].result(TIMEOUT) == "bad-free:x"


def test_a_run_giving_the_wrong_number_of_results_fails_the_batch(make_batcher) -> None:
    batcher = make_batcher(lambda key, payloads: ["only one"])
    futures = batcher.submit("k", ["a", "b"])
    for future in futures:
        with pytest.raises(RuntimeError, match="2 items gave 1 results"):
            future.result(TIMEOUT)


def test_close_fails_waiting_futures_with_unavailable_and_refuses_new_work(recorder) -> None:
    batcher = Batcher(recorder, max_batch=4, name="test-batcher")
    running = _busy(batcher, recorder)
    waiting = batcher.submit("k", ["a", "b"])

    closer = threading.Thread(target=batcher.close)
    closer.start()
    for future in waiting:
        with pytest.raises(Unavailable):
            future.result(TIMEOUT)
    recorder.release.set()  # the running batch finishes
    closer.join(TIMEOUT)
    assert not closer.is_alive()

    assert running[0].result(TIMEOUT) == "busy:first"
    assert [call[0] for call in recorder.calls] == ["busy"]
    with pytest.raises(Unavailable):
        batcher.submit("k", ["c"])


@pytest.mark.parametrize("max_batch", [0, -1])
def test_max_batch_below_one_is_refused(max_batch: int) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(lambda key, payloads: payloads, max_batch=max_batch)
