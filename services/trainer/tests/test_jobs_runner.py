"""The queue and runner with a fake training loop that steps only when the test lets it (threading primitives)."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import pytest

from services.common.errors import ResourceExhausted, Unavailable
from services.common.storage import LocalStore
from services.trainer.jobs import (
    EventLog,
    IllegalTransition,
    JobRunner,
    JobState,
    JobStore,
    Progress,
    SavepointInfo,
    StateChanged,
)

SPEC = {"model": "models/tiny-sd", "dataset": "datasets/anna/", "max_steps": 4}
WAIT = 5.0  # seconds a test waits for a thread before failing (never reached when things work)


class FakeLoop:
    """run_job double: one step per `tick(job_id)`; polls should_stop while waiting and before each step; saves on
    pause/shutdown and every `save_every` steps; resumes from the record's latest savepoint."""

    def __init__(self, save_every: int = 2) -> None:
        self.save_every = save_every
        self.calls: list[tuple[str, int]] = []  # (job_id, first step) per run
        self.active: set[str] = set()
        self.max_active = 0
        self.errors: dict[str, Exception] = {}
        self._ticks: defaultdict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(0))
        self._lock = threading.Lock()
        self.started = threading.Condition(self._lock)

    def tick(self, job_id: str, n: int = 1) -> None:
        with self._lock:
            sem = self._ticks[job_id]
        sem.release(n)

    def wait_started(self, count: int) -> None:
        with self.started:
            assert self.started.wait_for(lambda: len(self.calls) >= count, WAIT), self.calls

    def __call__(self, record, control):
        job_id = record.job_id
        step = record.latest_savepoint.step if record.latest_savepoint else 0
        with self._lock:
            self.calls.append((job_id, step))
            self.active.add(job_id)
            self.max_active = max(self.max_active, len(self.active))
            sem = self._ticks[job_id]
            self.started.notify_all()
        try:
            if job_id in self.errors:
                raise self.errors[job_id]
            control.mark_running()
            while step < record.max_steps:
                deadline = time.monotonic() + WAIT
                while not sem.acquire(timeout=0.005) and not control.should_stop():
                    assert time.monotonic() < deadline, "the test never ticked"
                stop = control.should_stop()
                if stop is not None:
                    if stop.kind in ("pause", "shutdown"):
                        self._save(control, job_id, step)
                    return {"pause": "paused", "shutdown": "shutdown", "cancel": "cancelled"}[stop.kind]
                step += 1
                control.report_progress(step, loss=1.0 / step, learning_rate=0.005, samples_per_second=4.0)
                if step % self.save_every == 0:
                    self._save(control, job_id, step)
            return "completed"
        finally:
            with self._lock:
                self.active.discard(job_id)

    @staticmethod
    def _save(control, job_id, step):
        if step:
            control.report_savepoint(SavepointInfo(step, f"jobs/{job_id}/s/{step}.safetensors", "m", 0.1, 0.0))


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


@pytest.fixture
def runners():
    made = []

    def make(store, loop, concurrency=1, start=True, recover=False):
        runner = JobRunner(JobStore(store), EventLog(store), loop, concurrency=concurrency)
        if recover:
            runner.recover()
        if start:
            runner.start()
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.shutdown(timeout=WAIT)


def wait_state(runner, job_id, state):
    deadline = time.monotonic() + WAIT
    while runner.get(job_id).state is not state:
        assert time.monotonic() < deadline, f"{job_id} is {runner.get(job_id).state.name}, waited for {state.name}"
        time.sleep(0.002)
    return runner.get(job_id)


def states(runner, job_id):
    return [e.payload.current for e in runner.events.events_after(job_id) if isinstance(e.payload, StateChanged)]


def submit(runner, name, max_steps=4):
    record, created = runner.submit(name, {**SPEC, "max_steps": max_steps, "name": name}, max_steps=max_steps)
    assert created
    return record.job_id


