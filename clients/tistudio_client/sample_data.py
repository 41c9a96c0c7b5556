"""A small sample dataset for the demo: one concept (a purple star) photographed on varied backgrounds.

The images are drawn here, seeded, at odd sizes and aspect ratios so that Preprocess has real work to do (crop to
1:1, resize); they carry no captions, so CaptionDataset writes them. With the random tiny models the captions and
previews are noise; the toy world (a trained toy SD and BLIP) makes them meaningful.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["write_sample_dataset", "SAMPLE_CONCEPT"]

SAMPLE_CONCEPT = "a purple star"
_BACKGROUNDS = [(46, 139, 87), (70, 130, 180), (238, 232, 170), (205, 92, 92), (47, 79, 79), (255, 160, 122)]
_SIZES = [(96, 80), (80, 96), (112, 84), (90, 90), (120, 100), (84, 120)]


def write_sample_dataset(folder: Path, *, count: int = 12, seed: int = 7) -> list[Path]:
    """`count` PNGs of the concept into `folder` (created); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        width, height = _SIZES[index % len(_SIZES)]
        top = _BACKGROUNDS[rng.randrange(len(_BACKGROUNDS))]
        bottom = _BACKGROUNDS[rng.randrange(len(_BACKGROUNDS))]
        image = _two_tone(width, height, top, bottom)
        side = min(width, height)
        radius = rng.uniform(0.22, 0.34) * side
        centre = (width / 2 + rng.uniform(-0.12, 0.12) * side, height / 2 + rng.uniform(-0.12, 0.12) * side)
        _star(ImageDraw.Draw(image), centre, radius, rotation=rng.uniform(0, 72), fill=(128, 40, 170))
        image = image.filter(ImageFilter.GaussianBlur(0.6))  # softer edges, a little like a photo
        path = folder / f"{index + 1:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def _two_tone(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (width, height), top)
    ImageDraw.Draw(image).rectangle((0, height * 2 // 3, width, height), fill=bottom)
    return image


def _star(draw: ImageDraw.ImageDraw, centre: tuple[float, float], radius: float, *, rotation: float, fill) -> None:
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        angle = math.radians(rotation + i * 36 - 90)
        points.append((centre[0] + r * math.cos(angle), centre[1] + r * math.sin(angle)))
    draw.polygon(points, fill=fill)
