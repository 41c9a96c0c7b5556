"""Device and precision: where the frozen weights live, in which dtype, and what autocast and scaling apply.

    precision  device  frozen weights   autocast   grad scaler   the embedding and AdamW
    auto/bf16  cuda    bfloat16         bfloat16   no            float32
    fp16       cuda    float16          float16    yes           float32 (VAE kept float32: SD's VAE overflows
                                                                 in fp16)
    fp32       any     float32          none       no            float32
    auto       cpu     float32          none       no            float32   (the tests' path: same code)
On CUDA we also turn on TF32 matmuls and convolutions, SDPA attention (diffusers' AttnProcessor2_0, the default)
and channels_last for the UNet. The optimizer is fused AdamW there, which takes the scaler's inf check on the
device, so a step never waits for the host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from services.common.errors import InvalidArgument

__all__ = ["Precision", "load_components", "place_components", "release_cuda", "resolve_precision", "weight_dtype"]


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32" | "bf16" | "fp16": what was resolved from the spec's precision
    device: torch.device
    weight_dtype: torch.dtype  # the frozen UNet and text encoder
    vae_dtype: torch.dtype  # the VAE (runs once per image while caching)
    autocast_dtype: torch.dtype | None  # None: no autocast
    use_scaler: bool  # fp16 needs loss scaling

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            yield


def resolve_precision(precision: str, device: str | torch.device) -> Precision:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument("device 'cuda' was asked for but no CUDA GPU is visible", field="device")
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif device.type == "cpu":
        if precision == "auto":
            precision = "fp32"
        if precision == "fp16":
            raise InvalidArgument(
                "fp16 training needs a CUDA GPU; on the CPU use fp32 (or bf16)", field="spec.precision"
            )
    else:
        raise InvalidArgument(f"device '{device}' is not supported: use 'cpu' or 'cuda'", field="device")
    if precision == "fp32":
        return Precision("fp32", device, torch.float32, torch.float32, None, False)
    if precision == "bf16":
        # CPU bf16: autocast only, weights stay float32 (CPU bf16 storage saves memory, not time).
        weights = torch.bfloat16 if device.type == "cuda" else torch.float32
        return Precision("bf16", device, weights, weights, torch.bfloat16, False)
    if precision == "fp16":
        return Precision("fp16", device, torch.float16, torch.float32, torch.float16, True)
    raise InvalidArgument(f"unknown precision '{precision}'", field="spec.precision")


def weight_dtype(precision: str, device: str | torch.device) -> torch.dtype:
    """The dtype to load components in for a run (`load_stable_diffusion(..., dtype=weight_dtype(...))`)."""
    return resolve_precision(precision, device).weight_dtype


def load_components(spec: Any, *, device: str | torch.device = "cpu", store: Any = None) -> Any:
    """The spec's model (spec.model, spec.model_config), resolved and loaded on `device` in the dtype the run trains
    in: for notebooks and scripts; the service shares loaded models through its pool instead."""
    from services.common.models import resolve_model
    from services.common.models.loading import load_stable_diffusion

    resolved = resolve_model(spec.model, config=spec.model_config or None, store=store)
    return load_stable_diffusion(resolved, device=device, dtype=weight_dtype(spec.precision, device))


def place_components(components: Any, precision: Precision) -> None:
    """Put the frozen modules on the device in their dtypes (a no-op when they were loaded that way)."""
    for module, dtype in (
        (components.unet, precision.weight_dtype),
        *((encoder, precision.weight_dtype) for encoder in components.text_encoders),
        (components.vae, precision.vae_dtype),
    ):
        module.requires_grad_(False)
        module.eval()
        if module.device != precision.device or module.dtype != dtype:
            module.to(device=precision.device, dtype=dtype)
    if precision.is_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        components.unet.to(memory_format=torch.channels_last)
        try:
            from diffusers.models.attention_processor import AttnProcessor2_0

            components.unet.set_attn_processor(AttnProcessor2_0())
        except (ImportError, ValueError):  # an exotic UNet keeps its own processors
            pass


def release_cuda() -> None:
    """Give cached CUDA blocks back after an out-of-memory error, so the next attempt starts clean."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
