"""The training plan (PlanTraining, and StartTraining's gate): what a run will do, and every reason it cannot,
found before any compute.

    plan = plan_request(request_fields, "seed-a", store=store, components=components, embedding=embedding)
    require_ok(plan)        # FailedPrecondition(PLAN_HAS_ERRORS) listing every error

The plan lists the images, steps per epoch, epochs and the schedule's segments, a few prompts as the model will
see them and the longest prompt in CLIP tokens. Every problem is collected as a `Diagnostic` (ERROR: it cannot
start; WARNING: it runs but probably not as meant; INFO: worth knowing) with the `spec.<field>` to change. It reads
the dataset listing and the captions only: no image is decoded, nothing runs on the GPU, no latent is encoded.

Where A1111 silently clamps a batch larger than the dataset and "finishes" runs after 0 steps, the plan refuses
both with the numbers: BATCH_LARGER_THAN_DATASET / ACCUMULATION_LARGER_THAN_DATASET and NOTHING_TO_TRAIN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common.diagnostics import Diagnostic, Severity
from services.common.embeddings import Embedding, EmbeddingWidthMismatch, check_compatible
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.storage import Store
from services.common.text.clip_tokens import CONTEXT_TOKENS, ClipTokenCounter, prompt_tokens
from services.trainer.embedding_ops import EmbeddingSummary, ModelIdentity
from services.trainer.engine import derived_seed
from services.trainer.engine.data import BatchPlan, PromptSource, TrainingImages, list_training_images
from services.trainer.engine.init import validate_name
from services.trainer.engine.spec import TrainingSpec
from services.trainer.engine.vectors import check_formats
from services.trainer.recipes import RECIPES, collect_spec, full_cycle, resolve_preview_every_steps
from services.trainer.schedule import LearnRateSchedule
from services.trainer.templates import PromptSampler

__all__ = ["PlanSegment", "TrainingPlan", "plan_request", "plan_training", "require_ok"]

EXAMPLE_PROMPTS = 3


@dataclass(frozen=True)
class PlanSegment:
    rate: float  # the A1111 rate, or the base rate of a constant/linear/cosine schedule
    start_step: int
    end_step: int  # the rate applies for steps in [start_step, end_step)


@dataclass(frozen=True)
class TrainingPlan:
    spec: TrainingSpec  # resolved (refused fields carry stand-in defaults: see the ERROR diagnostics)
    recipe: str  # "" for none
    preview_every_steps: int
    model: ModelIdentity
    embedding: EmbeddingSummary  # as it stands before training
    images: int
    samples_per_step: int  # batch_size x gradient_accumulation
    steps_per_epoch: int  # complete accumulation groups per pass over the images (A1111's drop rule)
    epochs: float  # passes over the images this run makes: (end_step - start_step) / steps_per_epoch
    start_step: int  # the embedding's step: where training resumes
    end_step: int  # max_steps, or where a closed schedule ends
    schedule: tuple[PlanSegment, ...]
    example_prompts: tuple[str, ...]
    max_prompt_tokens: int  # longest template line + caption, with the embedding's vectors (limit 75 per chunk)
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors


def require_ok(plan: TrainingPlan) -> None:
    """StartTraining's gate: FailedPrecondition(PLAN_HAS_ERRORS) naming each error and its field."""
    errors = plan.errors
    if not errors:
        return
    listed = "; ".join(f"{d.field or d.code}: {d.message}" for d in errors)
    raise FailedPrecondition(
        f"the training plan has {len(errors)} error(s), fix them and start again: {listed}",
        reason="PLAN_HAS_ERRORS",
        metadata={"codes": ",".join(d.code for d in errors), "fields": ",".join(d.field for d in errors)},
    )


def plan_request(
    fields: Mapping[str, Any],
    recipe: str | None,
    *,
    store: Store,
    components: Any,
    embedding: Embedding,
) -> TrainingPlan:
    """The plan for a request's set fields (TrainingSpec field names, plus preview_every_steps) over `recipe`.
    Raises InvalidArgument only when no spec can be built at all (model, embedding or dataset missing)."""
    spec, diagnostics = collect_spec(fields, recipe, family_size=components.default_size)
    if spec is None:
        first = diagnostics[-1]
        raise InvalidArgument(first.message, field=first.field or "spec", reason=first.code)
    try:
        preview = resolve_preview_every_steps(fields, recipe if recipe in RECIPES else None)
    except InvalidArgument as e:
        diagnostics.append(Diagnostic(Severity.ERROR, "INVALID_SETTING", e.message, field=e.field or ""))
        preview = 0
    return plan_training(
        spec,
        store=store,
        components=components,
        embedding=embedding,
        recipe=recipe if recipe in RECIPES else "",
        preview_every_steps=preview,
        diagnostics=diagnostics,
    )


