"""Trainer jobs and their events as tistudio.trainer.v1 messages (POSIX seconds become Timestamps and Durations,
None becomes unset or 0), and ListJobs' paging arguments. The spec inside a Job goes through `convert`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from services.common.convert import diagnostic_to_proto, storage_ref
from services.common.diagnostics import Diagnostic
from services.common.errors import InvalidArgument
from services.trainer.convert import fields_of, model_record_to_proto, training_spec_to_proto
from services.trainer.job_spec import JobSpec
from services.trainer.jobs.events import JobEvent, Notice, Progress, StateChanged
from services.trainer.jobs.model import JobRecord, JobState, PreviewInfo, SavepointInfo
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as pb

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "event_to_proto", "job_states", "job_to_proto", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def _diagnostic(diagnostic: Diagnostic | None) -> common_pb2.Diagnostic | None:
    return diagnostic_to_proto(diagnostic) if diagnostic is not None else None


def _timestamp(seconds: float | None, kind: type = timestamp_pb2.Timestamp) -> Any:
    """POSIX seconds (or, with kind=Duration, a length in seconds) as the message; None stays unset."""
    if seconds is None:
        return None
    whole = math.floor(seconds)  # seconds * 1e9 as one float would lose the nanoseconds of a 2020s date
    out = kind()
    out.FromNanoseconds(whole * 1_000_000_000 + round((seconds - whole) * 1e9))
    return out


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    return _timestamp(seconds, duration_pb2.Duration)


def _savepoint(info: SavepointInfo) -> pb.Savepoint:
    return pb.Savepoint(
        step=info.step,
        embedding=storage_ref(info.embedding_key),
        manifest=storage_ref(info.manifest_key),
        loss=info.loss or 0.0,
        create_time=_timestamp(info.create_time),
    )


def _preview_set(info: PreviewInfo) -> pb.PreviewSet:
    items = [
        pb.PreviewItem(
            prompt=item.get("prompt", ""),
            seed=item.get("seed", 0),
            weight=item.get("weight", 0.0),
            image=common_pb2.ImageData(ref=storage_ref(item["image_key"])),
        )
        for item in info.items
    ]
    return pb.PreviewSet(step=info.step, items=items, manifest=storage_ref(info.manifest_key))


def job_to_proto(record: JobRecord) -> pb.Job:
    return pb.Job(
        **fields_of(record, "job_id request_id step max_steps loss learning_rate samples_per_second last_sequence"),
        state=int(record.state),
        failure=_diagnostic(record.failure),
        spec=training_spec_to_proto(
            JobSpec.from_record(record.spec), embedding_key=record.spec["training"]["embedding_key"]
        ),
        model=model_record_to_proto(record.model) if record.model else None,
        eta=_duration(record.eta_seconds),
        output=storage_ref(record.output_prefix),
        latest_savepoint=_savepoint(record.latest_savepoint) if record.latest_savepoint is not None else None,
        latest_preview=_preview_set(record.latest_preview) if record.latest_preview is not None else None,
        **{
            name: _timestamp(getattr(record, name)) for name in ("create_time", "start_time", "update_time", "end_time")
        },
    )


def event_to_proto(event: JobEvent) -> pb.WatchJobResponse:
    # JobEvent.kind is the name of the oneof field its payload goes in.
    return pb.WatchJobResponse(
        sequence=event.sequence, time=_timestamp(event.time), **{event.kind: _event_payload(event.payload)}
    )


def _event_payload(payload: StateChanged | Progress | SavepointInfo | PreviewInfo | Notice) -> Any:
    if isinstance(payload, StateChanged):
        return pb.StateChanged(
            previous=int(payload.previous or 0), current=int(payload.current), reason=_diagnostic(payload.reason)
        )
    if isinstance(payload, Progress):
        names = "step max_steps epoch epoch_step loss learning_rate samples_per_second embedding_norm prompt"
        return pb.StepProgress(**fields_of(payload, names), eta=_duration(payload.eta_seconds))
    if isinstance(payload, SavepointInfo):
        return _savepoint(payload)
    if isinstance(payload, PreviewInfo):
        return _preview_set(payload)
    return diagnostic_to_proto(payload.diagnostic)


def job_states(values: Iterable[int]) -> list[JobState]:
    try:
        return [JobState(value) for value in values]  # UNSPECIFIED (0) is no JobState either
    except ValueError as e:
        names = ", ".join(s.name for s in JobState)
        raise InvalidArgument(f"states: {e}; use {names}", field="states") from None


def page_size(value: int) -> int:
    if value > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size {value} is above {MAX_PAGE_SIZE}: ask for fewer", field="page_size")
    return value or DEFAULT_PAGE_SIZE
