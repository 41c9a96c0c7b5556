"""PreviewService over a real channel: Generate, RenderPreviews (through the trainer's own client), contact sheets,
Evaluate with a tiny CLIP, refusals with their reasons, and the metrics."""

from __future__ import annotations

import csv
import io
import os

import grpc
import pytest
import torch
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from services.common.embeddings import Embedding, EmbeddingFormat, write_embedding
from services.common.runtime import start_service
from services.preview.infotext import parse_infotext, read_png_infotext
from services.preview.manifest import read_manifest
from services.preview.service import DEFINITION
from services.preview.tests.conftest import TRIGGER
from services.trainer.job_spec import PreviewSettings
from services.trainer.preview_client import GrpcPreviewRenderer
from services.trainer.previews import PreviewRequest
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2 as pb
from tistudio.preview.v1 import preview_pb2_grpc

FAST = pb.SamplingSettings(steps=2, width=64, height=64)


class PlantedPayload:
    """Unpickling this would call os.mkdir(marker): visible if it ever ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def service(trained, tiny_models, tmp_path_factory):
    store, savepoints = trained
    env = {
        "TISTUDIO_STORE_URL": store.url,
        "TISTUDIO_CACHE_DIR": str(tmp_path_factory.mktemp("preview-cache")),
        "TISTUDIO_PREVIEW_PORT": "0",
        "TISTUDIO_PREVIEW_METRICS_PORT": "off",
        "TISTUDIO_DRAIN_SECONDS": "0",
        "TISTUDIO_SD_MODEL": str(tiny_models["sd"]),
        "TISTUDIO_CLIP_MODEL": str(tiny_models["clip"]),
    }
    running = start_service(DEFINITION, env)
    assert running.loaded.wait(120), "the preview service did not load"
    channel = grpc.insecure_channel(running.server.address)
    yield preview_pb2_grpc.PreviewServiceStub(channel), store, savepoints, running
    channel.close()
    running.server.stop(grace=0)
    running.wait()


def _reason(error: grpc.RpcError) -> str:
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def _ref(key: str, trigger: str = "") -> pb.EmbeddingRef:
    return pb.EmbeddingRef(file=common_pb2.StorageRef(key=key), trigger=trigger)


def test_generate_stores_pngs_with_infotext_and_can_return_them_inline(service):
    stub, store, savepoints, _ = service
    request = pb.GenerateRequest(
        prompt=f"a photo of ({TRIGGER}:0.9), a red circle",
        negative_prompt="blurry",
        embeddings=[_ref(savepoints[-1].embedding_key)],
        seed=40,
        batch_size=2,
        sampling=FAST,
        output=common_pb2.StorageRef(key="generations/test/"),
        include_data=True,
    )
    response = stub.Generate(request)
    assert [image.seed for image in response.images] == [40, 41]
    assert [image.stored.key for image in response.images] == [
        "generations/test/00000-40.png",
        "generations/test/00001-41.png",
    ]
    model = response.model
    assert (model.name, model.family, list(model.embedding_dims)) == ("tiny-sd", common_pb2.MODEL_FAMILY_SD1, [32])
    assert len(model.short_hash) == 10 and model.prediction_type == "epsilon"
    for image in response.images:
        stored = store.get(image.stored.key)
        assert image.image.inline_data == stored and image.image.media_type == "image/png"
        assert read_png_infotext(stored) == image.infotext
        prompt, negative, params = parse_infotext(image.infotext)
        assert (prompt, negative, params["Seed"]) == (request.prompt, "blurry", str(image.seed))
        assert params["TI hashes"].startswith(f"{TRIGGER}: ")
    by_reference = stub.Generate(pb.GenerateRequest(prompt="a red circle", seed=40, sampling=FAST))
    assert by_reference.images[0].image.ref.key == by_reference.images[0].stored.key


def test_render_previews_through_the_trainers_client_then_progress_sheets(service):
    stub, store, savepoints, running = service
    client = GrpcPreviewRenderer(running.server.address)
    settings = PreviewSettings(
        prompts=("a photo of [name]",), seeds=(1, 2), weights=(0.8, 1.0, 1.2), steps=2, width=64, height=64
    )
    try:
        for savepoint in savepoints:
            info = client.render(
                PreviewRequest(
                    job_id="job-1",
                    step=savepoint.step,
                    model="",
                    model_config="",
                    embedding_key=savepoint.embedding_key,
                    trigger=TRIGGER,
                    prompts=settings.prompts,
                    settings=settings,
                    output_prefix=f"{savepoint.folder}previews/",
                )
            )
            assert info.manifest_key == f"{savepoint.folder}previews/manifest.json"
            assert len(info.items) == 6
            assert sorted({item["weight"] for item in info.items}) == pytest.approx([0.8, 1.0, 1.2])
            manifest = read_manifest(store, info.manifest_key)
            assert manifest.step == savepoint.step and manifest.trigger == TRIGGER
            weighted = [e.prompt for e in manifest.entries if e.weight != 1.0]
            assert f"a photo of ({TRIGGER}:0.8)" in weighted
            assert all(store.exists(e.key) for e in manifest.entries)
    finally:
        client.close()
    for columns, expected in ((pb.SHEET_COLUMNS_SEEDS, 2), (pb.SHEET_COLUMNS_WEIGHTS, 3)):
        sheet = stub.ContactSheet(
            pb.ContactSheetRequest(
                kind=pb.SHEET_KIND_PROGRESS,
                job_output=common_pb2.StorageRef(key="run/"),
                columns=columns,
                include_data=True,
            )
        )
        assert (sheet.rows, sheet.columns) == (2, expected)
        image = Image.open(io.BytesIO(sheet.sheet.inline_data))
        assert image.size == (sheet.sheet.width, sheet.sheet.height)
        assert image.width > expected * 64 and image.height > 2 * 64
        assert store.get(sheet.stored.key) == sheet.sheet.inline_data


def test_final_exam_renders_every_caption_beside_its_image(service):
    stub, store, savepoints, _ = service
    sheet = stub.ContactSheet(
        pb.ContactSheetRequest(
            kind=pb.SHEET_KIND_FINAL_EXAM,
            dataset=common_pb2.StorageRef(key="ds/"),
            embedding=_ref(savepoints[-1].embedding_key),
            seed=3,
            sampling=FAST,
            cell_size=48,
        )
    )
    assert (sheet.rows, sheet.columns) == (4, 2)
    assert sheet.stored.key == f"{savepoints[-1].folder}final-exam.png" == sheet.sheet.ref.key
    image = Image.open(io.BytesIO(store.get(sheet.stored.key)))
    assert image.width >= 2 * 48 and image.height >= 4 * 48


def test_evaluate_scores_each_savepoint_and_recommends_one(service):
    stub, store, savepoints, _ = service
    response = stub.Evaluate(
        pb.EvaluateRequest(
            savepoints=[_ref(s.embedding_key) for s in savepoints],
            dataset=common_pb2.StorageRef(key="ds/"),
            edit_prompts=["a photo of [name] on a beach", "[name] in the snow"],
            seeds=[1],
            sampling=FAST,
        )
    )
    assert [score.step for score in response.scores] == [3, 6]
    assert all(-1 <= s.fidelity <= 1 and -1 <= s.editability <= 1 for s in response.scores)
    assert response.recommended_index in (0, 1)
    rows = list(csv.DictReader(io.StringIO(store.get(response.table.key).decode())))
    assert [int(row["step"]) for row in rows] == [3, 6]
    assert Image.open(io.BytesIO(response.chart.inline_data)).format == "PNG"
    assert store.get(response.chart_stored.key) == response.chart.inline_data


def test_refusals_say_what_is_wrong(service, tmp_path):
    stub, store, _, _ = service
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"string_to_param": {"*": PlantedPayload(str(marker))}, "name": "evil"}, buffer)
    store.put("uploads/evil.pt", buffer.getvalue())
    store.put(
        "uploads/sd2.safetensors",
        write_embedding(Embedding("sd2", (torch.zeros(1, 1024),)), EmbeddingFormat.SAFETENSORS),
    )
    cases = [
        (pb.GenerateRequest(prompt="evil", embeddings=[_ref("uploads/evil.pt")]), "UNSAFE_PICKLE", "uploads/evil.pt"),
        (
            pb.GenerateRequest(prompt="sd2", embeddings=[_ref("uploads/sd2.safetensors")]),
            "EMBEDDING_WIDTH_MISMATCH",
            "1024",
        ),
        (pb.GenerateRequest(prompt="x", embeddings=[_ref("uploads/none.pt")]), "EMBEDDING_NOT_FOUND", "embeddings[0]"),
        (pb.GenerateRequest(prompt="x", batch_size=17), "INVALID_BATCH_SIZE", "batch_size"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingSettings(width=65)), "INVALID_SIZE", "sampling.width"),
        (
            pb.GenerateRequest(prompt="x", output=common_pb2.StorageRef(key="a/", store_url="s3://elsewhere/x")),
            "FOREIGN_STORE",
            "output.store_url",
        ),
    ]
    for request, reason, named in cases:
        with pytest.raises(grpc.RpcError) as info:
            stub.Generate(request)
        assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert _reason(info.value) == reason and named in info.value.details(), info.value.details()
    assert not marker.exists()
    with pytest.raises(grpc.RpcError) as info:
        stub.ContactSheet(pb.ContactSheetRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in info.value.details()


def test_metrics_count_images_batches_and_loaded_models(service):
    stub, _, _, running = service
    stub.Generate(pb.GenerateRequest(prompt="a red circle", seed=1, batch_size=3, sampling=FAST))
    registry = running.server.registry
    assert registry.get_sample_value("tistudio_preview_images_generated_total", {"operation": "generate"}) >= 3
    assert registry.get_sample_value("tistudio_preview_render_duration_seconds_count", {"operation": "generate"}) >= 1
    assert registry.get_sample_value("tistudio_preview_denoising_steps_total") >= 3 * 2
    assert registry.get_sample_value("tistudio_preview_denoising_steps_per_second") > 0
    assert registry.get_sample_value("tistudio_preview_queue_depth") == 0
    assert registry.get_sample_value("tistudio_preview_loaded_models", {"kind": "sd"}) == 1
    assert registry.get_sample_value("tistudio_preview_loaded_model_bytes") > 0
