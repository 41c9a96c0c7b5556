"""Why an embedding file was refused: one `InvalidArgument` subclass per stable reason.

Every message names the file and says what to change. The interceptor maps them all to INVALID_ARGUMENT with the
reason below in the `ErrorInfo`; `metadata["filename"]` carries the file name for clients that want it.

| exception                  | reason                       | the file ...                                       |
|----------------------------|------------------------------|----------------------------------------------------|
| UnreadableEmbedding        | UNREADABLE_EMBEDDING         | is empty, too large, truncated, or no known format |
| UnsafePickle               | UNSAFE_PICKLE                | is a pickle asking for more than tensors and plain |
|                            |                              | data; the safe loader refused it and nothing ran   |
| NotAnEmbedding             | NOT_AN_EMBEDDING             | parses, but holds no embedding (a LoRA, a model)   |
| MultipleEmbeddings         | MULTIPLE_EMBEDDINGS          | holds several terms; A1111 loads one per file      |
| InvalidEmbeddingTensor     | INVALID_EMBEDDING_TENSOR     | has vectors of a wrong dtype, rank, count, value   |
| MissingEmbeddingName       | MISSING_EMBEDDING_NAME       | stores no trigger word and none was given          |
| UnsupportedEmbeddingFormat | UNSUPPORTED_EMBEDDING_FORMAT | (writing) cannot hold it: SDXL in an A1111 .pt     |
| EmbeddingWidthMismatch     | EMBEDDING_WIDTH_MISMATCH     | was trained for another model family               |
"""

from __future__ import annotations

from services.common.errors import InvalidArgument

__all__ = [
    "EmbeddingError",
    "UnreadableEmbedding",
    "UnsafePickle",
    "NotAnEmbedding",
    "MultipleEmbeddings",
    "InvalidEmbeddingTensor",
    "MissingEmbeddingName",
    "UnsupportedEmbeddingFormat",
    "EmbeddingWidthMismatch",
]


class EmbeddingError(InvalidArgument):
    """Base of every embedding-file refusal; catch this to handle them all."""

    reason = "INVALID_EMBEDDING"

    def __init__(self, message: str, *, filename: str = "", field: str | None = None, **metadata: object) -> None:
        details = {"filename": filename, **metadata} if filename else dict(metadata)
        super().__init__(message, field=field, metadata=details)


class UnreadableEmbedding(EmbeddingError):
    reason = "UNREADABLE_EMBEDDING"


class UnsafePickle(EmbeddingError):
    reason = "UNSAFE_PICKLE"


class NotAnEmbedding(EmbeddingError):
    reason = "NOT_AN_EMBEDDING"


class MultipleEmbeddings(EmbeddingError):
    reason = "MULTIPLE_EMBEDDINGS"


class InvalidEmbeddingTensor(EmbeddingError):
    reason = "INVALID_EMBEDDING_TENSOR"


class MissingEmbeddingName(EmbeddingError):
    reason = "MISSING_EMBEDDING_NAME"


class UnsupportedEmbeddingFormat(EmbeddingError):
    reason = "UNSUPPORTED_EMBEDDING_FORMAT"


class EmbeddingWidthMismatch(EmbeddingError):
    reason = "EMBEDDING_WIDTH_MISMATCH"
