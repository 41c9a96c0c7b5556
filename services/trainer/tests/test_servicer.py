"""The trainer service over a real channel: started from its definition with the tiny SD model and a local store,
and a preview service stand-in on another real channel (the preview service proper is its own issue)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent import futures

import grpc
import pytest
import torch
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.embeddings import Embedding, EmbeddingFormat, read_embedding, write_embedding
from services.common.runtime import start_service
from services.common.storage import LocalStore
from services.trainer.engine.testing import write_dataset
from services.trainer.service import DEFINITION
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2, preview_pb2_grpc
from tistudio.trainer.v1 import trainer_pb2 as pb
from tistudio.trainer.v1 import trainer_pb2_grpc

DATASET = "datasets/anna/"
S = pb.JobState


class FakePreviews(preview_pb2_grpc.PreviewServiceServicer):
    """Records RenderPreviews calls and writes a manifest where the trainer asked, as the real service will."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.calls: list[preview_pb2.RenderPreviewsRequest] = []

    def RenderPreviews(self, request, context):
        self.calls.append(request)
        images = []
        for i, seed in enumerate(request.seeds):
            key = f"{request.output.key}{i:02d}.png"
            self.store.put(key, b"png")
            ref = common_pb2.ImageData(ref=common_pb2.StorageRef(key=key))
            images.append(
                preview_pb2.PreviewImage(
                    prompt_index=0, seed=seed, weight=1.0, image=preview_pb2.GeneratedImage(image=ref, seed=seed)
                )
            )
        manifest = f"{request.output.key}manifest.json"
        self.store.put(manifest, json.dumps({"step": request.step}).encode())
        return preview_pb2.RenderPreviewsResponse(images=images, manifest=common_pb2.StorageRef(key=manifest))


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("trainer-service")
    store = LocalStore(root / "store")
    previews = FakePreviews(store)
    preview_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    preview_pb2_grpc.add_PreviewServiceServicer_to_server(previews, preview_server)
    preview_port = preview_server.add_insecure_port("127.0.0.1:0")
    preview_server.start()
    env = {
        "TISTUDIO_STORE_URL": (root / "store").as_uri(),
        "TISTUDIO_CACHE_DIR": str(root / "cache"),
        "TISTUDIO_TRAINER_PORT": "0",
        "TISTUDIO_TRAINER_METRICS_PORT": "off",
        "TISTUDIO_DRAIN_SECONDS": "0",
        "TISTUDIO_SD_MODEL": str(tiny_models["sd"]),
        "TISTUDIO_TRAINER_CONCURRENCY": "2",
        "TISTUDIO_PREVIEW_ADDRESS": f"127.0.0.1:{preview_port}",
    }
    running = start_service(DEFINITION, env)
    assert running.loaded.wait(120), "the trainer did not load"
    write_dataset(store, DATASET, 4)
    channel = grpc.insecure_channel(running.server.address)
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    stub.CreateEmbedding(pb.CreateEmbeddingRequest(name="subj3ct", init_text="woman", vectors_per_token=2))
    yield stub, store, running.server.registry, previews
    channel.close()
    running.server.stop(grace=0)
    running.wait()
    preview_server.stop(0)


def _spec(**fields) -> pb.TrainingSpec:
    values = dict(
        embedding=common_pb2.StorageRef(key="embeddings/subj3ct.safetensors"),
        dataset=common_pb2.StorageRef(key=DATASET),
        learning_rate="0.005",
        max_steps=6,
        width=32,
        height=32,
        template="subject",
        save_every_steps=3,
        preview_every_steps=0,
        log_every_steps=1,
    )
    values.update(fields)
    return pb.TrainingSpec(**values)


def _start(stub, spec: pb.TrainingSpec, request_id: str | None = None) -> pb.Job:
    return stub.StartTraining(pb.StartTrainingRequest(request_id=request_id or uuid.uuid4().hex, spec=spec)).job


