"""Textual-inversion embedding files in every common format: read safely from bytes, written exactly to bytes.

    embedding, fmt = read_embedding(data, filename="anna.pt")
    check_compatible(embedding, model_info.embedding_dims, model_name="sd15", filename="anna.pt")
    data = write_embedding(embedding, EmbeddingFormat.SAFETENSORS)

Pure domain: no storage, no protobuf. Formats and detection are documented in `read` and `write`; the error
reasons in `errors`.
"""

from __future__ import annotations

from services.common.embeddings.compat import check_compatible, describe_dims
from services.common.embeddings.errors import (
    EmbeddingError,
    EmbeddingWidthMismatch,
    InvalidEmbeddingTensor,
    MissingEmbeddingName,
    MultipleEmbeddings,
    NotAnEmbedding,
    UnreadableEmbedding,
    UnsafePickle,
    UnsupportedEmbeddingFormat,
)
from services.common.embeddings.model import (
    MAX_VECTORS,
    META_SD_CHECKPOINT,
    META_SD_CHECKPOINT_NAME,
    META_STEP,
    META_TRIGGER,
    META_VECTORS,
    Embedding,
    EmbeddingFormat,
    file_hashes,
)
from services.common.embeddings.read import MAX_EMBEDDING_BYTES, read_embedding
from services.common.embeddings.write import DIFFUSERS_NAMES, write_embedding, write_embedding_files

__all__ = [
    "DIFFUSERS_NAMES",
    "MAX_EMBEDDING_BYTES",
    "MAX_VECTORS",
    "META_SD_CHECKPOINT",
    "META_SD_CHECKPOINT_NAME",
    "META_STEP",
    "META_TRIGGER",
    "META_VECTORS",
    "Embedding",
    "EmbeddingError",
    "EmbeddingFormat",
    "EmbeddingWidthMismatch",
    "InvalidEmbeddingTensor",
    "MissingEmbeddingName",
    "MultipleEmbeddings",
    "NotAnEmbedding",
    "UnreadableEmbedding",
    "UnsafePickle",
    "UnsupportedEmbeddingFormat",
    "check_compatible",
    "describe_dims",
    "file_hashes",
    "read_embedding",
    "write_embedding",
    "write_embedding_files",
]
