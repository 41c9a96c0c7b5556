"""The judge reads the generator's pictures back: at least 98% right on fresh ones, and still mostly right on
blurred, noisy ones like a small diffusion model draws."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageFilter

from services.toyworld.judge import Verdict, judge
from services.toyworld.world import COLOURS, render, sample_scene, scene_from_words


def test_the_judge_is_right_on_at_least_98_percent_of_fresh_pictures():
    rng = random.Random(20261121)  # not a seed the judge was tuned on
    scenes = [sample_scene(rng) for _ in range(500)]
    right = sum(judge(render(scene)).matches(scene) for scene in scenes)
    assert right / len(scenes) >= 0.98, right


def test_the_judge_copes_with_blur_and_noise():
    rng, noise = random.Random(5), np.random.default_rng(0)
    right = 0
    for _ in range(200):
        scene = sample_scene(rng)
        blurred = np.asarray(render(scene).filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64)
        noisy = np.clip(blurred + noise.normal(0, 15, blurred.shape), 0, 255).astype(np.uint8)
        right += judge(Image.fromarray(noisy)).matches(scene)
    assert right / 200 >= 0.9, right


def test_every_shape_is_told_apart_and_an_empty_picture_has_no_shape():
    for shape in ("circle", "square", "triangle", "star", "heart", "cross"):
        scene = scene_from_words(shape, "red", ("white", "blue"))
        assert judge(render(scene)) == Verdict(shape, "red", ("white", "blue"))
    blank = Image.new("RGB", (64, 64), COLOURS["green"])
    assert judge(blank) == Verdict(None, None, ("green",))


def test_a_background_shaded_into_a_second_colour_is_not_read_as_the_shape():
    # Generated backgrounds are not flat: a red one darkens into brown along the left edge, over more pixels than
    # the heart has. Brown covers much of the border, so it is background; the heart is still pink.
    pixels = np.array(render(scene_from_words("heart", "pink", ("red",))))
    pixels[:, :20] = COLOURS["brown"]
    shaded = Image.fromarray(pixels)
    assert (np.asarray(shaded) == COLOURS["brown"]).all(axis=-1).sum() > 1000  # more than the heart's pixels
    assert judge(shaded) == Verdict("heart", "pink", ("red",))
