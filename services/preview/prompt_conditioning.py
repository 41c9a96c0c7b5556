"""Prompt text to UNet conditioning for one render call, for every family (SD1.x, SD2.x, SDXL).

    prompts = PromptConditioner(components, [anna], emphasis="original")
    cond = prompts("a photo of (anna:0.8)")                     # Conditioning, batch 1
    uncond = prompts.negative("", cond)

Each embedding's vectors go to their own text encoder (SDXL: `clip_l` into CLIP-L, `clip_g` into OpenCLIP-G), every
embedding of the call stacked per encoder, through `services.common.prompts.PromptEncoder`.

SDXL's empty negative prompt is zero conditioning (hidden states and pooled embedding), as diffusers does for
pipelines with `force_zeros_for_empty_prompt` (SDXL base sets it in model_index.json; it is the pipeline's default)
and as A1111 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from services.common.errors import InvalidArgument
from services.common.models.loading import StableDiffusionComponents
from services.common.prompts import Conditioning, PromptEncoder
from services.preview.embedding_library import LoadedEmbedding

__all__ = ["PromptConditioner"]


class PromptConditioner:
    """Prompts of one call -> Conditioning with this call's embeddings; each distinct prompt is encoded once."""

    def __init__(self, components: StableDiffusionComponents, embeddings: Sequence[LoadedEmbedding], emphasis: str):
        self._zero_empty_negative = components.force_zeros_for_empty_prompt
        encoders = components.text_encoders
        try:
            self._encoder = PromptEncoder(
                components, {e.trigger: e.embedding.n_vectors for e in embeddings}, emphasis=emphasis
            )
        except ValueError as exc:
            raise InvalidArgument(str(exc), field="embeddings", reason="INVALID_TRIGGER") from exc
        self._vectors = tuple(_stacked(embeddings, index, encoder) for index, encoder in enumerate(encoders))
        self._device = encoders[0].device
        self._cache: dict[str, Conditioning] = {}

    def __call__(self, prompt: str) -> Conditioning:
        if prompt not in self._cache:
            batches = tuple(batch.to(self._device) for batch in self._encoder.batch([prompt]))
            with torch.inference_mode():
                self._cache[prompt] = self._encoder(batches, self._vectors)
        return self._cache[prompt]

    def negative(self, prompt: str, cond: Conditioning) -> Conditioning:
        """The negative prompt's conditioning; for SDXL an empty one is zeros shaped like `cond` (diffusers' rule,
        which also keeps both halves the same length, so they share one UNet call)."""
        if prompt or not self._zero_empty_negative:
            return self(prompt)
        pooled = None if cond.pooled is None else torch.zeros_like(cond.pooled)
        return Conditioning(torch.zeros_like(cond.hidden), pooled)

    def used(self, prompt: str) -> tuple[str, ...]:
        """The triggers the prompt uses (the encoders share one vocabulary, so the first one tells)."""
        return self._encoder.tokenizers[0](prompt).used


def _stacked(embeddings: Sequence[LoadedEmbedding], index: int, encoder: Any) -> torch.Tensor:
    """Every embedding's vectors for text encoder `index`, in slot order, on the encoder's device and dtype. With no
    embeddings, one zero row: the splice indexes every position, then keeps the token's own embedding."""
    rows = [e.vectors[index] for e in embeddings] or [torch.zeros(1, int(encoder.config.hidden_size))]
    return torch.cat(rows).to(device=encoder.device, dtype=encoder.dtype)
