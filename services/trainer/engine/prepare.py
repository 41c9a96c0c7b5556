"""Setting a run up: the embedding or the savepoint to resume, the checks, the VAE pass, the data stream, AdamW.

`prepare_run` returns the parts a TrainingSession is made of; `TrainingSession.prepare` is its public face.
On resume every piece of state comes back from the savepoint (the vectors, SDXL's pair, AdamW moments, the
GradScaler, the torch generator, the prompt sampler's Mersenne Twister, the data cursor), so the continuation is
bit-exact on the CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

from services.common.diagnostics import Diagnostic, Severity
from services.common.embeddings import Embedding, check_compatible, read_embedding
from services.common.errors import InvalidArgument
from services.common.storage import Store
from services.trainer.engine.data import BatchPlan, DataCursor, PromptSource, list_training_images
from services.trainer.engine.events import PhaseReport, TrainingEvents, TrainingOutOfMemory
from services.trainer.engine.latents import encode_dataset
from services.trainer.engine.precision import place_components, release_cuda, resolve_precision
from services.trainer.engine.savepoints import Savepoint, TrainingState, load_savepoint, read_loss_csv
from services.trainer.engine.spec import TrainingSpec
from services.trainer.engine.vectors import check_formats, trainable
from services.trainer.templates import PromptSampler

__all__ = ["derived_seed", "prepare_run"]

# Spec fields that define the data stream: a savepoint resumes exactly only with the same values.
_STREAM_FIELDS = (
    "dataset",
    "width",
    "height",
    "batch_size",
    "gradient_accumulation",
    "seed",
    "latent_sampling",
    "flip",
    "alpha_loss_weight",
    "template_text",
    "shuffle_tags",
    "keep_tags",
    "tag_dropout",
    "emphasis",
)


def prepare_run(
    spec: TrainingSpec,
    components: Any,
    store: Store,
    *,
    output_prefix: str,
    device: str | torch.device = "cpu",
    resume: Savepoint | None = None,
    embedding: Embedding | None = None,
    events: TrainingEvents | None = None,
    settings_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load the data and encode it once, and set up the optimizer; resume exactly from `resume`, or start from
    `embedding` (else the one at spec.embedding_key) at its stored step, as A1111 continues a run."""
    events = events or TrainingEvents()
    precision = resolve_precision(spec.precision, device)
    events.on_phase(PhaseReport("loading", "reading the embedding and the dataset"))
    state: TrainingState | None = None
    if resume is not None:
        embedding, state = load_savepoint(store, resume)
    elif embedding is None:
        embedding = _read_embedding(store, spec.embedding_key)
    if state is not None:
        _check_resume(spec, state, components)
    _check_embedding(embedding, components, spec)
    start_step = state.step if state is not None else (embedding.step or 0)
    lr_schedule = spec.learning_rate_schedule(start_step)
    clip_schedule = spec.clip_schedule()
    place_components(components, precision)

    images = list_training_images(store, spec.dataset)
    events.on_phase(PhaseReport("encoding", "encoding images with the VAE (once each)", 0, len(images)))
    try:
        encoded = encode_dataset(
            store,
            images,
            components.vae,
            width=spec.width,
            height=spec.height,
            latent_scale=components.vae_scale_factor,
            sampling=spec.latent_sampling,
            flip=spec.flip,
            alpha=spec.alpha_loss_weight,
            seed=spec.seed,
            device=precision.device,
            progress=lambda done, total: events.on_phase(PhaseReport("encoding", "encoding images", done, total)),
        )
    except torch.OutOfMemoryError:
        release_cuda()
        raise TrainingOutOfMemory(
            f"the GPU ran out of memory encoding {spec.width}x{spec.height} images with the VAE: train at a "
            "lower width/height (e.g. 384 or 256), or free the GPU of other work"
        ) from None
    plan = BatchPlan.for_images(len(encoded.kept), spec.batch_size, spec.gradient_accumulation)
    notes = [*images.notes, *encoded.notes, *plan.notes()]
    cursor = DataCursor(spec.seed, plan)
    if state is not None:
        if state.settings.get("dataset", {}).get("sha256") == encoded.sha256:
            cursor = DataCursor(spec.seed, plan, state.cursor["epoch"], state.cursor["batch"])
        else:  # images or captions changed since the savepoint: continue, from the next epoch
            cursor = DataCursor(spec.seed, plan, state.cursor["epoch"] + 1, 0)
            notes.append(
                Diagnostic(
                    Severity.WARNING,
                    "DATASET_CHANGED",
                    "the dataset changed since the savepoint was written; training continues with the new "
                    "images from the next epoch, so this resume is not bit-exact",
                    "Keep the dataset unchanged while a run is paused for an exact resume.",
                    field="spec.dataset",
                )
            )
    filewords = tuple(images.filewords[i] for i in encoded.kept)
    sampler = PromptSampler(spec.prompt_template, spec.caption_processing, derived_seed(spec.seed, "prompts"))
    prompts = PromptSource(sampler, embedding.name, filewords)  # fixed prompts are drawn here, from the seed
    if state is not None:
        sampler.set_state(state.prompt_rng)

    trained = trainable(state.trained if state is not None else embedding.vectors, precision.device)  # [n, D] each
    optimizer = torch.optim.AdamW(  # one optimizer and schedule for all text encoders' vectors, as kohya's SDXL TI
        list(trained),
        lr=lr_schedule.rate_at(start_step),
        betas=(spec.adam_beta1, spec.adam_beta2),
        eps=spec.adam_epsilon,
        weight_decay=spec.weight_decay,
        fused=True if precision.is_cuda else None,
    )
    scaler = torch.amp.GradScaler("cuda") if precision.use_scaler else None
    generator = torch.Generator(precision.device).manual_seed(derived_seed(spec.seed, "run"))
    if state is not None:
        optimizer.load_state_dict(state.optimizer)
        if scaler is not None and state.scaler:
            scaler.load_state_dict(state.scaler)
        if state.generator_device == precision.device.type:
            generator.set_state(state.generator)
        else:
            generator.manual_seed(derived_seed(spec.seed, f"run@{start_step}"))
            notes.append(
                Diagnostic(
                    Severity.INFO,
                    "RNG_RESEEDED",
                    f"the savepoint was written on {state.generator_device}, this run is on "
                    f"{precision.device.type}: noise is reseeded, so the resume is exact in every state but the "
                    "noise draws",
                )
            )
    loss_rows = [row for row in read_loss_csv(store, output_prefix) if row.step <= start_step]
    return dict(
        spec=spec,
        components=components,
        store=store,
        output_prefix=output_prefix,
        precision=precision,
        embedding=embedding,
        encoded=encoded,
        plan=plan,
        cursor=cursor,
        prompts=prompts,
        trained=trained,
        optimizer=optimizer,
        scaler=scaler,
        generator=generator,
        lr_schedule=lr_schedule,
        clip_schedule=clip_schedule,
        step=start_step,
        loss_rows=loss_rows,
        notes=tuple(notes),
        settings_extra=dict(settings_extra or {}),
        last_savepoint=resume,
    )


