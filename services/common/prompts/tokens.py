"""Prompts to token ids the way A1111's text-encoder wrapper builds them, with embedding slots marked.

A1111 (`modules/sd_hijack_clip.py`, `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`):
- emphasis is parsed first (`emphasis.parse_emphasis`); each piece is tokenized without start/end tokens and
  without truncation;
- an embedding's trigger ids found in the token stream become `n_vectors` slots (A1111's "fixes") that its vectors
  fill after the token-embedding lookup; where triggers share a first token, the longest match wins;
- tokens go into 75-token chunks; a chunk that fills up backs up to its last comma when that comma is at most 20
  tokens back (the rest moves to the next chunk); an embedding never straddles two chunks;
- each chunk is wrapped to 77 as [start] + 75 + [end], padded with the end token (SD1) or, after the first end
  token, the pad token (SD2's "!"); prompts of one batch are padded to the same chunk count with empty chunks.
For plain prompts this gives exactly the tokenizer's `padding="max_length", max_length=77` ids (what diffusers
feeds its text encoder). Slots index one table: the embeddings' vectors stacked in the order they were given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from services.common.prompts.emphasis import BREAK_WEIGHT, parse_emphasis

__all__ = ["CHUNK_TOKENS", "PromptTokens", "TokenBatch", "PromptTokenizer", "trigger_token_ids"]

CHUNK_TOKENS = 75  # prompt tokens per CLIP context, between the start and end tokens
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
_PLACEHOLDER_ID = 0  # the id a slot carries; its embedding row is replaced, so any id works (A1111 uses 0)
_CACHE_LIMIT = 50_000


def trigger_token_ids(tokenizer: Any, trigger: str) -> list[int]:
    """The ids a trigger word becomes inside a prompt (no start/end tokens, no truncation)."""
    return list(tokenizer(trigger, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])


@dataclass(frozen=True)
class PromptTokens:
    """One prompt as A1111 chunks: each chunk 77 ids with its emphasis weights and embedding slots."""

    ids: tuple[tuple[int, ...], ...]  # [chunks][77]
    weights: tuple[tuple[float, ...], ...]  # [chunks][77] emphasis multipliers (1.0 when none)
    slots: tuple[tuple[int, ...], ...]  # [chunks][77] the embedding vector index at each slot, -1 elsewhere
    token_count: int  # prompt tokens, without start/end/padding (as A1111 counts them)
    used: tuple[str, ...] = ()  # the triggers found, in order of first use (A1111 lists these in "TI hashes")

    @property
    def chunks(self) -> int:
        return len(self.ids)

    @property
    def slot_count(self) -> int:
        return sum(s >= 0 for chunk in self.slots for s in chunk)


@dataclass(frozen=True)
class TokenBatch:
    """A batch of prompts for the text encoder: B prompts x C chunks x 77 tokens."""

    ids: torch.Tensor  # [B, C, 77] long
    slots: torch.Tensor  # [B, C, 77] long, -1 where the token embedding is kept
    weights: torch.Tensor | None  # [B, C, 77] float32 emphasis multipliers; None when all are 1

    def to(self, device: torch.device) -> TokenBatch:
        if self.ids.device == device:
            return self
        pin = device.type == "cuda"

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return (t.pin_memory() if pin else t).to(device, non_blocking=pin)

        return TokenBatch(move(self.ids), move(self.slots), move(self.weights))


class PromptTokenizer:
    """Prompts -> `PromptTokens`, each embedding's trigger turned into its `n_vectors` slots.

    `embeddings` maps trigger word -> vector count; slot values index the stacked vectors in that order, so the
    first embedding's vectors are rows 0..n0-1, the next ones follow.
    """

    def __init__(self, tokenizer: Any, embeddings: Mapping[str, int], *, emphasis: str = "original") -> None:
        self.tokenizer = tokenizer
        self.emphasis = emphasis
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.id_pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.id_end
        self.comma_id = tokenizer.convert_tokens_to_ids(",</w>")
        if self.comma_id == tokenizer.unk_token_id:
            self.comma_id = None
        self._triggers: dict[int, list[tuple[tuple[int, ...], str, int, int]]] = {}
        offset = 0
        seen: dict[tuple[int, ...], str] = {}
        for trigger, n_vectors in embeddings.items():
            ids = tuple(trigger_token_ids(tokenizer, trigger))
            if not ids:
                raise ValueError(f"the trigger word {trigger!r} tokenizes to nothing: give the embedding a real word")
            if ids in seen:
                raise ValueError(
                    f"the triggers {seen[ids]!r} and {trigger!r} tokenize the same way; give each embedding its own "
                    "trigger word"
                )
            seen[ids] = trigger
            self._triggers.setdefault(ids[0], []).append((ids, trigger, offset, int(n_vectors)))
            offset += int(n_vectors)
        for candidates in self._triggers.values():
            candidates.sort(key=lambda candidate: -len(candidate[0]))  # the longest match wins, as in A1111
        self.total_vectors = offset
        self._cache: dict[str, PromptTokens] = {}

    def __call__(self, prompt: str) -> PromptTokens:
        tokens = self._cache.get(prompt)
        if tokens is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            tokens = self._cache[prompt] = self._tokenize(prompt)
        return tokens

    def batch(self, prompts: list[str]) -> TokenBatch:
        """[B, C, 77] tensors on the CPU; shorter prompts padded with empty chunks (A1111's empty_chunk)."""
        items = [self(p) for p in prompts]
        chunks = max(item.chunks for item in items)
        empty_ids = self._wrap([self.id_end] * CHUNK_TOKENS)
        ids, weights, slots = [], [], []
        for item in items:
            missing = chunks - item.chunks
            ids.append(list(item.ids) + [empty_ids] * missing)
            weights.append(list(item.weights) + [(1.0,) * (CHUNK_TOKENS + 2)] * missing)
            slots.append(list(item.slots) + [(-1,) * (CHUNK_TOKENS + 2)] * missing)
        weight_tensor = torch.tensor(weights, dtype=torch.float32)
        plain = all(w == 1.0 for item in items for chunk in item.weights for w in chunk)
        return TokenBatch(
            torch.tensor(ids, dtype=torch.long),
            torch.tensor(slots, dtype=torch.long),
            None if plain else weight_tensor,
        )

    def _wrap(self, chunk_ids: list[int]) -> tuple[int, ...]:
        """[start] + 75 + [end]; SD2 pads after its first end token with its own pad token."""
        ids = [self.id_start, *chunk_ids, self.id_end]
        if self.id_pad != self.id_end:
            first_end = ids.index(self.id_end)
            ids = ids[: first_end + 1] + [self.id_pad] * (len(ids) - first_end - 1)
        return tuple(ids)

    def _tokenize(self, prompt: str) -> PromptTokens:
        parsed = [(prompt, 1.0)] if self.emphasis == "none" else parse_emphasis(prompt)
        chunks: list[tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]] = []
        ids: list[int] = []
        weights: list[float] = []
        slots: list[int] = []
        last_comma = -1
        token_count = 0
        used: list[str] = []

        def close_chunk(is_last: bool = False) -> None:
            nonlocal ids, weights, slots, last_comma, token_count
            token_count += len(ids) if is_last else CHUNK_TOKENS
            pad = CHUNK_TOKENS - len(ids)
            ids_75 = ids + [self.id_end] * pad
            chunks.append((self._wrap(ids_75), (1.0, *weights, *([1.0] * pad), 1.0), (-1, *slots, *([-1] * pad), -1)))
            ids, weights, slots, last_comma = [], [], [], -1

        for text, weight in parsed:
            if weight == BREAK_WEIGHT and text == "BREAK":
                close_chunk()
                continue
            tokens = list(self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_id:
                    last_comma = len(ids)
                elif len(ids) == CHUNK_TOKENS and last_comma != -1 and len(ids) - last_comma <= COMMA_BACKTRACK:
                    # The chunk is full and a comma is close: move the words after it into the next chunk.
                    cut = last_comma + 1
                    moved = ids[cut:], weights[cut:], slots[cut:]
                    ids, weights, slots = ids[:cut], weights[:cut], slots[:cut]
                    close_chunk()
                    ids, weights, slots = (list(part) for part in moved)
                if len(ids) == CHUNK_TOKENS:
                    close_chunk()
                match = self._embedding_at(tokens, position)
                if match is not None:
                    trigger_ids, trigger, offset, n_vectors = match
                    if len(ids) + n_vectors > CHUNK_TOKENS:
                        close_chunk()  # an embedding never straddles two chunks
                    ids += [_PLACEHOLDER_ID] * n_vectors
                    weights += [weight] * n_vectors
                    slots += list(range(offset, offset + n_vectors))
                    position += len(trigger_ids)
                    if trigger not in used:
                        used.append(trigger)
                    continue
                ids.append(token)
                weights.append(weight)
                slots.append(-1)
                position += 1
        if ids or not chunks:
            close_chunk(is_last=True)
        return PromptTokens(
            ids=tuple(c[0] for c in chunks),
            weights=tuple(c[1] for c in chunks),
            slots=tuple(c[2] for c in chunks),
            token_count=token_count,
            used=tuple(used),
        )

    def _embedding_at(self, tokens: list[int], position: int) -> tuple[tuple[int, ...], str, int, int] | None:
        for candidate in self._triggers.get(tokens[position], ()):
            trigger_ids = candidate[0]
            if tuple(tokens[position : position + len(trigger_ids)]) == trigger_ids:
                return candidate
        return None
