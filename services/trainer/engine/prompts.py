"""Training prompts to token ids the way A1111's text encoder wrapper builds them, with the embedding's slots marked.

A1111 (`modules/sd_hijack_clip.py`, `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`):
- emphasis is parsed first ("(word)" x1.1, "[word]" /1.1, "(word:1.3)", "\\(" escapes, "BREAK" starts a chunk);
  each piece is tokenized without start/end tokens and without truncation;
- the trigger word's ids found in the token stream become `n_vectors` slots (A1111's "fixes") that the
  embedding's vectors fill after the token-embedding lookup;
- tokens go into 75-token chunks; a chunk that fills up backs up to its last comma when that comma is at most 20
  tokens back (the rest moves to the next chunk); an embedding never straddles two chunks;
- each chunk is wrapped to 77 as [start] + 75 + [end], padded with the end token (SD1) or, after the first end
  token, the pad token (SD2's "!"); prompts of one batch are padded to the same chunk count with empty chunks.
The parser below is ours, written from that description; for plain prompts it gives exactly the tokenizer's
`padding="max_length", max_length=77` ids (what diffusers feeds its text encoder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from services.trainer.engine.init import name_token_ids

__all__ = ["CHUNK_TOKENS", "PromptTokens", "TokenBatch", "PromptTokenizer", "parse_emphasis"]

CHUNK_TOKENS = 75  # prompt tokens per CLIP context, between the start and end tokens
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
_BREAK = -1.0  # weight marking a BREAK piece
_PLACEHOLDER_ID = 0  # the id a slot carries; its embedding row is replaced, so any id works (A1111 uses 0)
_CACHE_LIMIT = 50_000
_EMPHASIS_TOKEN = re.compile(
    r"\\[\\()\[\]]"  # an escaped bracket or backslash: literal
    r"|\(|\["  # an opening bracket
    r"|:\s*([+-]?[.\d]+)\s*\)"  # ":1.3)" closes a round bracket with an explicit weight
    r"|\)|\]"  # a closing bracket
    r"|[^\\()\[\]:]+"  # plain text
    r"|[\\:]"  # a lone backslash or colon: literal
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """[(text, weight)] with BREAK pieces as ("BREAK", -1.0). Unclosed brackets apply to the rest of the text."""
    pieces: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _EMPHASIS_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open and _is_float(weight):
            scale(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            scale(round_open.pop(), 1.1)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(_BREAK_WORD.split(token)):
                if i:
                    pieces.append(["BREAK", _BREAK])
                pieces.append([part, 1.0])
    for start in round_open:
        scale(start, 1.1)
    for start in square_open:
        scale(start, 1 / 1.1)
    merged: list[tuple[str, float]] = []
    for text_part, weight in pieces:
        if merged and weight == merged[-1][1] and weight != _BREAK:
            merged[-1] = (merged[-1][0] + text_part, weight)
        elif text_part or weight == _BREAK:
            merged.append((text_part, weight))
    return merged or [("", 1.0)]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PromptTokens:
    """One prompt as A1111 chunks: each chunk 77 ids with its emphasis weights and embedding slots."""

    ids: tuple[tuple[int, ...], ...]  # [chunks][77]
    weights: tuple[tuple[float, ...], ...]  # [chunks][77] emphasis multipliers (1.0 when none)
    slots: tuple[tuple[int, ...], ...]  # [chunks][77] the embedding vector index at each slot, -1 elsewhere
    token_count: int  # prompt tokens, without start/end/padding (as A1111 counts them)

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
    """Prompts -> `PromptTokens`, with the trigger word's ids turned into `n_vectors` embedding slots."""

    def __init__(self, tokenizer: Any, name: str, n_vectors: int, *, emphasis: str = "original") -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.n_vectors = n_vectors
        self.emphasis = emphasis
        self.name_ids = name_token_ids(tokenizer, name)
        if not self.name_ids:
            raise ValueError(f"the trigger word {name!r} tokenizes to nothing")
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.id_pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.id_end
        self.comma_id = tokenizer.convert_tokens_to_ids(",</w>")
        if self.comma_id == tokenizer.unk_token_id:
            self.comma_id = None
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
        parsed = parse_emphasis(prompt) if self.emphasis == "original" else [(prompt, 1.0)]
        chunks: list[tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]] = []
        ids: list[int] = []
        weights: list[float] = []
        slots: list[int] = []
        last_comma = -1
        token_count = 0

        def close_chunk(is_last: bool = False) -> None:
            nonlocal ids, weights, slots, last_comma, token_count
            token_count += len(ids) if is_last else CHUNK_TOKENS
            pad = CHUNK_TOKENS - len(ids)
            ids_75 = ids + [self.id_end] * pad
            chunks.append((self._wrap(ids_75), (1.0, *weights, *([1.0] * pad), 1.0), (-1, *slots, *([-1] * pad), -1)))
            ids, weights, slots, last_comma = [], [], [], -1

        for text, weight in parsed:
            if weight == _BREAK and text == "BREAK":
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
                if tokens[position : position + len(self.name_ids)] == self.name_ids:
                    if len(ids) + self.n_vectors > CHUNK_TOKENS:
                        close_chunk()  # an embedding never straddles two chunks
                    ids += [_PLACEHOLDER_ID] * self.n_vectors
                    weights += [weight] * self.n_vectors
                    slots += list(range(self.n_vectors))
                    position += len(self.name_ids)
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
        )
