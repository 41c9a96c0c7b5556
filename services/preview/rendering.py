"""Render images with embeddings: prompts to conditioning, batched sampling, PNGs with A1111 infotext.

    renderer = Renderer(max_batch=8)
    images = renderer.render(model, [anna], [ImageOrder("a photo of (anna:0.8)", "blurry", seed=1)], Sampling())

Prompts are encoded in the caller's thread (A1111 emphasis and chunks, each embedding spliced in at its trigger,
for SDXL into both text encoders: prompt_conditioning.py); sampling and decoding run in the batcher's one device
thread, where images from concurrent calls that share the model, sampler, steps, size and conditioning lengths go
through the UNet together.
Nothing here mutates the model, so any embedding can be swapped in per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from services.common.errors import InvalidArgument
from services.common.models.loading import StableDiffusionComponents
from services.common.version import tool_version
from services.preview.batcher import Batcher
from services.preview.denoise import DenoiseItem, SamplingShape, decode, sample
from services.preview.embedding_library import LoadedEmbedding
from services.preview.infotext import Infotext, png_with_infotext
from services.preview.prompt_conditioning import PromptConditioner
from services.preview.samplers import sampler_named

__all__ = ["ImageOrder", "LoadedModel", "RenderedImage", "Renderer", "Sampling"]

_EMPHASIS_NAMES = {"original": "", "no_norm": "No norm", "none": "None"}  # infotext; Original is A1111's default
MAX_STEPS = 150
MAX_CFG = 30.0


@dataclass(frozen=True)
class Sampling:
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "euler_a"
    width: int = 0  # 0: the model family's size (512 SD1.x, 768 SD2's v-prediction model, 1024 SDXL)
    height: int = 0
    emphasis: str = "original"


@dataclass(frozen=True)
class LoadedModel:
    reference: str
    name: str  # A1111's "Model" infotext field
    components: StableDiffusionComponents

    @property
    def embedding_dims(self) -> tuple[int, ...]:
        """An embedding's vector width per text encoder (SDXL: CLIP-L's, then OpenCLIP-G's)."""
        return self.components.embedding_dims

    def native_size(self) -> int:
        return self.components.default_size


@dataclass(frozen=True)
class ImageOrder:
    prompt: str
    negative_prompt: str
    seed: int
    extra_infotext: tuple[tuple[str, str], ...] = ()  # e.g. (("TI step", "50"),) on previews


@dataclass(frozen=True)
class RenderedImage:
    image: Image.Image
    seed: int
    infotext: str
    png: bytes


@dataclass(frozen=True)
class _Work:
    components: StableDiffusionComponents
    item: DenoiseItem


class Renderer:
    def __init__(
        self,
        *,
        max_batch: int = 8,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        """`on_batch(images, denoising_steps, seconds)` after every batch, from the sampler thread (metrics)."""
        self._on_batch = on_batch
        self._batcher: Batcher[_Work, Image.Image] = Batcher(
            self._run_batch, max_batch=max_batch, name="preview-sampler"
        )

    @property
    def queue_depth(self) -> int:
        return self._batcher.queue_depth

    def close(self) -> None:
        self._batcher.close()

    def render(
        self,
        model: LoadedModel,
        embeddings: Sequence[LoadedEmbedding],
        orders: Sequence[ImageOrder],
        sampling: Sampling,
    ) -> list[RenderedImage]:
        """One image per order, in order. Embeddings must already fit the model (EmbeddingLibrary.check)."""
        width, height = _size(model, sampling)
        shape = SamplingShape(sampler_named(sampling.sampler), _steps(sampling.steps), width, height)
        _check_cfg(sampling.cfg_scale)
        encoder = PromptConditioner(model.components, embeddings, sampling.emphasis)
        futures = []
        for order in orders:
            cond = encoder(order.prompt)
            uncond = encoder.negative(order.negative_prompt, cond)
            item = DenoiseItem(cond, uncond, order.seed, sampling.cfg_scale)
            # One model per batch; the shape holds the size, so SDXL's time ids are the batch's own.
            lengths = (cond.hidden.shape[1], uncond.hidden.shape[1])
            key = (id(model.components), shape, *lengths, sampling.cfg_scale != 1.0)
            futures += self._batcher.submit(key, [_Work(model.components, item)])
        images = [future.result() for future in futures]
        hashes = {e.trigger: e.short_hash for e in embeddings}
        rendered = []
        for order, image in zip(orders, images, strict=True):
            used = dict.fromkeys(encoder.used(order.prompt) + encoder.used(order.negative_prompt))
            extra = dict(order.extra_infotext)
            if _EMPHASIS_NAMES.get(sampling.emphasis):
                extra["Emphasis"] = _EMPHASIS_NAMES[sampling.emphasis]
            extra["Version"] = tool_version()
            infotext = Infotext(
                prompt=order.prompt,
                negative_prompt=order.negative_prompt,
                steps=shape.steps,
                sampler=shape.sampler.display_name,
                cfg_scale=sampling.cfg_scale,
                seed=order.seed,
                width=width,
                height=height,
                model_hash=model.components.fingerprint.short_hash,
                model_name=model.name,
                ti_hashes=tuple((trigger, hashes[trigger]) for trigger in used),
                extra=extra,
            ).text()
            rendered.append(RenderedImage(image, order.seed, infotext, png_with_infotext(image, infotext)))
        return rendered

    def _run_batch(self, key: Any, works: list[_Work]) -> list[Image.Image]:
        shape: SamplingShape = key[1]
        components = works[0].components
        started = time.monotonic()
        images = decode(components, sample(components, [w.item for w in works], shape))
        if self._on_batch is not None:
            self._on_batch(len(works), len(works) * shape.steps, time.monotonic() - started)
        return images


def _size(model: LoadedModel, sampling: Sampling) -> tuple[int, int]:
    native = model.native_size()
    width, height = sampling.width or native, sampling.height or native
    step = max(8, model.components.vae_scale_factor)
    for name, value in (("width", width), ("height", height)):
        if value % step or not 0 < value <= 4096:
            raise InvalidArgument(
                f"sampling.{name} {value} must be a multiple of {step} between {step} and 4096 (0 means the model's "
                f"native {native})",
                field=f"sampling.{name}",
                reason="INVALID_SIZE",
            )
    return width, height


def _steps(steps: int) -> int:
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidArgument(
            f"sampling.steps {steps} must be between 1 and {MAX_STEPS}", field="sampling.steps", reason="INVALID_STEPS"
        )
    return steps


def _check_cfg(cfg_scale: float) -> None:
    if not 0.0 <= cfg_scale <= MAX_CFG:
        raise InvalidArgument(
            f"sampling.cfg_scale {cfg_scale} must be between 0 and {MAX_CFG} (A1111's default is 7)",
            field="sampling.cfg_scale",
            reason="INVALID_CFG_SCALE",
        )
