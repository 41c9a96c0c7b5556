"""Trainer jobs and events as messages, and ListJobs' paging: pure functions, no server and no model."""

from __future__ import annotations

import pytest

from services.common.diagnostics import Diagnostic, Severity
from services.common.storage import LocalStore
from services.trainer import convert, convert_jobs
from services.trainer.job_spec import JobSpec
from services.trainer.jobs.events import JobEvent, Notice, Progress, StateChanged
from services.trainer.jobs.model import JobRecord, JobState, PreviewInfo, SavepointInfo
from services.trainer.tests.test_convert import EMBEDDING, MODEL, _identity, _refused, _resolve, _spec
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as pb


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


# --- jobs and events -------------------------------------------------------------------------------------------

T0 = 1_700_000_000.25
SAVEPOINT = SavepointInfo(
    120, "jobs/j1/savepoints/120/anna.safetensors", "jobs/j1/savepoints/120/manifest.json", 0.125, T0 + 60
)
PREVIEW = PreviewInfo(
    120,
    "jobs/j1/previews/120/manifest.json",
    ({"prompt": "anna portrait", "seed": 3, "weight": 0.75, "image_key": "jobs/j1/previews/120/0.png"},),
)


def _record(store, **changes) -> JobRecord:
    job = _resolve(convert.training_request(_spec(recipe="seed-a"), store, default_model=""))
    values = dict(
        job_id="j1",
        request_id="r1",
        spec=job.to_record(),
        spec_fingerprint="f",
        state=JobState.QUEUED,
        max_steps=3000,
        output_prefix="jobs/j1/",
        create_time=T0,
        update_time=T0 + 1,
    )
    return JobRecord(**{**values, **changes})


def test_job_to_proto_full(store):
    failure = Diagnostic(Severity.ERROR, "NON_FINITE_LOSS", "loss is nan", "lower the rate")
    record = _record(
        store,
        state=JobState.FAILED,
        failure=failure,
        step=120,
        loss=0.1,
        learning_rate=0.005,
        samples_per_second=3.5,
        eta_seconds=90.5,
        latest_savepoint=SAVEPOINT,
        latest_preview=PREVIEW,
        last_sequence=17,
        start_time=T0 + 2,
        end_time=T0 + 100,
        model={
            "reference": MODEL,
            "name": "sd15",
            "family": "sd1",
            "sha256": "ab" * 32,
            "short_hash": "abababab12",
            "prediction_type": "epsilon",
            "embedding_dims": [768],
        },
    )
    out = convert_jobs.job_to_proto(record)
    assert (out.job_id, out.request_id, out.state, out.step, out.max_steps, out.last_sequence) == (
        "j1",
        "r1",
        pb.JOB_STATE_FAILED,
        120,
        3000,
        17,
    )
    assert (out.loss, out.learning_rate, out.samples_per_second) == (0.1, 0.005, 3.5)
    assert (out.eta.seconds, out.eta.nanos) == (90, 500_000_000)
    assert (out.failure.code, out.failure.severity) == ("NON_FINITE_LOSS", common_pb2.SEVERITY_ERROR)
    assert out.spec == convert.training_spec_to_proto(JobSpec.from_record(record.spec), embedding_key=EMBEDDING)
    assert out.spec.recipe == "seed-a"
    assert out.model == convert.model_identity_to_proto(_identity())
    assert out.output.key == "jobs/j1/"
    assert (out.create_time.seconds, out.create_time.nanos) == (1_700_000_000, 250_000_000)
    assert out.start_time.seconds == 1_700_000_002 and out.end_time.seconds == 1_700_000_100
    assert out.update_time.seconds == 1_700_000_001
    assert out.latest_savepoint == pb.Savepoint(
        step=120,
        embedding=common_pb2.StorageRef(key=SAVEPOINT.embedding_key),
        manifest=common_pb2.StorageRef(key=SAVEPOINT.manifest_key),
        loss=0.125,
        create_time=convert_jobs._timestamp(T0 + 60),
    )
    item = out.latest_preview.items[0]
    assert (out.latest_preview.step, out.latest_preview.manifest.key) == (120, PREVIEW.manifest_key)
    assert (item.prompt, item.seed, item.weight, item.image.ref.key) == (
        "anna portrait",
        3,
        0.75,
        "jobs/j1/previews/120/0.png",
    )


