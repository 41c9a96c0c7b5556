"""The toy world's generator: seeded, inside its own rules, and captioned the way users write."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.toyworld.world import COLOURS, SHAPES, Scene, render, sample_scene, scene_from_words


def test_scenes_and_pictures_are_deterministic():
    first = [sample_scene(random.Random(3)) for _ in range(2)]
    assert first[0] == first[1]
    assert render(first[0]).tobytes() == render(first[1]).tobytes()
    assert render(first[0], size=32).size == (32, 32)


def test_sampled_scenes_keep_the_worlds_rules():
    rng = random.Random(11)
    scenes = [sample_scene(rng) for _ in range(2000)]
    assert {s.shape for s in scenes} == set(SHAPES) and {s.colour for s in scenes} == set(COLOURS)
    assert {len(s.background) for s in scenes} == {1, 2}
    for scene in scenes:
        assert scene.colour not in scene.background and len(set(scene.background)) == len(scene.background)
        for c in scene.centre:  # the shape stays inside the picture
            assert scene.half_width <= c <= 1 - scene.half_width


@pytest.mark.parametrize(
    ("scene", "caption"),
    [
        (Scene("heart", "purple", ("green",), 0.3, (0.5, 0.5)), "a purple heart on a green background"),
        (Scene("star", "orange", ("blue", "white"), 0.3, (0.5, 0.5)), "an orange star on a blue and white background"),
        (Scene("cross", "red", ("orange",), 0.3, (0.5, 0.5)), "a red cross on an orange background"),
    ],
)
def test_captions_read_as_users_write_them(scene, caption):
    assert scene.caption() == caption


def test_fixed_words_are_respected_and_bad_ones_refused():
    rng = random.Random(0)
    scene = sample_scene(rng, shape="star", colour="purple", background=("green",))
    assert (scene.shape, scene.colour, scene.background) == ("star", "purple", ("green",))
    with pytest.raises(ValueError, match="other than the shape's purple"):
        sample_scene(rng, colour="purple", background=("purple",))


def test_the_picture_shows_the_scene():
    scene = scene_from_words("square", "blue", ("yellow", "black"))
    pixels = np.asarray(render(scene)).astype(int)
    assert tuple(pixels[1, 1]) == COLOURS["yellow"] and tuple(pixels[62, 62]) == COLOURS["black"]
    assert tuple(pixels[32, 32]) == COLOURS["blue"]
