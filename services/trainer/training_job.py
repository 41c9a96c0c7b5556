"""The run callable of a training job: the engine, driven by the job layer.

    trainer = JobTrainer(store, models, device="cuda", previews=PreviewDispatcher(renderer), metrics=metrics,
                         device_loop=DeviceLoop(on_round=metrics.observe_round))
    runner = JobRunner(JobStore(store), EventLog(store), trainer, concurrency=8)

A run, top to bottom:
    the job's spec (at the rate scale earlier divergences left it)  ->  the model from the pool
    -> prepare from the latest savepoint (exact resume), or from the embedding file at step 0
    -> train through the device loop, which batches it with the other jobs on the same model and size, polling
       the runner's stop requests; savepoints at save steps and preview steps; each preview step's savepoint goes
       to the preview service in the background
    -> the outcome: completed, paused, cancelled, or shutdown (the next process resumes it)
Failures: a non-finite loss or embedding rolls back to the last good savepoint (every savepoint is checked before
it is written, so the latest is good) and fails the job, or, when the job asks for it, carries on from there at
half the rate, up to MAX_HALVINGS times. Out of memory fails with the engine's advice. When the store stays away
longer than the retry policy's patience, the job pauses (reason STORE_UNAVAILABLE) and the runner resumes it from
its last savepoint once the store answers again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

from services.common.diagnostics import Diagnostic, Severity
from services.common.storage import Store, StoreUnavailable
from services.common.torch_threads import in_passing_thread
from services.trainer.device_loop import DeviceLoop
from services.trainer.embedding_ops import ModelIdentity
from services.trainer.engine import (
    PhaseReport,
    RunOutcome,
    Savepoint,
    StepReport,
    TrainingDiverged,
    TrainingEvents,
    TrainingSession,
    latest_savepoint,
    scale_learning_rate,
)
from services.trainer.job_spec import JobSpec
from services.trainer.jobs import JobControl, JobOutcome, JobRecord
from services.trainer.metrics import TrainerMetrics
from services.trainer.previews import PreviewDispatcher, PreviewRequest

__all__ = ["MAX_HALVINGS", "JobTrainer"]

log = logging.getLogger(__name__)

MAX_HALVINGS = 3  # "retry at half the rate" gives up after 1/8 of the rate: a run that diverges there is broken
_RESUME_NOTES = frozenset({"DATASET_CHANGED", "RNG_RESEEDED"})  # the notes worth repeating on every resume


class JobTrainer:
    """`run_job(record, control)` for the JobRunner: one call trains one job until it ends, pauses or stops."""

    def __init__(
        self,
        store: Store,
        models: Any,
        *,
        device: str = "cpu",
        previews: PreviewDispatcher | None = None,
        metrics: TrainerMetrics | None = None,
        device_loop: DeviceLoop | None = None,
    ) -> None:
        self._store = store
        self._models = models  # anything with stable_diffusion(reference, config) -> components (the ModelPool)
        self._device = device
        self._previews = previews or PreviewDispatcher(None)
        self._metrics = metrics
        self._device_loop = device_loop or DeviceLoop()

    def __call__(self, record: JobRecord, control: JobControl) -> RunOutcome | JobOutcome:
        job = JobSpec.from_record(record.spec)
        rate_scale = record.rate_scale
        try:
            components = self._models.stable_diffusion(job.training.model, job.training.model_config)
            control.set_model(asdict(ModelIdentity.from_components(components, job.training.model)))
            while True:
                spec = job.training if rate_scale == 1.0 else scale_learning_rate(job.training, rate_scale)
                try:
                    return self._run(record, control, job, spec, components, rate_scale)
                except TrainingDiverged as diverged:
                    rolled_back = control.step  # _run moved the job back to its last good step
                    if job.non_finite != "retry_half_rate" or rate_scale <= 0.5**MAX_HALVINGS:
                        raise
                    rate_scale /= 2
                    control.set_rate_scale(rate_scale)
                    control.notice(
                        Diagnostic(
                            Severity.WARNING,
                            "TRAINING_DIVERGED_RETRYING",
                            f"{diverged.message.split('. ')[0]}; rolled back to step {rolled_back} and going on at "
                            f"{rate_scale:g} x the learning rate",
                            "If it diverges again, clip the gradient by norm or lower the schedule's rates.",
                            field="spec.learning_rate",
                        )
                    )
        except StoreUnavailable as away:
            step = control.last_saved_step
            return JobOutcome(
                "paused",
                Diagnostic(
                    Severity.WARNING,
                    "STORE_UNAVAILABLE",
                    f"the store stopped answering ({away.message}); the job paused and resumes from its last "
                    f"savepoint{f' (step {step})' if step is not None else ''} when the store is back",
                    "Check the object store (endpoint, credentials, free space); nothing needs to be done here.",
                ),
            )
        finally:
            self._previews.forget(record.job_id)
            if self._metrics is not None:
                self._metrics.job_ended(record.job_id)

    def _run(
        self, record: JobRecord, control: JobControl, job: JobSpec, spec: Any, components: Any, rate_scale: float
    ) -> RunOutcome:
        resume = latest_savepoint(self._store, record.output_prefix)
        events = _JobEvents(record, control, job, self._previews, self._metrics)
        # The VAE pass and the resume run on a passing thread, so that this job thread keeps no OpenMP team
        # beside the device loop's (services/common/torch_threads.py).
        session = in_passing_thread(
            TrainingSession.prepare,
            spec,
            components,
            self._store,
            output_prefix=record.output_prefix,
            device=self._device,
            resume=resume,
            events=events,
            settings_extra=_job_settings(record, job, rate_scale),
        )
        events.samples_per_step = session.plan.samples_per_step
        for note in session.notes:
            if resume is None or note.code in _RESUME_NOTES:
                control.notice(note)
        try:
            return self._device_loop.train(
                session, events=events, should_stop=control.should_stop, also_save_every=job.preview_every_steps
            )
        except TrainingDiverged as diverged:
            good = diverged.last_good.step if diverged.last_good else session.start_embedding.step or 0
            control.rolled_back(good)
            raise


def _job_settings(record: JobRecord, job: JobSpec, rate_scale: float) -> dict[str, Any]:
    """settings.json's "job" part: what the job layer adds to the engine's spec (the run's spec is beside it,
    with the learning rate as this run uses it)."""
    settings = {key: value for key, value in job.to_record().items() if key != "training"}
    return {"job_id": record.job_id, "rate_scale": rate_scale, **settings}


class _JobEvents(TrainingEvents):
    """The engine's events, fanned out to the job's event log, the metrics and the preview dispatcher."""

    def __init__(
        self,
        record: JobRecord,
        control: JobControl,
        job: JobSpec,
        previews: PreviewDispatcher,
        metrics: TrainerMetrics | None,
    ) -> None:
        self._record = record
        self._control = control
        self._job = job
        self._previews = previews
        self._metrics = metrics
        # The latest training prompt at each reported step: savepoints arrive from the writer thread, possibly after
        # later reports, and a preview renders with the prompt of its own step (A1111 previews with it).
        self._prompts: dict[int, str] = {}
        self._prompts_lock = threading.Lock()
        self.samples_per_step = job.training.samples_per_step

    def on_phase(self, report: PhaseReport) -> None:
        self._control.on_phase(report)

    def on_step(self, report: StepReport) -> None:
        self._control.on_step(report)
        if report.prompt:
            with self._prompts_lock:
                self._prompts[report.step] = report.prompt
        if self._metrics is not None:
            self._metrics.observe_steps(self._record.job_id, report, samples_per_step=self.samples_per_step)

    def on_savepoint(self, savepoint: Savepoint) -> None:
        self._control.on_savepoint(savepoint)
        with self._prompts_lock:  # the prompt reported at the savepoint's step; older ones are no longer needed
            reported = [step for step in self._prompts if step <= savepoint.step]
            prompt = self._prompts[max(reported)] if reported else ""
            for step in reported[:-1]:
                del self._prompts[step]
        every = self._job.preview_every_steps
        if every and (savepoint.step % every == 0 or savepoint.reason == "final"):
            self._previews.submit(self._preview_request(savepoint, prompt), self._control)

    def _preview_request(self, savepoint: Savepoint, prompt: str) -> PreviewRequest:
        training, settings = self._job.training, self._job.preview
        return PreviewRequest(
            job_id=self._record.job_id,
            step=savepoint.step,
            model=training.model,
            model_config=training.model_config,
            embedding_key=savepoint.embedding_key,
            trigger=savepoint.name,
            prompts=settings.prompts or ((prompt,) if prompt else ("[name]",)),
            settings=settings,
            output_prefix=f"{savepoint.folder}previews/",
        )