def test_jobs_run_fifo_one_at_a_time_by_default(store, runners):
    loop = FakeLoop()
    runner = runners(store, loop)
    jobs = [submit(runner, f"r{i}") for i in range(3)]
    for index, job_id in enumerate(jobs):
        loop.wait_started(index + 1)
        assert runner.get(job_id).state in (JobState.PREPARING, JobState.RUNNING)
        for later in jobs[index + 1 :]:
            assert runner.get(later).state is JobState.QUEUED
        loop.tick(job_id, 4)
        record = wait_state(runner, job_id, JobState.SUCCEEDED)
        assert record.step == 4 and record.end_time is not None and record.start_time is not None
    assert [c[0] for c in loop.calls] == jobs
    assert loop.max_active == 1
    assert states(runner, jobs[0]) == [
        JobState.QUEUED,
        JobState.PREPARING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]


def test_concurrency_limit(store, runners):
    loop = FakeLoop()
    runner = runners(store, loop, concurrency=2)
    a, b, c = (submit(runner, f"r{i}") for i in range(3))
    loop.wait_started(2)
    assert runner.get(c).state is JobState.QUEUED
    loop.tick(b, 4)
    wait_state(runner, b, JobState.SUCCEEDED)
    loop.wait_started(3)
    loop.tick(a, 4)
    loop.tick(c, 4)
    wait_state(runner, a, JobState.SUCCEEDED)
    wait_state(runner, c, JobState.SUCCEEDED)
    assert [call[0] for call in loop.calls] == [a, b, c] or [call[0] for call in loop.calls] == [b, a, c]
    assert loop.max_active == 2


def test_retried_submit_returns_the_same_job_and_queues_it_once(store, runners):
    loop = FakeLoop()
    runner = runners(store, loop)
    first, created = runner.submit("req", SPEC, max_steps=4)
    again, created_again = runner.submit("req", SPEC, max_steps=4)
    assert created and not created_again and again.job_id == first.job_id
    loop.tick(first.job_id, 4)
    wait_state(runner, first.job_id, JobState.SUCCEEDED)
    assert len(loop.calls) == 1


def test_progress_and_savepoints_reach_the_record_and_the_log(store, runners):
    loop = FakeLoop()
    runner = runners(store, loop)
    job_id = submit(runner, "r")
    loop.tick(job_id, 4)
    record = wait_state(runner, job_id, JobState.SUCCEEDED)
    assert (record.step, record.loss, record.learning_rate, record.samples_per_second) == (4, 0.25, 0.005, 4.0)
    assert record.latest_savepoint.step == 4
    assert record.last_sequence == runner.events.last_sequence(job_id)
    kinds = [e.kind for e in runner.events.events_after(job_id)]
    assert kinds.count("progress") == 4 and kinds.count("savepoint_saved") == 2
    progress = [e.payload for e in runner.events.events_after(job_id) if isinstance(e.payload, Progress)]
    assert progress[-1].max_steps == 4 and progress[-1].eta_seconds is not None


def test_pause_frees_the_slot_and_resume_continues_from_the_savepoint(store, runners):
    loop = FakeLoop(save_every=100)
    runner = runners(store, loop)
    a, b = submit(runner, "a"), submit(runner, "b")
    loop.wait_started(1)
    loop.tick(a, 1)
    wait_for(lambda: runner.get(a).step == 1)
    assert runner.pause(a).state is JobState.RUNNING  # asked; PAUSED once the run has saved
    paused = wait_state(runner, a, JobState.PAUSED)
    assert paused.latest_savepoint.step == 1
    loop.wait_started(2)  # the freed slot runs b
    assert loop.calls[1][0] == b
    assert runner.resume(a).state is JobState.QUEUED
    loop.tick(b, 4)
    wait_state(runner, b, JobState.SUCCEEDED)
    loop.wait_started(3)
    assert loop.calls[2] == (a, 1)
    loop.tick(a, 3)
    assert wait_state(runner, a, JobState.SUCCEEDED).step == 4
    with pytest.raises(IllegalTransition):
        runner.pause(b)
    with pytest.raises(IllegalTransition):
        runner.resume(b)


