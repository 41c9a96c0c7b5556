"""CreateEmbedding and ExportEmbedding's domain: files in the store, read back in every format."""

from __future__ import annotations

import pytest
import torch

from services.common.embeddings import Embedding, EmbeddingFormat, file_hashes, read_embedding, write_embedding
from services.common.errors import AlreadyExists, InvalidArgument
from services.common.prompts import trigger_token_ids
from services.common.storage import LocalStore
from services.trainer.embedding_ops import create_embedding_file, export_embedding
from services.trainer.engine.testing import tiny_components


@pytest.fixture
def components(tiny_models):
    return tiny_components(tiny_models["sd"])


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


def test_create_writes_a_readable_file_initialised_from_the_text(store, components):
    created = create_embedding_file(
        store, components, name="subj3ct", init_text="a woman smiling", vectors=5, model_reference="models/tiny-sd"
    )
    assert created.key == "embeddings/subj3ct.safetensors" and created.format is EmbeddingFormat.SAFETENSORS
    data = store.get(created.key)
    assert (created.sha256, created.short_hash) == file_hashes(data) and len(created.short_hash) == 12
    embedding, fmt = read_embedding(data, filename="subj3ct.safetensors")
    assert fmt is EmbeddingFormat.SAFETENSORS and embedding.name == "subj3ct" and embedding.step == 0
    table = components.text_encoder.get_input_embeddings().weight.detach().float()
    ids = trigger_token_ids(components.tokenizer, "a woman smiling")
    for i in range(5):
        assert torch.equal(embedding.vectors[0][i], table[ids[i * len(ids) // 5]])
    assert created.vectors == 5 and created.dims == (table.shape[1],) and created.init_text == "a woman smiling"
    assert created.model is not None and created.model.name == "tiny-sd"
    assert created.model.sha256 == components.fingerprint.sha256 and created.model.embedding_dims == created.dims
    assert created.metadata["trigger"] == "subj3ct" and created.metadata["init_text"] == "a woman smiling"


def test_create_refuses_an_existing_file_unless_overwrite(store, components):
    create_embedding_file(store, components, name="subj3ct", vectors=1, model_reference="tiny")
    with pytest.raises(AlreadyExists) as raised:
        create_embedding_file(store, components, name="subj3ct", vectors=2, model_reference="tiny")
    assert raised.value.reason == "EMBEDDING_EXISTS" and "overwrite" in raised.value.message
    again = create_embedding_file(store, components, name="subj3ct", vectors=2, overwrite=True, model_reference="tiny")
    assert again.vectors == 2


def test_create_refuses_bad_names_vectors_and_extensions(store, components):
    with pytest.raises(InvalidArgument) as raised:
        create_embedding_file(store, components, name="woman", model_reference="tiny")
    assert raised.value.reason == "NAME_IS_A_TOKEN"
    for vectors in (0, 76):
        with pytest.raises(InvalidArgument) as raised:
            create_embedding_file(store, components, name="subj3ct", vectors=vectors, model_reference="tiny")
        assert raised.value.field == "vectors"
    with pytest.raises(InvalidArgument) as raised:
        create_embedding_file(store, components, name="subj3ct", destination_key="x/a.bin", model_reference="tiny")
    assert raised.value.field == "destination"
    pt = create_embedding_file(store, components, name="subj3ct", destination_key="x/a.pt", model_reference="tiny")
    assert pt.format is EmbeddingFormat.A1111_PT


@pytest.mark.parametrize("fmt", list(EmbeddingFormat))
def test_export_round_trips_every_format(store, components, fmt):
    created = create_embedding_file(
        store, components, name="subj3ct", init_text="woman", vectors=3, model_reference="t"
    )
    source, _ = read_embedding(store.get(created.key), filename="subj3ct.safetensors")
    files = export_embedding(store, created.key, fmt)
    assert len(files) == 1 and files[0].format is fmt
    expected = {
        EmbeddingFormat.SAFETENSORS: "embeddings/subj3ct.safetensors",
        EmbeddingFormat.A1111_PT: "embeddings/subj3ct.pt",
        EmbeddingFormat.DIFFUSERS: "embeddings/subj3ct/learned_embeds.safetensors",
        EmbeddingFormat.PNG: "embeddings/subj3ct.png",
    }[fmt]
    assert files[0].key == expected
    data = store.get(files[0].key)
    assert files[0].sha256 == file_hashes(data)[0]
    back, back_fmt = read_embedding(data, filename=expected.rsplit("/", 1)[1], name="subj3ct")
    assert back_fmt is fmt and back.name == "subj3ct"
    assert torch.equal(back.vectors[0], source.vectors[0])


def test_export_renames_and_writes_to_a_folder(store, components):
    created = create_embedding_file(store, components, name="subj3ct", vectors=2, model_reference="t")
    files = export_embedding(
        store, created.key, [EmbeddingFormat.A1111_PT, EmbeddingFormat.SAFETENSORS], "out/", name="anna-ti"
    )
    assert [f.key for f in files] == ["out/anna-ti.pt", "out/anna-ti.safetensors"]
    assert read_embedding(store.get("out/anna-ti.pt"), filename="anna-ti.pt")[0].name == "anna-ti"
    with pytest.raises(InvalidArgument):
        export_embedding(store, created.key, [EmbeddingFormat.A1111_PT, EmbeddingFormat.PNG], "out/one.pt")


def test_export_sdxl_to_diffusers_writes_two_files(store):
    sdxl = Embedding("subj3ct", (torch.randn(2, 8), torch.randn(2, 12)), step=40)
    store.put("sp/000040/subj3ct.safetensors", write_embedding(sdxl, EmbeddingFormat.SAFETENSORS))
    files = export_embedding(store, "sp/000040/subj3ct.safetensors", EmbeddingFormat.DIFFUSERS)
    assert [(f.key, f.text_encoder) for f in files] == [
        ("sp/000040/subj3ct/learned_embeds.safetensors", "clip_l"),
        ("sp/000040/subj3ct/learned_embeds_2.safetensors", "clip_g"),
    ]
    for f, vectors in zip(files, sdxl.vectors, strict=True):
        back, _ = read_embedding(store.get(f.key), filename=f.key.rsplit("/", 1)[1], name="subj3ct")
        assert torch.equal(back.vectors[0], vectors) and f.step == 40
