"""Exact CLIP token counts: the tokenizer of SD1.x, SD2.x and SDXL text encoders, built from the vendored BPE.

A prompt fits one CLIP context when it has at most 75 tokens (77 with the start and end tokens). Past that, A1111
splits the prompt into 75-token chunks and diffusers truncates, so the lint needs the exact count, not a guess from
words. The vocabulary is built the way CLIP's `SimpleTokenizer` (and open_clip's) builds it from the merges file:

    256 byte characters, the same 256 + "</w>", one entry per merge (its two halves joined),
    "<|startoftext|>", "<|endoftext|>"                       -> 49408 entries, the ids of SD's tokenizer/vocab.json

so no model download is needed; `from_tokenizer` accepts a model's own tokenizer where one is at hand.
"""

from __future__ import annotations

import functools
import gzip
import re
from importlib import resources

from tokenizers import Tokenizer

__all__ = ["CONTEXT_TOKENS", "ClipTokenCounter", "prompt_tokens", "NAME_PLACEHOLDER", "FILEWORDS_PLACEHOLDER"]

CONTEXT_TOKENS = 75  # tokens one CLIP context holds between its start and end tokens
NAME_PLACEHOLDER = "[name]"
FILEWORDS_PLACEHOLDER = "[filewords]"

_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (its vocabulary size minus the byte tokens and the two
# specials); the file holds more, and using them would give ids no text encoder knows.
_MERGE_COUNT = 49152 - 256 - 2
_START, _END = "<|startoftext|>", "<|endoftext|>"


class ClipTokenCounter:
    """Counts CLIP tokens of a text: no start/end tokens, no truncation."""

    def __init__(self, backend: Tokenizer) -> None:
        # A private copy with truncation off: a model's tokenizer may carry max_length=77 truncation, which would
        # cap every count at 75 and hide exactly the prompts the lint must flag.
        self._backend = Tokenizer.from_str(backend.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()

    @classmethod
    def default(cls) -> ClipTokenCounter:
        """The counter for OpenAI CLIP's vocabulary (built once per process, about a second)."""
        return _default_counter()

    @classmethod
    def from_tokenizer(cls, tokenizer: object) -> ClipTokenCounter:
        """A counter from a transformers CLIPTokenizer (tokenizers-backed), e.g. a model's `tokenizer/` folder."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise TypeError(
                f"{type(tokenizer).__name__} has no tokenizers backend; pass a transformers CLIPTokenizer "
                "(transformers 5 builds it from vocab.json and merges.txt)"
            )
        return cls(backend)

    def count(self, text: str) -> int:
        return len(self._backend.encode(text, add_special_tokens=False).ids)

    def ids(self, text: str) -> list[int]:
        """The token ids of `text` (no start/end tokens); for checks against a text encoder's vocabulary."""
        return list(self._backend.encode(text, add_special_tokens=False).ids)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (token -> id) and merges, from the vendored merges file."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    data = resources.files(__package__).joinpath(_BPE_FILE).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    # Line 0 is the "#version" header.
    merges = [tuple(line.split()) for line in lines[1 : _MERGE_COUNT + 1]]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [char + "</w>" for char in byte_chars] + ["".join(pair) for pair in merges] + [_START, _END]
    return {token: index for index, token in enumerate(tokens)}, merges


@functools.cache
def _default_counter() -> ClipTokenCounter:
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return ClipTokenCounter.from_tokenizer(CLIPTokenizer(vocab=vocab, merges=merges))


def prompt_tokens(template_line: str, caption: str, name: str, vectors: int, counter: ClipTokenCounter) -> int:
    """Tokens of one template line as A1111 builds the training prompt.

    `[filewords]` becomes the caption; each `[name]` becomes the embedding, whose `vectors` vectors take the place
    of its name's tokens, so each occurrence counts `vectors` whatever the name itself tokenizes to. `name` is only
    used to count a template that spells the trigger word out instead of writing `[name]`.
    """
    if vectors < 1:
        raise ValueError(f"vectors must be at least 1, got {vectors}")
    line = template_line.replace(FILEWORDS_PLACEHOLDER, caption)
    pieces = line.split(NAME_PLACEHOLDER)
    occurrences = len(pieces) - 1
    # The pieces are counted joined by a space: CLIP splits words at spaces and punctuation anyway, so the text
    # around the name tokenizes the same with or without the name between.
    text = " ".join(pieces)
    if name:
        # A spelled-out trigger word is the embedding too (A1111 finds embeddings by their name in the prompt).
        spelled = _count_whole_word(text, name)
        if spelled:
            occurrences += spelled
            text = _remove_whole_word(text, name)
    return counter.count(text) + occurrences * vectors


def _word_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)


def _count_whole_word(text: str, name: str) -> int:
    return len(_word_pattern(name).findall(text))


def _remove_whole_word(text: str, name: str) -> str:
    return _word_pattern(name).sub(" ", text)
