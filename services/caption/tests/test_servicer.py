"""The caption service over a real channel: started from its definition with the tiny BLIP and a local store."""

from __future__ import annotations

import io

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from services.caption.service import DEFINITION
from services.caption.tests.corpus import CORPUS_EXPECTATIONS, build_corpus, gradient
from services.common.runtime import start_service
from services.common.storage import LocalStore
from tistudio.caption.v1 import caption_pb2 as pb
from tistudio.caption.v1 import caption_pb2_grpc
from tistudio.common.v1 import common_pb2

SOURCE = "datasets/anna/raw/"
DEST = "datasets/anna/processed/"


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("caption-service")
    env = {
        "TISTUDIO_STORE_URL": (root / "store").as_uri(),
        "TISTUDIO_CACHE_DIR": str(root / "cache"),
        "TISTUDIO_CAPTION_PORT": "0",
        "TISTUDIO_CAPTION_METRICS_PORT": "off",
        "TISTUDIO_DRAIN_SECONDS": "0",
        "TISTUDIO_CAPTION_MODEL": str(tiny_models["blip"]),
        "TISTUDIO_CAPTION_MAX_BATCH": "8",
    }
    running = start_service(DEFINITION, env)
    assert running.loaded.wait(120), "the captioner did not load"
    channel = grpc.insecure_channel(running.server.address)
    yield caption_pb2_grpc.CaptionServiceStub(channel), LocalStore(root / "store"), running.server.registry
    channel.close()
    running.server.stop(grace=0)
    running.wait()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _error_info(error: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    status = rpc_status.from_call(error)
    info, fields = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
    return info, fields


def test_preprocess_streams_one_outcome_per_file_and_writes_a_captioned_dataset(service):
    stub, store, registry = service
    for name, data in build_corpus().items():
        store.put(SOURCE + name, data)
    request = pb.PreprocessRequest(
        source=common_pb2.StorageRef(key=SOURCE),
        destination=common_pb2.StorageRef(key=DEST),
        options=pb.PreprocessOptions(
            size=64,
            crop=pb.CROP_MODE_FOCAL_POINT,
            flip_copies=True,
            caption=True,
            caption_options=pb.CaptionOptions(hygiene=pb.HygieneOptions(class_phrase="a woman", comma_phrases=True)),
        ),
    )
    responses = list(stub.Preprocess(request, timeout=120))
    assert responses[0].WhichOneof("event") == "progress" and responses[0].progress.total == len(CORPUS_EXPECTATIONS)
    assert responses[-1].WhichOneof("event") == "summary"
    outcomes = {r.image.source_key: r.image for r in responses if r.WhichOneof("event") == "image"}
    for name, (fate, code) in CORPUS_EXPECTATIONS.items():
        outcome = outcomes[SOURCE + name]
        if fate == "skipped":
            assert outcome.status == pb.IMAGE_STATUS_SKIPPED and outcome.reason.code == code
            assert outcome.reason.severity == common_pb2.SEVERITY_ERROR and outcome.reason.suggestion
        else:
            assert outcome.status == pb.IMAGE_STATUS_KEPT
            assert outcome.caption.caption.startswith("a woman, ")
            captions = [key for key in outcome.derived_keys if key.endswith(".txt")]
            assert len(captions) == 2 and all(store.get(key).decode() == outcome.caption.caption for key in captions)
    summary = responses[-1].summary
    assert summary.dataset.key == DEST and summary.kept == sum(f == "kept" for f, _ in CORPUS_EXPECTATIONS.values())
    assert (
        registry.get_sample_value(
            "tistudio_caption_images_total", {"operation": "preprocess", "outcome": "skipped", "reason": "TRUNCATED"}
        )
        == 2
    )

    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Preprocess(pb.PreprocessRequest(source=request.source, destination=request.destination), timeout=30))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, fields = _error_info(caught.value)
    assert info.reason == "DESTINATION_NOT_EMPTY" and fields == ["destination.key"]