def plan_training(
    spec: TrainingSpec,
    *,
    store: Store,
    components: Any,
    embedding: Embedding,
    recipe: str = "",
    preview_every_steps: int = 0,
    diagnostics: Sequence[Diagnostic] = (),
) -> TrainingPlan:
    """The plan for a resolved spec; `diagnostics` are earlier findings (e.g. `collect_spec`'s) to carry."""
    found = list(diagnostics)
    model = ModelIdentity.from_components(components, spec.model)
    found += _embedding_problems(embedding, components, model)
    try:
        check_formats(spec.extra_formats, model.embedding_dims)
    except InvalidArgument as e:
        found.append(
            Diagnostic(Severity.ERROR, e.reason, e.message, "Remove a1111_pt from extra_formats.", field=e.field)
        )
    if recipe and RECIPES[recipe].family != model.family:
        found.append(
            Diagnostic(
                Severity.WARNING,
                "RECIPE_FAMILY_MISMATCH",
                f"recipe '{recipe}' was tuned on {RECIPES[recipe].family} models but {model.name} is {model.family}",
                "Check the rates and the resolution for this model, or pick a recipe tuned on its family.",
                field="spec.recipe",
            )
        )
    images = _images(store, spec, found)
    count = len(images) if images is not None else 0
    steps_per_epoch = _batch_checks(spec, count, found)
    start = embedding.step or 0
    segments = _schedule(spec, start, found)
    end = segments[-1].end_step if segments else start
    examples: tuple[str, ...] = ()
    max_tokens = 0
    if images is not None and count:
        examples = _examples(spec, embedding.name, images)
        max_tokens = _prompt_checks(spec, embedding, images, components, found)
    steps = end - start
    return TrainingPlan(
        spec=spec,
        recipe=recipe,
        preview_every_steps=preview_every_steps,
        model=model,
        embedding=EmbeddingSummary.of(embedding),
        images=count,
        samples_per_step=spec.samples_per_step,
        steps_per_epoch=steps_per_epoch,
        epochs=steps / steps_per_epoch if steps_per_epoch else 0.0,
        start_step=start,
        end_step=end,
        schedule=segments,
        example_prompts=examples,
        max_prompt_tokens=max_tokens,
        diagnostics=tuple(found),
    )


def _embedding_problems(embedding: Embedding, components: Any, model: ModelIdentity) -> list[Diagnostic]:
    out = []
    try:
        validate_name(embedding.name, components.tokenizer)
    except InvalidArgument as e:
        suggestion = e.metadata.get("suggestion", "")
        out.append(
            Diagnostic(
                Severity.ERROR,
                e.reason,
                e.message,
                f"Rename the embedding, e.g. to '{suggestion}'." if suggestion else "Rename the embedding.",
                field="spec.embedding",
            )
        )
    try:
        check_compatible(embedding, model.embedding_dims, model_name=model.name)
    except EmbeddingWidthMismatch as e:
        out.append(
            Diagnostic(
                Severity.ERROR,
                "EMBEDDING_WIDTH_MISMATCH",
                e.message,
                "Create a new embedding for this model, or train the model this embedding was made for.",
                field="spec.embedding",
            )
        )
    return out


def _images(store: Store, spec: TrainingSpec, found: list[Diagnostic]) -> TrainingImages | None:
    try:
        images = list_training_images(store, spec.dataset)
    except InvalidArgument as e:
        code = "NO_IMAGES" if e.reason == "DATASET_EMPTY" else e.reason
        found.append(
            Diagnostic(
                Severity.ERROR,
                code,
                e.message,
                "Upload images with <stem>.txt captions under the prefix.",
                field="spec.dataset",
            )
        )
        return None
    found += images.notes
    return images


