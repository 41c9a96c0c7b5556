"""Rendering beyond SD1.x with the tiny models: SDXL (two encoders, pooled text, time ids, zero empty negative) and
SD2's 768 v-prediction model; embeddings of the wrong family are refused naming both sides."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

from services.common.embeddings import Embedding, EmbeddingFormat, EmbeddingWidthMismatch, write_embedding
from services.common.models import resolve_model
from services.common.models.loading import load_stable_diffusion
from services.common.storage import LocalStore
from services.preview import denoise, rendering
from services.preview.embedding_library import EmbeddingLibrary
from services.preview.infotext import parse_infotext
from services.preview.prompt_conditioning import PromptConditioner
from services.preview.rendering import ImageOrder, LoadedModel, Sampling
from services.preview.samplers import SAMPLERS, sampler_named

FAST = Sampling(steps=3, width=64, height=64)
TRIGGER = "xlsubj"


def _model(tiny_models, key: str, name: str) -> LoadedModel:
    return LoadedModel(str(tiny_models[key]), name, load_stable_diffusion(resolve_model(str(tiny_models[key]))))


@pytest.fixture(scope="module")
def sdxl(tiny_models):
    return _model(tiny_models, "sdxl", "tiny-sdxl")


@pytest.fixture(scope="module")
def sd(model):
    return model  # conftest's tiny SD1 model, named "tiny-sd"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Embeddings in a store: `xl/<name>.safetensors` SDXL pairs (32 + 48 wide), `sd1/subj.safetensors` 32 wide."""
    store = LocalStore(tmp_path_factory.mktemp("families") / "store")
    generator = torch.Generator().manual_seed(0)
    clip_l, clip_g = torch.randn(2, 32, generator=generator), torch.randn(2, 48, generator=generator)
    pairs = {"base": (clip_l, clip_g), "other_l": (clip_l.flip(0), clip_g), "other_g": (clip_l, clip_g.flip(0))}
    for name, vectors in pairs.items():
        data = write_embedding(Embedding(TRIGGER, vectors), EmbeddingFormat.SAFETENSORS)
        store.put(f"xl/{name}.safetensors", data)
    store.put("sd1/subj.safetensors", write_embedding(Embedding("subj", (clip_l,)), EmbeddingFormat.SAFETENSORS))
    return EmbeddingLibrary(store)


def _xl(library, name: str):
    return library.load(f"xl/{name}.safetensors", trigger=TRIGGER, field="embeddings[0]")


def _pixels(image) -> np.ndarray:
    return np.asarray(image.image, dtype=np.int16)


def test_sdxl_renders_the_same_image_for_a_seed(sdxl, renderer):
    orders = [ImageOrder("a red circle", "blurry", 7), ImageOrder("a red circle", "blurry", 8)]
    first, again = renderer.render(sdxl, [], orders, FAST), renderer.render(sdxl, [], orders, FAST)
    assert [image.png for image in first] == [image.png for image in again]
    assert first[0].image.size == (64, 64) and _pixels(first[0]).std() > 0
    assert not np.array_equal(_pixels(first[0]), _pixels(first[1]))


def test_sdxl_batch_of_two_equals_two_singles(sdxl, renderer):
    orders = [ImageOrder("a blue square", "", 3), ImageOrder("a red circle", "", 4)]
    together = renderer.render(sdxl, [], orders, FAST)
    for order, batched in zip(orders, together, strict=True):
        alone = renderer.render(sdxl, [], [order], FAST)[0]
        assert np.abs(_pixels(alone) - _pixels(batched)).max() <= 1  # float rounding of a bigger batch


def test_each_half_of_an_sdxl_embedding_reaches_its_own_encoder(sdxl, renderer, library):
    prompt = f"a photo of {TRIGGER}"
    images = {
        name: _pixels(renderer.render(sdxl, [_xl(library, name)], [ImageOrder(prompt, "", 2)], FAST)[0])
        for name in ("base", "other_l", "other_g")
    }
    assert not np.array_equal(images["base"], images["other_l"])  # clip_l went into CLIP-L
    assert not np.array_equal(images["base"], images["other_g"])  # clip_g went into OpenCLIP-G
    without = renderer.render(sdxl, [_xl(library, "base")], [ImageOrder("a photo of", "", 2)], FAST)[0]
    assert not np.array_equal(images["base"], _pixels(without))


