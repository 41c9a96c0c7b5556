"""Rendering with the tiny SD model: reproducible seeds, embeddings that act only where their trigger is, weights,
every sampler, infotext, batching of concurrent calls, and clear refusals."""

from __future__ import annotations

import copy
import dataclasses
import threading

import numpy as np
import pytest
import torch

from services.common.errors import InvalidArgument
from services.preview import rendering
from services.preview.embedding_library import EmbeddingLibrary
from services.preview.infotext import parse_infotext, read_png_infotext
from services.preview.rendering import ImageOrder, Sampling
from services.preview.samplers import SAMPLERS
from services.preview.tests.conftest import TRIGGER

FAST = Sampling(steps=3, width=64, height=64)


def _pixels(image) -> np.ndarray:
    return np.asarray(image.image, dtype=np.int16)


def _load(trained, key):
    store, _ = trained
    return EmbeddingLibrary(store).load(key, field="embeddings[0]")


def test_same_seed_same_image_and_other_seeds_differ(model, renderer):
    orders = [ImageOrder("a red circle", "", 7), ImageOrder("a red circle", "", 8)]
    first, again = renderer.render(model, [], orders, FAST), renderer.render(model, [], orders, FAST)
    assert [image.png for image in first] == [image.png for image in again]
    assert not np.array_equal(_pixels(first[0]), _pixels(first[1]))


def test_a_seed_gives_the_same_image_whatever_its_batch_neighbours(model, renderer):
    alone = renderer.render(model, [], [ImageOrder("a blue square", "", 5)], FAST)[0]
    crowd = [ImageOrder("a blue square", "", s) for s in (11, 5, 12)]
    in_batch = renderer.render(model, [], crowd, FAST)[1]
    assert np.abs(_pixels(alone) - _pixels(in_batch)).max() <= 1  # float rounding of a bigger batch, at most 1/255


def test_a_trained_embedding_changes_the_image_only_where_its_trigger_is(model, renderer, trained):
    _, savepoints = trained
    untrained = _load(trained, f"init/{TRIGGER}.safetensors")
    learned = _load(trained, savepoints[-1].embedding_key)
    plain = "a photo of a red circle"
    with_trigger = f"a photo of {TRIGGER}, a red circle"
    for prompt, should_differ in ((plain, False), (with_trigger, True)):
        before = renderer.render(model, [untrained], [ImageOrder(prompt, "", 3)], FAST)[0]
        after = renderer.render(model, [learned], [ImageOrder(prompt, "", 3)], FAST)[0]
        assert (not np.array_equal(_pixels(before), _pixels(after))) is should_differ, prompt
    # Loaded but not in the prompt: exactly the image of no embedding at all.
    without_any = renderer.render(model, [], [ImageOrder(plain, "", 3)], FAST)[0]
    unused = renderer.render(model, [learned], [ImageOrder(plain, "", 3)], FAST)[0]
    assert unused.image.tobytes() == without_any.image.tobytes()


def test_the_embedding_weight_changes_the_image(model, renderer, trained):
    _, savepoints = trained
    learned = _load(trained, savepoints[-1].embedding_key)
    images = renderer.render(
        model,
        [learned],
        [ImageOrder(f"a photo of ({TRIGGER}:{w})", "", 3) for w in (0.5, 1.0)]
        + [ImageOrder(f"a photo of {TRIGGER}", "", 3)],
        FAST,
    )
    assert not np.array_equal(_pixels(images[0]), _pixels(images[1]))
    assert np.abs(_pixels(images[1]) - _pixels(images[2])).max() <= 1  # (x:1.0) is x


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_every_sampler_renders_and_is_named_as_a1111_names_it(model, renderer, sampler):
    (image,) = renderer.render(
        model, [], [ImageOrder("a red circle", "", 1)], dataclasses.replace(FAST, sampler=sampler.name)
    )
    pixels = _pixels(image)
    assert image.image.size == (64, 64) and pixels.std() > 0
    _, _, params = parse_infotext(read_png_infotext(image.png))
    assert params["Sampler"] == sampler.display_name


def test_infotext_records_the_settings_and_only_the_embeddings_used(model, renderer, trained):
    _, savepoints = trained
    learned = _load(trained, savepoints[-1].embedding_key)
    orders = [ImageOrder(f"a photo of {TRIGGER}", "blurry", 9), ImageOrder("a red circle", "", 9)]
    used, unused = renderer.render(
        model, [learned], orders, dataclasses.replace(FAST, cfg_scale=5.5, emphasis="no_norm")
    )
    prompt, negative, params = parse_infotext(used.infotext)
    assert (prompt, negative) == (f"a photo of {TRIGGER}", "blurry")
    assert params["Steps"] == "3" and params["CFG scale"] == "5.5" and params["Seed"] == "9"
    assert params["Size"] == "64x64" and params["Model hash"] == model.components.fingerprint.short_hash
    assert params["Model"] == "tiny-sd" and params["Emphasis"] == "No norm"
    assert params["TI hashes"] == f"{TRIGGER}: {learned.short_hash}"
    assert "TI hashes" not in parse_infotext(unused.infotext)[2]
    assert read_png_infotext(used.png) == used.infotext


def test_concurrent_calls_share_one_batch(model, monkeypatch):
    real_sample, release, first_started, sizes = rendering.sample, threading.Event(), threading.Event(), []

    def held_sample(components, items, shape):
        sizes.append(len(items))
        if len(sizes) == 1:
            first_started.set()
            release.wait(30)
        return real_sample(components, items, shape)

    monkeypatch.setattr(rendering, "sample", held_sample)
    renderer = rendering.Renderer(max_batch=8)
    try:
        threads = [
            threading.Thread(target=renderer.render, args=(model, [], [ImageOrder("a red circle", "", s)], FAST))
            for s in range(4)
        ]
        threads[0].start()
        assert first_started.wait(30)
        for thread in threads[1:]:
            thread.start()
        while renderer.queue_depth < 3:
            threading.Event().wait(0.01)
        release.set()
        for thread in threads:
            thread.join(30)
    finally:
        renderer.close()
    assert sizes == [1, 3]


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        (Sampling(width=60), "sampling.width"),
        (Sampling(height=8192), "sampling.height"),
        (Sampling(steps=0), "sampling.steps"),
        (Sampling(cfg_scale=31), "sampling.cfg_scale"),
        (Sampling(sampler="plms"), "sampling.sampler"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(model, renderer, sampling, field):
    with pytest.raises(InvalidArgument) as info:
        renderer.render(model, [], [ImageOrder("a red circle", "", 1)], sampling)
    assert info.value.field == field


@pytest.mark.gpu
def test_a_seed_gives_the_same_image_on_cuda_as_on_the_cpu(model, renderer):
    on_gpu = copy.deepcopy(model.components)
    for part in (on_gpu.unet, on_gpu.vae, on_gpu.text_encoder):
        part.to("cuda")
    gpu_model = dataclasses.replace(model, components=on_gpu)
    order = [ImageOrder("a red circle", "", 21)]
    cpu_image = renderer.render(model, [], order, FAST)[0]
    gpu_image = renderer.render(gpu_model, [], order, FAST)[0]
    assert torch.cuda.is_available()
    assert np.abs(_pixels(cpu_image) - _pixels(gpu_image)).mean() < 1.0  # same noise; only kernel rounding differs
