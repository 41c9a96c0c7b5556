"""Text utilities shared by the services: exact CLIP token counts for captions and prompt templates."""

from __future__ import annotations

from services.common.text.clip_tokens import CONTEXT_TOKENS, ClipTokenCounter, prompt_tokens

__all__ = ["CONTEXT_TOKENS", "ClipTokenCounter", "prompt_tokens"]
