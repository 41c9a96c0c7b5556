"""DynamicBatcher semantics with a recording batch function (no model).

Most tests hold the worker inside a first "blocker" batch, queue items meanwhile, then release it: what the worker
does next depends only on what is queued, not on thread timing.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest
from prometheus_client import CollectorRegistry

from services.caption.captioning import BatchingSettings, CaptionMetrics, DynamicBatcher
from services.common.errors import Unavailable

WAIT = 20  # seconds; only reached when a test is failing


class Recorder:
    """A batch function that records (key, items), answers f"{key}:{item}", and can hold the worker."""

    def __init__(self, fail_keys: tuple[str, ...] = ()) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.started = threading.Event()  # set when the blocker batch is running
        self.release = threading.Event()
        self.fail_keys = fail_keys

    def __call__(self, key: str, items: list[str]) -> list[str]:
        self.batches.append((key, list(items)))
        if key == "blocker":
            self.started.set()
            assert self.release.wait(WAIT)
        if key in self.fail_keys:
            raise RuntimeError(f"model for {key} broke")
        return [f"{key}:{item}" for item in items]


def _held(batcher: DynamicBatcher, recorder: Recorder):
    """Occupy the worker with a blocker batch; returns its future."""
    future = batcher.submit("blocker", "x")
    assert recorder.started.wait(WAIT)
    return future


@pytest.fixture
def registry():
    return CollectorRegistry()


def test_queued_items_run_in_batches_of_one_key_oldest_key_first(registry):
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=3, max_delay_seconds=0))
    _held(batcher, recorder)
    order = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("b", "5"), ("a", "6"), ("b", "7")]
    futures = [batcher.submit(key, item) for key, item in order]
    recorder.release.set()
    assert [f.result(WAIT) for f in futures] == [f"{key}:{item}" for key, item in order]
    batcher.close()
    # b is oldest: its first three; then a (item 2 is now the oldest), c, and b's leftover.
    assert recorder.batches[1:] == [("b", ["1", "3", "5"]), ("a", ["2", "6"]), ("c", ["4"]), ("b", ["7"])]


def test_full_batches_from_many_threads_run_without_waiting_for_the_delay():
    recorder = Recorder()
    # A delay far beyond WAIT: only full batches can finish in time.
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=4, max_delay_seconds=3600))
    start = threading.Barrier(8)
    results: dict[int, list[str]] = {}

    def client(i: int) -> None:
        start.wait()
        results[i] = batcher.map("k", [str(i)])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == {i: [f"k:{i}"] for i in range(8)}
    assert [len(items) for _, items in recorder.batches] == [4, 4]
    assert sorted(item for _, items in recorder.batches for item in items) == [str(i) for i in range(8)]
    batcher.close()


def test_a_partial_batch_runs_once_the_delay_has_passed():
    recorder = Recorder()
    delay = 0.2
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=16, max_delay_seconds=delay))
    submitted = time.monotonic()
    futures = [batcher.submit("k", str(i)) for i in range(3)]
    assert [f.result(WAIT) for f in futures] == ["k:0", "k:1", "k:2"]
    # Never earlier than the delay (waiting longer is only slow, so that direction is not asserted).
    assert time.monotonic() - submitted >= delay
    assert recorder.batches == [("k", ["0", "1", "2"])]
    batcher.close()


def test_max_batch_size_one_runs_every_item_alone():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=1, max_delay_seconds=0))
    _held(batcher, recorder)
    futures = [batcher.submit("k", str(i)) for i in range(4)]
    recorder.release.set()
    assert [f.result(WAIT) for f in futures] == [f"k:{i}" for i in range(4)]
    assert recorder.batches[1:] == [("k", [str(i)]) for i in range(4)]
    batcher.close()


def test_a_failing_batch_fails_only_its_own_items():
    recorder = Recorder(fail_keys=("bad",))
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=8, max_delay_seconds=0))
    _held(batcher, recorder)
    good, bad = batcher.submit("good", "1"), [batcher.submit("bad", str(i)) for i in range(2)]
    later = batcher.submit("good", "2")
    recorder.release.set()
    for future in bad:
        with pytest.raises(RuntimeError, match="model for bad broke"):
            future.result(WAIT)
    assert (good.result(WAIT), later.result(WAIT)) == ("good:1", "good:2")
    assert batcher.map("good", ["3"]) == ["good:3"]  # the worker is still alive
    batcher.close()


def test_a_wrong_number_of_results_fails_the_batch():
    batcher = DynamicBatcher(lambda key, items: items[:-1], BatchingSettings(max_delay_seconds=0))
    with pytest.raises(Exception, match="returned 1 results for 2 items"):
        batcher.map("k", ["1", "2"])
    batcher.close()


def test_map_returns_in_order_and_raises_the_first_error_after_all_finished():
    calls = []

    def run(key: str, items: list[int]) -> list[int]:
        calls.append(items)
        if 3 in items:
            raise ValueError("three")
        return [item * 10 for item in items]

    batcher = DynamicBatcher(run, BatchingSettings(max_batch_size=2, max_delay_seconds=0.05))
    assert batcher.map("k", [1, 2]) == [10, 20]
    assert batcher.map("k", []) == []
    with pytest.raises(ValueError, match="three"):
        batcher.map("k", [3, 4, 5, 6])
    assert [5, 6] in calls  # the batch after the failing one still ran before map raised
    batcher.close()


def test_a_cancelled_item_is_never_run():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=8, max_delay_seconds=0))
    _held(batcher, recorder)
    cancelled, kept = batcher.submit("k", "gone"), batcher.submit("k", "kept")
    assert cancelled.cancel()
    recorder.release.set()
    assert kept.result(WAIT) == "k:kept"
    with pytest.raises(CancelledError):
        cancelled.result(0)
    batcher.close()
    assert recorder.batches[1:] == [("k", ["kept"])]


def test_close_runs_queued_items_then_refuses_new_ones():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=8, max_delay_seconds=3600))
    queued = [batcher.submit("k", str(i)) for i in range(3)]
    batcher.close()
    # The hour-long delay did not apply: close() flushes what is queued, then joins the worker.
    assert [f.result(0) for f in queued] == ["k:0", "k:1", "k:2"]
    assert recorder.batches == [("k", ["0", "1", "2"])]
    with pytest.raises(Unavailable, match="shutting down"):
        batcher.submit("k", "late")
    batcher.close()  # idempotent


def test_close_with_a_timeout_fails_what_could_not_run(registry):
    metrics = CaptionMetrics(registry)
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=8, max_delay_seconds=0), metrics=metrics)
    running = _held(batcher, recorder)
    queued = [batcher.submit("k", str(i)) for i in range(2)]
    batcher.close(timeout=0.05)
    for future in queued:
        with pytest.raises(Unavailable, match="retry on another replica"):
            future.result(0)
    assert registry.get_sample_value("tistudio_caption_queue_depth") == 0
    recorder.release.set()
    assert running.result(WAIT) == "blocker:x"  # the running batch finished on its own
    assert recorder.batches == [("blocker", ["x"])]


def test_metrics_track_depth_batch_sizes_and_latency(registry):
    metrics = CaptionMetrics(registry)
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, BatchingSettings(max_batch_size=4, max_delay_seconds=0), metrics=metrics)
    _held(batcher, recorder)
    futures = [batcher.submit("k", str(i)) for i in range(6)]
    assert batcher.queue_depth == 6
    assert registry.get_sample_value("tistudio_caption_queue_depth") == 6
    recorder.release.set()
    for future in futures:
        future.result(WAIT)
    batcher.close()
    assert batcher.queue_depth == 0
    assert registry.get_sample_value("tistudio_caption_queue_depth") == 0
    # Batches of 1 (the blocker), 4 and 2.
    assert registry.get_sample_value("tistudio_caption_batch_size_count") == 3
    assert registry.get_sample_value("tistudio_caption_batch_size_sum") == 7
    assert registry.get_sample_value("tistudio_caption_batch_size_bucket", {"le": "2.0"}) == 2
    assert registry.get_sample_value("tistudio_caption_latency_seconds_count") == 7
