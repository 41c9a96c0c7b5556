"""The training loop: one textual-inversion run, prepared once, then stepped until it ends, pauses or is stopped.

    session = TrainingSession.prepare(spec, components, store, output_prefix="jobs/j1/")   # VAE runs here, once
    outcome = session.run(events=my_events, should_stop=my_stop_check)                    # steps, savepoints

One optimizer step, as A1111's train_embedding takes it (modules/textual_inversion/textual_inversion.py):
    lr = schedule.rate_at(step)                          A1111: scheduler.apply(optimizer, embedding.step)
    repeat `accumulation` times:                         A1111: `gradient_step` micro-batches
        images  = cursor.next()                          [B] indices; incomplete groups at an epoch end dropped
        prompts = template line + filewords per image    fixed per image, or redrawn per sample (shuffle/dropout)
        x0      = cached latents (once/deterministic) or a fresh posterior draw (random)      [B, 4, h, w]
        x_t, target = noise at t ~ U{0..T-1}             epsilon or v-prediction, optional noise offset
        cond    = CLIP(token embeddings with the vectors spliced in at the trigger's slots)  [B, 77*C, D]
        loss    = weighted MSE(unet(x_t, t, cond), target), optional alpha weights and min-SNR
        (loss / accumulation).backward()                 A1111: loss / gradient_step, summed loss.item()s
    clip the gradient by value or norm (clip value = A1111 schedule at `step`; past its end the last value)
    AdamW step on the [n, D] vectors only; step += 1
Every `log_every_steps` the per-step losses (kept on the device) are read once: that is the only host sync, and
there the loss and the embedding are checked for NaN/inf (TrainingDiverged names the first bad step). Savepoints
every `save_every_steps`, at the end, and on pause/shutdown; a cancel writes none.

Randomness, all seeded from spec.seed and all in every savepoint: the data order is a function of (seed, epoch)
(the cursor is two ints), prompt draws use the PromptSampler's Mersenne Twister, and flips, random latents,
timesteps and noise use one torch generator on the training device. Resume from a savepoint is bit-exact on CPU.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from services.common.diagnostics import Diagnostic, Severity
from services.common.embeddings import Embedding, check_compatible, read_embedding
from services.common.errors import InvalidArgument
from services.common.prompts import PromptTokenizer, TextConditioner
from services.common.storage import Store
from services.common.version import tool_version
from services.trainer.engine.data import BatchPlan, DataCursor, PromptSource, list_training_images
from services.trainer.engine.events import (
    PhaseReport,
    RunOutcome,
    StepReport,
    StopRequest,
    TrainingDiverged,
    TrainingEvents,
    TrainingOutOfMemory,
)
from services.trainer.engine.init import META_FAMILY
from services.trainer.engine.latents import EncodedDataset, encode_dataset
from services.trainer.engine.objective import NoiseSchedule, add_noise, loss_per_sample
from services.trainer.engine.precision import Precision, place_components, resolve_precision
from services.trainer.engine.savepoints import (
    LossRow,
    Savepoint,
    TrainingState,
    load_savepoint,
    read_loss_csv,
    write_loss_csv,
    write_savepoint,
)
from services.trainer.engine.spec import TrainingSpec
from services.trainer.schedule import LearnRateSchedule
from services.trainer.templates import PromptSampler

__all__ = ["TrainingSession", "clip_gradient"]

log = logging.getLogger(__name__)

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


def _never() -> StopRequest | None:
    return None


def clip_gradient(vectors: torch.Tensor, mode: str, value: float) -> None:
    """A1111: torch.nn.utils.clip_grad_value_ / clip_grad_norm_ on the embedding, with the scheduled value."""
    if mode == "value":
        torch.nn.utils.clip_grad_value_([vectors], value)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_([vectors], value)


class TrainingSession:
    """Everything one run needs, on its device: components, cached latents, the vectors, AdamW, schedules, RNGs."""

    @classmethod
    def prepare(
        cls,
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
    ) -> TrainingSession:
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
            _release_cuda()
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

        initial = state.vectors if state is not None else embedding.vectors[0]
        vectors = torch.nn.Parameter(initial.detach().to(precision.device, torch.float32).clone())  # [n, D]
        optimizer = torch.optim.AdamW(
            [vectors],
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
        return cls(
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
            vectors=vectors,
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

    def __init__(self, **parts: Any) -> None:
        """Use `prepare`."""
        self.spec: TrainingSpec = parts["spec"]
        self.components = parts["components"]
        self.store: Store = parts["store"]
        self.output_prefix: str = parts["output_prefix"]
        self.precision: Precision = parts["precision"]
        self.start_embedding: Embedding = parts["embedding"]
        self.name = self.start_embedding.name
        self.encoded: EncodedDataset = parts["encoded"]
        self.plan: BatchPlan = parts["plan"]
        self.cursor: DataCursor = parts["cursor"]
        self.prompts: PromptSource = parts["prompts"]
        self.vectors: torch.nn.Parameter = parts["vectors"]
        self.optimizer: torch.optim.AdamW = parts["optimizer"]
        self.scaler: torch.amp.GradScaler | None = parts["scaler"]
        self.generator: torch.Generator = parts["generator"]
        self.lr_schedule = parts["lr_schedule"]
        self.clip_schedule: LearnRateSchedule | None = parts["clip_schedule"]
        self.step: int = parts["step"]
        self.loss_rows: list[LossRow] = parts["loss_rows"]
        self.notes: tuple[Diagnostic, ...] = parts["notes"]
        self.settings_extra: dict[str, Any] = parts["settings_extra"]
        self.last_savepoint: Savepoint | None = parts["last_savepoint"]
        self.last_prompts: list[str] = []  # the latest micro-batch's prompts (A1111 previews the first one)
        self.tokenizer = PromptTokenizer(
            self.components.tokenizer, {self.name: int(self.vectors.shape[0])}, emphasis=self.spec.emphasis
        )
        self.conditioner = TextConditioner(self.components.text_encoder, emphasis=self.spec.emphasis)
        self.noise = NoiseSchedule(self.components.scheduler.config, self.precision.device)
        self.notes = (*self.notes, *self._trigger_notes())

    def _trigger_notes(self) -> list[Diagnostic]:
        """A prompt without the trigger word gives the vectors no gradient (A1111 trains on silently)."""
        prompts = list(self.prompts.fixed or self.prompts.examples(limit=20))
        missing = [p for p in prompts if self.tokenizer(p).slot_count == 0]
        if not missing:
            return []
        return [
            Diagnostic(
                Severity.WARNING if len(missing) < len(prompts) else Severity.ERROR,
                "TRIGGER_NOT_IN_PROMPT",
                f"{len(missing)} of {len(prompts)} training prompts do not contain '{self.name}' (e.g. "
                f"'{missing[0]}'), so those samples cannot teach the embedding anything",
                "Use a template whose lines hold [name], or put [name] in the captions.",
                field="spec.template",
            )
        ]

    @property
    def final_step(self) -> int:
        return self.lr_schedule.final_step

    @property
    def ends_early(self) -> bool:
        return self.lr_schedule.ends_early

    # ------------------------------------------------------------------------------------------------------------
    def run(
        self,
        *,
        until_step: int | None = None,
        events: TrainingEvents | None = None,
        should_stop: Callable[[], StopRequest | None] = _never,
        also_save_every: int = 0,
    ) -> RunOutcome:
        """Train until the run's end (max_steps, or where the A1111 schedule stops), `until_step`, or a stop.
        `also_save_every`: savepoints every N steps besides spec.save_every_steps (a job's preview steps, since
        previews render from a savepoint's file)."""
        events = events or TrainingEvents()
        target = self.final_step if until_step is None else min(until_step, self.final_step)
        if target <= self.step:
            raise InvalidArgument(
                f"until_step {until_step} is not after the current step {self.step}", field="until_step"
            )
        spec, plan, device = self.spec, self.plan, self.precision.device
        # Per-step (loss, embedding finite) since the last report, on the device: read once per report.
        window = torch.zeros(spec.log_every_steps, 2, device=device)  # [L, 2]
        lrs: list[float] = []
        clock = time.perf_counter()
        events.on_phase(PhaseReport("training", f"training steps {self.step} to {target}", self.step, target))
        try:
            while self.step < target:
                request = should_stop()
                if request is not None:
                    return self._stop(request, window, lrs, clock, events)

                # ---- one optimizer step: `accumulation` micro-batches of `batch_size` images
                step = self.step
                lr = self.lr_schedule.rate_at(step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                step_loss = torch.zeros((), device=device)
                for _ in range(plan.accumulation):
                    loss = self._micro_batch_loss()  # scalar, float32, attached to the graph
                    scaled = loss / plan.accumulation
                    (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
                    step_loss += loss.detach() / plan.accumulation

                # ---- clip, then AdamW on the [n, D] vectors
                if self.clip_schedule is not None:
                    if self.scaler is not None:
                        self.scaler.unscale_(self.optimizer)
                    clip_gradient(self.vectors, spec.gradient_clipping, self.clip_schedule.value_at(step))
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)

                # ---- bookkeeping on the device; the host looks only at report and save boundaries
                slot = len(lrs)
                window[slot, 0] = step_loss
                window[slot, 1] = torch.isfinite(self.vectors).all()
                lrs.append(lr)
                self.step += 1
                at_report = len(lrs) == spec.log_every_steps or self.step == target
                at_save = any(
                    every > 0 and self.step % every == 0 for every in (spec.save_every_steps, also_save_every)
                )
                if at_report or at_save:
                    clock = self._report(window, lrs, clock, events)
                if at_save or self.step == self.final_step:
                    reason = "final" if self.step == self.final_step else "interval"
                    self._save(reason, events)
        except torch.OutOfMemoryError:
            self.optimizer.zero_grad(set_to_none=True)
            _release_cuda()
            raise TrainingOutOfMemory(_oom_advice(spec, plan)) from None

        if self.step < self.final_step and not self._saved_here():  # stopped at until_step: keep the place
            self._save("until_step", events)
        status = "completed" if self.step >= self.final_step else "until_step"
        return self._outcome(status)

    def _micro_batch_loss(self) -> torch.Tensor:
        spec, device, g = self.spec, self.precision.device, self.generator
        indices = self.cursor.next()  # [B] image indices
        self.last_prompts = self.prompts.prompts(indices)  # [B] strings
        tokens = self.tokenizer.batch(self.last_prompts).to(device)  # [B, C, 77]
        index = torch.tensor(indices)  # [B]
        index = (index.pin_memory() if self.precision.is_cuda else index).to(device, non_blocking=True)
        flips = torch.rand(len(indices), generator=g, device=device) < 0.5 if spec.flip else None  # [B] bool
        latents, weights = self.encoded.latents.batch(index, flips, g)  # [B, 4, h, w], [B, 1, h, w] | None
        noised = add_noise(latents, self.noise, self.components.prediction_type, g, noise_offset=spec.noise_offset)
        noisy = noised.noisy
        if self.precision.is_cuda:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            cond = self.conditioner(tokens, self.vectors)  # [B, C*77, D]
            pred = self.components.unet(noisy, noised.timesteps, cond.to(self.components.unet.dtype)).sample
        losses = loss_per_sample(  # [B]
            pred,
            noised,
            weights=weights,
            schedule=self.noise,
            min_snr_gamma=spec.min_snr_gamma,
            prediction_type=self.components.prediction_type,
        )
        return losses.mean()

    def _report(self, window: torch.Tensor, lrs: list[float], clock: float, events: TrainingEvents) -> float:
        """The host sync: read the window, check it, write loss.csv, emit on_step. Returns the new clock."""
        if not lrs:
            return clock
        rows = window[: len(lrs)].tolist()  # the only device -> host copy of the loop
        now = time.perf_counter()
        first_step = self.step - len(lrs) + 1  # the "step" column of the window's first row (steps done)
        for i, (loss, finite) in enumerate(rows):
            if not math.isfinite(loss) or not finite:
                raise TrainingDiverged(
                    what="loss" if not math.isfinite(loss) else "embedding",
                    first_bad_step=first_step + i,
                    detected_at=self.step,
                    last_good=self.last_savepoint,
                )
        per_epoch = self.plan.steps_per_epoch
        for i, ((loss, _), lr) in enumerate(zip(rows, lrs, strict=True)):
            done = first_step + i
            self.loss_rows.append(LossRow(done, (done - 1) // per_epoch, (done - 1) % per_epoch, loss, lr))
        write_loss_csv(self.store, self.output_prefix, self.loss_rows)
        last = self.loss_rows[-1]
        samples = len(lrs) * self.plan.samples_per_step
        events.on_step(
            StepReport(
                step=last.step,
                epoch=last.epoch,
                epoch_step=last.epoch_step,
                loss=last.loss,
                lr=last.learn_rate,
                samples_per_s=samples / max(now - clock, 1e-9),
                losses=tuple(loss for loss, _ in rows),
                prompt=self.last_prompts[0] if self.last_prompts else "",
                embedding_norm=float(self.vectors.detach().norm(dim=1).mean()),
            )
        )
        lrs.clear()
        return now

    def _stop(
        self, request: StopRequest, window: torch.Tensor, lrs: list[float], clock: float, events: TrainingEvents
    ) -> RunOutcome:
        self._report(window, lrs, clock, events)
        if request.kind in ("pause", "shutdown") and not self._saved_here():
            self._save(request.kind, events)
        events.on_phase(PhaseReport("stopped", f"{request.kind} at step {self.step}: {request.reason}".rstrip(": ")))
        status = {"pause": "paused", "shutdown": "shutdown", "cancel": "cancelled"}[request.kind]
        return self._outcome(status)

    def _saved_here(self) -> bool:
        return self.last_savepoint is not None and self.last_savepoint.step == self.step

    def _outcome(self, status: str) -> RunOutcome:
        return RunOutcome(
            status=status,
            step=self.step,
            final_step=self.final_step,
            ends_early=self.ends_early,
            embedding=self.current_embedding(),
            savepoint=self.last_savepoint if self._saved_here() else None,
            loss=self.loss_rows[-1].loss if self.loss_rows else None,
            notes=self.notes,
        )

    # ------------------------------------------------------------------------------------------------------------
    def current_embedding(self) -> Embedding:
        """The vectors now, as an Embedding with the run's metadata (for previews and savepoints)."""
        vectors = self.vectors.detach().to("cpu", torch.float32)
        return Embedding(self.name, (vectors,), step=self.step, metadata=self._metadata())

    def _metadata(self) -> dict[str, str]:
        spec, fingerprint = self.spec, self.components.fingerprint
        metadata = dict(self.start_embedding.metadata)
        metadata.update(
            {
                META_FAMILY: self.components.family,
                "prediction_type": self.components.prediction_type,
                "base_model": spec.model,
                "sd_checkpoint": fingerprint.short_hash,
                "learning_rate": spec.learning_rate,
                "lr_scheduler": spec.lr_scheduler,
                "template": spec.template,
                "dataset": spec.dataset,
                "dataset_sha256": self.encoded.sha256,
                "resolution": f"{spec.width}x{spec.height}",
                "samples_per_step": str(self.plan.samples_per_step),
                "tool_version": tool_version(),
                **fingerprint.as_metadata(),
            }
        )
        return metadata

    def settings(self) -> dict[str, Any]:
        """settings.json: every knob, the model and dataset identity, and what the run made of them."""
        components, embedding = self.components, self.start_embedding
        return {
            "spec": self.spec.to_record(),
            "embedding": {
                "name": self.name,
                "vectors": int(self.vectors.shape[0]),
                "width": int(self.vectors.shape[1]),
                "init_text": embedding.metadata.get("init_text", ""),
                "start_step": embedding.step or 0,
            },
            "model": {
                "reference": self.spec.model,
                "sha256": components.fingerprint.sha256,
                "short_hash": components.fingerprint.short_hash,
                "family": components.family,
                "prediction_type": components.prediction_type,
                "vae_scale_factor": components.vae_scale_factor,
                "latent_scaling_factor": self.encoded.latents.scaling_factor,
            },
            "dataset": {
                "prefix": self.spec.dataset,
                "images": len(self.encoded.kept),
                "sha256": self.encoded.sha256,
                "notes": [note.to_dict() for note in self.notes],
            },
            "plan": {
                "batch_size": self.plan.batch_size,
                "gradient_accumulation": self.plan.accumulation,
                "samples_per_step": self.plan.samples_per_step,
                "steps_per_epoch": self.plan.steps_per_epoch,
                "final_step": self.final_step,
                "ends_early": self.ends_early,
            },
            "runtime": {
                "device": str(self.precision.device),
                "precision": self.precision.name,
                "tool_version": tool_version(),
                **{pkg: _version(pkg) for pkg in ("torch", "diffusers", "transformers")},
            },
            "job": self.settings_extra,
        }

    def _save(self, reason: str, events: TrainingEvents) -> Savepoint:
        events.on_phase(PhaseReport("saving", f"savepoint at step {self.step}"))
        state = {
            "format": "tistudio.trainer.state/1",
            "step": self.step,
            "vectors": self.vectors.detach().to("cpu", torch.float32).clone(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "generator": self.generator.get_state(),
            "generator_device": self.precision.device.type,
            "prompt_rng": self.prompts.sampler.state(),
            "cursor": self.cursor.state(),
        }
        savepoint = write_savepoint(
            self.store,
            self.output_prefix,
            embedding=self.current_embedding(),
            state=state,
            settings=self.settings(),
            extra_formats=self.spec.extra_formats,
            loss=self.loss_rows[-1].loss if self.loss_rows else None,
            reason=reason,
        )
        write_loss_csv(self.store, self.output_prefix, self.loss_rows)
        self.last_savepoint = savepoint
        log.info("savepoint at step %d: %s", savepoint.step, savepoint.folder)
        events.on_savepoint(savepoint)
        return savepoint


# ---------------------------------------------------------------------------------------------------------------
def _read_embedding(store: Store, key: str) -> Embedding:
    if not key:
        raise InvalidArgument(
            "no embedding to train: set spec.embedding_key or pass embedding=", field="spec.embedding_key"
        )
    embedding, _ = read_embedding(store.get(key), filename=key)
    return embedding


def _check_embedding(embedding: Embedding, components: Any, spec: TrainingSpec) -> None:
    width = int(components.text_encoder.get_input_embeddings().weight.shape[1])
    check_compatible(embedding, [width], model_name=spec.model, filename=spec.embedding_key)
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


def _oom_advice(spec: TrainingSpec, plan: BatchPlan) -> str:
    tips = []
    if plan.batch_size > 1:
        half = plan.batch_size // 2
        tips.append(
            f"batch_size {half} with gradient_accumulation {plan.accumulation * 2} (about the same "
            f"{plan.samples_per_step} samples per step, half the memory)"
        )
    if max(spec.width, spec.height) > 256:
        lower = max(256, (max(spec.width, spec.height) * 3 // 4) // 64 * 64)
        tips.append(f"width/height {lower} (the users' guide trains 256 from 512 images on small GPUs)")
    if spec.precision == "fp32":
        tips.append("precision bf16 (half the weight memory)")
    if not tips:
        tips.append("a GPU with more free memory (close other GPU work)")
    return (
        f"the GPU ran out of memory training {plan.batch_size} image(s) of {spec.width}x{spec.height} per "
        f"micro-batch: try " + "; or ".join(tips)
    )


def _release_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
