"""The training loop: one textual-inversion run, prepared once, then stepped until it ends, pauses or is stopped.

    session = TrainingSession.prepare(spec, components, store, output_prefix="jobs/j1/")   # VAE runs here, once
    outcome = session.run(events=my_events, should_stop=my_stop_check)                    # steps, savepoints

One optimizer step, as A1111's train_embedding takes it (modules/textual_inversion/textual_inversion.py):
    lr = schedule.rate_at(step)                          A1111: scheduler.apply(optimizer, embedding.step)
    repeat `accumulation` times:                         A1111: `gradient_step` micro-batches
        draw:
        images  = cursor.next()                          [B] indices; incomplete groups at an epoch end dropped
        prompts = template line + filewords per image    fixed per image, or redrawn per sample (shuffle/dropout)
        x0      = cached latents (once/deterministic) or a fresh posterior draw (random)      [B, 4, h, w]
        x_t, target = noise at t ~ U{0..T-1}             epsilon or v-prediction, optional noise offset
        forward (shared_batch.TrainingGroup, with other runs on the same model when there are any):
        cond    = CLIP(token embeddings with the vectors spliced in at the trigger's slots)  [B, 77*C, D]
                  (SDXL: both encoders, each with its own vectors, plus the pooled text and time ids)
        loss    = weighted MSE(unet(x_t, t, cond), target), optional alpha weights and min-SNR
        (loss / accumulation).backward()                 A1111: loss / gradient_step, summed loss.item()s
    clip the gradient by value or norm (clip value = A1111 schedule at `step`; past its end the last value)
    AdamW step on the [n, D] vectors only (SDXL: the clip_l and clip_g pair, see vectors.py); step += 1
Every `log_every_steps` the per-step losses (kept on the device) are read once: that is the only host sync, and
there the loss and the embedding are checked for NaN/inf (TrainingDiverged names the first bad step). Savepoints
every `save_every_steps`, at the end, and on pause/shutdown (a cancel writes none); they are snapshotted in the loop
and written behind it (save_behind.py), and `on_savepoint` is called once a savepoint's manifest is in the store.

The session runs step by step for its group: `start`, then per round `poll_stop` (at a step's start), `draw`,
`micro_batch_loss` and `backward_term` (inside the shared forward and backward), and `micro_batch_done`, which
returns the run's outcome when it has ended. `run` is that sequence in a group of one.

Randomness, all seeded from spec.seed and all in every savepoint: the data order is a function of (seed, epoch)
(the cursor is two ints), prompt draws use the PromptSampler's Mersenne Twister, and flips, random latents,
timesteps and noise use one torch generator on the training device. A micro-batch is drawn only when its round
trains it, so a savepoint never holds draws ahead of its step. Resume from a savepoint is bit-exact on CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from services.common.diagnostics import Diagnostic, Severity
from services.common.embeddings import Embedding
from services.common.errors import InvalidArgument
from services.common.prompts import TokenBatch
from services.common.prompts.prompt_encoder import PromptEncoder
from services.common.storage import Store
from services.trainer.engine.data import BatchPlan, DataCursor, PromptSource
from services.trainer.engine.events import (
    PhaseReport,
    RunOutcome,
    StepReport,
    StopRequest,
    TrainingDiverged,
    TrainingEvents,
    TrainingOutOfMemory,
)
from services.trainer.engine.latents import EncodedDataset
from services.trainer.engine.objective import Noised, NoiseSchedule, add_noise, loss_per_sample
from services.trainer.engine.precision import Precision, release_cuda
from services.trainer.engine.prepare import prepare_run
from services.trainer.engine.run_record import embedding_metadata, run_settings
from services.trainer.engine.save_behind import SaveBehind
from services.trainer.engine.savepoints import (
    LossRow,
    Savepoint,
    savepoint_vectors,
    state_vectors,
    write_loss_csv,
    write_savepoint,
)
from services.trainer.engine.shared_batch import TrainingGroup
from services.trainer.engine.spec import TrainingSpec
from services.trainer.engine.vectors import all_finite, clip_gradient, mean_norm, time_ids
from services.trainer.schedule import LearnRateSchedule

__all__ = ["MicroBatch", "TrainingSession"]

log = logging.getLogger(__name__)


def _never() -> StopRequest | None:
    return None


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch's inputs, on the device. Nothing in it depends on the vectors."""

    prompts: list[str]  # [B]
    tokens: tuple[TokenBatch, ...]  # [B, C, 77] per text encoder
    noised: Noised  # noisy [B, 4, h, w], target, timesteps [B]
    weights: torch.Tensor | None  # [B, 1, h, w] alpha loss weights
    time_ids: torch.Tensor | None  # [B, 6] SDXL's size and crop conditioning

    @property
    def samples(self) -> int:
        return int(self.noised.timesteps.shape[0])


