"""The job queue: jobs run FIFO, `concurrency` at a time on one device, through an injected run callable.

    runner = JobRunner(JobStore(store), EventLog(store), run_job, concurrency=1)
    runner.recover()                     # re-queue what was QUEUED/PREPARING/RUNNING when the last process ended
    runner.start()
    record, created = runner.submit("req-1", spec.to_record(), max_steps=spec.max_steps)
    runner.pause(job_id); runner.resume(job_id); runner.cancel(job_id)
    runner.shutdown(timeout=30)          # SIGTERM: running jobs save and stop, and stay RUNNING for the next start

`run_job(record, control) -> outcome` does the training. `record` is the job as stored (spec record, output
prefix, latest savepoint: resume from `latest_savepoint(store, record.output_prefix)` when there is one). `control`
is polled through `control.should_stop()` before every step and takes the run's events: it has the engine's
TrainingEvents methods (on_phase/on_step/on_savepoint), so `session.run(events=control,
should_stop=control.should_stop)` works as is, plus report_progress/report_savepoint/report_preview/notice/
set_model. The outcome is the engine's RunOutcome (or anything with a `status`, or the status string):
"completed" -> SUCCEEDED, "paused"/"until_step" -> PAUSED, "cancelled" -> CANCELLED, "shutdown" -> left as it is.
A `JobOutcome` may carry a reason, kept as Job.failure until the job resumes; a job paused with reason
STORE_UNAVAILABLE is resumed by the runner once `store.check()` passes again (probed every `store_probe_seconds`),
after the records and events written while the store was away have been flushed to it.
An exception fails the job: a TistudioError with its reason and message, anything else with reason INTERNAL and an
incident id whose traceback is in the log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import TistudioError, Unavailable
from services.trainer.jobs.control import JobControl
from services.trainer.jobs.events import EventLog, JobEvent, Payload, StateChanged
from services.trainer.jobs.model import JobRecord, JobState, check_transition
from services.trainer.jobs.store import JobStore

__all__ = ["JobRunner", "RunJob"]

log = logging.getLogger(__name__)

RunJob = Callable[[JobRecord, JobControl], Any]

_STATUS_STATES = {
    "completed": JobState.SUCCEEDED,
    "paused": JobState.PAUSED,
    "until_step": JobState.PAUSED,
    "cancelled": JobState.CANCELLED,
}
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"  # the reason of a job paused because the store went away
_ACTIVE = (JobState.QUEUED, JobState.PREPARING, JobState.RUNNING)
_RECOVERED = Diagnostic(
    Severity.INFO,
    "RESUMED_AFTER_RESTART",
    "the trainer restarted while this job was queued or running; it continues from its latest savepoint",
)


class JobRunner:
    def __init__(
        self,
        jobs: JobStore,
        events: EventLog,
        run_job: RunJob,
        *,
        concurrency: int = 1,
        clock: Callable[[], float] = time.time,
        store_probe_seconds: float = 5.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.jobs = jobs
        self.events = events
        self._run_job = run_job
        self._clock = clock
        self._concurrency = concurrency
        self._lock = threading.Condition()  # guards the queue, the running set and every state change
        self._queue: deque[str] = deque()
        self._running: dict[str, JobControl] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._store_watch: threading.Thread | None = None
        self._store_probe_seconds = store_probe_seconds

    # ---- lifecycle

    def start(self) -> None:
        for index in range(self._concurrency):
            thread = threading.Thread(target=self._work, name=f"job-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def recover(self) -> list[str]:
        """Queue every job that was QUEUED, PREPARING or RUNNING when the last process ended, oldest first."""
        recovered = []
        with self._lock:
            for record in sorted(self.jobs.list(_ACTIVE), key=lambda r: (r.create_time, r.job_id)):
                if record.job_id in self._queue or record.job_id in self._running:
                    continue
                if record.state is not JobState.QUEUED:
                    self._transition(record.job_id, JobState.QUEUED, reason=_RECOVERED)
                self._queue.append(record.job_id)
                recovered.append(record.job_id)
            self._lock.notify_all()
        return recovered

    def shutdown(self, timeout: float | None = None) -> bool:
        """Ask running jobs to save and stop (they stay RUNNING in the store for `recover`), stop the workers and
        end every watch. Queued jobs stay QUEUED. True when every running job stopped within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            for control in self._running.values():
                control.request("shutdown", "the trainer is shutting down")
            self._lock.notify_all()
            while self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._lock.wait(remaining)
            stopped = not self._running
        for thread in self._threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        self.events.close()
        return stopped

    # ---- requests

    def submit(
        self,
        request_id: str,
        spec: Mapping[str, Any],
        *,
        max_steps: int,
        model: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new QUEUED job (created True), or the job an earlier call with this request_id made (created False)."""
        with self._lock:
            if self._stopping:
                raise Unavailable("the trainer is shutting down; retry StartTraining in a moment")
            record, created = self.jobs.create(
                request_id, spec, max_steps=max_steps, model=model, fingerprint=fingerprint
            )
            if created:
                event = self.events.append(record.job_id, StateChanged(None, JobState.QUEUED))
                record = self.jobs.save(record.replace(last_sequence=event.sequence))
                self._queue.append(record.job_id)
                self._lock.notify_all()
            return record, created

    def get(self, job_id: str) -> JobRecord:
        return self.jobs.get(job_id)

    def queue_length(self) -> int:
        with self._lock:
            return len(self._queue)

    def list(self, states: Iterable[JobState] = ()) -> list[JobRecord]:
        return self.jobs.list(states)

    def pause(self, job_id: str) -> JobRecord:
        """A queued job pauses now; a running one is asked to save and stop (PAUSED once it has)."""
        with self._lock:
            record = self.jobs.get(job_id)
            if record.state is JobState.PAUSED:
                return record
            if record.state is JobState.QUEUED:
                self._queue.remove(job_id)
                return self._transition(job_id, JobState.PAUSED)
            return self._stop_running(record, JobState.PAUSED, "pause", "paused by request")

    def resume(self, job_id: str) -> JobRecord:
        """A paused job goes back to the queue; a job not yet paused keeps running (its pause request is dropped)."""
        with self._lock:
            record = self.jobs.get(job_id)
            if record.state in (JobState.PREPARING, JobState.RUNNING):
                if job_id in self._running:
                    self._running[job_id].withdraw("pause")
                return record
            if record.state is JobState.QUEUED:
                return record
            record = self._transition(job_id, JobState.QUEUED, failure=None)
            self._queue.append(job_id)
            self._lock.notify_all()
            return record

    def cancel(self, job_id: str) -> JobRecord:
        """A queued or paused job is cancelled now; a running one stops before its next step (CANCELLED then)."""
        with self._lock:
            record = self.jobs.get(job_id)
            if record.state is JobState.CANCELLED:
                return record
            if record.state in (JobState.QUEUED, JobState.PAUSED):
                if job_id in self._queue:
                    self._queue.remove(job_id)
                return self._transition(job_id, JobState.CANCELLED)
            return self._stop_running(record, JobState.CANCELLED, "cancel", "cancelled by request")

    def _stop_running(self, record: JobRecord, target: JobState, kind: str, reason: str) -> JobRecord:
        """Ask the thread running `record` to stop (it reaches `target` when it has). Called with the lock held."""
        check_transition(record.job_id, record.state, target)
        if (
            record.job_id not in self._running
        ):  # RUNNING in the store, run by no thread (before recover, after shutdown)
            return self._transition(record.job_id, target)
        self._running[record.job_id].request(kind, reason)
        return record

    def watch(self, job_id: str, after: int = 0, *, timeout: float | None = None) -> Iterator[JobEvent]:
        self.jobs.get(job_id)  # NotFound before the stream starts
        return self.events.watch(job_id, after, timeout=timeout)

    # ---- state changes (called with the lock held, or taking it)

    def _transition(
        self, job_id: str, target: JobState, *, reason: Diagnostic | None = None, **changes: Any
    ) -> JobRecord:
        with self._lock:
            record = self.jobs.get(job_id)
            check_transition(job_id, record.state, target)
            now = self._clock()
            if target is JobState.PREPARING and record.start_time is None:
                changes["start_time"] = now
            if target.final:
                changes["end_time"] = now
            event = self.events.append(job_id, StateChanged(record.state, target, reason))
            return self.jobs.save(
                record.replace(state=target, update_time=now, last_sequence=event.sequence, **changes)
            )

    def record_event(self, job_id: str, payload: Payload | None, **changes: Any) -> JobRecord:
        """Append a run's event (when given) and fold what it says into the record (JobControl's sink)."""
        with self._lock:
            record = self.jobs.get(job_id)
            if payload is not None:
                changes["last_sequence"] = self.events.append(job_id, payload).sequence
            return self.jobs.save(record.replace(update_time=self._clock(), **changes))

    def mark_running(self, job_id: str) -> None:
        with self._lock:
            if self.jobs.get(job_id).state is JobState.PREPARING:
                self._transition(job_id, JobState.RUNNING)

    # ---- the store going away

    def _watch_store(self) -> None:
        """Start (once) the thread that waits for the store and then resumes the jobs it paused."""
        with self._lock:
            if self._store_watch is not None:
                return
            self._store_watch = threading.Thread(target=self._await_store, name="store-watch", daemon=True)
            self._store_watch.start()

    def _paused_by_store(self) -> list[JobRecord]:
        paused = self.jobs.list([JobState.PAUSED])
        return [r for r in paused if r.failure is not None and r.failure.code == STORE_UNAVAILABLE]

    def _await_store(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._lock.wait(self._store_probe_seconds)
                if self._stopping:
                    return
            try:
                self.jobs.store.check()
                self.jobs.flush()
                self.events.flush()
            except Unavailable as away:
                log.info("store still unavailable; paused jobs wait", extra={"error": away.message})
                continue
            for record in self._paused_by_store():
                log.info("store is back; resuming the job", extra={"job_id": record.job_id})
                self.resume(record.job_id)
            with self._lock:
                if not self._paused_by_store():  # else a job paused for the store meanwhile: keep watching
                    self._store_watch = None
                    return

    # ---- the workers

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job_id = self._queue.popleft()
                if self.jobs.get(job_id).state is not JobState.QUEUED:
                    continue
                record = self._transition(job_id, JobState.PREPARING)
                control = self._running[job_id] = JobControl(self, record)
            outcome, failure = None, None
            try:
                outcome = self._run_job(record, control)
            except TistudioError as exc:
                log.warning("training job failed", extra={"job_id": job_id, "reason": exc.reason, "error": exc.message})
                failure = Diagnostic(Severity.ERROR, exc.reason, exc.message, field=exc.field or "")
            except Exception:
                incident = uuid.uuid4().hex[:12]
                log.exception(
                    "training job failed with an unexpected error", extra={"job_id": job_id, "incident": incident}
                )
                failure = Diagnostic(
                    Severity.ERROR,
                    "INTERNAL",
                    f"internal error; incident {incident}",
                    suggestion="report the incident id: the trainer's log has the traceback under it",
                )
            self._finish(job_id, outcome, failure)

    def _finish(self, job_id: str, outcome: Any, failure: Diagnostic | None) -> None:
        with self._lock:
            try:
                if failure is not None:
                    self._transition(job_id, JobState.FAILED, reason=failure, failure=failure)
                    return
                status = outcome if isinstance(outcome, str) else getattr(outcome, "status", None)
                if status == "shutdown":
                    return  # stays PREPARING/RUNNING in the store: the next process's recover() re-queues it
                target = _STATUS_STATES.get(status)  # type: ignore[arg-type]
                if target is None:
                    incident = uuid.uuid4().hex[:12]
                    log.error(
                        "run callable returned an unknown outcome",
                        extra={"job_id": job_id, "incident": incident, "outcome": repr(outcome)},
                    )
                    bad = Diagnostic(Severity.ERROR, "INTERNAL", f"internal error; incident {incident}")
                    self._transition(job_id, JobState.FAILED, reason=bad, failure=bad)
                    return
                reason = getattr(outcome, "reason", None)
                self._transition(job_id, target, reason=reason, failure=reason)
                if reason is not None and reason.code == STORE_UNAVAILABLE:
                    self._watch_store()
            finally:
                self._running.pop(job_id, None)
                self._lock.notify_all()