def test_sdxl_infotext_lists_the_embedding_hash(sdxl, renderer, library):
    embedding = _xl(library, "base")
    (image,) = renderer.render(sdxl, [embedding], [ImageOrder(f"{TRIGGER} on a beach", "", 1)], FAST)
    params = parse_infotext(image.infotext)[2]
    assert params["TI hashes"] == f"{TRIGGER}: {embedding.short_hash}"
    assert params["Model"] == "tiny-sdxl" and params["Model hash"] == sdxl.components.fingerprint.short_hash


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_sdxl_matches_diffusers_pipeline_pixel_for_pixel(sdxl, renderer, negative):
    """Both encoders, the pooled embedding, time ids, CFG on both halves and the zero empty negative, all at once."""
    parts = sdxl.components
    scheduler = EulerDiscreteScheduler.from_config(parts.scheduler.config)
    pipe = StableDiffusionXLPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2,
        unet=parts.unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red circle",
        negative_prompt=negative or None,
        num_inference_steps=3,
        guidance_scale=7.0,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(3),
        output_type="np",
    ).images[0]
    sampling = Sampling(steps=3, sampler="euler", width=64, height=64)
    (ours,) = renderer.render(sdxl, [], [ImageOrder("a red circle", negative, 3)], sampling)
    np.testing.assert_array_equal(_pixels(ours), (expected * 255).round().astype(np.int16))


def _sampled_items(model, orders, monkeypatch) -> list:
    """The DenoiseItems the renderer hands to the sampler, one render call per order."""
    seen = []
    real_sample = rendering.sample

    def spy(components, items, shape):
        seen.extend(items)
        return real_sample(components, items, shape)

    monkeypatch.setattr(rendering, "sample", spy)
    renderer = rendering.Renderer(max_batch=4)
    try:
        for order in orders:
            renderer.render(model, [], [order], Sampling(steps=1, width=64, height=64))
    finally:
        renderer.close()
    return seen


def test_an_empty_sdxl_negative_prompt_is_zero_conditioning(sdxl, monkeypatch):
    orders = [ImageOrder("a red circle", "", 1), ImageOrder("a red circle", "blurry", 1)]
    empty, worded = _sampled_items(sdxl, orders, monkeypatch)
    assert empty.uncond.hidden.shape == empty.cond.hidden.shape
    assert not empty.uncond.hidden.any() and not empty.uncond.pooled.any()
    assert worded.uncond.hidden.any() and worded.uncond.pooled.any()


def test_an_empty_sd1_negative_prompt_is_encoded(sd, monkeypatch):
    (item,) = _sampled_items(sd, [ImageOrder("a red circle", "", 1)], monkeypatch)
    assert item.uncond.hidden.any() and item.uncond.pooled is None


def test_sdxl_time_ids_follow_each_batchs_size(sdxl, renderer, monkeypatch):
    sizes = []
    real_time_ids = denoise.sdxl_time_ids

    def spy(height, width, batch, **kwargs):
        sizes.append((height, width))
        return real_time_ids(height, width, batch, **kwargs)

    monkeypatch.setattr(denoise, "sdxl_time_ids", spy)
    wide = Sampling(steps=1, width=64, height=32)
    (image,) = renderer.render(sdxl, [], [ImageOrder("a red circle", "", 1)], wide)
    renderer.render(sdxl, [], [ImageOrder("a red circle", "", 1)], Sampling(steps=1, width=64, height=64))
    assert image.image.size == (64, 32)
    assert sizes == [(32, 64), (64, 64)]