def _events(stub, job_id: str, after: int = 0) -> list[pb.WatchJobResponse]:
    return list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=120))


def _wait(stub, job_id: str, states, timeout: float = 60.0) -> pb.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
        if job.state in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {states}; it is {job.state}")


def _reason(error: grpc.RpcError) -> str:
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def _vectors(store: LocalStore, key: str) -> torch.Tensor:
    return read_embedding(store.get(key), filename=key.rsplit("/", 1)[-1])[0].vectors[0]


def test_a_job_runs_to_the_end_with_every_event_in_order(service):
    stub, store, registry, _ = service
    job = _start(stub, _spec())
    events = _events(stub, job.job_id)

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    states = [e.state_changed.current for e in events if e.HasField("state_changed")]
    assert states == [S.JOB_STATE_QUEUED, S.JOB_STATE_PREPARING, S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED]
    progress = [e.progress for e in events if e.HasField("progress")]
    assert [p.step for p in progress] == [1, 2, 3, 4, 5, 6]
    assert all(p.max_steps == 6 and p.learning_rate == pytest.approx(0.005) for p in progress)
    assert all(p.samples_per_second > 0 and p.embedding_norm > 0 and "subj3ct" in p.prompt for p in progress)
    assert [e.savepoint_saved.step for e in events if e.HasField("savepoint_saved")] == [3, 6]

    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).job
    assert (done.state, done.step, done.latest_savepoint.step) == (S.JOB_STATE_SUCCEEDED, 6, 6)
    assert done.model.short_hash and done.model.embedding_dims == [32]
    assert done.spec.template == "subject" and done.spec.HasField("batch_size")  # the resolved spec
    assert store.exists(done.latest_savepoint.manifest.key)
    assert registry.get_sample_value("tistudio_trainer_steps_total") >= 6
    assert registry.get_sample_value("tistudio_trainer_jobs", {"state": "succeeded"}) >= 1


def test_a_retried_start_returns_the_same_job_and_another_spec_is_refused(service):
    stub, *_ = service
    first = stub.StartTraining(pb.StartTrainingRequest(request_id="retry-1", spec=_spec()))
    again = stub.StartTraining(pb.StartTrainingRequest(request_id="retry-1", spec=_spec()))
    assert first.created and not again.created and again.job.job_id == first.job.job_id

    with pytest.raises(grpc.RpcError) as refused:
        stub.StartTraining(pb.StartTrainingRequest(request_id="retry-1", spec=_spec(max_steps=7)))
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert _reason(refused.value) == "REQUEST_ID_REUSED"
    _wait(stub, first.job.job_id, {S.JOB_STATE_SUCCEEDED})


def test_a_plan_with_errors_is_refused_before_anything_runs(service):
    stub, *_ = service
    bad = _spec(batch_size=5, learning_rate="0.05:oops", template="none", width=36)
    plan = stub.PlanTraining(pb.PlanTrainingRequest(spec=bad))
    assert not plan.ok
    codes = {d.code for d in plan.diagnostics if d.severity == common_pb2.SEVERITY_ERROR}
    assert {
        "BATCH_LARGER_THAN_DATASET",
        "SCHEDULE_INVALID",
        "TEMPLATE_WITHOUT_NAME",
        "RESOLUTION_NOT_MULTIPLE_OF_8",
    } <= codes
    before = len(stub.ListJobs(pb.ListJobsRequest(page_size=500)).jobs)

    with pytest.raises(grpc.RpcError) as refused:
        _start(stub, bad)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(refused.value) == "PLAN_HAS_ERRORS" and "batch_size 5" in refused.value.details()
    assert len(stub.ListJobs(pb.ListJobsRequest(page_size=500)).jobs) == before


