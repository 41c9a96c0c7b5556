"""JobTrainer driven by the real JobRunner, JobStore and EventLog on a LocalStore, training the tiny SD model: a run to
the end (with a pause and resume), divergence (fail, retry at half the rate, give up), a store outage that pauses the
job and resumes it by itself, and previews handed to the dispatcher. Faults come from one wrapped engine method or a
store subclass; the code under test runs as is."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from prometheus_client import CollectorRegistry

from services.common.storage import LocalStore, RetryingStore, RetryPolicy, StoreUnavailable
from services.trainer.embedding_ops import create_embedding_file
from services.trainer.engine import TrainingSession, TrainingSpec, list_savepoints, read_loss_csv
from services.trainer.engine.testing import write_dataset
from services.trainer.job_spec import JobSpec
from services.trainer.jobs import EventLog, JobRunner, JobState, JobStore, Notice, PreviewInfo, Progress, StateChanged
from services.trainer.metrics import TrainerMetrics
from services.trainer.previews import PreviewDispatcher
from services.trainer.training_job import MAX_HALVINGS, JobTrainer

WAIT = 60.0  # seconds a test waits for a job before failing (never reached when things work)
NAME = "subj3ct"


class Models:
    """The model pool's one method, serving the module's tiny components."""

    def __init__(self, components) -> None:
        self.components = components
        self.calls: list[tuple[str, str]] = []

    def stable_diffusion(self, reference, config):
        self.calls.append((reference, config))
        return self.components


def _setup(store, components) -> str:
    """The embedding file and a 4-image dataset in `store`; returns the embedding's key."""
    written = create_embedding_file(store, components, name=NAME, init_text="woman", vectors=2, model_reference="tiny")
    write_dataset(store, "ds/", 4)
    return written.key


