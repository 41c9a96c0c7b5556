"""One thread owns the training device: every running job's session trains through it, in shared device batches.

    loop = DeviceLoop(memory_gib=None, on_round=metrics.observe_round)
    outcome = loop.train(session, events=..., should_stop=..., also_save_every=...)     # blocks the job's thread
    loop.close()

Job threads prepare their sessions in parallel (reading the dataset, the VAE pass, an exact resume), then hand them
here and wait. Between rounds the loop takes in new sessions, keeps one TrainingGroup per (loaded model, training
size, precision), and serves the groups in turn, one device batch each. So jobs on one model train together
whatever their start times, lengths, pauses or cancels, and jobs on another model or size form their own group.
A session's outcome, or the exception that ended it, goes back to its job thread.

Memory: each group packs its rounds within a budget of device memory for the activations, measured per sample in
its first round. `memory_gib` sets that budget; by default it is 90% of the CUDA memory free when the group forms
(the model already loaded), or half the RAM available on a CPU. `compile_unet` runs the UNet through torch.compile
(see shared_batch.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psutil
import torch

from services.trainer.engine import (
    MemoryBudget,
    RoundReport,
    RunOutcome,
    StopRequest,
    TrainingEvents,
    TrainingGroup,
    TrainingSession,
    group_key,
)

__all__ = ["DeviceLoop", "default_memory_budget"]

log = logging.getLogger(__name__)

_FREE_CUDA_SHARE = 0.9  # of the memory free when a group forms: the rest absorbs fragmentation and other work
_AVAILABLE_RAM_SHARE = 0.5


def default_memory_budget(device: torch.device) -> int:
    """Bytes the shared batches of a new group may use for activations on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * _FREE_CUDA_SHARE)
    return int(psutil.virtual_memory().available * _AVAILABLE_RAM_SHARE)


class DeviceLoop:
    def __init__(
        self,
        *,
        memory_gib: float | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        compile_unet: bool = False,
    ) -> None:
        self._memory_bytes = None if memory_gib is None else int(memory_gib * 2**30)
        self._on_round = on_round
        self._compile_unet = compile_unet
        self._lock = threading.Condition()
        self._joining: list[tuple[TrainingSession, Future[RunOutcome]]] = []
        self._groups: dict[tuple[Any, ...], TrainingGroup] = {}
        self._waiting: dict[int, Future[RunOutcome]] = {}  # id(session) -> its job thread's future
        self._thread: threading.Thread | None = None
        self._closed = False

    def train(
        self,
        session: TrainingSession,
        *,
        events: TrainingEvents | None = None,
        should_stop: Callable[[], StopRequest | None] | None = None,
        also_save_every: int = 0,
    ) -> RunOutcome:
        """Train `session` with whatever else is training (`TrainingSession.run`'s arguments); its outcome, or its
        exception raised here."""
        kwargs = {"should_stop": should_stop} if should_stop is not None else {}
        session.start(events=events, also_save_every=also_save_every, **kwargs)
        future: Future[RunOutcome] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the device loop is closed")
            self._joining.append((session, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="device-loop", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return future.result()

    def close(self, timeout: float | None = None) -> None:
        """Stop the loop once no session is left in it (the job runner stops the running jobs first)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        turn = 0
        while True:
            with self._lock:
                while not self._joining and not self._groups and not self._closed:
                    self._lock.wait()
                if not self._joining and not self._groups:
                    self._thread = None
                    return
                joining, self._joining = self._joining, []
            for session, future in joining:
                self._join(session, future)
            keys = list(self._groups)
            if not keys:
                continue
            key = keys[turn % len(keys)]
            turn += 1
            self._round(key, self._groups[key])

    def _join(self, session: TrainingSession, future: Future[RunOutcome]) -> None:
        key = group_key(session)
        group = self._groups.get(key)
        if group is None:
            budget = self._memory_bytes or default_memory_budget(session.precision.device)
            group = TrainingGroup(
                session.components,
                session.precision,
                memory=MemoryBudget(budget),
                on_round=self._on_round,
                compile_unet=self._compile_unet,
            )
            self._groups[key] = group
            log.info("new training group: %dx%d %s, budget %.1f GiB", key[1], key[2], key[3], budget / 2**30)
        self._waiting[id(session)] = future
        group.add(session)

    def _round(self, key: tuple[Any, ...], group: TrainingGroup) -> None:
        try:
            finished = group.round()
        except BaseException as error:  # never lose the thread: every run of the group ends with the error
            log.exception("a training round failed outside any run")
            finished = [(session, error) for session in group.sessions]
            self._groups.pop(key, None)
        for session, result in finished:
            future = self._waiting.pop(id(session))
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if not group.sessions:
            self._groups.pop(key, None)
