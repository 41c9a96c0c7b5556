"""Job records: the state machine, the JSON round trip, the durable table and idempotent creation."""

from __future__ import annotations

import pytest

from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import AlreadyExists, FailedPrecondition, NotFound
from services.common.storage import LocalStore
from services.trainer.jobs import (
    FINAL_STATES,
    IllegalTransition,
    JobRecord,
    JobState,
    JobStore,
    PreviewInfo,
    SavepointInfo,
    check_transition,
    spec_fingerprint,
)

SPEC = {"model": "models/tiny-sd", "embedding_key": "e.safetensors", "dataset": "datasets/anna/", "max_steps": 20}


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobState.QUEUED, JobState.PREPARING),
        (JobState.PREPARING, JobState.RUNNING),
        (JobState.RUNNING, JobState.PAUSED),
        (JobState.PAUSED, JobState.QUEUED),
        (JobState.RUNNING, JobState.QUEUED),  # recovery
        (JobState.RUNNING, JobState.SUCCEEDED),
        (JobState.QUEUED, JobState.CANCELLED),
        (JobState.PAUSED, JobState.CANCELLED),
        (JobState.RUNNING, JobState.FAILED),
    ],
)
def test_legal_transitions_pass(current, target):
    check_transition("j", current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.QUEUED, JobState.SUCCEEDED),
        (JobState.PAUSED, JobState.RUNNING),
        (JobState.PAUSED, JobState.FAILED),
        (JobState.SUCCEEDED, JobState.QUEUED),
        (JobState.CANCELLED, JobState.QUEUED),
        (JobState.FAILED, JobState.RUNNING),
    ],
)
def test_illegal_transitions_are_refused(current, target):
    with pytest.raises(IllegalTransition) as info:
        check_transition("j1", current, target)
    assert isinstance(info.value, FailedPrecondition)
    assert info.value.reason == "JOB_STATE_CONFLICT"
    assert current.name in info.value.message and target.name in info.value.message


def test_final_states_lead_nowhere():
    for state in FINAL_STATES:
        assert state.final
        for target in JobState:
            with pytest.raises(IllegalTransition):
                check_transition("j", state, target)


def test_record_round_trips_through_json(store):
    jobs = JobStore(store)
    record, _ = jobs.create("r1", SPEC, max_steps=20, model={"name": "tiny-sd", "embedding_dims": [32]})
    failure = Diagnostic(Severity.ERROR, "OUT_OF_MEMORY", "CUDA ran out of memory", suggestion="lower batch_size")
    full = record.replace(
        state=JobState.FAILED,
        failure=failure,
        step=7,
        loss=0.25,
        learning_rate=0.005,
        samples_per_second=3.5,
        eta_seconds=12.0,
        latest_savepoint=SavepointInfo(5, "jobs/x/savepoints/5/e.safetensors", "jobs/x/savepoints/5/m.json", 0.3, 1.0),
        latest_preview=PreviewInfo(5, "jobs/x/previews/5/manifest.json", ({"prompt": "a", "seed": 1},)),
        last_sequence=9,
        start_time=2.0,
        end_time=3.0,
    )
    assert JobRecord.from_record(full.to_record()) == full
    jobs.save(full)
    assert JobStore(store).get(record.job_id) == full


def test_fingerprint_ignores_key_order_and_sees_values():
    assert spec_fingerprint(SPEC) == spec_fingerprint(dict(reversed(list(SPEC.items()))))
    assert spec_fingerprint(SPEC) != spec_fingerprint({**SPEC, "max_steps": 21})


def test_same_request_id_and_spec_returns_the_existing_job_even_after_a_restart(store):
    jobs = JobStore(store)
    first, created = jobs.create("req-1", SPEC, max_steps=20)
    assert created and first.state is JobState.QUEUED
    assert first.output_prefix == f"jobs/{first.job_id}/"
    assert store.exists(f"jobs/{first.job_id}/job.json")
    again, created = jobs.create("req-1", dict(SPEC), max_steps=20)
    assert (again, created) == (first, False)
    reloaded, created = JobStore(store).create("req-1", SPEC, max_steps=20)
    assert (reloaded, created) == (first, False)


def test_same_request_id_with_other_settings_is_refused(store):
    jobs = JobStore(store)
    first, _ = jobs.create("req-1", SPEC, max_steps=20)
    with pytest.raises(AlreadyExists) as info:
        JobStore(store).create("req-1", {**SPEC, "max_steps": 40}, max_steps=40)
    assert info.value.reason == "REQUEST_ID_REUSED"
    assert info.value.field == "request_id"
    assert info.value.metadata["job_id"] == first.job_id


def test_jobs_without_request_id_are_always_new(store):
    jobs = JobStore(store)
    a, _ = jobs.create("", SPEC, max_steps=20)
    b, created = jobs.create("", SPEC, max_steps=20)
    assert created and a.job_id != b.job_id


def test_get_list_and_unreadable_records(store):
    times = iter([1.0, 2.0, 3.0])
    jobs = JobStore(store, clock=lambda: next(times))
    a, _ = jobs.create("a", SPEC, max_steps=20)
    b, _ = jobs.create("b", SPEC, max_steps=20)
    c, _ = jobs.create("c", SPEC, max_steps=20)
    jobs.save(b.replace(state=JobState.PAUSED))
    store.put("jobs/broken/job.json", b"{not json")
    reloaded = JobStore(store)
    assert [r.job_id for r in reloaded.list()] == [c.job_id, b.job_id, a.job_id]
    assert [r.job_id for r in reloaded.list([JobState.PAUSED])] == [b.job_id]
    with pytest.raises(NotFound) as info:
        reloaded.get("nope")
    assert info.value.reason == "JOB_NOT_FOUND"