@dataclass
class _Run:
    """A run between `start` and its outcome."""

    target: int  # the step it trains to
    events: TrainingEvents
    should_stop: Callable[[], StopRequest | None]
    also_save_every: int
    window: torch.Tensor  # [L, 2] per step since the last report: (loss, embedding finite), on the device
    lrs: list[float]  # the rate of each step in the window
    clock: float  # perf_counter at the last report
    micro: int = 0  # micro-batches done in the current optimizer step
    lr: float = 0.0
    step_loss: torch.Tensor | None = None  # [] the current step's loss so far


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
        parts = prepare_run(
            spec,
            components,
            store,
            output_prefix=output_prefix,
            device=device,
            resume=resume,
            embedding=embedding,
            events=events,
            settings_extra=settings_extra,
        )
        return cls(**parts)

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
        self.trained: tuple[torch.nn.Parameter, ...] = parts["trained"]  # [n, D] per text encoder
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
        self.prompt_encoder = PromptEncoder(
            self.components, {self.name: int(self.vectors.shape[0])}, emphasis=self.spec.emphasis
        )
        self.tokenizer = self.prompt_encoder.tokenizers[0]  # the encoders' chunks and slots agree
        self.noise = NoiseSchedule(self.components.scheduler.config, self.precision.device)
        self.notes = (*self.notes, *self._trigger_notes())
        self.device_tokens = self._tokens_on_device()
        self.save_behind = SaveBehind(self.precision.device)
        self._saved_step: int | None = self.last_savepoint.step if self.last_savepoint is not None else None
        self._run: _Run | None = None

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
    def vectors(self) -> torch.nn.Parameter:
        """The first text encoder's vectors: SD1.x and SD2.x's only ones, SDXL's clip_l."""
        return self.trained[0]

    def _tokens_on_device(self) -> tuple[TokenBatch, ...] | None:
        """Fixed prompts tokenized once onto the device [N, C, 77], so a step gathers rows instead of tokenizing and
        copying. Only when every prompt has the same chunk count and no emphasis: A1111 pads chunks and restores
        the emphasis mean per batch, which a table built over all images would not reproduce."""
        fixed = self.prompts.fixed
        if fixed is None or len({self.tokenizer(prompt).chunks for prompt in fixed}) != 1:
            return None
        tables = self.prompt_encoder.batch(list(fixed))
        if any(table.weights is not None for table in tables):
            return None
        return tuple(table.to(self.precision.device) for table in tables)

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
        self.start(until_step=until_step, events=events, should_stop=should_stop, also_save_every=also_save_every)
        return TrainingGroup(self.components, self.precision).run_alone(self)

    def start(
        self,
        *,
        until_step: int | None = None,
        events: TrainingEvents | None = None,
        should_stop: Callable[[], StopRequest | None] = _never,
        also_save_every: int = 0,
    ) -> None:
        """Begin a run to be stepped by a TrainingGroup (`run`'s arguments)."""
        events = events or TrainingEvents()
        target = self.final_step if until_step is None else min(until_step, self.final_step)
        if target <= self.step:
            raise InvalidArgument(
                f"until_step {until_step} is not after the current step {self.step}", field="until_step"
            )
        window = torch.zeros(self.spec.log_every_steps, 2, device=self.precision.device)
        self._run = _Run(target, events, should_stop, also_save_every, window, [], time.perf_counter())
        events.on_phase(PhaseReport("training", f"training steps {self.step} to {target}", self.step, target))

    @property
    def running(self) -> bool:
        """Between `start` and the run's outcome."""
        return self._run is not None

    @property
    def at_step_start(self) -> bool:
        return self._run is not None and self._run.micro == 0

    def poll_stop(self) -> RunOutcome | None:
        """At a step's start: a stop request ends the run here (pause and shutdown save first)."""
        request = self._run.should_stop()
        return None if request is None else self._stop(request)

    def draw(self) -> MicroBatch:
        """The next micro-batch's inputs; the first of a step also sets the step's learning rate."""
        run, spec, device, g = self._run, self.spec, self.precision.device, self.generator
        if run.micro == 0:
            run.lr = self.lr_schedule.rate_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = run.lr
            run.step_loss = torch.zeros((), device=device)
        indices = self.cursor.next()  # [B] image indices
        self.last_prompts = self.prompts.prompts(indices)  # [B] strings
        index = torch.tensor(indices)  # [B]
        index = (index.pin_memory() if self.precision.is_cuda else index).to(device, non_blocking=True)
        if self.device_tokens is not None:
            tokens = tuple(TokenBatch(table.ids[index], table.slots[index], None) for table in self.device_tokens)
        else:
            tokens = tuple(batch.to(device) for batch in self.prompt_encoder.batch(self.last_prompts))
        flips = torch.rand(len(indices), generator=g, device=device) < 0.5 if spec.flip else None  # [B] bool
        latents, weights = self.encoded.latents.batch(index, flips, g)  # [B, 4, h, w], [B, 1, h, w] | None
        noised = add_noise(latents, self.noise, self.components.prediction_type, g, noise_offset=spec.noise_offset)
        if self.precision.is_cuda:
            noised = Noised(noised.noisy.contiguous(memory_format=torch.channels_last), noised.target, noised.timesteps)
        ids = time_ids(self.components, spec.height, spec.width, len(indices), device)
        return MicroBatch(self.last_prompts, tokens, noised, weights, ids)

    def micro_batch_loss(self, batch: MicroBatch, pred: torch.Tensor) -> torch.Tensor:
        """The micro-batch's mean loss (float32 scalar, attached to the graph) from the UNet's prediction."""
        losses = loss_per_sample(  # [B]
            pred,
            batch.noised,
            weights=batch.weights,
            schedule=self.noise,
            min_snr_gamma=self.spec.min_snr_gamma,
            prediction_type=self.components.prediction_type,
        )
        return losses.mean()

    def backward_term(self, loss: torch.Tensor) -> torch.Tensor:
        """What this run adds to the shared backward: loss / accumulation (A1111), loss-scaled under fp16."""
        scaled = loss / self.plan.accumulation
        return self.scaler.scale(scaled) if self.scaler is not None else scaled

    def micro_batch_done(self, loss: torch.Tensor) -> RunOutcome | None:
        """After the backward: at the step's last micro-batch, clip, AdamW, report and save. The run's outcome when
        it has reached its target step, else None."""
        run, spec = self._run, self.spec
        run.step_loss += loss.detach() / self.plan.accumulation
        run.micro += 1
        if run.micro < self.plan.accumulation:
            return None
        run.micro = 0

        # ---- clip, then AdamW on the [n, D] vectors
        if self.clip_schedule is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            clip_gradient(self.trained, spec.gradient_clipping, self.clip_schedule.value_at(self.step))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        # ---- bookkeeping on the device; the host looks only at report and save boundaries
        slot = len(run.lrs)
        run.window[slot, 0] = run.step_loss
        run.window[slot, 1] = all_finite(self.trained)
        run.lrs.append(run.lr)
        self.step += 1
        at_report = len(run.lrs) == spec.log_every_steps or self.step == run.target
        at_save = any(every > 0 and self.step % every == 0 for every in (spec.save_every_steps, run.also_save_every))
        if at_report or at_save:
            self._report()
        if at_save or self.step == self.final_step:
            self._save("final" if self.step == self.final_step else "interval")
        if self.step < run.target:
            return None
        if self.step < self.final_step and not self._saved_here():  # stopped at until_step: keep the place
            self._save("until_step")
        return self._outcome("completed" if self.step >= self.final_step else "until_step")

    def out_of_memory(self) -> TrainingOutOfMemory:
        """The error that ends this run after CUDA ran out of memory in its step, with advice."""
        self.optimizer.zero_grad(set_to_none=True)
        release_cuda()
        self.save_behind.flush()
        return TrainingOutOfMemory(_oom_advice(self.spec, self.plan))

    # ------------------------------------------------------------------------------------------------------------
    def _report(self) -> None:
        """The host sync: read the window, check it, write loss.csv (behind), emit on_step."""
        run = self._run
        if not run.lrs:
            return
        rows = run.window[: len(run.lrs)].tolist()  # the only device -> host copy of the loop
        now = time.perf_counter()
        first_step = self.step - len(run.lrs) + 1  # the "step" column of the window's first row (steps done)
        for i, (loss, finite) in enumerate(rows):
            if not math.isfinite(loss) or not finite:
                self.save_behind.flush()  # the last good savepoint is the last one written
                raise TrainingDiverged(
                    what="loss" if not math.isfinite(loss) else "embedding",
                    first_bad_step=first_step + i,
                    detected_at=self.step,
                    last_good=self.last_savepoint,
                )
        per_epoch = self.plan.steps_per_epoch
        for i, ((loss, _), lr) in enumerate(zip(rows, run.lrs, strict=True)):
            done = first_step + i
            self.loss_rows.append(LossRow(done, (done - 1) // per_epoch, (done - 1) % per_epoch, loss, lr))
        rows_now = list(self.loss_rows)
        self.save_behind.submit(lambda: write_loss_csv(self.store, self.output_prefix, rows_now))
        last = self.loss_rows[-1]
        samples = len(run.lrs) * self.plan.samples_per_step
        run.events.on_step(
            StepReport(
                step=last.step,
                epoch=last.epoch,
                epoch_step=last.epoch_step,
                loss=last.loss,
                lr=last.learn_rate,
                samples_per_s=samples / max(now - run.clock, 1e-9),
                losses=tuple(loss for loss, _ in rows),
                prompt=self.last_prompts[0] if self.last_prompts else "",
                embedding_norm=mean_norm(self.trained),
            )
        )
        run.lrs.clear()
        run.clock = now

    def _stop(self, request: StopRequest) -> RunOutcome:
        self._report()
        if request.kind in ("pause", "shutdown") and not self._saved_here():
            self._save(request.kind)
        self._run.events.on_phase(
            PhaseReport("stopped", f"{request.kind} at step {self.step}: {request.reason}".rstrip(": "))
        )
        status = {"pause": "paused", "shutdown": "shutdown", "cancel": "cancelled"}[request.kind]
        return self._outcome(status)

    def _saved_here(self) -> bool:
        return self._saved_step == self.step

    def _outcome(self, status: str) -> RunOutcome:
        self.save_behind.flush()  # the outcome's savepoint is in the store
        self._run = None
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
        vectors = tuple(v.detach().to("cpu", torch.float32) for v in self.trained)
        return Embedding(self.name, vectors, step=self.step, metadata=embedding_metadata(self))

    def settings(self) -> dict[str, Any]:
        """settings.json: every knob, the model and dataset identity, and what the run made of them."""
        return run_settings(self)

    def _save(self, reason: str) -> None:
        """Snapshot the state at this step and write the savepoint behind the loop; `on_savepoint` follows its
        manifest."""
        events, step = self._run.events, self.step
        events.on_phase(PhaseReport("saving", f"savepoint at step {step}"))
        snapshot = self.save_behind.snapshot(
            {
                "format": "tistudio.trainer.state/1",
                "step": step,
                **savepoint_vectors(self.trained),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "generator": self.generator.get_state(),
                "generator_device": self.precision.device.type,
                "prompt_rng": self.prompts.sampler.state(),
                "cursor": self.cursor.state(),
            }
        )
        metadata, settings = embedding_metadata(self), self.settings()
        loss = self.loss_rows[-1].loss if self.loss_rows else None
        rows = list(self.loss_rows)
        self._saved_step = step

        def write() -> Savepoint:
            state = snapshot.wait()
            embedding = Embedding(self.name, state_vectors(state), step=step, metadata=metadata)
            savepoint = write_savepoint(
                self.store,
                self.output_prefix,
                embedding=embedding,
                state=state,
                settings=settings,
                extra_formats=self.spec.extra_formats,
                loss=loss,
                reason=reason,
            )
            write_loss_csv(self.store, self.output_prefix, rows)
            return savepoint

        def written(savepoint: Savepoint) -> None:
            self.last_savepoint = savepoint
            log.info("savepoint at step %d: %s", savepoint.step, savepoint.folder)
            events.on_savepoint(savepoint)

        self.save_behind.submit(write, then=written)


# ---------------------------------------------------------------------------------------------------------------
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
