"""Each job's event log: numbered events (1, 2, ...) kept in memory and in the store, so a watcher misses nothing.

    log = EventLog(store)
    event = log.append(job_id, Progress(step=10, max_steps=200, loss=0.12))
    for event in log.watch(job_id, after=last_seen, timeout=30.0): ...   # ends after the final state's event

Durable form: `jobs/<job_id>/events/<first_seq:08d>.jsonl`, one JSON event a line. An event is written before
anyone can see it (the open segment is rewritten whole, an atomic put), so a sequence number a watcher saw is
never reused after a restart. A segment closes at `segment_events` events and the next one starts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.diagnostics import Diagnostic
from services.common.records import plain_record
from services.common.storage import Store
from services.trainer.jobs.model import JobState, PreviewInfo, SavepointInfo, diagnostic_from_record
from services.trainer.jobs.store import job_prefix
from services.trainer.jobs.write_behind import WriteBehind

__all__ = ["EventLog", "JobEvent", "Notice", "Progress", "StateChanged"]


@dataclass(frozen=True)
class StateChanged:
    previous: JobState | None  # None for the job's first event (created QUEUED)
    current: JobState
    reason: Diagnostic | None = None  # why, when not obvious (a failure, a recovery)


@dataclass(frozen=True)
class Progress:
    step: int
    max_steps: int
    epoch: int = 0
    epoch_step: int = 0
    loss: float | None = None  # mean over the steps since the previous progress event
    learning_rate: float | None = None
    samples_per_second: float | None = None
    eta_seconds: float | None = None
    embedding_norm: float | None = None
    prompt: str = ""


@dataclass(frozen=True)
class Notice:
    diagnostic: Diagnostic  # something to know that does not stop the job


Payload = StateChanged | Progress | SavepointInfo | PreviewInfo | Notice
_KINDS: dict[type, str] = {
    StateChanged: "state_changed",
    Progress: "progress",
    SavepointInfo: "savepoint_saved",
    PreviewInfo: "preview_rendered",
    Notice: "notice",
}


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    sequence: int  # strictly increasing per job, from 1
    time: float  # POSIX seconds
    payload: Payload

    @property
    def kind(self) -> str:
        return _KINDS[type(self.payload)]

    @property
    def final(self) -> bool:
        """The job's last event: its change to a final state."""
        return isinstance(self.payload, StateChanged) and self.payload.current.final

    def to_record(self) -> dict[str, Any]:
        payload = self.payload
        if isinstance(payload, StateChanged):
            body: Any = {
                "previous": payload.previous.name if payload.previous else None,
                "current": payload.current.name,
                "reason": payload.reason.to_dict() if payload.reason else None,
            }
        elif isinstance(payload, Notice):
            body = payload.diagnostic.to_dict()
        else:
            body = plain_record(payload)
        return {"sequence": self.sequence, "time": self.time, "kind": self.kind, self.kind: body}

    @classmethod
    def from_record(cls, job_id: str, data: Mapping[str, Any]) -> JobEvent:
        kind, body = data["kind"], data[data["kind"]]
        payload: Payload
        if kind == "state_changed":
            payload = StateChanged(
                previous=JobState[body["previous"]] if body["previous"] else None,
                current=JobState[body["current"]],
                reason=diagnostic_from_record(body["reason"]) if body["reason"] else None,
            )
        elif kind == "notice":
            payload = Notice(diagnostic_from_record(body))
        elif kind == "progress":
            payload = Progress(**body)
        elif kind == "savepoint_saved":
            payload = SavepointInfo.from_record(body)
        elif kind == "preview_rendered":
            payload = PreviewInfo.from_record(body)
        else:
            raise ValueError(f"unknown job event kind {kind!r}")
        return cls(job_id=job_id, sequence=data["sequence"], time=data["time"], payload=payload)


class _JobLog:
    def __init__(self, events: list[JobEvent], segment_start: int, segment_lines: list[str]) -> None:
        self.events = events
        self.segment_start = segment_start  # first sequence of the open segment
        self.segment_lines = segment_lines  # the open segment's lines