def _training(embedding_key: str, **changes) -> TrainingSpec:
    values = dict(
        model="tiny",
        embedding_key=embedding_key,
        dataset="ds/",
        width=32,
        height=32,
        template="subject",
        max_steps=6,
        save_every_steps=2,
        log_every_steps=1,
        learning_rate="0.005",
    )
    return TrainingSpec(**(values | changes))


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """The tiny model's ops are too small to gain from intra-op threads, and on a busy machine torch's OpenMP
    threads stall each other for seconds per step; one thread keeps the module fast and its timing steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def runners():
    made = []

    def make(store, trainer, **kwargs) -> JobRunner:
        runner = JobRunner(JobStore(store), EventLog(store), trainer, concurrency=1, **kwargs)
        runner.start()
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.shutdown(timeout=WAIT)


def _submit(runner: JobRunner, job: JobSpec, request_id: str = "req") -> str:
    record, created = runner.submit(request_id, job.to_record(), max_steps=job.training.max_steps)
    assert created
    return record.job_id


def _final(runner: JobRunner, job_id: str):
    for event in runner.watch(job_id, timeout=WAIT):
        if event.final:
            return runner.get(job_id)
    raise AssertionError(f"job {job_id} did not end; it is {runner.get(job_id).state.name}")


def _wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _notices_in(events) -> list[str]:
    return [e.payload.diagnostic.code for e in events if isinstance(e.payload, Notice)]


def _notices(runner: JobRunner, job_id: str) -> list[str]:
    return _notices_in(runner.events.events_after(job_id))


def _wrap_step(monkeypatch, hook):
    """Wrap TrainingSession.micro_batch_loss: `hook(session, loss)` returns the loss the step uses."""
    original = TrainingSession.micro_batch_loss

    def wrapped(self, batch, pred):
        return hook(self, original(self, batch, pred))

    monkeypatch.setattr(TrainingSession, "micro_batch_loss", wrapped)


# ---------------------------------------------------------------------------------------------------------------
def test_a_job_runs_to_the_end_and_its_notes_are_told_once_except_resume_notes(
    tmp_path, components, runners, monkeypatch
):
    store = LocalStore(tmp_path)
    key = _setup(store, components)
    registry = CollectorRegistry()
    models = Models(components)
    runner = runners(store, JobTrainer(store, models, metrics=TrainerMetrics(registry)))
    paused = threading.Event()

    def pause_at_step_3(session, loss):
        if session.step == 3 and not paused.is_set():  # 3 steps done: ask for a pause before the 4th is reported
            paused.set()
            runner.pause(session.settings_extra["job_id"])
        return loss

    _wrap_step(monkeypatch, pause_at_step_3)
    # batch 3 of 4 images leaves one out each epoch: the session notes IMAGES_LEFT_OVER on every prepare
    job = JobSpec(training=_training(key, max_steps=7, batch_size=3, save_every_steps=5))
    job_id = _submit(runner, job)

    _wait_for(lambda: runner.get(job_id).state is JobState.PAUSED, "the pause")
    assert runner.get(job_id).latest_savepoint.step == 4  # the step under way when the pause came
    store.put("ds/000.txt", b"a woman, purple scarf, laughing")  # a changed caption: the resume is not exact
    runner.resume(job_id)
    record = _final(runner, job_id)

    assert record.state is JobState.SUCCEEDED and record.failure is None
    assert record.step == record.max_steps == 7
    assert record.latest_savepoint.step == 7
    assert record.model["reference"] == "tiny"
    assert record.model["short_hash"] == components.fingerprint.short_hash
    assert record.model["family"] == components.family
    assert models.calls == [("tiny", ""), ("tiny", "")]  # once per run

    events = runner.events.events_after(job_id)
    resumed_at = next(
        i for i, e in enumerate(events) if isinstance(e.payload, StateChanged) and e.payload.previous is JobState.PAUSED
    )
    before, after = _notices_in(events[:resumed_at]), _notices_in(events[resumed_at:])
    assert before.count("IMAGES_LEFT_OVER") == 1 and "DATASET_CHANGED" not in before
    assert "IMAGES_LEFT_OVER" not in after  # a fresh-start note is not told again on resume
    assert after.count("DATASET_CHANGED") == 1  # ...but a resume note is
    rows = read_loss_csv(store, record.output_prefix)
    assert [row.step for row in rows] == list(range(1, 8))

    # the metrics saw every step once, and the job's gauges left with the job
    assert registry.get_sample_value("tistudio_trainer_steps_total") == 7
    assert registry.get_sample_value("tistudio_trainer_samples_total") == 7 * 3
    assert registry.get_sample_value("tistudio_trainer_loss", {"job_id": job_id}) is None


def test_divergence_fails_the_job_rolled_back_to_its_last_good_savepoint(tmp_path, components, runners, monkeypatch):
    store = LocalStore(tmp_path)
    key = _setup(store, components)
    bad_steps: list[int] = []

    def nan_after_step_5(session, loss):  # step 5 is reported (progress) past the savepoint at 4, then 6 diverges
        if session.step >= 5:
            bad_steps.append(session.step + 1)  # the step this loss belongs to, counted as steps done
            return loss * float("nan")
        return loss

    _wrap_step(monkeypatch, nan_after_step_5)
    runner = runners(store, JobTrainer(store, Models(components)))
    job_id = _submit(runner, JobSpec(training=_training(key, max_steps=8, save_every_steps=2), non_finite="fail"))
    record = _final(runner, job_id)

    first_bad = bad_steps[0]
    assert record.state is JobState.FAILED
    assert record.failure.code == "TRAINING_DIVERGED"
    assert f"step {first_bad}" in record.failure.message
    savepoints = list_savepoints(store, record.output_prefix)
    assert [s.step for s in savepoints] == [2, 4]
    assert all(s.step < first_bad for s in savepoints)  # nothing was saved at or past the bad step
    assert first_bad == 6
    progress = [e.payload.step for e in runner.events.events_after(job_id) if isinstance(e.payload, Progress)]
    assert max(progress) == 5  # the record had reached step 5...
    assert record.step == savepoints[-1].step == record.latest_savepoint.step == 4  # ...and was rolled back
    assert record.rate_scale == 1.0
    assert "TRAINING_DIVERGED_RETRYING" not in _notices(runner, job_id)


def test_divergence_with_retry_goes_on_at_half_the_rate_from_the_last_good_savepoint(
    tmp_path, components, runners, monkeypatch
):
    store = LocalStore(tmp_path)
    key = _setup(store, components)

    def nan_at_the_full_rate(session, loss):
        if session.step >= 5 and session.optimizer.param_groups[0]["lr"] > 0.003:
            return loss * float("nan")
        return loss

    _wrap_step(monkeypatch, nan_at_the_full_rate)
    runner = runners(store, JobTrainer(store, Models(components)))
    job = JobSpec(training=_training(key, max_steps=8, save_every_steps=2), non_finite="retry_half_rate")
    job_id = _submit(runner, job)
    record = _final(runner, job_id)

    assert record.state is JobState.SUCCEEDED and record.failure is None
    assert record.step == 8 and record.rate_scale == 0.5
    events = runner.events.events_after(job_id)
    retrying = [e.payload.diagnostic for e in events if isinstance(e.payload, Notice)]
    retrying = [d for d in retrying if d.code == "TRAINING_DIVERGED_RETRYING"]
    assert len(retrying) == 1
    assert "rolled back to step 4" in retrying[0].message and "0.5 x the learning rate" in retrying[0].message
    rows = read_loss_csv(store, record.output_prefix)
    assert [row.step for row in rows] == list(range(1, 9))  # step 5's full-rate row was replaced, 6's never written
    assert {row.learn_rate for row in rows if row.step <= 4} == {0.005}
    assert {row.learn_rate for row in rows if row.step > 4} == {0.0025}
    assert [s.step for s in list_savepoints(store, record.output_prefix)] == [2, 4, 6, 8]
    progress_rates = {e.payload.step: e.payload.learning_rate for e in events if isinstance(e.payload, Progress)}
    assert progress_rates[5] == 0.0025


def test_divergence_with_retry_gives_up_after_max_halvings(tmp_path, components, runners, monkeypatch):
    store = LocalStore(tmp_path)
    key = _setup(store, components)
    rates: list[float] = []

    def nan_after_step_5(session, loss):
        if session.step >= 5:
            rates.append(session.optimizer.param_groups[0]["lr"])
            return loss * float("nan")
        return loss

    _wrap_step(monkeypatch, nan_after_step_5)
    runner = runners(store, JobTrainer(store, Models(components)))
    job = JobSpec(training=_training(key, max_steps=8, save_every_steps=2), non_finite="retry_half_rate")
    job_id = _submit(runner, job)
    record = _final(runner, job_id)

    assert record.state is JobState.FAILED and record.failure.code == "TRAINING_DIVERGED"
    assert record.rate_scale == 0.5**MAX_HALVINGS
    assert rates == [0.005 * 0.5**k for k in range(MAX_HALVINGS + 1)]  # one try per rate, each from the savepoint at 4
    assert _notices(runner, job_id).count("TRAINING_DIVERGED_RETRYING") == MAX_HALVINGS
    assert record.step == 4
    assert [s.step for s in list_savepoints(store, record.output_prefix)] == [2, 4]


# ---------------------------------------------------------------------------------------------------------------
class FlakyStore(LocalStore):
    """A LocalStore whose writes fail with StoreUnavailable while `down` is set."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.down = threading.Event()

    def _write(self, key, source, length, content_type):
        if self.down.is_set():
            raise StoreUnavailable("down")
        return super()._write(key, source, length, content_type)


