"""The SDK over real channels: error mapping, retries, deadlines, resumed watches, transfers, workflow."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from services.common.storage import LocalStore
from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2 as pre
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client import errors
from tistudio_client.calls import RetryPolicy, is_idempotent
from tistudio_client.client import Tistudio
from tistudio_client.datasets import download, upload_folder
from tistudio_client.tests.fakes import EMBEDDING_BYTES, FakeCaption, FakeTrainer, finished, progress, serve

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02)


@pytest.fixture(scope="module")
def server_and_fakes():
    trainer, caption = FakeTrainer(), FakeCaption()
    server = serve(trainer, caption)
    yield server, trainer, caption
    server.stop()


@pytest.fixture
def fakes(server_and_fakes):
    server, trainer, caption = server_and_fakes
    trainer.__init__()  # fresh counters and scripts for every test, one server for all
    caption.__init__()
    return server.address, trainer, caption


@pytest.fixture
def ts(fakes):
    address = fakes[0]
    with Tistudio(caption=address, trainer=address, retry=FAST_RETRY, timeout=5.0) as client:
        yield client


def test_domain_error_maps_to_its_exception_with_details(ts):
    with pytest.raises(errors.NotFound) as err:
        ts.trainer.get_job(job_id="missing")
    e = err.value
    assert isinstance(e, errors.TistudioError)
    assert (e.code, e.reason, e.field) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND", "job_id")
    assert e.message == str(e) == "no job 'missing'"
    assert e.metadata == {"j": "x"}
    assert any(isinstance(d, error_details_pb2.ErrorInfo) for d in e.details)
    assert isinstance(e.__cause__, grpc.RpcError)


def test_unavailable_is_retried_for_idempotent_calls(ts, fakes):
    trainer = fakes[1]
    trainer.unavailable["GetJob"] = 2
    assert ts.trainer.get_job(job_id="j-1").job.job_id == "j-1"
    assert trainer.calls["GetJob"] == 3


def test_retries_stop_after_the_policy_attempts(ts, fakes):
    trainer = fakes[1]
    trainer.unavailable["GetJob"] = 10
    with pytest.raises(errors.Unavailable):
        ts.trainer.get_job(job_id="j-1")
    assert trainer.calls["GetJob"] == FAST_RETRY.attempts


def test_unavailable_is_not_retried_for_non_idempotent_calls(ts, fakes):
    trainer = fakes[1]
    trainer.unavailable["CreateEmbedding"] = 1
    with pytest.raises(errors.Unavailable):
        ts.trainer.create_embedding(name="anna")
    assert trainer.calls["CreateEmbedding"] == 1
    trainer.unavailable["StartTraining"] = 1
    with pytest.raises(errors.Unavailable):
        ts.trainer.start_training(spec={})  # no request_id: a retry could queue a second job
    assert trainer.calls["StartTraining"] == 1


def test_start_sets_a_request_id_so_it_is_retried(ts, fakes):
    trainer = fakes[1]
    trainer.unavailable["StartTraining"] = 1
    job = ts.start(spec=tr.TrainingSpec(recipe="seed-a"))
    assert job.request_id and trainer.calls["StartTraining"] == 2


def test_idempotence_table():
    assert is_idempotent("GetJob", tr.GetJobRequest()) and is_idempotent("ExportEmbedding", None)
    assert not is_idempotent("StartTraining", tr.StartTrainingRequest())
    assert is_idempotent("StartTraining", tr.StartTrainingRequest(request_id="r-1"))
    assert not is_idempotent("Generate", pre.GenerateRequest())
    assert is_idempotent("Generate", pre.GenerateRequest(output={"key": "generations/a/"}))
    assert not any(is_idempotent(m, None) for m in ("CreateEmbedding", "PauseJob", "ResumeJob", "CancelJob"))


def test_default_deadline_applies_and_is_not_retried(fakes):
    address, trainer, _ = fakes
    with Tistudio(trainer=address, timeout=0.2, retry=FAST_RETRY) as client:
        with pytest.raises(errors.DeadlineExceeded):
            client.trainer.get_job(job_id="slow")
    assert trainer.calls["GetJob"] == 1


def test_watch_resumes_from_the_last_sequence_without_loss_or_repeat(ts, fakes):
    trainer = fakes[1]
    trainer.connections = [
        ([progress(1), progress(2), progress(3)], True),
        ([progress(3), progress(4), progress(5)], True),  # a replay of 3 must not come out twice
        ([finished(6)], False),
    ]
    sequences = [event.sequence for event in ts.watch("j-1")]
    assert sequences == [1, 2, 3, 4, 5, 6]
    assert trainer.watch_requests == [0, 3, 5]


def test_watch_ends_when_a_clean_close_finds_the_job_final(ts, fakes):
    trainer = fakes[1]
    trainer.job = tr.Job(job_id="j-1", state=tr.JOB_STATE_SUCCEEDED, last_sequence=2)
    trainer.connections = [([progress(1)], False), ([progress(2)], False)]
    assert [e.sequence for e in ts.watch("j-1")] == [1, 2]
    trainer.connections = [([progress(1), progress(2)], False)]
    seen = []
    assert ts.wait("j-1", on_event=seen.append).state == tr.JOB_STATE_SUCCEEDED
    assert [e.sequence for e in seen] == [1, 2]


def test_watch_raises_non_resumable_errors(ts, fakes):
    with pytest.raises(errors.NotFound):
        list(ts.watch("missing"))
    assert fakes[1].watch_requests == [0]
    with pytest.raises(errors.ConfigurationError, match="TISTUDIO_PREVIEW_ADDRESS"):
        ts.preview  # noqa: B018 - the property is the check


def test_export_writes_every_format_inline_without_a_store(ts, tmp_path):
    paths = ts.export("j-1", tmp_path, formats=["safetensors", "pt"])
    assert [p.name for p in paths] == ["anna.safetensors", "anna.pt"]
    assert all(p.read_bytes() == EMBEDDING_BYTES for p in paths)
    with pytest.raises(errors.InvalidArgument, match="unknown embedding format"):
        ts.export("j-1", tmp_path, formats=["ckpt"])


def _photos(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "001.png").write_bytes(b"png")
    (photos / "001.txt").write_text("a woman")
    (photos / "notes.md").write_text("not uploaded")
    (photos / ".hidden.png").write_bytes(b"hidden")
    return photos


def test_upload_folder_and_download_round_trip(tmp_path):
    store = LocalStore(tmp_path / "store")
    keys = upload_folder(store, _photos(tmp_path), "datasets/anna/raw")
    assert keys == ["datasets/anna/raw/001.png", "datasets/anna/raw/001.txt"]
    paths = download(store, "datasets/anna/raw/", tmp_path / "back")
    assert sorted(p.name for p in paths) == ["001.png", "001.txt"]
    assert download(store, "datasets/anna/raw/001.txt", tmp_path / "one")[0].read_text() == "a woman"
    (tmp_path / "photos" / "bad\\name.png").write_bytes(b"x")
    with pytest.raises(errors.TransferError, match=r"bad\\\\name.png") as err:
        upload_folder(store, tmp_path / "photos", "datasets/anna/raw/")
    assert err.value.path.endswith("bad\\name.png")


def test_prepare_dataset_runs_every_step(fakes, tmp_path):
    address, _, caption = fakes
    with Tistudio(caption=address, store_url=(tmp_path / "store").as_uri()) as client:
        prepared = client.prepare_dataset(_photos(tmp_path), "datasets/anna", class_phrase="a woman")
    assert prepared.dataset.key == "datasets/anna/train/"
    assert prepared.uploaded == ["datasets/anna/raw/001.png", "datasets/anna/raw/001.txt"]
    assert (prepared.preprocess.kept, prepared.captioning.skipped, prepared.lint.report_text) == (1, 1, "ok")
    assert [type(r).__name__ for r in caption.requests] == [
        "PreprocessRequest",
        "CaptionDatasetRequest",
        "LintDatasetRequest",
    ]
    assert caption.requests[2].class_phrase == "a woman"


def test_prepare_dataset_passes_the_model_family_to_preprocess_and_lint(fakes, tmp_path):
    address, _, caption = fakes
    with Tistudio(caption=address, store_url=(tmp_path / "store").as_uri()) as client:
        photos = _photos(tmp_path)
        client.prepare_dataset(photos, "datasets/anna", family=common_pb2.MODEL_FAMILY_SDXL)
        explicit = cap.PreprocessOptions(size=64, family=common_pb2.MODEL_FAMILY_SD1)
        client.prepare_dataset(photos, "datasets/bob", preprocess=explicit)
    sdxl_pre, _, sdxl_lint, own_pre, _, own_lint = caption.requests
    assert sdxl_pre.options.family == sdxl_lint.family == common_pb2.MODEL_FAMILY_SDXL
    assert (own_pre.options.size, own_pre.options.family, own_lint.family) == (64, common_pb2.MODEL_FAMILY_SD1, 1)
    assert explicit.family == common_pb2.MODEL_FAMILY_SD1  # the caller's options are not changed
