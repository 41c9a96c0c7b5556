"""`TrainingSpec`: every knob of one textual-inversion run, resolved and checked, saved beside every savepoint.

A spec is complete on its own: no field means "use whatever the server has", so the JSON beside a savepoint is
enough to reproduce the run. Defaults are A1111's (its Train tab), so a spec built in a notebook with only the
model, embedding and dataset trains like A1111 would. Every refusal is an `InvalidArgument` naming `spec.<field>`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.embeddings import EmbeddingFormat
from services.common.errors import InvalidArgument
from services.common.records import plain_record
from services.trainer.schedule import LearnRateSchedule, WarmupSchedule, parse_schedule
from services.trainer.templates import BUILTIN_TEMPLATES, CaptionProcessing, PromptTemplate

__all__ = [
    "CLIPPING_MODES",
    "EMPHASIS_MODES",
    "EXTRA_FORMATS",
    "LATENT_SAMPLING",
    "PRECISIONS",
    "TrainingSpec",
    "scale_learning_rate",
]

LATENT_SAMPLING = ("once", "deterministic", "random")
CLIPPING_MODES = ("none", "value", "norm")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EMPHASIS_MODES = ("original", "none")
# Extra files beside the default single-key safetensors: A1111's .pt and diffusers' learned_embeds.safetensors.
EXTRA_FORMATS = (EmbeddingFormat.A1111_PT.value, EmbeddingFormat.DIFFUSERS.value)
_CUSTOM = "custom"


@dataclass(frozen=True)
class TrainingSpec:
    # --- what to train, on what
    model: str  # model reference: a folder, a .safetensors checkpoint, store:<prefix>, an HF id in the local cache
    embedding_key: str  # store key of the embedding to train (create_embedding's file); "" when passed to prepare
    dataset: str  # store prefix of the images with their <stem>.txt captions (and optional <stem>.alpha.png)
    model_config: str = ""  # the diffusers config folder of a single-file checkpoint; "" for diffusers folders
    # --- optimisation (A1111: AdamW on the embedding only, weight decay 0)
    learning_rate: str = "0.005"  # A1111 schedule "0.05:10, 0.02:20, 0.005" or one base rate for the other kinds
    lr_scheduler: str = "a1111"  # "a1111" | "constant" | "linear" | "cosine" (diffusers' warm-up schedules)
    warmup_steps: int = 0  # linear warm-up from 0 (constant/linear/cosine only)
    lr_cycles: float = 0.5  # cosine periods over the decay (0.5: one half cosine down to 0)
    max_steps: int = 3000  # optimizer steps; a closed A1111 schedule may end sooner (it stops there, as A1111)
    batch_size: int = 1  # images per micro-batch (A1111 clamps it to the image count; so do we, with a note)
    gradient_accumulation: int = 1  # micro-batches per optimizer step; incomplete groups at an epoch end are dropped
    weight_decay: float = 0.0  # AdamW decoupled weight decay (A1111: 0)
    adam_beta1: float = 0.9  # AdamW betas and epsilon: torch's defaults, as A1111 and diffusers use them
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    gradient_clipping: str = "none"  # "none" | "value" (clip each component) | "norm" (clip the L2 norm)
    gradient_clip: str = "0.1"  # the clip value, itself an A1111 schedule; past its end the last value holds
    min_snr_gamma: float | None = None  # min-SNR loss weighting (5.0 is the paper's choice); None: plain MSE
    noise_offset: float | None = None  # add offset * N(0, 1) per sample and channel to the noise; None: off
    # --- data: images, captions, prompts
    width: int = 512  # training resolution in pixels, independent of the stored image size (a multiple of 8)
    height: int = 512
    template: str = "style_filewords"  # a built-in template name (A1111's default) or "custom"
    template_text: str = ""  # the template's lines, filled from the built-in when empty; the user's own for custom
    shuffle_tags: bool = False  # shuffle the comma-separated caption tags per sample
    keep_tags: int = 0  # the first N tags never move or drop (kohya's keep_tokens)
    tag_dropout: float = 0.0  # drop each other tag with this probability per sample
    emphasis: str = "original"  # A1111 prompt emphasis: "(word)" x1.1, "[word]" /1.1, "(word:1.3)"; "none": literal
    latent_sampling: str = "once"  # "once" | "deterministic" (posterior mean) | "random" (a new draw each step)
    flip: bool = False  # horizontal flip augmentation, p=0.5 per sample (A1111 never applies its flip)
    alpha_loss_weight: bool = False  # weight the loss by the image's alpha (<stem>.alpha.png or the PNG's own)
    # --- the run
    precision: str = "auto"  # "auto" (bf16 on CUDA if supported, else fp16; fp32 on CPU) | "fp32" | "bf16" | "fp16"
    seed: int = 0  # seeds data order, prompt draws, latent draws, noise and timesteps
    save_every_steps: int = 500  # a savepoint every N steps (0: only at the end, pause and shutdown)
    log_every_steps: int = 10  # loss/rate events and loss.csv every N steps; also the non-finite check interval
    extra_formats: tuple[str, ...] = ()  # "a1111_pt", "diffusers": written beside the default safetensors

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_formats", tuple(self.extra_formats))
        object.__setattr__(self, "template_text", _resolved_template_text(self.template, self.template_text))
        for name in ("model", "dataset"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise InvalidArgument(f"{name} is empty: name the {name} to train on", field=f"spec.{name}")
        _check_int(self, "max_steps", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "gradient_accumulation", 1)
        _check_int(self, "warmup_steps", 0)
        _check_int(self, "save_every_steps", 0)
        _check_int(self, "log_every_steps", 1)
        _check_int(self, "keep_tags", 0)
        _check_int(self, "seed", 0)
        for name in ("width", "height"):
            _check_int(self, name, 8)
            if getattr(self, name) % 8:
                raise InvalidArgument(
                    f"{name} {getattr(self, name)} is not a multiple of 8: the VAE halves the size three times "
                    f"(use {getattr(self, name) // 8 * 8})",
                    field=f"spec.{name}",
                )
        _check_choice(self, "lr_scheduler", ("a1111", "constant", "linear", "cosine"))
        _check_choice(self, "latent_sampling", LATENT_SAMPLING)
        _check_choice(self, "gradient_clipping", CLIPPING_MODES)
        _check_choice(self, "precision", PRECISIONS)
        _check_choice(self, "emphasis", EMPHASIS_MODES)
        for fmt in self.extra_formats:
            if fmt not in EXTRA_FORMATS:
                raise InvalidArgument(
                    f"unknown extra format '{fmt}': use {', '.join(EXTRA_FORMATS)} (.safetensors is always written)",
                    field="spec.extra_formats",
                )
        _check_float(self, "weight_decay", 0.0, None)
        _check_float(self, "lr_cycles", 0.0, None, open_low=True)
        _check_float(self, "tag_dropout", 0.0, 1.0, open_high=True)
        _check_float(self, "adam_beta1", 0.0, 1.0, open_high=True)
        _check_float(self, "adam_beta2", 0.0, 1.0, open_high=True)
        _check_float(self, "adam_epsilon", 0.0, None, open_low=True)
        for name in ("min_snr_gamma", "noise_offset"):
            if getattr(self, name) is not None:
                _check_float(self, name, 0.0, None, open_low=True)
        for name in ("flip", "alpha_loss_weight", "shuffle_tags"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(f"{name} must be true or false", field=f"spec.{name}")
        CaptionProcessing(self.shuffle_tags, self.keep_tags, self.tag_dropout)  # raises on bad values
        # The schedules are parsed here so a typo is refused before any model is loaded.
        self.learning_rate_schedule()
        self.clip_schedule()

    def learning_rate_schedule(self, start_step: int = 0) -> LearnRateSchedule | WarmupSchedule:
        """The learning-rate schedule of a run that starts (or resumes) at `start_step`."""
        return parse_schedule(
            self.lr_scheduler,
            self.learning_rate,
            self.max_steps,
            warmup_steps=self.warmup_steps,
            start_step=start_step,
            cycles=self.lr_cycles,
        )

    def clip_schedule(self) -> LearnRateSchedule | None:
        """The gradient-clip value (itself an A1111 schedule), or None when clipping is off."""
        if self.gradient_clipping == "none":
            return None
        return LearnRateSchedule.parse(self.gradient_clip, self.max_steps, field="spec.gradient_clip")

    @property
    def prompt_template(self) -> PromptTemplate:
        return PromptTemplate(self.template, tuple(self.template_text.split("\n")))

    @property
    def caption_processing(self) -> CaptionProcessing:
        return CaptionProcessing(self.shuffle_tags, self.keep_tags, self.tag_dropout)

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.gradient_accumulation

    def to_record(self) -> dict[str, Any]:
        """Plain JSON values, every field present (the settings snapshot beside each savepoint)."""
        return plain_record(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TrainingSpec:
        """The inverse of `to_record`. Unknown keys are refused (a typo would otherwise be silently ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise InvalidArgument(
                f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}", field="spec"
            )
        values = dict(record)
        if "extra_formats" in values:
            values["extra_formats"] = tuple(values["extra_formats"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainingSpec:
        return dataclasses.replace(self, **changes)


def scale_learning_rate(spec: TrainingSpec, factor: float) -> TrainingSpec:
    """The same spec with every rate multiplied by `factor` (the job layer's "retry at half rate")."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a positive number, got {factor}")

    def scaled(piece: str) -> str:
        rate, sep, rest = piece.strip().partition(":")
        return f"{float(rate) * factor!r}{sep}{rest.strip()}"

    text = ", ".join(scaled(p) for p in spec.learning_rate.split(",") if p.strip())
    return spec.replace(learning_rate=text)


def _resolved_template_text(template: str, text: str) -> str:
    if not isinstance(template, str) or not isinstance(text, str):
        raise InvalidArgument("template and template_text must be strings", field="spec.template")
    if template == _CUSTOM:
        return "\n".join(PromptTemplate.from_text(text).lines)
    builtin = "\n".join(PromptTemplate.builtin(template).lines)  # raises TEMPLATE_UNKNOWN
    stripped = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    if stripped and stripped != builtin:
        raise InvalidArgument(
            f"template_text was given with the built-in template '{template}': set template to 'custom' to train "
            f"with your own lines, or leave template_text empty (built-ins: {', '.join(BUILTIN_TEMPLATES)})",
            field="spec.template_text",
            reason="TEMPLATE_INVALID",
        )
    return builtin


def _check_int(spec: TrainingSpec, name: str, minimum: int) -> None:
    value = getattr(spec, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} is {value!r}: use a whole number of at least {minimum}", field=f"spec.{name}")


def _check_float(
    spec: TrainingSpec,
    name: str,
    low: float,
    high: float | None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    value = getattr(spec, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (
            high is None or (value < high if open_high else value <= high)
        )
    if not ok:
        bounds = f"{'above' if open_low else 'at least'} {low}"
        if high is not None:
            bounds += f" and {'below' if open_high else 'at most'} {high}"
        raise InvalidArgument(f"{name} is {value!r}: use a number {bounds}", field=f"spec.{name}")
    object.__setattr__(spec, name, float(value))


def _check_choice(spec: TrainingSpec, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(spec, name)
    if value not in choices:
        raise InvalidArgument(f"{name} '{value}' is not one of {', '.join(choices)}", field=f"spec.{name}")
