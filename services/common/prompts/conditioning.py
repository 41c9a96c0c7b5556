"""The splice: embedding vectors replace the token embeddings at their slots, then CLIP runs as usual.

A1111 does this with `EmbeddingsWithFixes` (`modules/sd_hijack.py`), a wrapper around the token-embedding layer that
overwrites rows of its output at the "fixes" offsets. We do the same thing without touching the text encoder:

    tokens  = token_embedding(ids)                      [N, 77, D]   frozen table lookup, no gradient
    tokens  = where(slot >= 0, vectors[slot], tokens)   [N, 77, D]   vectors: every embedding's rows, stacked
    hidden  = tokens + position_embedding               (CLIPTextEmbeddings with inputs_embeds)
    hidden  = encoder(hidden, causal mask)              (CLIPEncoder, as CLIPTextModel.forward calls it)
    z       = final_layer_norm(hidden)                  [N, 77, D]   = CLIPTextModel(ids).last_hidden_state

SDXL conditions on the penultimate layer's hidden states instead (no final layer norm), of both its encoders, and on
the pooled output of its second: `layer="penultimate"` and `pooled=True` (see prompt_encoder.py).

So the vocabulary and the encoder's weights never change and nothing is resized: a trainer's optimizer holds [n, D]
(none of the diffusers example's full-matrix AdamW and per-step row restore), and a generator swaps embeddings per
request without touching the base model. The shared text encoder is never mutated, so the same components serve
previews while a run trains. A test checks that `encode` with no slots
equals `text_encoder(ids).last_hidden_state` exactly, which guards this against transformers internals changing.

Emphasis: A1111 "Original" multiplies z by each token's weight, then rescales it so its mean is unchanged, chunk by
chunk across the batch as A1111 does (skipped where the mean is ~0, which would divide by zero); "No norm" (SDXL's
default) only multiplies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.masking_utils import create_causal_mask

from services.common.prompts.emphasis import EMPHASIS_MODES
from services.common.prompts.tokens import TokenBatch

__all__ = ["LAYERS", "TextConditioner", "encode_together"]

LAYERS = ("final", "penultimate")


class TextConditioner:
    """`(TokenBatch, vectors [n, D]) -> encoder hidden states [B, C*77, D]` through a frozen CLIP text encoder.

    `layer`: "final" (SD1.x/SD2.x: the last layer, final layer norm applied) or "penultimate" (SDXL: the hidden
    states before the last layer). `pooled`: also return the pooled, projected text embedding [B, P] of each
    prompt's first chunk (SDXL's second encoder, a CLIPTextModelWithProjection; A1111 also pools the first chunk).
    """

    def __init__(
        self, text_encoder: Any, *, emphasis: str = "original", layer: str = "final", pooled: bool = False
    ) -> None:
        if emphasis not in EMPHASIS_MODES:
            raise ValueError(f"emphasis {emphasis!r} is not one of {', '.join(EMPHASIS_MODES)}")
        if layer not in LAYERS:
            raise ValueError(f"layer {layer!r} is not one of {', '.join(LAYERS)}")
        if pooled and not hasattr(text_encoder, "text_projection"):
            raise ValueError("a pooled embedding needs a text encoder with a projection (CLIPTextModelWithProjection)")
        self.text_encoder = text_encoder
        # CLIPTextModelWithProjection wraps the text transformer; CLIPTextModel is it.
        self.transformer = getattr(text_encoder, "text_model", text_encoder)
        self.token_embedding = text_encoder.get_input_embeddings()
        self.emphasis = emphasis
        self.layer = layer
        self.pooled = pooled

    def __call__(self, batch: TokenBatch, vectors: torch.Tensor) -> torch.Tensor:
        return encode_together([(self, batch, vectors)])[0][0]

    def splice(self, batch: TokenBatch, vectors: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B*C, 77, D] with the vectors at the batch's slots (gradient flows to `vectors`)."""
        b, c, t = batch.ids.shape
        ids = batch.ids.reshape(b * c, t)  # [N=B*C, 77]
        slots = batch.slots.reshape(b * c, t)  # [N, 77]
        with torch.no_grad():
            tokens = self.token_embedding(ids)  # [N, 77, D] frozen
        picked = vectors.to(tokens.dtype)[slots.clamp(min=0)]  # [N, 77, D]
        return torch.where((slots >= 0).unsqueeze(-1), picked, tokens)

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CLIP from token embeddings [N, 77, D] to the chosen layer's hidden states [N, 77, D], and with `pooled`
        the final layer-normed states [N, 77, D] the pooled embedding is taken from; rows never mix."""
        te = self.transformer
        hidden = te.embeddings(inputs_embeds=tokens)  # + position embeddings
        mask = create_causal_mask(config=te.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None)
        if self.layer == "final" and not self.pooled:
            hidden = te.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
            return te.final_layer_norm(hidden), None
        layers = te.encoder.layers
        for layer in layers[:-1]:
            hidden = layer(hidden, mask, is_causal=True)
        penultimate = hidden
        if self.layer == "penultimate" and not self.pooled:
            return penultimate, None
        final = te.final_layer_norm(layers[-1](hidden, mask, is_causal=True))
        return (penultimate if self.layer == "penultimate" else final), final

    def pool(self, batch: TokenBatch, final: torch.Tensor) -> torch.Tensor:
        """The projected text embedding [B, P] at the end token of each prompt's first chunk, as the model's own
        forward picks it (the highest id for configs with the legacy eos_token_id 2, else the first end token)."""
        b, c, t = batch.ids.shape
        first = batch.ids[:, 0].to(final.device)  # [B, 77]
        eos = self.transformer.config.eos_token_id
        at = first.int().argmax(dim=-1) if eos == 2 else (first == eos).int().argmax(dim=-1)
        rows = final.reshape(b, c, t, -1)[:, 0]  # [B, 77, D]
        return self.text_encoder.text_projection(rows[torch.arange(b, device=final.device), at])

    def finish(self, batch: TokenBatch, z: torch.Tensor) -> torch.Tensor:
        """Hidden states [B*C, 77, D] -> [B, C*77, D], with this batch's emphasis (its mean is the batch's own)."""
        b, c, t = batch.ids.shape
        z = z.reshape(b, c, t, -1)  # [B, C, 77, D]
        if batch.weights is not None and self.emphasis != "none":
            z = _emphasis(z, batch.weights.to(z.device), keep_mean=self.emphasis == "original")
        return z.reshape(b, c * t, -1)


def encode_together(
    items: Sequence[tuple[TextConditioner, TokenBatch, torch.Tensor]],
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Several prompt batches, each with its own vectors and emphasis, through one text-encoder call: per batch,
    (hidden states [B, C*77, D], pooled [B, P] or None).

    CLIP treats every 77-token row on its own (causal attention within the row, layer norm per token), so rows of
    different batches can share a call; each batch's emphasis is applied to its own rows afterwards, because
    A1111's "Original" mean is taken over one batch. The result per batch is what its conditioner alone gives.
    The pooled embedding never carries emphasis (A1111 takes it before weighting).
    """
    first = items[0][0]
    if any((c.text_encoder, c.layer, c.pooled) != (first.text_encoder, first.layer, first.pooled) for c, _, _ in items):
        raise ValueError("encode_together needs batches for one text encoder, layer and pooling")
    spliced = [conditioner.splice(batch, vectors) for conditioner, batch, vectors in items]
    rows = [tokens.shape[0] for tokens in spliced]
    z, final = first.encode(spliced[0] if len(spliced) == 1 else torch.cat(spliced))  # [sum N, 77, D]
    finals = final.split(rows) if final is not None else [None] * len(items)
    return [
        (conditioner.finish(batch, part), None if last is None else conditioner.pool(batch, last))
        for (conditioner, batch, _), part, last in zip(items, z.split(rows), finals, strict=True)
    ]


def _emphasis(z: torch.Tensor, weights: torch.Tensor, *, keep_mean: bool) -> torch.Tensor:
    """z * w per token; with `keep_mean`, rescaled per chunk index over the whole batch to keep z's mean (A1111)."""
    scaled = z * weights.unsqueeze(-1).to(z.dtype)  # [B, C, 77, D]
    if not keep_mean:
        return scaled
    original_mean = z.mean(dim=(0, 2, 3), keepdim=True)  # [1, C, 1, 1]
    new_mean = scaled.mean(dim=(0, 2, 3), keepdim=True)
    # A model whose final layer norm has no bias (a freshly initialised one) outputs a mean of ~0: then A1111's
    # ratio is 0/0, NaN or a wild factor. Where either mean is negligible next to the values there is no mean to
    # restore, so the chunk keeps its plain weighting. Real CLIP encoders are far from that threshold.
    floor = 1e-3 * z.abs().mean(dim=(0, 2, 3), keepdim=True)
    meaningful = (original_mean.abs() > floor) & (new_mean.abs() > floor)
    ratio = torch.where(meaningful, original_mean / torch.where(meaningful, new_mean, 1.0), 1.0)
    return scaled * ratio