def test_sdxl_emphasis_weights_the_hidden_states_never_the_pooled(sdxl):
    encoded = {}
    for emphasis in ("original", "no_norm"):
        prompts = PromptConditioner(sdxl.components, [], emphasis)
        plain, weighted = prompts("a red circle"), prompts("a (red:1.5) circle")
        assert not torch.equal(plain.hidden, weighted.hidden), emphasis
        torch.testing.assert_close(plain.pooled, weighted.pooled, rtol=0, atol=0)
        encoded[emphasis] = weighted.hidden
    assert not torch.equal(encoded["original"], encoded["no_norm"])  # "Original" restores the mean
    literal = PromptConditioner(sdxl.components, [], "none")("a (red:1.5) circle")  # A1111's None: plain text
    assert not torch.equal(literal.pooled, PromptConditioner(sdxl.components, [], "none")("a red circle").pooled)


def test_concurrent_sd_and_sdxl_renders_never_share_a_unet_batch(sd, sdxl, monkeypatch):
    real_run, release, first_started, batches = rendering.Renderer._run_batch, threading.Event(), threading.Event(), []

    def held_run(self, key, works):
        batches.append(tuple(sorted(names[id(w.components)] for w in works)))
        if len(batches) == 1:
            first_started.set()
            release.wait(30)
        return real_run(self, key, works)

    names = {id(sd.components): "sd", id(sdxl.components): "sdxl"}
    monkeypatch.setattr(rendering.Renderer, "_run_batch", held_run)
    renderer = rendering.Renderer(max_batch=8)
    sampling = Sampling(steps=1, width=64, height=64)
    try:
        calls = [sd, sdxl, sd, sdxl, sd]
        threads = [
            threading.Thread(target=renderer.render, args=(m, [], [ImageOrder("a red circle", "", 1)], sampling))
            for m in calls
        ]
        threads[0].start()
        assert first_started.wait(30)
        for thread in threads[1:]:
            thread.start()
        while renderer.queue_depth < 4:
            threading.Event().wait(0.01)
        release.set()
        for thread in threads:
            thread.join(30)
    finally:
        renderer.close()
    # The held first batch, then one batch per model of whatever queued meanwhile (in arrival order).
    assert batches[0] == ("sd",)
    assert sorted(batches[1:]) == [("sd", "sd"), ("sdxl", "sdxl")]


def test_the_default_size_is_the_unet_s_own(sdxl, sd, tiny_models):
    # sample size x VAE factor: 64 px for every tiny model; SD1.5 512, SD2-768 768 and SDXL 1024 on real weights
    sd2_768 = _model(tiny_models, "sd2_768", "tiny-sd2-768")
    assert rendering._size(sdxl, Sampling()) == rendering._size(sd2_768, Sampling()) == (64, 64)
    assert rendering._size(sd, Sampling(height=32)) == (64, 32)


def test_sd2_768_renders_with_v_prediction(tiny_models, renderer):
    model = _model(tiny_models, "sd2_768", "tiny-sd2-768")
    assert model.components.prediction_type == "v_prediction"
    first, again = (renderer.render(model, [], [ImageOrder("a red circle", "", 1)], FAST)[0] for _ in range(2))
    assert first.image.size == (64, 64) and _pixels(first).std() > 0
    assert first.png == again.png


@pytest.mark.parametrize(
    ("key", "model_fixture", "named"),
    [
        ("sd1/subj.safetensors", "sdxl", ("32-wide", "tiny-sdxl", "32+48")),
        ("xl/base.safetensors", "sd", ("32 + 48", "tiny-sd", "expects 32")),
    ],
)
def test_an_embedding_of_another_family_is_refused_naming_both(library, request, key, model_fixture, named):
    model = request.getfixturevalue(model_fixture)
    loaded = library.load(key, field="embeddings[0]")
    with pytest.raises(EmbeddingWidthMismatch) as info:
        library.check(loaded, model.embedding_dims, model_name=model.name)
    message = str(info.value)
    assert key in message and all(part in message for part in named), message


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_every_sampler_renders_sdxl_reproducibly(sdxl, renderer, sampler):
    sampling = Sampling(steps=3, sampler=sampler, width=64, height=64)
    order = [ImageOrder("a green star", "blurry", 5)]
    first, again = renderer.render(sdxl, [], order, sampling)[0], renderer.render(sdxl, [], order, sampling)[0]
    assert first.png == again.png and _pixels(first).std() > 0
    assert parse_infotext(first.infotext)[2]["Sampler"] == sampler_named(sampler).display_name
