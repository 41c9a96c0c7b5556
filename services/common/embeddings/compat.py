"""Does an embedding fit a model? Its vector widths must equal the model's text-encoder widths, encoder for
encoder: [768] SD1.x, [1024] SD2.x, [768, 1280] SDXL (CLIP-L, then OpenCLIP-G), as `ModelInfo.embedding_dims`.

A1111 skips a misfit silently (its "skipped embeddings" list); here the caller learns which file, what it was
trained for, and what the model needs, before a single step or image is spent on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.embeddings.errors import EmbeddingWidthMismatch
from services.common.embeddings.model import Embedding

__all__ = ["check_compatible", "describe_dims"]

_FAMILIES = {(768,): "SD1.x", (1024,): "SD2.x", (768, 1280): "SDXL", (1280,): "SDXL's CLIP-G alone"}


def describe_dims(dims: Sequence[int]) -> str:
    """ "768-wide vectors (SD1.x)", "a 768 + 1280 pair (SDXL)", "32-wide vectors"."""
    dims = tuple(int(d) for d in dims)
    family = _FAMILIES.get(dims)
    suffix = f" ({family})" if family else ""
    if len(dims) == 1:
        return f"{dims[0]}-wide vectors{suffix}"
    return f"a {' + '.join(str(d) for d in dims)} pair{suffix}"


def check_compatible(embedding: Embedding, model_dims: Sequence[int], *, model_name: str, filename: str = "") -> None:
    """Raise `EmbeddingWidthMismatch` unless `embedding.dims == model_dims`, e.g. "anna.pt holds 1024-wide vectors
    (SD2.x) but sd15 expects 768 (SD1.x)"."""
    model = tuple(int(d) for d in model_dims)
    if not model:
        raise ValueError(f"model {model_name!r} reports no embedding widths")
    if embedding.dims == model:
        return
    label = filename or f"embedding '{embedding.name}'"
    expects = "+".join(str(d) for d in model) if len(model) > 1 else str(model[0])
    family = _FAMILIES.get(model)
    wanted = f"{expects} ({family})" if family else expects
    advice = f"use an embedding trained for {family}" if family else "use an embedding trained for this model's family"
    raise EmbeddingWidthMismatch(
        f"{label} holds {describe_dims(embedding.dims)} but {model_name} expects {wanted}: {advice}, or pick a "
        f"model the embedding was trained for",
        filename=filename,
        embedding_dims=",".join(str(d) for d in embedding.dims),
        model_dims=",".join(str(d) for d in model),
    )