def test_caption_answers_inline_and_stored_images_in_order(service, tiny_models):
    stub, store, _ = service
    store.put("singles/a.png", _png(gradient(96, 96, seed=7)))
    images = [
        common_pb2.ImageData(inline_data=_png(gradient(80, 80, seed=8))),
        common_pb2.ImageData(ref=common_pb2.StorageRef(key="singles/a.png")),
    ]
    reply = stub.Caption(pb.CaptionRequest(images=images, options=pb.CaptionOptions(max_length=8, min_length=2)))
    assert len(reply.results) == 2 and all(result.caption for result in reply.results)
    assert reply.model.name == "tiny-blip" and len(reply.model.sha256) == 64
    again = stub.Caption(pb.CaptionRequest(images=images[::-1], options=pb.CaptionOptions(max_length=8, min_length=2)))
    assert [r.caption for r in again.results] == [r.caption for r in reply.results][::-1]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            pb.CaptionRequest(images=[common_pb2.ImageData(inline_data=b"<svg xmlns='http://www.w3.org/2000/svg'/>")]),
            "images[0]",
        ),
        (pb.CaptionRequest(images=[common_pb2.ImageData(inline_data=b"x")] * 65), "images"),
        (pb.CaptionRequest(), "images"),
        (
            pb.CaptionRequest(
                images=[common_pb2.ImageData(inline_data=b"x")], options=pb.CaptionOptions(min_length=50, max_length=10)
            ),
            "options.min_length",
        ),
        (
            pb.CaptionRequest(
                images=[common_pb2.ImageData(ref=common_pb2.StorageRef(key="a.png", store_url="file:///etc"))]
            ),
            "images[0].ref.store_url",
        ),
    ],
)
def test_bad_caption_requests_name_the_field(service, request_, field):
    stub, _, _ = service
    with pytest.raises(grpc.RpcError) as caught:
        stub.Caption(request_, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_info(caught.value)[1] == [field]


def test_caption_dataset_writes_once_and_a_rerun_skips(service):
    stub, store, _ = service
    for index in range(3):
        store.put(f"cd/{index}.png", _png(gradient(64, 64, seed=index)))
    request = pb.CaptionDatasetRequest(dataset=common_pb2.StorageRef(key="cd"))
    first = list(stub.CaptionDataset(request, timeout=60))
    assert first[-1].summary.written == 3
    written = [r.image for r in first if r.WhichOneof("event") == "image"]
    assert all(image.action == pb.CAPTION_ACTION_WRITTEN for image in written)
    assert all(store.get(image.caption_key).decode() == image.result.caption for image in written)
    second = list(stub.CaptionDataset(request, timeout=60))
    assert (second[-1].summary.written, second[-1].summary.skipped) == (0, 3)


def test_lint_reports_findings_and_writes_the_report(service):
    stub, store, _ = service
    for index in range(3):
        store.put(f"lint/{index}.png", _png(gradient(300, 200, seed=index)))
        if index:
            store.put(f"lint/{index}.txt", f"a woman, holding subj3ct number {index}".encode())
    reply = stub.LintDataset(
        pb.LintDatasetRequest(
            dataset=common_pb2.StorageRef(key="lint/"),
            embedding_name="subj3ct",
            class_phrase="a woman",
            write_report=True,
        )
    )
    codes = {(finding.code, finding.key) for finding in reply.findings}
    assert ("TOO_FEW_IMAGES", "") in codes
    assert ("CAPTION_MISSING", "lint/0.png") in codes
    assert ("CAPTION_CONTAINS_NAME", "lint/1.png") in codes
    assert ("NOT_SQUARE", "lint/2.png") in codes
    assert reply.stats.images == 3 and reply.stats.captioned == 2
    assert reply.report.key == "lint/lint.json" and store.exists("lint/lint.txt")
    assert "CAPTION_MISSING" in reply.report_text or "caption" in reply.report_text.lower()


@pytest.mark.parametrize(
    ("family", "side"),
    [
        (common_pb2.MODEL_FAMILY_SD1, 512),
        (common_pb2.MODEL_FAMILY_SD2_768, 768),
        (common_pb2.MODEL_FAMILY_SDXL, 1024),
    ],
)
def test_the_model_family_sets_the_preprocess_and_lint_size(service, family, side):
    stub, store, _ = service
    name = common_pb2.ModelFamily.Name(family).lower()
    store.put(f"family-{name}/raw/big.png", _png(gradient(1100, 1100, seed=1)))
    store.put(f"family-{name}/raw/small.png", _png(gradient(600, 600, seed=2)))
    request = pb.PreprocessRequest(
        source=common_pb2.StorageRef(key=f"family-{name}/raw/"),
        destination=common_pb2.StorageRef(key=f"family-{name}/train/"),
        options=pb.PreprocessOptions(family=family, min_side=64),
    )
    list(stub.Preprocess(request, timeout=120))
    assert Image.open(io.BytesIO(store.get(f"family-{name}/train/big.png"))).size == (side, side)

    reply = stub.LintDataset(
        pb.LintDatasetRequest(dataset=common_pb2.StorageRef(key=f"family-{name}/raw/"), family=family)
    )
    small = {finding.key for finding in reply.findings if finding.code == "SMALLER_THAN_TRAINING_SIZE"}
    assert small == ({f"family-{name}/raw/small.png"} if side > 600 else set())
