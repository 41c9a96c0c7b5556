"""What a running job's code sees: stop requests to poll, and a sink for its progress, savepoints and previews.

JobControl has the engine's TrainingEvents methods (duck-typed, so this package does not import torch):

    outcome = session.run(events=control, should_stop=control.should_stop)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.diagnostics import Diagnostic
from services.trainer.jobs.events import Notice, Progress
from services.trainer.jobs.model import JobRecord, PreviewInfo, SavepointInfo

if TYPE_CHECKING:
    from services.trainer.jobs.runner import JobRunner

__all__ = ["JobControl", "JobStop"]

# A stronger request replaces a weaker one: cancel (no savepoint) > shutdown (save, stay RUNNING) > pause (save).
_STRENGTH = {"pause": 0, "shutdown": 1, "cancel": 2}


@dataclass(frozen=True)
class JobStop:
    """The engine's StopRequest shape (kind, reason): what `should_stop()` returns."""

    kind: str  # "pause" | "shutdown" | "cancel"
    reason: str = ""


class JobControl:
    def __init__(self, runner: JobRunner, record: JobRecord) -> None:
        self.job_id = record.job_id
        self.max_steps = record.max_steps
        self._runner = runner
        self._lock = threading.Lock()
        self._stop: JobStop | None = None
        self._rate_origin: tuple[float, int] | None = None  # (monotonic time, step) of this run's first report
        self.step = record.step
        self.last_saved_step = record.latest_savepoint.step if record.latest_savepoint else None

    # ---- stop requests (the runner sets them, the run polls them)

    def should_stop(self) -> JobStop | None:
        """Poll before every step; when not None, stop there (pause/shutdown: save first; cancel: do not)."""
        with self._lock:
            return self._stop

    def request(self, kind: str, reason: str = "") -> None:
        with self._lock:
            if self._stop is None or _STRENGTH[kind] > _STRENGTH[self._stop.kind]:
                self._stop = JobStop(kind, reason)

    def withdraw(self, kind: str) -> None:
        with self._lock:
            if self._stop is not None and self._stop.kind == kind:
                self._stop = None

    # ---- the run's events

    def mark_running(self) -> None:
        """Preparation is done (model loaded, latents cached): PREPARING -> RUNNING."""
        self._runner.mark_running(self.job_id)

    def set_model(self, model: Mapping[str, Any]) -> None:
        """The loaded model's ModelInfo fields (reference, name, family, sha256, ...)."""
        self._runner.record_event(self.job_id, None, model=dict(model))

    def report_progress(
        self,
        step: int,
        *,
        loss: float | None = None,
        learning_rate: float | None = None,
        samples_per_second: float | None = None,
        epoch: int = 0,
        epoch_step: int = 0,
        embedding_norm: float | None = None,
        prompt: str = "",
        eta_seconds: float | None = None,
    ) -> None:
        self.mark_running()
        self.step = step
        if eta_seconds is None:
            eta_seconds = self._eta(step)
        progress = Progress(
            step=step,
            max_steps=self.max_steps,
            epoch=epoch,
            epoch_step=epoch_step,
            loss=loss,
            learning_rate=learning_rate,
            samples_per_second=samples_per_second,
            eta_seconds=eta_seconds,
            embedding_norm=embedding_norm,
            prompt=prompt,
        )
        self._runner.record_event(
            self.job_id,
            progress,
            step=step,
            loss=loss,
            learning_rate=learning_rate,
            samples_per_second=samples_per_second,
            eta_seconds=eta_seconds,
        )

    def report_savepoint(self, savepoint: Any) -> None:
        """A SavepointInfo, or the engine's Savepoint (step, embedding_key, manifest_key, loss)."""
        if not isinstance(savepoint, SavepointInfo):
            savepoint = SavepointInfo(
                step=savepoint.step,
                embedding_key=savepoint.embedding_key,
                manifest_key=savepoint.manifest_key,
                loss=savepoint.loss,
                create_time=time.time(),
            )
        self.step = self.last_saved_step = savepoint.step
        self._runner.record_event(self.job_id, savepoint, latest_savepoint=savepoint, step=savepoint.step)

    def rolled_back(self, step: int) -> None:
        """Training diverged: the job is back at its last good savepoint's step (or its start)."""
        self.step = step
        self._rate_origin = None
        self._runner.record_event(self.job_id, None, step=step)

    def set_rate_scale(self, scale: float) -> None:
        """Persist the learning rate's factor, so a restarted trainer keeps training at the lowered rate."""
        self._runner.record_event(self.job_id, None, rate_scale=scale)

    def report_preview(self, preview: PreviewInfo) -> None:
        self._runner.record_event(self.job_id, preview, latest_preview=preview)

    def notice(self, diagnostic: Diagnostic) -> None:
        """Something the user should know that does not stop the job (e.g. previews skipped)."""
        self._runner.record_event(self.job_id, Notice(diagnostic))

    # ---- the engine's TrainingEvents

    def on_phase(self, report: Any) -> None:
        if report.phase == "training":
            self.mark_running()

    def on_step(self, report: Any) -> None:
        self.report_progress(
            report.step,
            loss=report.loss,
            learning_rate=report.lr,
            samples_per_second=report.samples_per_s,
            epoch=report.epoch,
            epoch_step=report.epoch_step,
            embedding_norm=report.embedding_norm,
            prompt=report.prompt,
        )

    def on_savepoint(self, savepoint: Any) -> None:
        self.report_savepoint(savepoint)

    def _eta(self, step: int) -> float | None:
        """Seconds left at this run's average step rate so far."""
        now = time.monotonic()
        if self._rate_origin is None:
            self._rate_origin = (now, step)
            return None
        started, first = self._rate_origin
        if step <= first or now <= started:
            return None
        return (now - started) / (step - first) * max(self.max_steps - step, 0)
