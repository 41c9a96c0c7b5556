"""The toy world: small images of one simple shape in one colour on a plain or two-tone background, each with the
caption a user would write ("a purple heart on a green background").

    scene = sample_scene(random.Random(7))          # shape, colour, background(s), size, position
    image = render(scene)                           # 64 x 64 RGB, deterministic for a scene
    scene.caption()                                 # "a purple heart on a green and yellow background"

Everything is exact and seeded, so a judge can read a picture back (`judge.py`) and tests can check that training
learns. Shapes are drawn supersampled (4x) and downscaled, so their edges are smooth like a photo's, not aliased.

| part        | values                                                                                 |
|-------------|----------------------------------------------------------------------------------------|
| shapes      | circle, square, triangle, star, heart, cross                                           |
| colours     | red, orange, yellow, green, blue, purple, pink, white, black, brown (fixed RGB)         |
| background  | plain (one colour) or two-tone (top and bottom, split at 40-60% of the height)         |
| size        | the shape's half-width is 20-35% of the image side                                      |
| position    | the centre moves up to 12% of the side from the middle, the shape stays inside        |

The shape's colour never equals a background colour, and the two tones differ.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "SHAPES",
    "Scene",
    "background_phrase",
    "render",
    "sample_scene",
    "scene_from_words",
    "with_article",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "purple": (130, 40, 170),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "brown": (120, 75, 35),
}
SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: tuple[str, ...]  # one colour (plain) or two (top, bottom)
    half_width: float  # fraction of the image side
    centre: tuple[float, float]  # fractions of the side, (x, y)
    split: float = 0.5  # two-tone: where the bottom tone starts, as a fraction of the height

    def caption(self) -> str:
        return f"{with_article(f'{self.colour} {self.shape}')} on {background_phrase(self.background)}"


def sample_scene(
    rng: random.Random,
    *,
    shape: str | None = None,
    colour: str | None = None,
    background: tuple[str, ...] | None = None,
    two_tone_probability: float = 0.3,
) -> Scene:
    """A random scene; fix any of shape, colour or background to sample the rest around it."""
    shape = shape or rng.choice(SHAPES)
    colour = colour or rng.choice(list(COLOURS))
    if background is None:
        others = [c for c in COLOURS if c != colour]
        first = rng.choice(others)
        if rng.random() < two_tone_probability:
            background = (first, rng.choice([c for c in others if c != first]))
        else:
            background = (first,)
    if colour in background or len(set(background)) != len(background) or not 1 <= len(background) <= 2:
        raise ValueError(f"background {background} must be one or two colours other than the shape's {colour}")
    half_width = rng.uniform(0.20, 0.35)
    room = 0.5 - half_width  # how far the centre may move and keep the shape inside
    reach = min(0.12, room)
    centre = (0.5 + rng.uniform(-reach, reach), 0.5 + rng.uniform(-reach, reach))
    return Scene(shape, colour, tuple(background), half_width, centre, split=rng.uniform(0.4, 0.6))


def scene_from_words(shape: str, colour: str, background: tuple[str, ...]) -> Scene:
    """A centred, medium-sized scene: the canonical picture of a caption."""
    return Scene(shape, colour, tuple(background), 0.3, (0.5, 0.5))


def render(scene: Scene, size: int = 64) -> Image.Image:
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), COLOURS[scene.background[0]])
    draw = ImageDraw.Draw(image)
    if len(scene.background) == 2:
        draw.rectangle((0, round(scene.split * big), big, big), fill=COLOURS[scene.background[1]])
    cx, cy = scene.centre[0] * big, scene.centre[1] * big
    draw.polygon(shape_outline(scene.shape, cx, cy, scene.half_width * big), fill=COLOURS[scene.colour])
    return image.resize((size, size), Image.Resampling.LANCZOS)


def shape_outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The polygon of `shape` centred at (cx, cy) with half-width r (y grows downwards)."""
    if shape == "circle":
        return [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in _angles(72)]
    if shape == "square":
        s = r * 0.9
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.42
            angle = math.radians(i * 36 - 90)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "heart":
        points = []
        for t in _angles(96):  # the classic parametric heart, scaled to half-width r
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((cx + r * x / 16, cy - r * (y + 2.5) / 16))
        return points
    if shape == "cross":
        a, w = r, r * 0.36
        return [
            (cx - w, cy - a),
            (cx + w, cy - a),
            (cx + w, cy - w),
            (cx + a, cy - w),
            (cx + a, cy + w),
            (cx + w, cy + w),
            (cx + w, cy + a),
            (cx - w, cy + a),
            (cx - w, cy + w),
            (cx - a, cy + w),
            (cx - a, cy - w),
            (cx - w, cy - w),
        ]
    raise ValueError(f"unknown shape {shape!r}; the world has {', '.join(SHAPES)}")


def with_article(words: str) -> str:
    """ "an orange star", "a red star": the article English gives the words."""
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def background_phrase(background: tuple[str, ...]) -> str:
    """ "a green background", "a blue and white background"."""
    return f"{with_article(' and '.join(background))} background"


def _angles(count: int) -> list[float]:
    return [2 * math.pi * i / count for i in range(count)]
