"""Dynamic batching: items submitted from many threads run in batches of one key, on one worker thread.

Policy: the worker looks at the oldest waiting item; it runs a batch of that item's key as soon as
`max_batch_size` items of the key wait, or `max_delay_seconds` after that oldest item arrived, whichever comes
first. Items of other keys wait their turn, and because the oldest item always goes next no key starves. While a
batch runs, new items queue up, so under load batches fill without waiting for the delay at all.

One worker, because the model is one device's worth of work: two generate calls at once on one GPU (or two
CPU cores) only interleave, and a single thread also owns the global RNG that sampled captions fork.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.caption.captioning.metrics import CaptionMetrics
from services.caption.captioning.settings import BatchingSettings
from services.common.errors import Internal, Unavailable

__all__ = ["DynamicBatcher"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - the item type, as in the public signature
R = TypeVar("R")


@dataclass
class _Item(Generic[I, R]):
    value: I
    future: Future[R]
    arrived: float  # time.monotonic() at submit
    order: int = field(default=0)  # submission order: ties in `arrived` still resolve oldest-first


class DynamicBatcher(Generic[K, I, R]):
    """Collects items submitted from many threads into batches of one key, run by one worker thread.

    `run(key, items)` must return one result per item, in order. An exception from `run` fails that batch's
    futures only; the worker carries on with the next batch.
    """

    def __init__(
        self,
        run: Callable[[K, list[I]], list[R]],
        settings: BatchingSettings,
        *,
        metrics: CaptionMetrics | None = None,
        name: str = "caption-batcher",
    ) -> None:
        self._run = run
        self._settings = settings
        self._metrics = metrics
        self._cond = threading.Condition()
        self._queues: dict[K, deque[_Item[I, R]]] = {}
        self._waiting = 0
        self._closed = False
        self._counter = itertools.count()
        # A daemon thread, so a process that forgets close() can still exit; close() joins it properly.
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch (those in a running batch are not counted)."""
        with self._cond:
            return self._waiting

    def submit(self, key: K, item: I) -> Future[R]:
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise Unavailable("the captioner is shutting down and accepts no new images; retry on another replica")
            queued = _Item(item, future, time.monotonic(), next(self._counter))
            self._queues.setdefault(key, deque()).append(queued)
            self._set_waiting(self._waiting + 1)
            self._cond.notify()
        return future

    def map(self, key: K, items: Sequence[I]) -> list[R]:
        """Submit every item, wait for all of them, and return their results in order (re-raising the first error)."""
        futures = [self.submit(key, item) for item in items]
        errors = [future.exception() for future in futures]  # waits for each; all finish before anything is raised
        for error in errors:
            if error is not None:
                raise error
        return [future.result() for future in futures]

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting items, run what is already queued (without waiting for the delay), join the worker.

        With `timeout`, items still queued when it expires fail with Unavailable instead of running; a batch
        already running finishes on its own.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is self._worker:
            return  # close() called from inside run(): the loop drains and exits by itself
        self._worker.join(timeout)
        if self._worker.is_alive():
            self._fail_queued(Unavailable("the captioner shut down before this image's turn; retry on another replica"))

    # -- worker ------------------------------------------------------------------------------------------------

    def _set_waiting(self, value: int) -> None:
        self._waiting = value
        if self._metrics is not None:
            self._metrics.queue_depth.set(value)

    def _fail_queued(self, error: Exception) -> None:
        with self._cond:
            items = [item for queue in self._queues.values() for item in queue]
            self._queues.clear()
            self._set_waiting(0)
        for item in items:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)
                self._observe_latency(item)

    def _next_batch(self) -> tuple[K, list[_Item[I, R]]] | None:
        """Block until a batch is due (see the module docstring); None once closed and drained."""
        settings = self._settings
        with self._cond:
            while True:
                if not self._queues:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                # Few distinct keys wait at once (models x settings in use), so a scan beats a priority queue.
                key, queue = min(self._queues.items(), key=lambda entry: entry[1][0].order)
                if len(queue) >= settings.max_batch_size or self._closed:
                    break
                remaining = queue[0].arrived + settings.max_delay_seconds - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [queue.popleft() for _ in range(min(settings.max_batch_size, len(queue)))]
            if not queue:
                del self._queues[key]
            self._set_waiting(self._waiting - len(batch))
        # Futures a caller cancelled while they waited drop out here, before any work is spent on them.
        return key, [item for item in batch if item.future.set_running_or_notify_cancel()]

    def _loop(self) -> None:
        try:
            while (due := self._next_batch()) is not None:
                key, batch = due
                if batch:
                    self._run_batch(key, batch)
        finally:
            # Normally nothing is left; if the loop itself broke, waiting callers get an error instead of hanging.
            with self._cond:
                self._closed = True
            self._fail_queued(Internal("the caption worker stopped unexpectedly; see the server log"))

    def _run_batch(self, key: K, batch: list[_Item[I, R]]) -> None:
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(batch))
        try:
            results = self._run(key, [item.value for item in batch])
            if len(results) != len(batch):
                raise Internal(f"the batch function returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - one failing batch must not stop the worker or other batches
            log.debug("batch of %d failed: %s", len(batch), exc)
            for item in batch:
                item.future.set_exception(exc)
                self._observe_latency(item)
            return
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)
            self._observe_latency(item)

    def _observe_latency(self, item: _Item[I, R]) -> None:
        if self._metrics is not None:
            self._metrics.latency.observe(time.monotonic() - item.arrived)
