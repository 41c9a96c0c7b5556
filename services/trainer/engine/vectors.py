"""The trained vectors, one set per text encoder, and what the loop does with them as a whole.

SD1.x and SD2.x train one [n, D] Parameter; SDXL trains a pair, clip_l [n, 768] for CLIP-L and clip_g [n, 1280]
for OpenCLIP-G, as one embedding (A1111's and kohya's SDXL textual inversion): one AdamW over both with one
schedule, one gradient clip over both (kohya: clip_grad_norm_ over the parameter list), and the run diverges when
either stops being finite. SDXL's UNet also takes six time ids per sample; a training image is square-cropped and
resized to the training size, so the original and target sizes are that size and the crop is (0, 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from services.common.errors import InvalidArgument
from services.common.prompts.prompt_encoder import sdxl_time_ids

__all__ = ["all_finite", "check_formats", "clip_gradient", "mean_norm", "time_ids", "trainable"]

Vectors = tuple[torch.nn.Parameter, ...]


def trainable(initial: Sequence[torch.Tensor], device: torch.device) -> Vectors:
    """One float32 Parameter per text encoder, copied from `initial` onto the device."""
    return tuple(torch.nn.Parameter(v.detach().to(device, torch.float32).clone()) for v in initial)


def clip_gradient(vectors: Sequence[torch.Tensor], mode: str, value: float) -> None:
    """A1111: torch.nn.utils.clip_grad_value_ / clip_grad_norm_ on the embedding, with the scheduled value; the
    norm is taken over every text encoder's vectors together."""
    if mode == "value":
        torch.nn.utils.clip_grad_value_(list(vectors), value)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_(list(vectors), value)


def all_finite(vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    """[] bool on the device: no NaN or inf in any of the vectors (no host sync)."""
    if len(vectors) == 1:
        return torch.isfinite(vectors[0]).all()
    return torch.stack([torch.isfinite(v).all() for v in vectors]).all()


def mean_norm(vectors: Sequence[torch.Tensor]) -> float:
    """The mean vector norm, averaged over the text encoders (for the step report)."""
    return sum(float(v.detach().norm(dim=1).mean()) for v in vectors) / len(vectors)


def check_formats(extra_formats: Sequence[str], embedding_dims: Sequence[int]) -> None:
    """Refuse, before training, a savepoint format that cannot hold the model's embedding (A1111's .pt is one
    text encoder's vectors; SDXL's is a pair)."""
    if len(embedding_dims) > 1 and "a1111_pt" in extra_formats:
        raise InvalidArgument(
            "extra format a1111_pt holds one text encoder's vectors, but this SDXL model trains a clip_l + clip_g "
            "pair: leave a1111_pt out (the default .safetensors is what A1111, ComfyUI and diffusers load for "
            "SDXL; add 'diffusers' for diffusers' two-file form)",
            field="spec.extra_formats",
            reason="FORMAT_NOT_FOR_SDXL",
        )


def time_ids(components: Any, height: int, width: int, batch: int, device: torch.device) -> torch.Tensor | None:
    """SDXL's micro-conditioning [batch, 6] in the UNet's dtype; None for the families without it."""
    if components.family != "sdxl":
        return None
    return sdxl_time_ids(height, width, batch, device=device, dtype=components.unet.dtype)
