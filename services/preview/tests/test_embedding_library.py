"""Embeddings from anywhere: every format the users' tools write loads into the same vectors and the same image;
trigger words follow A1111; width mismatches are named; changed files are read again."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from safetensors.torch import save as save_safetensors

from services.common.embeddings import (
    Embedding,
    EmbeddingError,
    EmbeddingFormat,
    EmbeddingWidthMismatch,
    write_embedding,
)
from services.common.embeddings.png_embed import write_png
from services.common.errors import NotFound
from services.common.storage import LocalStore
from services.preview.embedding_library import EmbeddingLibrary
from services.preview.rendering import ImageOrder, Sampling

VECTORS = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))


def _files() -> dict[str, bytes]:
    ours = Embedding("anna", (VECTORS,), step=40, metadata={"init_text": "woman"})
    png_data = {"string_to_param": {"*": VECTORS}, "name": "anna", "step": 40}
    return {
        "ours/anna.safetensors": write_embedding(ours, EmbeddingFormat.SAFETENSORS),
        "kohya/anna.safetensors": save_safetensors({"emb_params": VECTORS.clone()}),
        "diffusers/learned_embeds.safetensors": save_safetensors({"anna": VECTORS.clone()}),
        "a1111/anna.pt": write_embedding(ours, EmbeddingFormat.A1111_PT),
        "a1111/anna-card.png": write_png(png_data, image=Image.new("RGB", (32, 32), (40, 90, 160))),
    }


@pytest.fixture
def library(tmp_path):
    store = LocalStore(tmp_path / "store")
    for key, data in _files().items():
        store.put(key, data)
    return EmbeddingLibrary(store), store


@pytest.mark.parametrize("key", list(_files()))
def test_every_format_loads_the_same_vectors_and_the_a1111_trigger(library, key):
    loaded = library[0].load(key, field="embeddings[0]")
    torch.testing.assert_close(loaded.vectors[0], VECTORS, rtol=0, atol=0)
    # A1111's rule: the file name, except a PNG ("anna-card.png" holds "anna") and diffusers' generic
    # learned_embeds name (its token, "anna"): every file here means "anna".
    assert loaded.trigger == "anna"
    assert len(loaded.short_hash) == 12


def test_an_explicit_trigger_wins(library):
    assert library[0].load("a1111/anna.pt", trigger="annaX", field="embedding").trigger == "annaX"


def test_every_format_renders_the_same_image(library, model, renderer):
    images = []
    for key in _files():
        loaded = library[0].load(key, trigger="anna", field="embeddings[0]")
        (image,) = renderer.render(
            model, [loaded], [ImageOrder("a photo of anna", "", 2)], Sampling(steps=2, width=64, height=64)
        )
        images.append(image.image.tobytes())
    assert len(set(images)) == 1


def test_a_width_mismatch_names_both_widths(library, model):
    library, store = library
    store.put(
        "sd2/anna.safetensors", write_embedding(Embedding("anna", (torch.zeros(2, 1024),)), EmbeddingFormat.SAFETENSORS)
    )
    loaded = library.load("sd2/anna.safetensors", field="embeddings[0]")
    with pytest.raises(EmbeddingWidthMismatch) as info:
        library.check(loaded, model.embedding_dims, model_name=model.name)
    message = str(info.value)
    assert (
        "sd2/anna.safetensors" in message and "1024-wide vectors (SD2.x)" in message and "tiny-sd expects 32" in message
    )


def test_a_missing_file_names_the_field(library):
    with pytest.raises(NotFound, match=r"embeddings\[1\]\.file: no embedding file at 'nope.pt'") as info:
        library[0].load("nope.pt", field="embeddings[1].file")
    assert info.value.field == "embeddings[1].file"


def test_a_rewritten_file_is_read_again_and_an_unchanged_one_is_cached(library):
    library, store = library
    first = library.load("ours/anna.safetensors", field="e")
    assert library.load("ours/anna.safetensors", field="e") is first
    changed = Embedding("anna", (VECTORS * 2 + 1,), step=80)
    store.put("ours/anna.safetensors", write_embedding(changed, EmbeddingFormat.SAFETENSORS))
    reloaded = library.load("ours/anna.safetensors", field="e")
    assert reloaded is not first and reloaded.embedding.step == 80


def test_png_without_an_embedding_is_refused(library):
    library, store = library
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    store.put("a1111/plain.png", buffer.getvalue())
    with pytest.raises(EmbeddingError, match="plain.png"):
        library.load("a1111/plain.png", field="e")