def test_job_to_proto_unset_parts(store):
    out = convert_jobs.job_to_proto(_record(store))
    assert out.state == pb.JOB_STATE_QUEUED
    for name in ("failure", "model", "eta", "latest_savepoint", "latest_preview", "start_time", "end_time"):
        assert not out.HasField(name), name
    assert out.HasField("create_time") and out.HasField("update_time")
    assert (out.loss, out.learning_rate, out.samples_per_second) == (0, 0, 0)
    # the record survives its JSON form unchanged
    assert convert_jobs.job_to_proto(JobRecord.from_record(_record(store).to_record())) == out


def _event(payload) -> pb.WatchJobResponse:
    out = convert_jobs.event_to_proto(JobEvent("j1", 5, T0, payload))
    assert (out.sequence, out.time.seconds, out.time.nanos) == (5, 1_700_000_000, 250_000_000)
    return out


def test_state_changed_events():
    first = _event(StateChanged(None, JobState.QUEUED))
    assert first.WhichOneof("event") == "state_changed"
    assert first.state_changed == pb.StateChanged(previous=0, current=pb.JOB_STATE_QUEUED)
    reason = Diagnostic(Severity.WARNING, "STORE_UNAVAILABLE", "store went away")
    paused = _event(StateChanged(JobState.RUNNING, JobState.PAUSED, reason)).state_changed
    assert (paused.previous, paused.current, paused.reason.code) == (
        pb.JOB_STATE_RUNNING,
        pb.JOB_STATE_PAUSED,
        "STORE_UNAVAILABLE",
    )


def test_progress_event():
    full = _event(Progress(10, 200, 1, 4, 0.25, 0.005, 2.0, 12.5, 0.4, "a photo of anna")).progress
    assert (full.step, full.max_steps, full.epoch, full.epoch_step, full.prompt) == (10, 200, 1, 4, "a photo of anna")
    assert (full.loss, full.learning_rate, full.samples_per_second, full.embedding_norm) == (0.25, 0.005, 2.0, 0.4)
    assert (full.eta.seconds, full.eta.nanos) == (12, 500_000_000)
    bare = _event(Progress(10, 200)).progress
    assert not bare.HasField("eta") and (bare.loss, bare.embedding_norm) == (0, 0)


def test_savepoint_preview_and_notice_events():
    saved = _event(SAVEPOINT)
    assert saved.WhichOneof("event") == "savepoint_saved"
    assert saved.savepoint_saved.embedding.key == SAVEPOINT.embedding_key
    rendered = _event(PREVIEW)
    assert rendered.WhichOneof("event") == "preview_rendered"
    assert rendered.preview_rendered.items[0].image.ref.key == "jobs/j1/previews/120/0.png"
    notice = _event(Notice(Diagnostic(Severity.INFO, "PREVIEWS_SKIPPED", "no preview service")))
    assert notice.WhichOneof("event") == "notice" and notice.notice.code == "PREVIEWS_SKIPPED"


# --- list paging ------------------------------------------------------------------------------------------------


def test_page_size_bounds():
    assert convert_jobs.page_size(0) == convert_jobs.DEFAULT_PAGE_SIZE == 50
    assert convert_jobs.page_size(1) == 1
    assert convert_jobs.page_size(500) == 500
    _refused(lambda: convert_jobs.page_size(501), "page_size")


def test_job_states():
    assert convert_jobs.job_states([]) == []
    assert convert_jobs.job_states([pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING]) == [JobState.QUEUED, JobState.RUNNING]
    assert [s.name for s in JobState] == [pb.JobState.Name(n).removeprefix("JOB_STATE_") for n in range(1, 8)]
    _refused(lambda: convert_jobs.job_states([pb.JOB_STATE_UNSPECIFIED]), "states")
    _refused(lambda: convert_jobs.job_states([1, 99]), "states")
