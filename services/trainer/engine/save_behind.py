"""Savepoints and loss.csv written behind the training loop, in order, while the next steps run.

    writer = SaveBehind(device)
    snapshot = writer.snapshot(state)              # CPU copies, queued on the device's stream (no host wait)
    writer.submit(lambda: write_savepoint(..., state=snapshot.wait()), then=on_written)
    writer.flush()                                 # before an outcome: every write done; a write's error raised

The loop only snapshots: the vectors, AdamW's moments and the generator state are copied to pinned host memory
without waiting for the GPU, and the writer thread waits for that copy (a CUDA event) before serialising. On the
CPU the copies are plain clones. One writer thread per run keeps its files in order; a failed write (the store
went away) is raised by the run's next save or flush, so the job layer can pause it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["SaveBehind", "Snapshot"]


class Snapshot:
    """Host copies of a state tree, complete once `wait` returns."""

    def __init__(self, tree: Any, device: torch.device) -> None:
        self._event: torch.cuda.Event | None = None
        if device.type == "cuda":
            self._event = torch.cuda.Event()
        self._tree = _copy_to_host(tree, pinned=device.type == "cuda")
        if self._event is not None:
            self._event.record()

    def wait(self) -> Any:
        if self._event is not None:
            self._event.synchronize()
        return self._tree


class SaveBehind:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future[Any]] = []

    def snapshot(self, tree: Any) -> Snapshot:
        return Snapshot(tree, self.device)

    def submit(self, write: Callable[[], Any], *, then: Callable[[Any], None] | None = None) -> None:
        """Queue `write`; `then(result)` runs on the writer thread after it. Raises an earlier write's error."""
        self._raise_failed()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="save-behind")

        def job() -> Any:
            result = write()
            if then is not None:
                then(result)
            return result

        self._pending.append(self._executor.submit(job))

    def flush(self) -> None:
        """Wait for every queued write; raise the first one's error."""
        pending, self._pending = self._pending, []
        errors = [future.exception() for future in pending]
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for error in errors:
            if error is not None:
                raise error

    def _raise_failed(self) -> None:
        done = [future for future in self._pending if future.done()]
        self._pending = [future for future in self._pending if not future.done()]
        for future in done:
            error = future.exception()
            if error is not None:
                self.flush()
                raise error


def _copy_to_host(tree: Any, *, pinned: bool) -> Any:
    if isinstance(tree, torch.Tensor):
        if tree.device.type == "cpu":
            return tree.detach().clone()
        host = torch.empty(tree.shape, dtype=tree.dtype, device="cpu", pin_memory=pinned)
        host.copy_(tree.detach(), non_blocking=pinned)
        return host
    if isinstance(tree, dict):
        return {key: _copy_to_host(value, pinned=pinned) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_copy_to_host(value, pinned=pinned) for value in tree)
    return copy.deepcopy(tree)