def test_the_plan_counts_steps_and_lists_the_schedule(service):
    stub, *_ = service
    plan = stub.PlanTraining(
        pb.PlanTrainingRequest(
            spec=_spec(learning_rate="0.05:2, 0.01:4", max_steps=6, batch_size=2, gradient_accumulation=2)
        )
    )
    assert plan.ok
    p = plan.plan
    assert (p.images, p.samples_per_step, p.steps_per_epoch, p.start_step, p.end_step) == (4, 4, 1, 0, 4)
    assert [(s.rate, s.start_step, s.end_step) for s in p.schedule] == [(0.05, 0, 2), (0.01, 2, 4)]
    assert "SCHEDULE_ENDS_EARLY" in {d.code for d in plan.diagnostics}
    assert p.example_prompts and all("subj3ct" in prompt for prompt in p.example_prompts)


def test_a_watch_resumed_from_a_sequence_misses_nothing(service):
    stub, *_ = service
    job = _start(stub, _spec())
    first = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=60))
    for cut in (1, 4, len(first) - 1):
        rest = _events(stub, job.job_id, after=cut)
        assert [e.sequence for e in rest] == [e.sequence for e in first[cut:]]
        assert rest == first[cut:]


def test_pause_and_resume_continue_exactly_where_a_straight_run_goes(service):
    stub, store, *_ = service
    spec = _spec(max_steps=60, save_every_steps=0)
    straight = _start(stub, spec)
    paused = _start(stub, spec)
    _wait(stub, paused.job_id, {S.JOB_STATE_RUNNING})
    while stub.GetJob(pb.GetJobRequest(job_id=paused.job_id)).job.step < 1:
        time.sleep(0.005)
    stub.PauseJob(pb.PauseJobRequest(job_id=paused.job_id))
    held = _wait(stub, paused.job_id, {S.JOB_STATE_PAUSED, S.JOB_STATE_SUCCEEDED})
    assert held.state == S.JOB_STATE_PAUSED and 0 < held.step < 60
    assert held.latest_savepoint.step == held.step  # pause saved first
    stub.ResumeJob(pb.ResumeJobRequest(job_id=paused.job_id))
    a = _wait(stub, straight.job_id, {S.JOB_STATE_SUCCEEDED})
    b = _wait(stub, paused.job_id, {S.JOB_STATE_SUCCEEDED})
    # The two jobs share device batches while both run, so the match is to batched-kernel rounding (a resume on
    # its own is bit-exact: test_engine_savepoints).
    torch.testing.assert_close(
        _vectors(store, a.latest_savepoint.embedding.key),
        _vectors(store, b.latest_savepoint.embedding.key),
        rtol=1e-4,
        atol=1e-6,
    )


def test_cancel_stops_the_job_and_keeps_its_savepoints(service):
    stub, store, *_ = service
    job = _start(stub, _spec(max_steps=3000, save_every_steps=2))
    _wait(stub, job.job_id, {S.JOB_STATE_RUNNING})
    while stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).job.latest_savepoint.step < 2:
        time.sleep(0.02)
    stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id))
    done = _wait(stub, job.job_id, {S.JOB_STATE_CANCELLED})
    assert 2 <= done.latest_savepoint.step < 3000 and done.end_time.seconds > 0
    assert store.exists(done.latest_savepoint.manifest.key)


def test_previews_render_from_savepoints_through_the_preview_service(service):
    stub, store, _, previews = service
    spec = _spec(max_steps=4, save_every_steps=0, preview_every_steps=2)
    spec.preview.seeds.extend([7, 8])
    job = _start(stub, spec)
    events = _events(stub, job.job_id)
    deadline = time.monotonic() + 30
    while len([c for c in previews.calls if c.job_id == job.job_id]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    calls = [c for c in previews.calls if c.job_id == job.job_id]
    assert [c.step for c in calls] == [2, 4]
    assert [e.savepoint_saved.step for e in events if e.HasField("savepoint_saved")] == [2, 4]
    assert all(c.embedding.file.key.endswith("subj3ct.safetensors") and c.embedding.trigger == "subj3ct" for c in calls)
    assert list(calls[0].seeds) == [7, 8] and "subj3ct" in calls[0].prompts[0]
    assert calls[0].output.key.endswith("savepoints/000002/previews/")
    job = _wait(stub, job.job_id, {S.JOB_STATE_SUCCEEDED})
    deadline = time.monotonic() + 10
    while job.latest_preview.step != 4 and time.monotonic() < deadline:
        time.sleep(0.05)
        job = stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).job
    assert job.latest_preview.step == 4 and len(job.latest_preview.items) == 2
    assert store.exists(job.latest_preview.manifest.key)