def test_resume_before_the_pause_lands_keeps_the_job_running(store, runners):
    started, go = threading.Event(), threading.Event()
    seen = []

    def run_job(record, control):
        control.mark_running()
        started.set()
        assert go.wait(WAIT)
        seen.append(control.should_stop())
        return "completed"

    runner = runners(store, run_job)
    job_id = submit(runner, "r")
    assert started.wait(WAIT)
    runner.pause(job_id)
    assert runner.resume(job_id).state is JobState.RUNNING
    go.set()
    wait_state(runner, job_id, JobState.SUCCEEDED)
    assert seen == [None]
    assert JobState.PAUSED not in states(runner, job_id)


def test_queued_jobs_pause_and_cancel_at_once(store, runners):
    loop = FakeLoop()
    runner = runners(store, loop)
    a, b, c = (submit(runner, n) for n in "abc")
    loop.wait_started(1)
    assert runner.pause(b).state is JobState.PAUSED
    assert runner.cancel(c).state is JobState.CANCELLED
    assert runner.cancel(b).state is JobState.CANCELLED
    assert runner.cancel(b).state is JobState.CANCELLED  # idempotent
    with pytest.raises(IllegalTransition):
        runner.resume(b)
    loop.tick(a, 4)
    wait_state(runner, a, JobState.SUCCEEDED)
    assert [call[0] for call in loop.calls] == [a]
    assert states(runner, c) == [JobState.QUEUED, JobState.CANCELLED]


def test_cancel_stops_a_running_job_within_one_step(store, runners):
    loop = FakeLoop(save_every=100)
    runner = runners(store, loop)
    job_id = submit(runner, "r", max_steps=100)
    loop.tick(job_id, 2)
    wait_for(lambda: runner.get(job_id).step == 2)
    runner.cancel(job_id)
    loop.tick(job_id, 10)  # the loop may take at most one more step before it sees the cancel
    record = wait_state(runner, job_id, JobState.CANCELLED)
    assert record.step <= 3
    assert record.latest_savepoint is None  # a cancel does not save
    events = runner.events.events_after(job_id)
    assert events[-1].final and events[-1].payload.previous is JobState.RUNNING


def test_watch_misses_nothing_across_a_restart(store, runners):
    loop = FakeLoop(save_every=2)
    runner = runners(store, loop)
    job_id = submit(runner, "r", max_steps=6)
    loop.tick(job_id, 2)
    seen = []
    for event in runner.watch(job_id, after=0, timeout=WAIT):
        seen.append(event)
        if event.kind == "savepoint_saved":
            break
    assert runner.shutdown(timeout=WAIT)
    assert runner.get(job_id).state is JobState.RUNNING

    loop2 = FakeLoop(save_every=2)
    restarted = runners(store, loop2, recover=True)
    loop2.tick(job_id, 4)
    rest = list(restarted.watch(job_id, after=seen[-1].sequence, timeout=WAIT))
    sequences = [e.sequence for e in seen + rest]
    assert sequences == list(range(1, len(sequences) + 1))
    assert rest[-1].final and rest[-1].payload.current is JobState.SUCCEEDED
    assert loop2.calls == [(job_id, 2)]
    assert [e.sequence for e in EventLog(store).events_after(job_id)] == sequences


