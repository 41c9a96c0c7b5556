"""Files we write load in diffusers' own loader (`load_textual_inversion`) on the tiny SD1.x model, with the
token it registers and the embedding rows it stores equal to our vectors; widths are checked against the model."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from services.common.embeddings import (
    Embedding,
    EmbeddingFormat,
    EmbeddingWidthMismatch,
    check_compatible,
    read_embedding,
    write_embedding,
    write_embedding_files,
)


@pytest.fixture
def pipe(tiny_models):
    return StableDiffusionPipeline.from_pretrained(tiny_models["sd"])


def _width(pipe) -> int:
    return int(pipe.text_encoder.config.hidden_size)


def _embedding(name: str, n: int, width: int) -> Embedding:
    vectors = torch.randn(n, width, generator=torch.Generator().manual_seed(n))
    return Embedding(name, (vectors,), step=50)


def _rows(pipe, token: str, n: int) -> torch.Tensor:
    tokens = [token] + [f"{token}_{i}" for i in range(1, n)]
    ids = pipe.tokenizer.convert_tokens_to_ids(tokens)
    assert pipe.tokenizer.unk_token_id not in ids, "diffusers did not register every vector's token"
    return pipe.text_encoder.get_input_embeddings().weight[ids].detach()


@pytest.mark.parametrize(
    ("fmt", "filename", "token"),
    [
        # kohya's single-key form carries no token: diffusers needs token=, as its docs say for A1111-style files
        (EmbeddingFormat.SAFETENSORS, "annasafe.safetensors", "annasafe"),
        (EmbeddingFormat.A1111_PT, "annapt.pt", None),  # diffusers takes the token from A1111's "name"
        (EmbeddingFormat.DIFFUSERS, "learned_embeds.safetensors", None),  # ... and from the diffusers key
    ],
)
@pytest.mark.parametrize("n", [1, 3])
def test_diffusers_loads_what_we_write(pipe, tmp_path, fmt, filename, token, n):
    name = filename.split(".")[0] if token else f"anna{fmt.value.replace('_', '')}"
    embedding = _embedding(name, n, _width(pipe))
    path = tmp_path / filename
    path.write_bytes(write_embedding(embedding, fmt))
    pipe.load_textual_inversion(str(path), token=token)
    assert torch.equal(_rows(pipe, name, n), embedding.vectors[0])
    if n > 1:  # diffusers expands the trigger into one token per vector in prompts
        assert pipe.maybe_convert_prompt(f"a photo of {name}", pipe.tokenizer) == f"a photo of {name} {name}_1 {name}_2"


def test_diffusers_loads_our_diffusers_folder_layout(pipe, tmp_path):
    embedding = _embedding("<anna-folder>", 2, _width(pipe))
    for file, data in write_embedding_files(embedding, EmbeddingFormat.DIFFUSERS).items():
        (tmp_path / file).write_bytes(data)
    pipe.load_textual_inversion(str(tmp_path))  # finds learned_embeds.safetensors by its default name
    assert torch.equal(_rows(pipe, "<anna-folder>", 2), embedding.vectors[0])


def test_what_we_read_matches_the_model_and_loads_into_it(pipe):
    width = _width(pipe)
    written = _embedding("annaread", 2, width)
    embedding, _ = read_embedding(write_embedding(written, EmbeddingFormat.A1111_PT), filename="annaread.pt")
    check_compatible(embedding, [width], model_name="tiny-sd", filename="annaread.pt")
    pipe.load_textual_inversion(embedding.vectors[0], token=embedding.name)  # the preview service's path
    assert torch.equal(_rows(pipe, "annaread", 2), written.vectors[0])


def test_sdxl_pair_and_other_widths_are_refused_for_the_sd1_model(pipe):
    width = _width(pipe)
    pair = Embedding("annaxl", (torch.zeros(2, width), torch.zeros(2, 2 * width)))
    with pytest.raises(
        EmbeddingWidthMismatch,
        match=f"annaxl.safetensors holds a {width} \\+ {2 * width} pair but tiny-sd expects {width}",
    ):
        check_compatible(pair, [width], model_name="tiny-sd", filename="annaxl.safetensors")
    wide = Embedding("annawide", (torch.zeros(1, 2 * width),))
    with pytest.raises(EmbeddingWidthMismatch, match=f"holds {2 * width}-wide vectors but tiny-sd expects {width}"):
        check_compatible(wide, [width], model_name="tiny-sd", filename="annawide.pt")
