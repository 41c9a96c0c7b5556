"""Data: A1111's batch plan and dropped groups, the seeded data order and its cursor, prompts per image or per
sample, and latents: the VAE runs once per image (and once per flipped image), each sampling mode gives what
A1111 gives, alpha weights are normalised, and the training size is independent of the stored size."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image

from services.common.storage import LocalStore
from services.trainer.engine import TrainingSession, create_embedding
from services.trainer.engine.data import (
    BatchPlan,
    DataCursor,
    PromptSource,
    alpha_weights,
    crop_box,
    epoch_batches,
    list_training_images,
    load_image,
)
from services.trainer.engine.latents import encode_dataset
from services.trainer.engine.testing import tiny_spec, write_dataset
from services.trainer.templates import CaptionProcessing, PromptSampler, PromptTemplate


class CountingVAE(torch.nn.Module):
    """The tiny VAE, counting the images it encodes."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.inner = vae
        self.config = vae.config
        self.images = 0

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def encode(self, x: torch.Tensor):
        self.images += x.shape[0]
        return self.inner.encode(x)


def _encode(store, components, *, sampling="once", flip=False, alpha=False, seed=0, vae=None, size=32):
    images = list_training_images(store, "ds/")
    return images, encode_dataset(
        store,
        images,
        vae or components.vae,
        width=size,
        height=size,
        latent_scale=components.vae_scale_factor,
        sampling=sampling,
        flip=flip,
        alpha=alpha,
        seed=seed,
        device=torch.device("cpu"),
    )


def _posterior(store, components, images, size=32, flipped=False):
    pixels = torch.stack(
        [
            load_image(store, item, width=size, height=size, latent_scale=2, with_alpha=False).pixels
            for item in images.items
        ]
    )
    if flipped:
        pixels = pixels.flip(-1)
    with torch.no_grad():
        dist = components.vae.encode(pixels).latent_dist
    return dist.mean, dist.std


def test_batch_plan_clamps_and_drops_as_a1111():
    plan = BatchPlan.for_images(7, 2, 2)  # 3 full batches of 2; one complete group of 2 -> 1 step per epoch
    assert (plan.batch_size, plan.accumulation, plan.steps_per_epoch, plan.batches_per_epoch) == (2, 2, 1, 2)
    assert [n.code for n in plan.notes()] == ["IMAGES_LEFT_OVER"]
    clamped = BatchPlan.for_images(3, 5, 4)  # A1111: batch = min(5, 3); accumulation = min(4, 3 // 3)
    assert (clamped.batch_size, clamped.accumulation, clamped.steps_per_epoch) == (3, 1, 1)
    assert {n.code for n in clamped.notes()} == {"BATCH_CLAMPED", "ACCUMULATION_CLAMPED"}
    assert BatchPlan.for_images(12, 6, 2).notes() == []  # full-cycle: 6 x 2 = 12 images


def test_epoch_order_is_seeded_full_batches_and_the_cursor_resumes():
    plan = BatchPlan.for_images(7, 2, 2)
    first = epoch_batches(3, 0, plan)
    assert first == epoch_batches(3, 0, plan) and first != epoch_batches(3, 1, plan)
    assert len(first) == 2 and all(len(b) == 2 for b in first)
    assert len({i for b in first for i in b}) == 4  # distinct images; 3 sit out this epoch
    cursor = DataCursor(3, plan)
    stream = [cursor.next() for _ in range(5)]
    assert stream[:2] == first and stream[2:4] == epoch_batches(3, 1, plan)
    assert cursor.state() == {"epoch": 2, "batch": 1}
    again = DataCursor(3, plan, **{"epoch": 1, "batch": 1})
    assert [again.next() for _ in range(2)] == stream[3:5]


def test_prompts_are_fixed_per_image_without_tag_variation_and_redrawn_with_it():
    template = PromptTemplate("custom", ("a photo of [name], [filewords]", "art of [name], [filewords]"))
    words = ("a woman, red hat, smiling", "a man, blue coat")
    fixed = PromptSource(PromptSampler(template, CaptionProcessing(), 0), "subj3ct", words)
    assert fixed.fixed is not None
    assert {tuple(fixed.prompts([0, 1])) for _ in range(20)} == {fixed.fixed}  # A1111 draws once, at load
    varying = PromptSource(PromptSampler(template, CaptionProcessing(shuffle_tags=True, keep_tags=1), 0), "x", words)
    draws = {varying.prompts([0])[0] for _ in range(40)}
    assert len(draws) > 2 and all(d.split(", ", 1)[1].startswith("a woman,") for d in draws)  # keep_tags=1


def test_deterministic_latents_are_the_scaled_posterior_mean(components, tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 3)
    images, encoded = _encode(store, components, sampling="deterministic")
    mean, _ = _posterior(store, components, images)
    assert encoded.latents.samples.shape == (1, 3, 4, 16, 16)  # 48 px images trained at 32 px: 16 x 16 latents
    torch.testing.assert_close(encoded.latents.samples[0], mean * 0.18215, rtol=1e-5, atol=1e-6)


