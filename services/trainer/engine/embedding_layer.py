"""The splice: the embedding's vectors replace the token embeddings at their slots, then CLIP runs as usual.

A1111 does this with `EmbeddingsWithFixes` (`modules/sd_hijack.py`), a wrapper around the token-embedding layer that
overwrites rows of its output at the "fixes" offsets. We do the same thing without touching the text encoder:

    tokens  = token_embedding(ids)                      [N, 77, D]   frozen table lookup, no gradient
    tokens  = where(slot >= 0, vectors[slot], tokens)   [N, 77, D]   the only path to the trainable [n, D]
    hidden  = tokens + position_embedding               (CLIPTextEmbeddings with inputs_embeds)
    hidden  = encoder(hidden, causal mask)              (CLIPEncoder, as CLIPTextModel.forward calls it)
    z       = final_layer_norm(hidden)                  [N, 77, D]   = CLIPTextModel(ids).last_hidden_state

So the vocabulary and the encoder's weights never change, nothing is resized, and the optimizer holds [n, D]:
none of the diffusers example's full-matrix AdamW and per-step row restore. The shared text encoder is never
mutated, so the same components can serve previews while a run trains. A test checks that `encode` with no slots
equals `text_encoder(ids).last_hidden_state` exactly, which guards this against transformers internals changing.

Emphasis (A1111 "Original"): z is multiplied by each token's weight, then rescaled so its mean is unchanged, chunk
by chunk across the batch as A1111 does.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.masking_utils import create_causal_mask

from services.trainer.engine.prompts import TokenBatch

__all__ = ["TextConditioner"]


class TextConditioner:
    """`(TokenBatch, vectors [n, D]) -> encoder hidden states [B, C*77, D]` through a frozen CLIP text encoder."""

    def __init__(self, text_encoder: Any) -> None:
        self.text_encoder = text_encoder
        self.token_embedding = text_encoder.get_input_embeddings()

    def __call__(self, batch: TokenBatch, vectors: torch.Tensor) -> torch.Tensor:
        te = self.text_encoder
        b, c, t = batch.ids.shape
        ids = batch.ids.reshape(b * c, t)  # [N=B*C, 77]
        slots = batch.slots.reshape(b * c, t)  # [N, 77]
        with torch.no_grad():
            tokens = self.token_embedding(ids)  # [N, 77, D] frozen
        picked = vectors.to(tokens.dtype)[slots.clamp(min=0)]  # [N, 77, D], gradient flows to vectors
        tokens = torch.where((slots >= 0).unsqueeze(-1), picked, tokens)  # [N, 77, D]
        hidden = te.embeddings(inputs_embeds=tokens)  # + position embeddings
        mask = create_causal_mask(config=te.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None)
        hidden = te.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        z = te.final_layer_norm(hidden)  # [N, 77, D]
        z = z.reshape(b, c, t, -1)  # [B, C, 77, D]
        if batch.weights is not None:
            z = _emphasis(z, batch.weights.to(z.device))
        return z.reshape(b, c * t, -1)  # [B, C*77, D]


def _emphasis(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis, per chunk index over the whole batch: z * w, rescaled to keep z's mean."""
    out = []
    for chunk in range(z.shape[1]):
        zc = z[:, chunk]  # [B, 77, D]
        original_mean = zc.mean()
        zc = zc * weights[:, chunk].unsqueeze(-1).to(zc.dtype)
        out.append(zc * (original_mean / zc.mean()))
    return torch.stack(out, dim=1)
