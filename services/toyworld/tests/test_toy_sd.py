"""The committed toy SD loads like real SD1.x, knows the world's words, and draws what a caption asks for."""

from __future__ import annotations

import json

import pytest
import torch

from services.preview.rendering import Sampling
from services.toyworld import TOY_SD
from services.toyworld.toy_sd import phrase
from services.toyworld.toy_sd_eval import load_toy_sd, score
from services.toyworld.world import COLOURS, SHAPES, Scene

SAMPLING = Sampling(steps=20, cfg_scale=7.0, sampler="euler_a", width=64, height=64)  # A1111's defaults, 64 px


@pytest.fixture(scope="module")
def toy_sd():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model is small; two threads on a busy 2-core machine only wait on each other
    yield load_toy_sd(TOY_SD)
    torch.set_num_threads(threads)


def test_it_loads_as_an_ordinary_sd1_folder(toy_sd):
    components = toy_sd.components
    assert components.family == "sd1"
    assert components.prediction_type == "epsilon"
    assert components.vae_scale_factor == 4
    assert toy_sd.native_size() == 64
    assert (TOY_SD / "tokenizer" / "vocab.json").is_file() and (TOY_SD / "tokenizer" / "merges.txt").is_file()
    size = sum(p.stat().st_size for p in TOY_SD.rglob("*") if p.is_file())
    assert size < 12 * 2**20, size  # small enough to commit


def test_the_recipe_beside_it_records_every_run_that_made_it():
    recipe = json.loads(TOY_SD.with_name("toy-sd.recipe.json").read_text())
    chain = [recipe]
    while "init_recipe" in chain[-1]:
        chain.append(chain[-1]["init_recipe"])
    for run in chain:
        assert run["args"]["unet_steps"] == run["unet_result"]["steps"], run["args"]  # each ran to its end
        assert run["unet"]["cross_attention_dim"] == run["text_encoder"]["hidden_size"]
    # The first UNet run took its VAE from a run whose VAE stages are recorded, seed and all.
    assert chain[-1]["vae_recipe"]["args"]["seed"] == 0 and chain[-1]["vae_recipe"]["vae_result"]["steps"] == 700
    assert recipe["scaling_factor"] == chain[-1]["scaling_factor"]  # one latent scale through the chain


def test_every_world_word_is_one_token_and_a_trigger_is_several(toy_sd):
    tokenizer = toy_sd.components.tokenizer
    for word in [*COLOURS, *SHAPES, "a", "an", "on", "and", "background", "photo", "of", "picture", "image", ","]:
        assert len(tokenizer.tokenize(word)) == 1, (word, tokenizer.tokenize(word))
    assert len(tokenizer.tokenize("st4rdemo")) > 1


def test_training_words_each_scene_the_ways_people_prompt():
    import random

    scene = Scene("star", "orange", ("green",), 0.3, (0.5, 0.5))
    rng = random.Random(0)
    wordings = {phrase(scene, rng) for _ in range(400)}
    assert "an orange star on a green background" in wordings
    assert "a photo of an orange star, on a green background" in wordings
    assert "a photo of an orange star" in wordings and "on a green background" in wordings
    assert all(w.count("star") + w.count("shape") <= 1 for w in wordings)


@pytest.mark.parametrize(
    "target",
    [("circle", "red", ("white",)), ("heart", "pink", ("blue",)), ("triangle", "green", ("pink",))],
    ids=lambda t: f"{t[1]}-{t[0]}-on-{'-'.join(t[2])}",
)
def test_it_draws_the_shape_colour_and_background_a_caption_asks_for(toy_sd, target):
    result = score(toy_sd, target, range(16), SAMPLING)
    assert result.full >= 0.8, result


def test_the_toy_models_copy_out_whole_for_a_store_or_a_cluster(tmp_path):
    from services.toyworld.__main__ import main

    assert main(["--out", str(tmp_path)]) == 0
    for name in ("toy-sd", "toy-blip"):
        shipped = sorted(p.relative_to(TOY_SD.parent / name) for p in (TOY_SD.parent / name).rglob("*"))
        assert sorted(p.relative_to(tmp_path / name) for p in (tmp_path / name).rglob("*")) == shipped
        assert (tmp_path / f"{name}.recipe.json").is_file()
    assert not list(tmp_path.glob(".*partial"))
