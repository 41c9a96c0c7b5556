"""RenderPreviews: one savepoint over a fixed prompt set x seeds (x embedding weights), stored beside it.

    result = render_previews(studio, PreviewGridSpec(model="models/sd15", embedding=EmbeddingSource(savepoint_key,
                             "anna"), prompts=("a photo of [name]",), seeds=(1, 2), weights=(0.8, 1.0, 1.2),
                             output_prefix="jobs/j1/savepoints/000050/previews/", step=50, job_id="j1"))

The same prompts and seeds at every savepoint are what make steps comparable (A1111 issue 2350: random preview seeds
made them incomparable). A weight w renders the trigger as "(trigger:w)", A1111's way of weighting an embedding.
Every image goes to `<output_prefix>p<prompt>-s<seed>-w<weight>.png`; `manifest.json` is written last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.common.errors import InvalidArgument
from services.preview.manifest import PreviewEntry, PreviewManifest, write_manifest
from services.preview.rendering import ImageOrder, RenderedImage, Sampling
from services.preview.studio import EmbeddingSource, PreviewStudio, output_prefix

__all__ = ["PreviewGridSpec", "PreviewGridImage", "PreviewGridResult", "render_previews", "weighted_prompt"]

MAX_PROMPTS, MAX_SEEDS, MAX_WEIGHTS, MAX_IMAGES = 16, 16, 8, 64
NAME = "[name]"


@dataclass(frozen=True)
class PreviewGridSpec:
    embedding: EmbeddingSource
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    output_prefix: str
    model: str = ""
    model_config: str = ""
    negative_prompt: str = ""
    weights: tuple[float, ...] = ()  # empty: 1.0 only
    sampling: Sampling = field(default_factory=Sampling)
    step: int = 0
    job_id: str = ""


@dataclass(frozen=True)
class PreviewGridImage:
    prompt_index: int
    seed: int
    weight: float
    key: str
    rendered: RenderedImage


@dataclass(frozen=True)
class PreviewGridResult:
    images: tuple[PreviewGridImage, ...]
    manifest_key: str


def weighted_prompt(template: str, trigger: str, weight: float) -> str:
    """`[name]` becomes the trigger, as "(trigger:w)" when w != 1; a prompt that already spells the trigger out (the
    trainer's last training prompt) gets the weight on each whole-word occurrence instead."""
    term = trigger if weight == 1.0 else f"({trigger}:{weight:g})"
    if NAME in template:
        return template.replace(NAME, term)
    if weight == 1.0:
        return template
    return re.sub(rf"(?<![\w]){re.escape(trigger)}(?![\w])", lambda _: term, template)


def render_previews(studio: PreviewStudio, spec: PreviewGridSpec) -> PreviewGridResult:
    _validate(spec)
    prefix = output_prefix(spec.output_prefix, "")
    model = studio.model(spec.model, spec.model_config)
    (embedding,) = studio.embeddings([spec.embedding], model)
    weights = spec.weights or (1.0,)
    cells = [(p, seed, w) for p in range(len(spec.prompts)) for w in weights for seed in spec.seeds]
    extra = (("TI step", str(spec.step)),)
    orders = [
        ImageOrder(weighted_prompt(spec.prompts[p], embedding.trigger, w), spec.negative_prompt, seed, extra)
        for p, seed, w in cells
    ]
    rendered = studio.renderer.render(model, [embedding], orders, spec.sampling)
    images = []
    for (p, seed, w), image in zip(cells, rendered, strict=True):
        key = f"{prefix}p{p}-s{seed}-w{w:g}.png"
        studio.store.put(key, image.png, content_type="image/png")
        images.append(PreviewGridImage(p, seed, w, key, image))
    first = rendered[0].image
    manifest = PreviewManifest(
        step=spec.step,
        job_id=spec.job_id,
        prompts=spec.prompts,
        negative_prompt=spec.negative_prompt,
        trigger=embedding.trigger,
        embedding_key=embedding.key,
        model={
            "reference": model.reference,
            "sha256": model.components.fingerprint.sha256,
            "short_hash": model.components.fingerprint.short_hash,
        },
        sampling={
            "steps": spec.sampling.steps,
            "cfg_scale": spec.sampling.cfg_scale,
            "sampler": spec.sampling.sampler,
            "width": first.width,
            "height": first.height,
        },
        entries=tuple(
            PreviewEntry(i.key, i.prompt_index, orders[n].prompt, i.seed, i.weight) for n, i in enumerate(images)
        ),
    )
    return PreviewGridResult(tuple(images), write_manifest(studio.store, prefix, manifest))


def _validate(spec: PreviewGridSpec) -> None:
    if not spec.output_prefix:
        raise InvalidArgument(
            "output.key is empty; previews go beside their savepoint, e.g. jobs/<id>/savepoints/000050/previews/",
            field="output.key",
            reason="OUTPUT_REQUIRED",
        )
    limits = (("prompts", spec.prompts, MAX_PROMPTS), ("seeds", spec.seeds, MAX_SEEDS))
    for name, values, limit in (*limits, ("weights", spec.weights, MAX_WEIGHTS)):
        if len(values) > limit or (name != "weights" and not values):
            raise InvalidArgument(
                f"{name}: give 1 to {limit} values (got {len(values)})", field=name, reason="INVALID_PREVIEW_GRID"
            )
    for index, weight in enumerate(spec.weights):
        if not 0.0 <= weight <= 2.0:
            raise InvalidArgument(
                f"weights[{index}] {weight} is outside 0-2; embedding weights like 0.8, 1.0, 1.2 are typical",
                field=f"weights[{index}]",
                reason="INVALID_PREVIEW_GRID",
            )
    total = len(spec.prompts) * len(spec.seeds) * max(1, len(spec.weights))
    if total > MAX_IMAGES:
        raise InvalidArgument(
            f"prompts x seeds x weights is {total} images; at most {MAX_IMAGES} per savepoint, so drop some seeds or "
            "weights",
            field="seeds",
            reason="INVALID_PREVIEW_GRID",
        )
