"""Following a training job: an event iterator that survives reconnects, and `wait` for the final job.

The trainer numbers a job's events 1, 2, 3, ... and WatchJob replays everything after `after_sequence`, so a
client that reconnects with the last sequence it saw misses nothing. `watch` does that on UNAVAILABLE (trainer
restarting), DEADLINE_EXCEEDED (each connection lasts at most `calls.WATCH_CONNECTION_SECONDS`, which also
catches half-open connections) and reset streams, and drops any event at or below the last sequence it yielded,
so every event comes out exactly once and in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.calls import WATCH_CONNECTION_SECONDS
from tistudio_client.errors import DeadlineExceeded, Internal, TistudioError, Unavailable
from tistudio_client.service_clients import TrainerClient

__all__ = ["FINAL_STATES", "is_final_event", "watch", "wait"]

FINAL_STATES = frozenset({tr.JOB_STATE_SUCCEEDED, tr.JOB_STATE_FAILED, tr.JOB_STATE_CANCELLED})
# Give up after this many reconnects in a row that brought no new event (about a minute with the back-off).
MAX_IDLE_RECONNECTS = 12


def is_final_event(event: tr.WatchJobResponse) -> bool:
    """True for the StateChanged event that moves the job to SUCCEEDED, FAILED or CANCELLED."""
    return event.WhichOneof("event") == "state_changed" and event.state_changed.current in FINAL_STATES


def _resumable(err: TistudioError) -> bool:
    if isinstance(err, (Unavailable, DeadlineExceeded)):
        return True
    # An HTTP/2 stream reset by a proxy or a dying server surfaces as INTERNAL with this text from the core.
    return isinstance(err, Internal) and "RST_STREAM" in err.message


def watch(
    trainer: TrainerClient,
    job_id: str,
    after_sequence: int = 0,
    *,
    timeout: float | None = None,
) -> Iterator[tr.WatchJobResponse]:
    """Every event of `job_id` after `after_sequence`, once each, ending after the job's final event.

    `timeout` bounds the whole watch (None: until the job ends); past it, `DeadlineExceeded` is raised.
    Errors other than the resumable ones (e.g. NotFound for an unknown job) are raised at once.
    """
    last = after_sequence
    end = None if timeout is None else time.monotonic() + timeout
    idle = 0
    while True:
        connection = WATCH_CONNECTION_SECONDS
        if end is not None:
            connection = min(connection, end - time.monotonic())
            if connection <= 0:
                raise DeadlineExceeded(f"job {job_id} did not finish within {timeout} s (last event {last})")
        progressed = False
        try:
            for event in trainer.watch_job(job_id=job_id, after_sequence=last, timeout=connection):
                if event.sequence <= last:
                    continue  # a replay of what this iterator already yielded
                last, progressed = event.sequence, True
                yield event
                if is_final_event(event):
                    return
        except TistudioError as err:
            if not _resumable(err):
                raise
            if not progressed and _gave_up(idle := idle + 1):
                raise
        else:
            # A clean end without the final event: the trainer is shutting down, or the job ended before we
            # connected and its events were all sent earlier. Ask the job which it is.
            job = trainer.get_job(job_id=job_id).job
            if job.state in FINAL_STATES and last >= job.last_sequence:
                return
            if not progressed and _gave_up(idle := idle + 1):
                raise Unavailable(f"the trainer keeps closing the watch of job {job_id} (last event {last})")
        if progressed:
            idle = 0
        time.sleep(trainer.caller.retry.delay(min(idle, 5)))


def _gave_up(idle_reconnects: int) -> bool:
    return idle_reconnects > MAX_IDLE_RECONNECTS


def wait(
    trainer: TrainerClient,
    job_id: str,
    *,
    timeout: float | None = None,
    on_event: Callable[[tr.WatchJobResponse], None] | None = None,
) -> tr.Job:
    """Follow the job to its final state and return it (SUCCEEDED, FAILED with `failure`, or CANCELLED).

    `on_event` sees every event on the way (progress bars, logs). A failed job is returned, not raised.
    """
    for event in watch(trainer, job_id, timeout=timeout):
        if on_event is not None:
            on_event(event)
    return trainer.get_job(job_id=job_id).job
