"""Prompts with embeddings to the UNet's conditioning, for every Stable Diffusion family.

    encoder = PromptEncoder(components, {"h3artx": 2}, emphasis="original")
    batches = encoder.batch(["a photo of h3artx"])                  # one TokenBatch per text encoder
    cond = encoder(batches, (vectors,))                             # vectors: one [n, D] per text encoder
    unet(latents, t, **cond.unet_kwargs(time_ids))

SD1.x and SD2.x: one CLIP text encoder, its final layer-normed hidden states [B, C*77, D].

SDXL (diffusers' `StableDiffusionXLPipeline.encode_prompt`, A1111's `sd_models_xl`): both encoders read the same
prompt, each through its own tokenizer (the second pads with "!") and with its own half of the embedding spliced in
(`clip_l` [n, 768] into CLIP-L, `clip_g` [n, 1280] into OpenCLIP-G); the UNet gets both encoders' penultimate hidden
states side by side [B, C*77, 768 + 1280], and through `added_cond_kwargs` the pooled, projected embedding of the
second encoder [B, 1280] with six time ids per sample: original size, crop top-left, target size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from services.common.prompts.conditioning import TextConditioner
from services.common.prompts.conditioning import encode_together as encode_rows_together
from services.common.prompts.tokens import PromptTokenizer, TokenBatch

__all__ = ["Conditioning", "PromptEncoder", "encode_together", "sdxl_time_ids"]


@dataclass
class Conditioning:
    """What the UNet is conditioned on: cross-attention states and, for SDXL, the pooled text embedding."""

    hidden: torch.Tensor  # [B, C*77, D] (SDXL: D = the two encoders' widths side by side)
    pooled: torch.Tensor | None = None  # [B, P] SDXL

    def unet_kwargs(self, time_ids: torch.Tensor | None = None) -> dict[str, Any]:
        """Keyword arguments for `UNet2DConditionModel.__call__`; SDXL needs `time_ids` [B, 6]."""
        if self.pooled is None:
            return {"encoder_hidden_states": self.hidden}
        if time_ids is None:
            raise ValueError("an SDXL UNet needs time ids (original size, crop, target size) with the pooled text")
        return {
            "encoder_hidden_states": self.hidden,
            "added_cond_kwargs": {"text_embeds": self.pooled, "time_ids": time_ids},
        }

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Batches of one chunk count stacked along the batch: one UNet call for all of them."""
        pooled = None if parts[0].pooled is None else torch.cat([p.pooled for p in parts])  # type: ignore[misc]
        return Conditioning(torch.cat([p.hidden for p in parts]), pooled)


def sdxl_time_ids(
    height: int,
    width: int,
    batch: int,
    *,
    crop: tuple[int, int] = (0, 0),
    original: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """SDXL's micro-conditioning [batch, 6]: (original height, width, crop top, left, target height, width). A
    square-cropped, resized training image and a plain generation both use (H, W, 0, 0, H, W), as diffusers does."""
    original = original or (height, width)
    row = torch.tensor([*original, *crop, height, width], dtype=dtype, device=device)
    return row.expand(batch, 6)


class PromptEncoder:
    """One family's prompt path: a PromptTokenizer and a TextConditioner per text encoder."""

    def __init__(self, components: Any, embeddings: Mapping[str, int], *, emphasis: str = "original") -> None:
        encoders = components.text_encoders
        self.sdxl = len(encoders) == 2
        self.tokenizers = tuple(PromptTokenizer(t, embeddings, emphasis=emphasis) for t in components.tokenizers)
        layer = "penultimate" if self.sdxl else "final"
        self.conditioners = tuple(
            TextConditioner(encoder, emphasis=emphasis, layer=layer, pooled=self.sdxl and index == 1)
            for index, encoder in enumerate(encoders)
        )

    def batch(self, prompts: list[str]) -> tuple[TokenBatch, ...]:
        """One TokenBatch per text encoder; their chunks and slots agree (the encoders share one BPE vocabulary)."""
        return tuple(tokenizer.batch(prompts) for tokenizer in self.tokenizers)

    def __call__(self, batches: Sequence[TokenBatch], vectors: Sequence[torch.Tensor]) -> Conditioning:
        return encode_together([(self, batches, vectors)])[0]


def encode_together(
    items: Sequence[tuple[PromptEncoder, Sequence[TokenBatch], Sequence[torch.Tensor]]],
) -> list[Conditioning]:
    """Several prompt batches (each with its own vectors, emphasis and embeddings) through one call per text
    encoder; per batch, what its encoder alone gives (see conditioning.encode_together)."""
    per_encoder = []
    for index in range(len(items[0][0].conditioners)):
        per_encoder.append(
            encode_rows_together(
                [(encoder.conditioners[index], batches[index], vectors[index]) for encoder, batches, vectors in items]
            )
        )
    out = []
    for position in range(len(items)):
        results = [encoded[position] for encoded in per_encoder]  # (hidden, pooled) per text encoder
        hidden = results[0][0] if len(results) == 1 else torch.cat([h for h, _ in results], dim=-1)
        pooled = next((p for _, p in results if p is not None), None)
        out.append(Conditioning(hidden, pooled))
    return out