def test_export_converts_a_savepoint_to_every_format(service):
    stub, store, *_ = service
    job = _start(stub, _spec(max_steps=3))
    _wait(stub, job.job_id, {S.JOB_STATE_SUCCEEDED})
    saved = _vectors(store, stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).job.latest_savepoint.embedding.key)
    for fmt in (pb.EMBEDDING_FORMAT_A1111_PT, pb.EMBEDDING_FORMAT_DIFFUSERS, pb.EMBEDDING_FORMAT_SAFETENSORS):
        out = stub.ExportEmbedding(
            pb.ExportEmbeddingRequest(job_id=job.job_id, format=fmt, name="anna-v1", include_data=True)
        )
        (file,) = out.files
        embedding, _ = read_embedding(file.data, filename=file.file.key.rsplit("/", 1)[-1])
        assert torch.equal(embedding.vectors[0], saved) and embedding.step == 3
        assert out.embedding.name == "anna-v1" and out.embedding.format == fmt
        assert store.get(file.file.key) == file.data

    with pytest.raises(grpc.RpcError) as missing:
        stub.ExportEmbedding(pb.ExportEmbeddingRequest(job_id=job.job_id, step=2))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND and "steps 3" in missing.value.details()


def test_an_embedding_of_another_width_or_a_token_name_is_refused_by_the_plan(service):
    stub, store, *_ = service
    store.put(
        "embeddings/wide.safetensors",
        write_embedding(Embedding("wide", (torch.zeros(2, 64),)), EmbeddingFormat.SAFETENSORS),
    )
    store.put(
        "embeddings/woman.safetensors",
        write_embedding(Embedding("woman", (torch.zeros(2, 32),)), EmbeddingFormat.SAFETENSORS),
    )
    for key, code in (
        ("embeddings/wide.safetensors", "EMBEDDING_WIDTH_MISMATCH"),
        ("embeddings/woman.safetensors", "NAME_IS_A_TOKEN"),
    ):
        plan = stub.PlanTraining(pb.PlanTrainingRequest(spec=_spec(embedding=common_pb2.StorageRef(key=key))))
        assert code in {d.code for d in plan.diagnostics}, [d.code for d in plan.diagnostics]


def test_list_jobs_pages_newest_first_and_filters_by_state(service):
    stub, *_ = service
    everything = stub.ListJobs(pb.ListJobsRequest(page_size=500)).jobs
    seen, token = [], ""
    while True:
        page = stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=token))
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [j.job_id for j in everything] and len(set(seen)) == len(seen)
    succeeded = stub.ListJobs(pb.ListJobsRequest(states=[S.JOB_STATE_SUCCEEDED], page_size=500)).jobs
    assert succeeded and all(j.state == S.JOB_STATE_SUCCEEDED for j in succeeded)
    with pytest.raises(grpc.RpcError) as bad:
        stub.ListJobs(pb.ListJobsRequest(page_token="not-a-token"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_jobs_and_missing_embeddings_say_what_to_do(service):
    stub, *_ = service
    with pytest.raises(grpc.RpcError) as unknown:
        stub.GetJob(pb.GetJobRequest(job_id="nope"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND and "ListJobs" in unknown.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        stub.PlanTraining(pb.PlanTrainingRequest(spec=_spec(embedding=common_pb2.StorageRef(key="embeddings/x.pt"))))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND and "CreateEmbedding" in missing.value.details()
