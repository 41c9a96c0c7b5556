"""Embedding files from the store, parsed safely once and kept while they do not change.

A request names each embedding by store key (and optionally its trigger). The file is read, parsed by
`services.common.embeddings.read_embedding` (safetensors, diffusers, A1111 `.pt` through `weights_only` with key,
shape and dtype checks, A1111 PNG), checked against the model's text-encoder widths (SDXL: both), and cached under
(key, etag, trigger): a savepoint that is rewritten gets a new etag and is read again. Swapping embeddings never
touches the base model: the vectors go into the prompt at their slots (`services.common.prompts`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from services.common.embeddings import Embedding, EmbeddingError, check_compatible, file_hashes, read_embedding
from services.common.errors import NotFound
from services.common.storage import ObjectNotFound, Store

__all__ = ["EmbeddingLibrary", "LoadedEmbedding"]


@dataclass(frozen=True)
class LoadedEmbedding:
    key: str
    embedding: Embedding
    short_hash: str  # A1111's 12-hex "TI hashes" value (sha256 of the file)

    @property
    def trigger(self) -> str:
        return self.embedding.name

    @property
    def vectors(self) -> tuple[torch.Tensor, ...]:
        """One [n, D] per text encoder: (emb,) for SD1.x/SD2.x, (clip_l, clip_g) for SDXL."""
        return self.embedding.vectors


class EmbeddingLibrary:
    def __init__(self, store: Store, *, capacity: int = 256) -> None:
        self._store = store
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, str, str], LoadedEmbedding] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, key: str, *, trigger: str = "", field: str) -> LoadedEmbedding:
        """The embedding at `key`; errors name `field` and the file, and say what to change."""
        try:
            etag = self._store.stat(key).etag
        except ObjectNotFound:
            raise NotFound(
                f"{field}: no embedding file at {key!r} in the store; upload it, or use a savepoint's key as "
                "ListJobs/GetJob report it",
                field=field,
                reason="EMBEDDING_NOT_FOUND",
            ) from None
        cache_key = (key, etag, trigger)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                self._cache.move_to_end(cache_key)
                return cached
        data = self._store.get(key)
        try:
            embedding, _ = read_embedding(data, filename=key, name=trigger or None)
        except EmbeddingError as exc:
            exc.field = exc.field or field  # the message names the file; the field says which request entry
            raise
        loaded = LoadedEmbedding(key, embedding, file_hashes(data)[1])
        with self._lock:
            self._cache[cache_key] = loaded
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return loaded

    @staticmethod
    def check(loaded: LoadedEmbedding, embedding_dims: tuple[int, ...], *, model_name: str) -> None:
        """Refuse an embedding trained for another family (768 vs 1024 vs SDXL), naming both."""
        check_compatible(loaded.embedding, embedding_dims, model_name=model_name, filename=loaded.key)