def test_once_latents_are_one_seeded_posterior_draw(components, tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 3)
    images, encoded = _encode(store, components, sampling="once", seed=5)
    _, again = _encode(store, components, sampling="once", seed=5)
    _, other = _encode(store, components, sampling="once", seed=6)
    mean, std = _posterior(store, components, images)
    eps = (encoded.latents.samples[0] / 0.18215 - mean) / std
    assert torch.equal(encoded.latents.samples, again.latents.samples)  # fixed for the run, rebuilt on resume
    assert not torch.equal(encoded.latents.samples, other.latents.samples)
    assert abs(float(eps.mean())) < 0.1 and 0.9 < float(eps.std()) < 1.1  # a standard normal draw
    generator = torch.Generator().manual_seed(0)
    latents, _ = encoded.latents.batch(torch.tensor([2, 0]), None, generator)
    assert torch.equal(latents, encoded.latents.samples[0, [2, 0]])  # the same draw at every step


def test_random_latents_draw_anew_from_the_cached_posterior(components, tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 3)
    images, encoded = _encode(store, components, sampling="random")
    mean, std = _posterior(store, components, images)
    torch.testing.assert_close(encoded.latents.mean[0], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(encoded.latents.std[0], std, rtol=1e-5, atol=1e-6)
    generator = torch.Generator().manual_seed(0)
    replay = torch.Generator().manual_seed(0)
    index = torch.tensor([1, 1])
    first, _ = encoded.latents.batch(index, None, generator)
    eps = torch.randn((2, 4, 16, 16), generator=replay)
    assert torch.equal(first, (encoded.latents.mean[0, index] + encoded.latents.std[0, index] * eps) * 0.18215)
    assert not torch.equal(first[0], first[1])  # a fresh draw per sample and per step


def test_the_vae_runs_once_per_image_and_once_per_flipped_image(components, tmp_path):
    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 3)
    counting = CountingVAE(components.vae)
    images, encoded = _encode(store, components, sampling="deterministic", flip=True, vae=counting)
    assert counting.images == 6
    flipped_mean, _ = _posterior(store, components, images, flipped=True)
    torch.testing.assert_close(encoded.latents.samples[1], flipped_mean * 0.18215, rtol=1e-5, atol=1e-6)
    generator = torch.Generator().manual_seed(0)
    latents, _ = encoded.latents.batch(torch.tensor([0, 1]), torch.tensor([True, False]), generator)
    assert torch.equal(latents[0], encoded.latents.samples[1, 0])  # flipped variant of image 0
    assert torch.equal(latents[1], encoded.latents.samples[0, 1])

    # A whole run: prepare encodes, then 6 steps of 2 images never touch the VAE again.
    spec = tiny_spec(flip=True, latent_sampling="random", save_every_steps=0, log_every_steps=3)
    counting.images = 0
    run_components = dataclasses.replace(components, vae=counting)
    embedding = create_embedding(components, "subj3ct", "woman", 1)
    session = TrainingSession.prepare(spec, run_components, store, output_prefix="run/", embedding=embedding)
    assert counting.images == 6
    assert session.run().step == 6 and counting.images == 6


def test_alpha_weights_are_min_zero_mean_one_and_follow_the_mask(components, tmp_path):
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1)))
    weights = alpha_weights(ramp, 16, 16)
    assert weights.shape == (16, 16) and weights.min() == 0 and abs(weights.mean() - 1) < 1e-6
    assert (np.diff(weights[0]) >= 0).all()  # brighter alpha, more weight
    assert alpha_weights(Image.new("L", (8, 8), 255), 4, 4) is None  # constant: plain MSE (A1111 would divide by 0)

    store = LocalStore(tmp_path)
    write_dataset(store, "ds/", 2, alpha=True)
    write_dataset(store, "ds/more-", 1, alpha=False, seed=9)
    _, encoded = _encode(store, components, alpha=True, flip=True)
    w = encoded.latents.weights
    assert w.shape == (2, 3, 1, 16, 16)
    assert torch.equal(w[0, 2], torch.ones(1, 16, 16))  # the image without a mask weighs 1 everywhere
    assert float(w[0, 0, 0, 0, 0]) == 0.0 and float(w[1, 0, 0, 0, -1]) == 0.0  # the flipped mask is flipped
    _, off = _encode(store, components, alpha=False)
    assert off.latents.weights is None


def test_training_size_is_independent_of_the_stored_size():
    assert crop_box((512, 512), 256, 256) == (0, 0, 512, 512)
    assert crop_box((640, 480), 256, 256) == (80, 0, 560, 480)  # centred, then resized (A1111 would stretch)
    assert crop_box((480, 640), 512, 384) == (0, 140, 480, 500)
