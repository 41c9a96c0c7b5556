"""A new embedding: its name checked against the tokenizer, its vectors initialised from text as A1111 does.

A1111 (`create_embedding`, `encode_embedding_init_text`): the init text is tokenized without start/end tokens and
without truncation into T token embeddings, and vector i of n takes token floor(i * T / n); an empty init text
gives zero vectors. SDXL's embedding is a pair: the init text is embedded in each text encoder's own token table
(clip_l from CLIP-L's, clip_g from OpenCLIP-G's; the two tokenizers share one vocabulary). The trigger word is the
embedding's name, so a name that is already one token of the vocabulary ("woman") would replace that word in every
prompt: we refuse it and suggest one that is not.
"""

from __future__ import annotations

from typing import Any

import torch

from services.common.embeddings import MAX_VECTORS, META_SD_CHECKPOINT, META_SD_CHECKPOINT_NAME, Embedding
from services.common.errors import InvalidArgument
from services.common.prompts import trigger_token_ids
from services.common.version import tool_version

__all__ = [
    "META_BASE_MODEL",
    "META_FAMILY",
    "META_INIT_TEXT",
    "META_TOOL_VERSION",
    "create_embedding",
    "suggest_name",
    "validate_name",
]

META_INIT_TEXT = "init_text"
META_BASE_MODEL = "base_model"  # the model reference as given
META_FAMILY = "model_family"  # "sd1" | "sd2" | "sdxl"
META_TOOL_VERSION = "tool_version"
MAX_NAME_LENGTH = 64
_NAME_PUNCTUATION = "._-"  # A1111 keeps alphanumerics and "._- " in names; spaces would make two words
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}


def _is_one_token(tokenizer: Any, name: str) -> bool:
    return len(trigger_token_ids(tokenizer, name)) <= 1


def suggest_name(name: str, tokenizer: Any) -> str:
    """A near spelling of `name` that is not a single token: digits for letters ("woman" -> "w0man"), else a suffix."""
    base = "".join(c for c in name if c.isalnum() or c in _NAME_PUNCTUATION) or "concept"
    candidates = []
    for i, char in enumerate(base):
        if char.lower() in _LEET:
            candidates.append(base[:i] + _LEET[char.lower()] + base[i + 1 :])
    candidates += [f"{base}-ti", f"{base}_emb", f"{base}x7"]
    for candidate in candidates:
        if len(candidate) <= MAX_NAME_LENGTH and not _is_one_token(tokenizer, candidate):
            return candidate
    return f"{base[: MAX_NAME_LENGTH - 4]}-t1"


def validate_name(name: str, tokenizer: Any) -> None:
    """Refuse names that cannot be a trigger word: INVALID_NAME (characters, length) or NAME_IS_A_TOKEN."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(
            "the embedding needs a name: its trigger word, e.g. 'subj3ct'", field="name", reason="INVALID_NAME"
        )
    bad = sorted({c for c in name if not (c.isalnum() or c in _NAME_PUNCTUATION)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        fixed = "".join(c if (c.isalnum() or c in _NAME_PUNCTUATION) else "-" for c in name.strip()).strip("-")
        raise InvalidArgument(
            f"name '{name}' has {shown}: a trigger word holds letters, digits and '.', '_', '-' only "
            f"(one word, as A1111 names its files), e.g. '{fixed or 'subj3ct'}'",
            field="name",
            reason="INVALID_NAME",
        )
    if not any(c.isalnum() for c in name):
        raise InvalidArgument(
            f"name '{name}' has no letter or digit: use a word like 'subj3ct'", field="name", reason="INVALID_NAME"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"name is {len(name)} characters long: use at most {MAX_NAME_LENGTH}", field="name", reason="INVALID_NAME"
        )
    if _is_one_token(tokenizer, name):
        suggestion = suggest_name(name, tokenizer)
        raise InvalidArgument(
            f"name '{name}' is already a word of the model's vocabulary, so training would change what "
            f"'{name}' means in every prompt; pick a word the model does not know, e.g. '{suggestion}'",
            field="name",
            reason="NAME_IS_A_TOKEN",
            metadata={"suggestion": suggestion},
        )


def create_embedding(
    components: Any, name: str, init_text: str = "*", vectors: int = 1, *, model_name: str = ""
) -> Embedding:
    """A step-0 embedding for `components` (StableDiffusionComponents), initialised from `init_text` as A1111 does.

    `model_name` is the model as users know it (A1111's sd_checkpoint_name); the fingerprint gives the hash.
    """
    validate_name(name, components.tokenizer)
    if isinstance(vectors, bool) or not isinstance(vectors, int) or not 1 <= vectors <= MAX_VECTORS:
        raise InvalidArgument(
            f"vectors is {vectors!r}: use 1 to {MAX_VECTORS} (users' guides: 2-3 for 10 images, 5-6 for 11-30)",
            field="vectors",
        )
    if not isinstance(init_text, str):
        raise InvalidArgument("init_text must be a string ('' gives zero vectors)", field="init_text")
    initial = tuple(
        _init_vectors(tokenizer, encoder, init_text, vectors)
        for tokenizer, encoder in zip(components.tokenizers, components.text_encoders, strict=True)
    )
    fingerprint = components.fingerprint
    metadata = {
        META_INIT_TEXT: init_text,
        META_FAMILY: components.family,
        META_SD_CHECKPOINT: fingerprint.short_hash,
        META_TOOL_VERSION: tool_version(),
        **fingerprint.as_metadata(),
    }
    if model_name:
        metadata[META_SD_CHECKPOINT_NAME] = model_name
        metadata[META_BASE_MODEL] = model_name
    return Embedding(name, initial, step=0, metadata=metadata)


def _init_vectors(tokenizer: Any, text_encoder: Any, init_text: str, vectors: int) -> torch.Tensor:
    """[n, D] from one text encoder's token table: vector i takes init token floor(i * T / n); zeros for ''."""
    table = text_encoder.get_input_embeddings().weight  # [vocab, D], frozen
    vec = torch.zeros(vectors, int(table.shape[1]), dtype=torch.float32)
    if not init_text:
        return vec
    ids = trigger_token_ids(tokenizer, init_text) or trigger_token_ids(tokenizer, "*")
    with torch.no_grad():
        embedded = table[torch.tensor(ids, device=table.device)].detach().float().cpu()  # [T, D]
    for i in range(vectors):
        vec[i] = embedded[i * embedded.shape[0] // vectors]
    return vec
