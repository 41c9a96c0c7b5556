"""One worker that owns the device and batches queued work that can run together.

Requests submit items under a key (for sampling: the model, sampler, steps, size and conditioning lengths). The
worker takes the oldest waiting item's key and runs every waiting item with that key, up to `max_batch`, in one
call. So concurrent requests for the same model and size share UNet calls, with no waiting window: whatever queued
while the previous batch ran goes into the next one. Items of other keys wait their turn in arrival order.

Everything on the device runs in this one thread, which also keeps GPU memory use to one batch at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.common.errors import Unavailable

__all__ = ["Batcher"]

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass
class _Waiting(Generic[P]):
    key: Hashable
    payload: P
    future: Future


class Batcher(Generic[P, R]):
    """`run(key, payloads) -> results` (one result per payload, in order) is called from the worker thread only."""

    def __init__(
        self,
        run: Callable[[Any, list[P]], Sequence[R]],
        *,
        max_batch: int,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._run = run
        self._max_batch = max_batch
        self._waiting: list[_Waiting[P]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Items waiting (not counting the batch that is running)."""
        with self._cond:
            return len(self._waiting)

    def submit(self, key: Hashable, payloads: Sequence[P]) -> list[Future]:
        """One future per payload; each resolves to its result or to the exception its batch raised."""
        futures: list[Future] = [Future() for _ in payloads]
        with self._cond:
            if self._closed:
                raise Unavailable("the preview service is shutting down; retry on another replica")
            self._waiting.extend(_Waiting(key, p, f) for p, f in zip(payloads, futures, strict=True))
            self._cond.notify()
        return futures

    def close(self) -> None:
        """Stop taking work; items still waiting fail with UNAVAILABLE. The running batch finishes."""
        with self._cond:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            self._cond.notify_all()
        for item in waiting:
            item.future.set_exception(Unavailable("the preview service shut down before this image was made"))
        self._thread.join(timeout=60)

    def _next_batch(self) -> list[_Waiting[P]] | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            key = self._waiting[0].key
            batch = [item for item in self._waiting if item.key == key][: self._max_batch]
            taken = {id(item) for item in batch}
            self._waiting = [item for item in self._waiting if id(item) not in taken]
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self._run(live[0].key, [item.payload for item in live])
                if len(results) != len(live):
                    raise RuntimeError(f"a batch of {len(live)} items gave {len(results)} results")
            except Exception as exc:  # every waiter of the batch hears about it; the worker goes on
                log.warning("a batch of %d items failed: %s", len(live), exc)
                for item in live:
                    item.future.set_exception(exc)
                continue
            for item, result in zip(live, results, strict=True):
                item.future.set_result(result)