def test_a_store_outage_pauses_the_job_and_it_resumes_when_the_store_is_back(
    tmp_path, components, runners, monkeypatch
):
    flaky = FlakyStore(tmp_path)
    store = RetryingStore(flaky, RetryPolicy(patience_seconds=0.2, first_delay=0.05, max_delay=0.05))
    inner = LocalStore(tmp_path)
    key = _setup(store, components)

    def outage_after_step_6(session, loss):
        if session.step >= 6 and not outage_after_step_6.done:
            outage_after_step_6.done = True
            flaky.down.set()  # the 7th step's loss.csv write finds the store away
        return loss

    outage_after_step_6.done = False
    _wrap_step(monkeypatch, outage_after_step_6)
    runner = runners(store, JobTrainer(store, Models(components)), store_probe_seconds=0.05)
    job_id = _submit(runner, JobSpec(training=_training(key, max_steps=30, save_every_steps=5)))

    _wait_for(lambda: runner.get(job_id).state is JobState.PAUSED, "the pause for the outage")
    paused = runner.get(job_id)
    assert paused.failure is not None and paused.failure.code == "STORE_UNAVAILABLE"
    assert "step 5" in paused.failure.message  # the savepoint it resumes from
    time.sleep(0.3)  # several probes while the store is still away: it stays paused
    assert runner.get(job_id).state is JobState.PAUSED
    assert flaky.down.is_set()
    assert b'"RUNNING"' in inner.get(f"jobs/{job_id}/job.json")  # the pause is not in the store yet

    flaky.down.clear()
    record = _final(runner, job_id)

    assert record.state is JobState.SUCCEEDED and record.failure is None
    assert record.step == 30
    stored = inner.get(f"jobs/{job_id}/job.json").decode()
    assert '"SUCCEEDED"' in stored
    events = EventLog(inner).events_after(job_id)  # re-read from the store, not the runner's memory
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    changes = [e.payload for e in events if isinstance(e.payload, StateChanged)]
    pause = next(c for c in changes if c.current is JobState.PAUSED)
    assert pause.reason is not None and pause.reason.code == "STORE_UNAVAILABLE"
    resumed = [JobState.QUEUED, JobState.PREPARING, JobState.RUNNING, JobState.SUCCEEDED]
    assert [c.current for c in changes][-4:] == resumed
    rows = read_loss_csv(inner, record.output_prefix)
    assert [row.step for row in rows] == list(range(1, 31))