def test_shutdown_leaves_running_jobs_resumable_and_queued_jobs_queued(store, runners):
    loop = FakeLoop(save_every=100)
    runner = runners(store, loop)
    a, b = submit(runner, "a"), submit(runner, "b")
    loop.tick(a, 3)
    wait_for(lambda: runner.get(a).step == 3)
    assert runner.shutdown(timeout=WAIT)
    with pytest.raises(Unavailable):
        runner.submit("c", SPEC, max_steps=4)
    stored = JobStore(store)
    assert stored.get(a).state is JobState.RUNNING and stored.get(a).latest_savepoint.step == 3
    assert stored.get(b).state is JobState.QUEUED

    loop2 = FakeLoop()
    restarted = runners(store, loop2, start=False)
    assert restarted.recover() == [a, b]
    assert restarted.get(a).state is JobState.QUEUED
    restarted.start()
    loop2.tick(a, 1)
    loop2.tick(b, 4)
    wait_state(restarted, a, JobState.SUCCEEDED)
    wait_state(restarted, b, JobState.SUCCEEDED)
    assert loop2.calls == [(a, 3), (b, 0)]
    recovered = [e.payload for e in restarted.events.events_after(a) if isinstance(e.payload, StateChanged)]
    assert recovered[-4].reason.code == "RESUMED_AFTER_RESTART"


def test_recover_requeues_jobs_after_a_crash(store, runners):
    # A crash: records say PREPARING/RUNNING, no process runs them.
    jobs = JobStore(store)
    running, _ = jobs.create("a", SPEC, max_steps=4)
    preparing, _ = jobs.create("b", SPEC | {"x": 1}, max_steps=4)
    done, _ = jobs.create("c", SPEC | {"x": 2}, max_steps=4)
    jobs.save(running.replace(state=JobState.RUNNING, latest_savepoint=SavepointInfo(2, "e", "m", 0.1, 0.0)))
    jobs.save(preparing.replace(state=JobState.PREPARING))
    jobs.save(done.replace(state=JobState.SUCCEEDED))
    loop = FakeLoop()
    runner = runners(store, loop, recover=True)
    loop.tick(running.job_id, 2)
    loop.tick(preparing.job_id, 4)
    wait_state(runner, running.job_id, JobState.SUCCEEDED)
    wait_state(runner, preparing.job_id, JobState.SUCCEEDED)
    assert loop.calls == [(running.job_id, 2), (preparing.job_id, 0)]
    assert runner.get(done.job_id).state is JobState.SUCCEEDED


def test_orphaned_running_jobs_can_be_cancelled_before_recovery(store, runners):
    jobs = JobStore(store)
    record, _ = jobs.create("a", SPEC, max_steps=4)
    jobs.save(record.replace(state=JobState.RUNNING))
    runner = runners(store, FakeLoop(), start=False)
    assert runner.cancel(record.job_id).state is JobState.CANCELLED
    assert runner.recover() == []


def test_failures_become_failed_jobs_with_a_diagnostic(store, runners, caplog):
    loop = FakeLoop()
    runner = runners(store, loop, start=False)
    oom, bug = submit(runner, "oom"), submit(runner, "bug")
    loop.errors[oom] = ResourceExhausted("CUDA ran out of memory; lower batch_size", reason="OUT_OF_MEMORY")
    loop.errors[bug] = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="services.trainer.jobs.runner"):
        runner.start()
        typed = wait_state(runner, oom, JobState.FAILED)
        internal = wait_state(runner, bug, JobState.FAILED)
    assert (typed.failure.code, typed.failure.message) == ("OUT_OF_MEMORY", "CUDA ran out of memory; lower batch_size")
    assert internal.failure.code == "INTERNAL"
    incident = internal.failure.message.rsplit(" ", 1)[-1]
    assert "boom" not in internal.failure.message
    logged = [r for r in caplog.records if getattr(r, "incident", None) == incident]
    assert logged and logged[0].exc_info is not None
    final = runner.events.events_after(bug)[-1]
    assert final.final and final.payload.reason == internal.failure


def test_an_unknown_outcome_fails_the_job(store, runners):
    runner = runners(store, lambda record, control: "exploded")
    job_id = submit(runner, "r")
    assert wait_state(runner, job_id, JobState.FAILED).failure.code == "INTERNAL"


def wait_for(condition):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.002)