class EventLog:
    """Thread-safe; one Condition wakes every watcher on any append (jobs are few, watchers cheap to wake)."""

    def __init__(self, store: Store, *, segment_events: int = 256, clock: Any = time.time) -> None:
        self.store = store
        self.segment_events = segment_events
        self._clock = clock
        self._changed = threading.Condition()
        self._logs: dict[str, _JobLog] = {}
        # While the store is away, segments wait here: watchers still see the events (a job paused because the
        # store went away must be able to say so), at the price that a crash before the store returns loses them.
        self._writes = WriteBehind(store, "application/jsonl")
        self._closed = False

    def _segments_prefix(self, job_id: str) -> str:
        return f"{job_prefix(job_id)}events/"

    def _log(self, job_id: str) -> _JobLog:
        """The job's log, read from the store the first time it is asked for (call under the condition)."""
        log = self._logs.get(job_id)
        if log is None:
            events: list[JobEvent] = []
            lines: list[str] = []
            keys = sorted(info.key for info in self.store.list(self._segments_prefix(job_id)))
            for key in keys:
                lines = [line for line in self.store.get(key).decode().splitlines() if line]
                events.extend(JobEvent.from_record(job_id, json.loads(line)) for line in lines)
            start = events[-len(lines)].sequence if lines else 1
            if len(lines) >= self.segment_events:
                start, lines = events[-1].sequence + 1, []
            log = self._logs[job_id] = _JobLog(events, start, lines)
        return log

    def append(self, job_id: str, payload: Payload) -> JobEvent:
        with self._changed:
            log = self._log(job_id)
            sequence = log.events[-1].sequence + 1 if log.events else 1
            event = JobEvent(job_id=job_id, sequence=sequence, time=self._clock(), payload=payload)
            lines = [*log.segment_lines, json.dumps(event.to_record(), allow_nan=False)]
            key = f"{self._segments_prefix(job_id)}{log.segment_start:08d}.jsonl"
            self._writes.put(key, ("\n".join(lines) + "\n").encode())
            # Only now, with the event durable (or the store away: see _writes), do watchers see it.
            log.events.append(event)
            log.segment_lines = lines
            if len(lines) >= self.segment_events:
                log.segment_start, log.segment_lines = sequence + 1, []
            self._changed.notify_all()
            return event

    def flush(self) -> None:
        """Write the segments changed while the store was away; raises StoreUnavailable if it still is."""
        with self._changed:
            self._writes.flush()

    def last_sequence(self, job_id: str) -> int:
        with self._changed:
            events = self._log(job_id).events
            return events[-1].sequence if events else 0

    def events_after(self, job_id: str, sequence: int = 0) -> list[JobEvent]:
        """Every event of the job with a sequence number greater than `sequence`, oldest first."""
        with self._changed:
            return self._after(self._log(job_id).events, sequence)

    @staticmethod
    def _after(events: list[JobEvent], sequence: int) -> list[JobEvent]:
        # Sequences are 1..n without gaps, so event k sits at index k - 1.
        return events[max(sequence, 0) :]

    def wait(self, job_id: str, after: int, timeout: float | None) -> list[JobEvent]:
        """The events after `after`, waiting up to `timeout` seconds for one; [] on timeout, at the final event
        already seen, or once the log is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                events = self._log(job_id).events
                later = self._after(events, after)
                if later or self._closed or (events and events[-1].final):
                    return later
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._changed.wait(remaining)

    def watch(self, job_id: str, after: int = 0, *, timeout: float | None = None) -> Iterator[JobEvent]:
        """Yield the job's events after `after` as they come; end after the final state's event, when `timeout`
        seconds pass without a new event (reconnect from the last sequence seen), or when the log closes."""
        while True:
            batch = self.wait(job_id, after, timeout)
            if not batch:
                return
            for event in batch:
                yield event
                after = event.sequence
                if event.final:
                    return

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every watcher and end their watches (server shutdown)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
