"""Evaluate: render every savepoint, score it with CLIP against the training images and the edit prompts, and
recommend one (`scoring`). The table (CSV) and the chart (PNG) are written to the store.

Every savepoint renders the same prompts with the same seeds, so the scores differ only by the embedding.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from services.common.datasets import list_dataset
from services.common.errors import FailedPrecondition
from services.common.storage import ObjectNotFound
from services.common.torch_threads import in_passing_thread
from services.preview.embedding_library import LoadedEmbedding
from services.preview.preview_grid import weighted_prompt
from services.preview.rendering import ImageOrder, Sampling
from services.preview.score_report import scores_chart, scores_csv
from services.preview.scoring import (
    DEFAULT_EDIT_PROMPTS,
    DEFAULT_MARGIN,
    ClipScorer,
    Evaluation,
    SavepointInput,
    evaluate,
)
from services.preview.studio import EmbeddingSource, PreviewStudio, output_prefix

__all__ = ["EvaluateSpec", "EvaluateResult", "evaluate_savepoints"]

log = logging.getLogger(__name__)

_STEP_FOLDER = re.compile(r"(?:^|/)savepoints/(\d+)/")
MAX_TRAINING_IMAGES = 64


@dataclass(frozen=True)
class EvaluateSpec:
    savepoints: tuple[EmbeddingSource, ...]
    dataset: str
    model: str = ""
    model_config: str = ""
    clip_model: str = ""  # empty: the service's TISTUDIO_CLIP_MODEL
    edit_prompts: tuple[str, ...] = ()  # empty: scoring.DEFAULT_EDIT_PROMPTS
    seeds: tuple[int, ...] = (1, 2)
    sampling: Sampling = field(default_factory=Sampling)
    margin: float = DEFAULT_MARGIN
    output_prefix: str = ""  # empty: evaluation/ beside the first savepoint


@dataclass(frozen=True)
class EvaluateResult:
    evaluation: Evaluation
    savepoints: tuple[LoadedEmbedding, ...]
    table_key: str
    chart_key: str
    chart_png: bytes
    images_rendered: int


def evaluate_savepoints(studio: PreviewStudio, spec: EvaluateSpec) -> EvaluateResult:
    clip_reference = spec.clip_model or studio.default_clip
    if not clip_reference:
        raise FailedPrecondition(
            "no CLIP model to score with: pass clip_model, or start the preview service with TISTUDIO_CLIP_MODEL set "
            "to a transformers CLIPModel folder (e.g. openai/clip-vit-large-patch14)",
            field="clip_model.reference",
            reason="CLIP_MODEL_REQUIRED",
        )
    model = studio.model(spec.model, spec.model_config)
    loaded = []
    for source in spec.savepoints:  # one at a time: savepoints of one job share their trigger
        (embedding,) = studio.embeddings([source], model)
        loaded.append(embedding)
    inputs = [SavepointInput(e.key, _step(e), e) for e in loaded]
    training = _training_images(studio, spec.dataset)
    scorer = ClipScorer(studio.models.clip(clip_reference))

    def render(savepoint: SavepointInput, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        embedding: LoadedEmbedding = savepoint.embedding  # type: ignore[assignment]
        orders = [ImageOrder(weighted_prompt(p, embedding.trigger, 1.0), "", s) for p in prompts for s in seeds]
        return [r.image for r in studio.renderer.render(model, [embedding], orders, spec.sampling)]

    subject_word = loaded[0].embedding.metadata.get("init_text", "") if loaded else ""
    edit_prompts = spec.edit_prompts or DEFAULT_EDIT_PROMPTS
    evaluation = in_passing_thread(  # CLIP scoring from a handler thread: see services/common/torch_threads.py
        evaluate,
        inputs,
        training,
        render,
        scorer,
        edit_prompts=edit_prompts,
        seeds=spec.seeds,
        subject_word=subject_word,
        margin=spec.margin,
    )
    default = f"{posixpath.dirname(loaded[0].key)}/evaluation/".lstrip("/")
    prefix = output_prefix(spec.output_prefix, default)
    table_key, chart_key = f"{prefix}scores.csv", f"{prefix}scores.png"
    chart = scores_chart(evaluation)
    studio.store.put(chart_key, chart, content_type="image/png")
    studio.store.put(table_key, scores_csv(evaluation), content_type="text/csv")
    images = len(loaded) * len(spec.seeds) * (1 + len(edit_prompts))
    return EvaluateResult(evaluation, tuple(loaded), table_key, chart_key, chart, images)


def _step(embedding: LoadedEmbedding) -> int:
    """The training step: from the file (our metadata, A1111's `step`), else from its savepoints/<step>/ folder."""
    if embedding.embedding.step is not None:
        return embedding.embedding.step
    match = _STEP_FOLDER.search(embedding.key)
    return int(match.group(1)) if match else 0


def _training_images(studio: PreviewStudio, dataset_key: str) -> list[Image.Image]:
    dataset = list_dataset(studio.store, dataset_key, field="dataset.key")
    images = []
    for item in dataset.items[:MAX_TRAINING_IMAGES]:
        try:
            with Image.open(io.BytesIO(studio.store.get(item.image_key))) as image:
                images.append(image.convert("RGB"))
        except (ObjectNotFound, UnidentifiedImageError, OSError) as exc:  # one bad image never sinks the scores
            log.warning("evaluate: skipping training image %s: %s", item.image_key, exc)
    return images
