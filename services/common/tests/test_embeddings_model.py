"""The Embedding value: what construction accepts and copies, its hashes, and the model-compatibility check."""

from __future__ import annotations

import hashlib

import grpc
import pytest
import torch

from services.common.embeddings import (
    Embedding,
    EmbeddingFormat,
    EmbeddingWidthMismatch,
    InvalidEmbeddingTensor,
    check_compatible,
    file_hashes,
    read_embedding,
    write_embedding,
)
from services.common.errors import InvalidArgument


def _vectors(n: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def test_sd_and_sdxl_shapes():
    sd = Embedding("anna", (_vectors(3, 768),))
    sdxl = Embedding("anna", (_vectors(2, 768), _vectors(2, 1280, seed=1)))
    assert (sd.n_vectors, sd.dims, sd.encoders) == (3, (768,), ("clip",))
    assert (sdxl.n_vectors, sdxl.dims, sdxl.encoders) == (2, (768, 1280), ("clip_l", "clip_g"))


def test_construction_normalises_and_copies():
    source = _vectors(1, 32).squeeze(0).to(torch.float16)  # 1-D half, as some files hold it
    embedding = Embedding("anna", source)
    assert embedding.vectors[0].shape == (1, 32) and embedding.vectors[0].dtype == torch.float32
    assert isinstance(embedding.vectors, tuple)
    before = embedding.vectors[0].clone()
    source.add_(1.0)  # an optimizer step on the caller's tensor must not reach the snapshot
    assert torch.equal(embedding.vectors[0], before)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ((torch.zeros(2, 3, 32),), "2-D"),
        ((torch.zeros(2, 32, dtype=torch.int64),), "int64"),
        ((torch.tensor([[float("nan")] * 32]),), "NaN"),
        ((torch.zeros(0, 32),), "1 to 75"),
        ((torch.zeros(76, 32),), "1 to 75"),
        ((torch.zeros(2, 768), torch.zeros(3, 1280)), "same count"),
    ],
)
def test_bad_vectors_are_refused(vectors, message):
    with pytest.raises(InvalidEmbeddingTensor, match=message):
        Embedding("anna", vectors)


def test_bad_name_step_and_metadata_are_programming_errors():
    with pytest.raises(ValueError, match="trigger word"):
        Embedding("  ", (_vectors(1, 32),))
    with pytest.raises(ValueError, match="1 text encoder"):
        Embedding("anna", (_vectors(1, 32),) * 3)
    with pytest.raises(ValueError, match="step"):
        Embedding("anna", (_vectors(1, 32),), step=-1)
    with pytest.raises(TypeError, match="str to str"):
        Embedding("anna", (_vectors(1, 32),), metadata={"step": 5})  # type: ignore[dict-item]


def test_content_hash_is_the_same_in_every_format_and_under_any_name():
    embedding = Embedding("anna", (_vectors(2, 32),), step=7, metadata={"init_text": "woman"})
    hashes = {embedding.sha256()}
    for fmt in EmbeddingFormat:
        back, _ = read_embedding(write_embedding(embedding, fmt), filename=f"other.{fmt.value}")
        hashes.add(back.sha256())
    assert hashes == {embedding.sha256()}
    assert Embedding("bob", embedding.vectors).sha256() == embedding.sha256()
    assert embedding.short_hash() == embedding.sha256()[:12]


def test_content_hash_changes_with_any_value_or_encoder_layout():
    vectors = _vectors(2, 32)
    changed = vectors.clone()
    changed[1, 5] += 1e-3
    assert Embedding("a", (vectors,)).sha256() != Embedding("a", (changed,)).sha256()
    # the same numbers as [1, 64] are a different embedding
    assert Embedding("a", (vectors,)).sha256() != Embedding("a", (vectors.reshape(1, 64),)).sha256()


def test_file_hashes_are_a1111s_ti_hash_of_the_bytes():
    data = write_embedding(Embedding("anna", (_vectors(1, 32),)), EmbeddingFormat.A1111_PT)
    full, short = file_hashes(data)
    assert full == hashlib.sha256(data).hexdigest() and short == full[:12]


def test_matching_widths_pass():
    check_compatible(Embedding("anna", (_vectors(1, 768),)), [768], model_name="sd15")
    check_compatible(Embedding("anna", (_vectors(1, 768), _vectors(1, 1280))), (768, 1280), model_name="sdxl")


@pytest.mark.parametrize(
    ("dims", "model_dims", "model", "message"),
    [
        ((1024,), [768], "sd15", "anna.pt holds 1024-wide vectors (SD2.x) but sd15 expects 768 (SD1.x)"),
        ((768, 1280), [768], "sd15", "anna.pt holds a 768 + 1280 pair (SDXL) but sd15 expects 768 (SD1.x)"),
        ((768,), [768, 1280], "sdxl", "anna.pt holds 768-wide vectors (SD1.x) but sdxl expects 768+1280 (SDXL)"),
        ((768,), [1024], "sd21", "anna.pt holds 768-wide vectors (SD1.x) but sd21 expects 1024 (SD2.x)"),
        ((32,), [768], "sd15", "anna.pt holds 32-wide vectors but sd15 expects 768 (SD1.x)"),
    ],
)
def test_width_mismatch_names_file_both_families_and_what_to_do(dims, model_dims, model, message):
    embedding = Embedding("anna", tuple(_vectors(1, d) for d in dims))
    with pytest.raises(EmbeddingWidthMismatch) as caught:
        check_compatible(embedding, model_dims, model_name=model, filename="anna.pt")
    error = caught.value
    assert str(error).startswith(message) and "use an embedding trained for" in str(error)
    assert isinstance(error, InvalidArgument) and error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "EMBEDDING_WIDTH_MISMATCH"
    assert error.metadata["embedding_dims"] == ",".join(map(str, dims)) and error.metadata["filename"] == "anna.pt"


def test_width_mismatch_without_filename_names_the_embedding():
    with pytest.raises(EmbeddingWidthMismatch, match="embedding 'anna' holds 1024-wide"):
        check_compatible(Embedding("anna", (_vectors(1, 1024),)), [768], model_name="sd15")