def _read_embedding(store: Store, key: str) -> Embedding:
    if not key:
        raise InvalidArgument(
            "no embedding to train: set spec.embedding_key or pass embedding=", field="spec.embedding_key"
        )
    embedding, _ = read_embedding(store.get(key), filename=key)
    return embedding


def _check_embedding(embedding: Embedding, components: Any, spec: TrainingSpec) -> None:
    check_compatible(embedding, components.embedding_dims, model_name=spec.model, filename=spec.embedding_key)
    check_formats(spec.extra_formats, components.embedding_dims)
    if (embedding.step or 0) >= spec.max_steps:
        raise InvalidArgument(
            f"the embedding is already at step {embedding.step}, at or past max_steps {spec.max_steps}: raise "
            f"max_steps above {embedding.step} to train further",
            field="spec.max_steps",
            reason="NOTHING_TO_TRAIN",
        )


def _check_resume(spec: TrainingSpec, state: TrainingState, components: Any) -> None:
    saved = state.settings.get("spec", {})
    changed = [name for name in _STREAM_FIELDS if saved.get(name) != getattr(spec, name)]
    if changed:
        raise InvalidArgument(
            f"the savepoint was trained with other {', '.join(changed)}; a resume keeps the data stream, so these "
            "must stay as they were (start a new run from the savepoint's embedding to change them)",
            field=f"spec.{changed[0]}",
            reason="RESUME_MISMATCH",
        )
    model = state.settings.get("model", {})
    if model.get("sha256") and model["sha256"] != components.fingerprint.sha256:
        raise InvalidArgument(
            f"the savepoint was trained on model {model.get('short_hash')} but this is "
            f"{components.fingerprint.short_hash}: resume on the same model",
            field="spec.model",
            reason="RESUME_MISMATCH",
        )


def derived_seed(seed: int, purpose: str) -> int:
    """An independent seed per purpose ("prompts", "run", ...), so that the plan's example prompts are the run's."""
    digest = hashlib.sha256(f"tistudio:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