# ---------------------------------------------------------------------------------------------------------------
class RecordingRenderer:
    def __init__(self) -> None:
        self.requests = []

    def render(self, request):
        self.requests.append(request)
        return PreviewInfo(request.step, f"{request.output_prefix}manifest.json", ())


@pytest.mark.parametrize(("max_steps", "rendered"), [(5, [2, 4, 5]), (4, [2, 4])])
def test_preview_steps_are_rendered_from_their_savepoints(tmp_path, components, runners, max_steps, rendered):
    store = LocalStore(tmp_path)
    key = _setup(store, components)
    renderer = RecordingRenderer()
    dispatcher = PreviewDispatcher(renderer)
    runner = runners(store, JobTrainer(store, Models(components), previews=dispatcher))
    job = JobSpec(training=_training(key, max_steps=max_steps, save_every_steps=0), preview_every_steps=2)
    job_id = _submit(runner, job)
    record = _final(runner, job_id)
    assert dispatcher.idle(WAIT)
    dispatcher.close()

    assert record.state is JobState.SUCCEEDED
    assert [r.step for r in renderer.requests] == rendered
    savepoints = {s.step: s for s in list_savepoints(store, record.output_prefix)}
    events = runner.events.events_after(job_id)
    prompts = {e.payload.step: e.payload.prompt for e in events if isinstance(e.payload, Progress)}
    for request in renderer.requests:
        savepoint = savepoints[request.step]
        assert request.embedding_key == savepoint.embedding_key and request.embedding_key.endswith(".safetensors")
        assert request.output_prefix == f"{savepoint.folder}previews/"
        assert request.job_id == job_id and request.model == "tiny" and request.trigger == NAME
        assert request.prompts == (prompts[request.step],)  # the last training prompt before the savepoint
        assert NAME in request.prompts[0]
        assert (request.settings.width, request.settings.height) == (32, 32)
    shown = [e.payload.step for e in events if e.kind == "preview_rendered"]
    assert shown == rendered
    assert runner.get(job_id).latest_preview.step == rendered[-1]


def test_without_a_preview_service_each_job_is_told_once_and_still_succeeds(tmp_path, components, runners):
    store = LocalStore(tmp_path)
    key = _setup(store, components)
    skipped: list[str] = []
    runner = runners(
        store, JobTrainer(store, Models(components), previews=PreviewDispatcher(None, on_skipped=skipped.append))
    )
    job = JobSpec(training=_training(key, max_steps=4, save_every_steps=0), preview_every_steps=2)
    jobs = [_submit(runner, job, request_id=f"req-{i}") for i in range(2)]
    for job_id in jobs:
        record = _final(runner, job_id)
        assert record.state is JobState.SUCCEEDED and record.latest_preview is None
        assert _notices(runner, job_id).count("PREVIEWS_NOT_CONFIGURED") == 1
    assert skipped == ["PREVIEWS_NOT_CONFIGURED"] * 4  # every preview step counted, told once per job
