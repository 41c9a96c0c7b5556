"""A1111 prompts for CLIP: emphasis syntax, 75-token chunks with embedding slots, and the splice into the encoder.

    tokenizer = PromptTokenizer(components.tokenizer, {"subj3ct": 4, "style2": 2})
    batch = tokenizer.batch(["a photo of (subj3ct:0.8), in style2"])     # [B, C, 77] ids, slots, weights
    z = TextConditioner(components.text_encoder)(batch, vectors)          # vectors: [6, D], both embeddings stacked

    encoder = PromptEncoder(components, {"subj3ct": 4})                   # any family, SDXL's two encoders too
    cond = encoder(encoder.batch(prompts), vectors_per_encoder)           # Conditioning: hidden, pooled

Shared by the trainer (one embedding, gradients through the splice) and the preview service (any number of
embeddings, no gradients). Pure domain: no storage, no protobuf.
"""

from __future__ import annotations

from services.common.prompts.conditioning import TextConditioner
from services.common.prompts.emphasis import BREAK_WEIGHT, EMPHASIS_MODES, parse_emphasis
from services.common.prompts.prompt_encoder import Conditioning, PromptEncoder, encode_together, sdxl_time_ids
from services.common.prompts.tokens import CHUNK_TOKENS, PromptTokenizer, PromptTokens, TokenBatch, trigger_token_ids

__all__ = [
    "BREAK_WEIGHT",
    "CHUNK_TOKENS",
    "Conditioning",
    "PromptEncoder",
    "EMPHASIS_MODES",
    "PromptTokenizer",
    "PromptTokens",
    "TextConditioner",
    "TokenBatch",
    "parse_emphasis",
    "encode_together",
    "sdxl_time_ids",
    "trigger_token_ids",
]
