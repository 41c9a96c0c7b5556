"""Conversions between tistudio.preview.v1 messages and the preview domain's specs and results."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.convert import own_store_key, storage_ref
from services.common.errors import InvalidArgument
from services.common.storage import Store
from services.preview.contact_sheets import FinalExamSpec, Sheet
from services.preview.evaluation import EvaluateResult, EvaluateSpec
from services.preview.preview_grid import PreviewGridImage, PreviewGridSpec
from services.preview.rendering import Sampling
from services.preview.samplers import SAMPLERS
from services.preview.scoring import DEFAULT_MARGIN
from services.preview.studio import EmbeddingSource, GeneratedFile, GenerateSpec
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2 as pb

__all__ = [
    "sampling",
    "generate_spec",
    "preview_grid_spec",
    "final_exam_spec",
    "evaluate_spec",
    "generated_image",
    "preview_image",
    "sheet_response",
    "evaluate_response",
    "inline_budget",
]

_EMPHASIS = {
    pb.EMPHASIS_UNSPECIFIED: "original",
    pb.EMPHASIS_ORIGINAL: "original",
    pb.EMPHASIS_NO_NORM: "no_norm",
    pb.EMPHASIS_NONE: "none",
}
_COLUMNS = {pb.SHEET_COLUMNS_UNSPECIFIED: "seeds", pb.SHEET_COLUMNS_SEEDS: "seeds", pb.SHEET_COLUMNS_WEIGHTS: "weights"}


def sampling(message: pb.SamplingSettings, *, field: str = "sampling") -> Sampling:
    if message.sampler > len(SAMPLERS):
        raise InvalidArgument(
            f"{field}.sampler {message.sampler} is not a known sampler ({', '.join(s.name for s in SAMPLERS)})",
            field=f"{field}.sampler",
            reason="UNKNOWN_SAMPLER",
        )
    if message.emphasis not in _EMPHASIS:
        raise InvalidArgument(f"{field}.emphasis {message.emphasis} is unknown", field=f"{field}.emphasis")
    defaults = Sampling()
    return Sampling(
        steps=message.steps if message.HasField("steps") else defaults.steps,
        cfg_scale=round(message.cfg_scale, 4) if message.HasField("cfg_scale") else defaults.cfg_scale,
        sampler=SAMPLERS[message.sampler - 1].name if message.sampler else defaults.sampler,
        width=message.width,
        height=message.height,
        emphasis=_EMPHASIS[message.emphasis],
    )


def embedding_source(ref: pb.EmbeddingRef, store: Store, *, field: str) -> EmbeddingSource:
    key = own_store_key(ref.file, store, field=f"{field}.file")
    if not key:
        raise InvalidArgument(
            f"{field}.file.key is empty; name the embedding file in the store", field=f"{field}.file.key"
        )
    return EmbeddingSource(key, ref.trigger.strip(), field)


def generate_spec(request: pb.GenerateRequest, store: Store) -> GenerateSpec:
    return GenerateSpec(
        model=request.model.reference,
        model_config=request.model.config_reference,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        embeddings=tuple(
            embedding_source(ref, store, field=f"embeddings[{i}]") for i, ref in enumerate(request.embeddings)
        ),
        seed=request.seed,
        batch_size=request.batch_size or 1,
        sampling=sampling(request.sampling),
        output_prefix=own_store_key(request.output, store, field="output"),
    )


def preview_grid_spec(request: pb.RenderPreviewsRequest, store: Store) -> PreviewGridSpec:
    return PreviewGridSpec(
        embedding=embedding_source(request.embedding, store, field="embedding"),
        prompts=tuple(request.prompts),
        seeds=tuple(request.seeds),
        output_prefix=own_store_key(request.output, store, field="output"),
        model=request.model.reference,
        model_config=request.model.config_reference,
        negative_prompt=request.negative_prompt,
        weights=tuple(round(w, 4) for w in request.weights),  # float32 on the wire: 0.8 arrives as 0.800000011
        sampling=sampling(request.sampling),
        step=request.step,
        job_id=request.job_id,
    )


def sheet_columns(value: int) -> str:
    if value not in _COLUMNS:
        raise InvalidArgument(f"columns {value} is unknown", field="columns")
    return _COLUMNS[value]


def final_exam_spec(request: pb.ContactSheetRequest, store: Store) -> FinalExamSpec:
    return FinalExamSpec(
        dataset=own_store_key(request.dataset, store, field="dataset"),
        embedding=embedding_source(request.embedding, store, field="embedding"),
        model=request.model.reference,
        model_config=request.model.config_reference,
        template=request.template,
        seed=request.seed,
        sampling=sampling(request.sampling),
        output_key=own_store_key(request.output, store, field="output"),
        cell_size=request.cell_size,
    )


def evaluate_spec(request: pb.EvaluateRequest, store: Store) -> EvaluateSpec:
    return EvaluateSpec(
        savepoints=tuple(
            embedding_source(ref, store, field=f"savepoints[{i}]") for i, ref in enumerate(request.savepoints)
        ),
        dataset=own_store_key(request.dataset, store, field="dataset"),
        model=request.model.reference,
        model_config=request.model.config_reference,
        clip_model=request.clip_model.reference,
        edit_prompts=tuple(request.edit_prompts),
        seeds=tuple(request.seeds) or (1, 2),
        sampling=sampling(request.sampling),
        margin=request.editability_margin if request.HasField("editability_margin") else DEFAULT_MARGIN,
        output_prefix=own_store_key(request.output, store, field="output"),
    )


def inline_budget(sizes: Sequence[int], max_message_bytes: int) -> None:
    """Refuse inline bytes that would not fit in one response (with room for the rest of the message)."""
    total = sum(sizes)
    if total > max_message_bytes - 64 * 1024:
        raise InvalidArgument(
            f"the images are {total} bytes, more than a response may carry ({max_message_bytes} bytes, "
            "TISTUDIO_MAX_MESSAGE_BYTES); leave include_data off and read them from the store",
            field="include_data",
            reason="INLINE_TOO_LARGE",
        )


def _image_data(key: str, png: bytes, width: int, height: int, *, inline: bool) -> common_pb2.ImageData:
    data = common_pb2.ImageData(media_type="image/png", width=width, height=height)
    if inline:
        data.inline_data = png
    else:
        data.ref.CopyFrom(storage_ref(key))
    return data


def generated_image(file: GeneratedFile, *, inline: bool = False) -> pb.GeneratedImage:
    image = file.rendered.image
    return pb.GeneratedImage(
        image=_image_data(file.key, file.rendered.png, image.width, image.height, inline=inline),
        seed=file.rendered.seed,
        infotext=file.rendered.infotext,
        stored=storage_ref(file.key),
    )


def preview_image(item: PreviewGridImage) -> pb.PreviewImage:
    return pb.PreviewImage(
        prompt_index=item.prompt_index,
        seed=item.seed,
        weight=item.weight,
        image=generated_image(GeneratedFile(item.key, item.rendered)),
    )


def sheet_response(sheet: Sheet, *, inline: bool) -> pb.ContactSheetResponse:
    return pb.ContactSheetResponse(
        sheet=_image_data(sheet.key, sheet.png, sheet.width, sheet.height, inline=inline),
        rows=sheet.rows,
        columns=sheet.columns,
        stored=storage_ref(sheet.key),
    )


def evaluate_response(result: EvaluateResult) -> pb.EvaluateResponse:
    scores = []
    for score, loaded in zip(result.evaluation.scores, result.savepoints, strict=True):
        ref = pb.EmbeddingRef(file=storage_ref(loaded.key), trigger=loaded.trigger)
        scores.append(
            pb.SavepointScore(savepoint=ref, step=score.step, fidelity=score.fidelity, editability=score.editability)
        )
    return pb.EvaluateResponse(
        scores=scores,
        recommended_index=result.evaluation.recommended_index,
        table=storage_ref(result.table_key),
        chart=common_pb2.ImageData(inline_data=result.chart_png, media_type="image/png"),
        chart_stored=storage_ref(result.chart_key),
    )
