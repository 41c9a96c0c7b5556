"""What a run tells its caller: progress events, stop requests, outcomes, and the failures a job layer acts on.

    events.on_phase(PhaseReport)     preparing: "loading", "encoding" (done/total images), "training", "saving"
    events.on_step(StepReport)       every log_every_steps steps (the only host syncs of the loop)
    events.on_savepoint(Savepoint)   after a savepoint's manifest is written (the savepoint exists from then on)
    should_stop() -> StopRequest     polled before every step; "pause"/"shutdown" save first, "cancel" does not

Failures are exceptions with stable reasons (the interceptor maps them to gRPC codes):
    TrainingDiverged (FAILED_PRECONDITION, TRAINING_DIVERGED): the loss or the embedding went NaN/inf. It carries
        the first bad step and the last good savepoint: roll back to it and fail, or resume from it with
        `scale_learning_rate(spec, 0.5)`.
    TrainingOutOfMemory (RESOURCE_EXHAUSTED, OUT_OF_MEMORY): CUDA ran out of memory, with concrete advice.
After either, the session is spent (its step was cut short): prepare a new one from the last savepoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.common.diagnostics import Diagnostic
from services.common.errors import FailedPrecondition, ResourceExhausted

if TYPE_CHECKING:
    from services.common.embeddings import Embedding
    from services.trainer.engine.savepoints import Savepoint

__all__ = [
    "STOP_KINDS",
    "PhaseReport",
    "RunOutcome",
    "StepReport",
    "StopRequest",
    "TrainingDiverged",
    "TrainingEvents",
    "TrainingOutOfMemory",
]

STOP_KINDS = ("pause", "shutdown", "cancel")


@dataclass(frozen=True)
class StepReport:
    step: int  # optimizer steps done (A1111's "step" column)
    epoch: int  # A1111: (step - 1) // steps_per_epoch
    epoch_step: int  # A1111: (step - 1) % steps_per_epoch
    loss: float  # this step's loss: the mean over its batch x accumulation samples
    lr: float  # the rate this step ran at
    samples_per_s: float  # since the previous report
    losses: tuple[float, ...]  # every step's loss since the previous report, oldest first (ends with `loss`)
    prompt: str = ""  # the first prompt of the step's last micro-batch (A1111 previews with it)
    embedding_norm: float = 0.0  # mean L2 norm of the vectors after `step` (a drifting norm signals trouble)


@dataclass(frozen=True)
class PhaseReport:
    phase: str  # "loading" | "encoding" | "training" | "saving" | "stopped"
    message: str
    done: int = 0  # e.g. images encoded so far
    total: int = 0


@dataclass(frozen=True)
class StopRequest:
    kind: str  # "pause" | "shutdown" (a savepoint first) | "cancel" (none)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            raise ValueError(f"stop kind {self.kind!r} is not one of {', '.join(STOP_KINDS)}")


@dataclass(frozen=True)
class RunOutcome:
    status: str  # "completed" | "until_step" | "paused" | "shutdown" | "cancelled"
    step: int  # steps done when run() returned
    final_step: int  # where the run ends: max_steps, or earlier when an A1111 schedule runs out
    ends_early: bool  # the schedule ended before max_steps (A1111 stops there too)
    embedding: Embedding  # the vectors at `step`
    savepoint: Savepoint | None  # the newest savepoint written by this run() call (None after a cancel)
    loss: float | None  # the last step's loss
    notes: tuple[Diagnostic, ...] = field(default=())  # what the run adjusted (clamped batch, skipped images)


class TrainingEvents:
    """Subclass and override what you need; every method is a no-op here."""

    def on_phase(self, report: PhaseReport) -> None:
        pass

    def on_step(self, report: StepReport) -> None:
        pass

    def on_savepoint(self, savepoint: Savepoint) -> None:
        pass


class TrainingDiverged(FailedPrecondition):
    reason = "TRAINING_DIVERGED"

    def __init__(self, *, what: str, first_bad_step: int, detected_at: int, last_good: Savepoint | None) -> None:
        back = f"the last good savepoint is step {last_good.step}" if last_good else "no savepoint was written yet"
        super().__init__(
            f"training diverged: the {what} became NaN or infinite at step {first_bad_step} (seen at step "
            f"{detected_at}); {back}. Resume from it with a lower learning rate (half is a good start), or with "
            "gradient clipping by norm",
            metadata={
                "what": what,
                "first_bad_step": first_bad_step,
                "detected_at": detected_at,
                "last_good_step": last_good.step if last_good else "",
            },
        )
        self.what = what  # "loss" | "embedding"
        self.first_bad_step = first_bad_step
        self.detected_at = detected_at
        self.last_good = last_good


class TrainingOutOfMemory(ResourceExhausted):
    reason = "OUT_OF_MEMORY"