def _batch_checks(spec: TrainingSpec, images: int, found: list[Diagnostic]) -> int:
    """Steps per epoch (0 when the images cannot fill one step), with the batch errors and left-over note."""
    if not images:
        return 0
    batch, accumulation = full_cycle(images)
    pair = f"batch_size {batch} x gradient_accumulation {accumulation} = {images} (full-cycle)"
    if spec.batch_size > images:
        found.append(
            Diagnostic(
                Severity.ERROR,
                "BATCH_LARGER_THAN_DATASET",
                f"batch_size {spec.batch_size} is larger than the {images} images of the dataset (A1111 would "
                f"silently train at batch {images})",
                f"Use {pair}, or add images.",
                field="spec.batch_size",
            )
        )
        return 0
    if spec.samples_per_step > images:
        found.append(
            Diagnostic(
                Severity.ERROR,
                "ACCUMULATION_LARGER_THAN_DATASET",
                f"batch_size {spec.batch_size} x gradient_accumulation {spec.gradient_accumulation} = "
                f"{spec.samples_per_step} samples per step is more than the {images} images, so no step could "
                f"complete (A1111 would silently lower the accumulation to {images // spec.batch_size})",
                f"Use {pair}, or add images.",
                field="spec.gradient_accumulation",
            )
        )
        return 0
    plan = BatchPlan.for_images(images, spec.batch_size, spec.gradient_accumulation)
    for note in plan.notes():
        if note.code == "IMAGES_LEFT_OVER":
            found.append(
                replace(note, suggestion=f"Use {pair} so every image trains every epoch.", field="spec.batch_size")
            )
    return plan.steps_per_epoch


def _schedule(spec: TrainingSpec, start: int, found: list[Diagnostic]) -> tuple[PlanSegment, ...]:
    try:
        schedule = spec.learning_rate_schedule(start)
    except InvalidArgument as e:
        nothing = e.reason == "NOTHING_TO_TRAIN"
        found.append(
            Diagnostic(
                Severity.ERROR,
                e.reason,
                e.message,
                "Raise max_steps (or extend the schedule) beyond the embedding's step, or train a new embedding."
                if nothing
                else "Fix the schedule as the message says.",
                field=e.field or "spec.learning_rate",
            )
        )
        return ()
    if isinstance(schedule, LearnRateSchedule):
        segments = tuple(PlanSegment(rate, s, e) for s, e, rate in schedule.spans)
    else:
        segments = (PlanSegment(schedule.base_rate, start, schedule.final_step),)
    if schedule.ends_early:
        found.append(
            Diagnostic(
                Severity.WARNING,
                "SCHEDULE_ENDS_EARLY",
                f"the learning-rate schedule ends at step {schedule.final_step}, before max_steps "
                f"{spec.max_steps}: training stops at step {schedule.final_step} (as A1111 does)",
                f"End the schedule with an open rate (e.g. '{spec.learning_rate}, "
                f"{schedule.segments[-1].rate}') to train to {spec.max_steps}, or lower max_steps.",
                field="spec.learning_rate",
            )
        )
    return segments


def _examples(spec: TrainingSpec, name: str, images: TrainingImages) -> tuple[str, ...]:
    # The run's own sampler and seed (loop.py), so fixed prompts are exactly the ones training will use.
    sampler = PromptSampler(spec.prompt_template, spec.caption_processing, derived_seed(spec.seed, "prompts"))
    return tuple(PromptSource(sampler, name, images.filewords).examples(EXAMPLE_PROMPTS))


def _prompt_checks(
    spec: TrainingSpec, embedding: Embedding, images: TrainingImages, components: Any, found: list[Diagnostic]
) -> int:
    template = spec.prompt_template
    name = embedding.name
    spelled = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
    in_captions = template.uses_filewords and any("[name]" in w or spelled.search(w) for w in images.filewords)
    if not template.uses_name and not in_captions:
        found.append(
            Diagnostic(
                Severity.ERROR,
                "TEMPLATE_WITHOUT_NAME",
                f"template '{template.name}' has no [name] and no caption names '{name}', so the embedding would "
                "never be in a training prompt and could not learn",
                "Pick a template with [name] (e.g. photo_filewords or subject_filewords).",
                field="spec.template",
            )
        )
    counter = ClipTokenCounter.from_tokenizer(components.tokenizer)
    longest, where = 0, ("", "")
    for line in template.lines:
        for key, words in zip((i.image_key for i in images.items), images.filewords, strict=True):
            tokens = prompt_tokens(line, words, name, embedding.n_vectors, counter)
            if tokens > longest:
                longest, where = tokens, (line, key)
            if "[filewords]" not in line:
                break  # the caption is not in this line: every image gives the same count
    if longest > CONTEXT_TOKENS:
        found.append(
            Diagnostic(
                Severity.WARNING,
                "PROMPT_TOO_LONG",
                f"the longest training prompt is {longest} tokens (template line '{where[0]}' with the caption of "
                f"{where[1]}, counting the embedding's {embedding.n_vectors} vectors): CLIP reads {CONTEXT_TOKENS} "
                "at a time, so it is split into chunks and the concept competes with a second context",
                "Shorten the captions or the template, or use fewer vectors.",
                field="spec.template",
                key=where[1],
            )
        )
    return longest
