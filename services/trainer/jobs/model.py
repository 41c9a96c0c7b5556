"""A training job as the store keeps it: its state machine and its record (plain JSON at `jobs/<job_id>/job.json`).

    QUEUED ──> PREPARING ──> RUNNING ──> SUCCEEDED
      │  ^         │  │        │  │
      │  └─────────┴──┼────────┘  │      (back to QUEUED: recovery after a crash or a shutdown)
      v               v           v
    PAUSED <──────────┴───────────┘      (pause saves, frees the device; resume goes back to QUEUED)
    any non-final state ──> CANCELLED;  QUEUED/PREPARING/RUNNING ──> FAILED

No protobuf here: the servicer converts a `JobRecord` to `tistudio.trainer.v1.Job` (times are POSIX seconds).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import FailedPrecondition
from services.common.records import plain_record

__all__ = [
    "FINAL_STATES",
    "IllegalTransition",
    "JobOutcome",
    "JobRecord",
    "JobState",
    "PreviewInfo",
    "SavepointInfo",
    "check_transition",
    "diagnostic_from_record",
    "spec_fingerprint",
]


class JobState(enum.IntEnum):
    # Numbers match tistudio.trainer.v1.JobState.
    QUEUED = 1
    PREPARING = 2  # loading the model, caching latents
    RUNNING = 3
    PAUSED = 4
    SUCCEEDED = 5
    FAILED = 6
    CANCELLED = 7

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.QUEUED: frozenset({_S.PREPARING, _S.PAUSED, _S.CANCELLED, _S.FAILED}),
    _S.PREPARING: frozenset({_S.RUNNING, _S.PAUSED, _S.CANCELLED, _S.FAILED, _S.SUCCEEDED, _S.QUEUED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.PAUSED, _S.CANCELLED, _S.FAILED, _S.QUEUED}),
    _S.PAUSED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


class IllegalTransition(FailedPrecondition):
    reason = "JOB_STATE_CONFLICT"


def check_transition(job_id: str, current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(s.name for s in sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise IllegalTransition(
            f"job {job_id} is {current.name} and cannot become {target.name}; from {current.name} it can become "
            f"{allowed}",
            metadata={"job_id": job_id, "state": current.name, "requested": target.name},
        )


def spec_fingerprint(spec_record: Mapping[str, Any]) -> str:
    """sha256 over the spec's canonical JSON: the same settings give the same fingerprint, in any key order."""
    canonical = json.dumps(plain_record(dict(spec_record)), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JobOutcome:
    """What a run callable may return besides the engine's RunOutcome: a status with the reason behind it (e.g.
    "paused" because the store went away; the reason becomes Job.failure until the job resumes)."""

    status: str  # "completed" | "paused" | "cancelled" | "shutdown"
    reason: Diagnostic | None = None


@dataclass(frozen=True)
class SavepointInfo:
    """What Job.latest_savepoint and the savepoint_saved event carry (the engine's Savepoint, trimmed)."""

    step: int
    embedding_key: str  # the savepoint's .safetensors
    manifest_key: str  # written last: the savepoint exists once this does
    loss: float | None
    create_time: float  # POSIX seconds

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> SavepointInfo:
        return cls(**data)


@dataclass(frozen=True)
class PreviewInfo:
    """Previews rendered for one savepoint (PreviewSet); `items` are plain dicts: prompt, seed, weight, image key."""

    step: int
    manifest_key: str
    items: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> PreviewInfo:
        return cls(step=data["step"], manifest_key=data["manifest_key"], items=tuple(data.get("items", ())))


def diagnostic_from_record(data: Mapping[str, Any]) -> Diagnostic:
    """The inverse of Diagnostic.to_dict()."""
    return Diagnostic(
        severity=Severity[str(data["severity"]).upper()],
        code=data["code"],
        message=data["message"],
        **{k: data[k] for k in ("suggestion", "field", "key") if k in data},
    )


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    request_id: str  # the client's idempotency key ("" when none was given)
    spec: Mapping[str, Any]  # TrainingSpec.to_record() of the resolved spec
    spec_fingerprint: str  # spec_fingerprint(spec): what makes a retried StartTraining the same request
    state: JobState
    max_steps: int
    output_prefix: str  # "jobs/<job_id>/": record, events, savepoints, previews, loss CSV
    create_time: float  # POSIX seconds
    update_time: float
    model: Mapping[str, Any] = field(default_factory=dict)  # ModelInfo fields, once the model is loaded
    failure: Diagnostic | None = None  # for FAILED: what went wrong and what to change
    step: int = 0
    loss: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    eta_seconds: float | None = None
    latest_savepoint: SavepointInfo | None = None
    latest_preview: PreviewInfo | None = None
    last_sequence: int = 0  # sequence number of the job's newest event
    start_time: float | None = None  # first entered PREPARING
    end_time: float | None = None  # entered a final state
    rate_scale: float = 1.0  # the learning rate's factor after "retry at half the rate" divergences (1, 0.5, ...)

    def replace(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        data = plain_record(self)
        data["state"] = self.state.name
        data["failure"] = self.failure.to_dict() if self.failure else None
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> JobRecord:
        values = dict(data)
        values["state"] = JobState[values["state"]]
        if values.get("failure"):
            values["failure"] = diagnostic_from_record(values["failure"])
        if values.get("latest_savepoint"):
            values["latest_savepoint"] = SavepointInfo.from_record(values["latest_savepoint"])
        if values.get("latest_preview"):
            values["latest_preview"] = PreviewInfo.from_record(values["latest_preview"])
        return cls(**values)
