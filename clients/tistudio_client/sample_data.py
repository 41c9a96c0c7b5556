"""A small sample dataset for the demo: one toy-world concept (a purple heart) photographed on varied backgrounds.

The pictures come from the toy world's generator (`services/toyworld`), which the toy SD and toy BLIP were trained
on, so the captions the demo writes are right and its previews show the concept appear. Each is drawn at 96 px and
then widened or heightened to an odd size by repeating its edges, so Preprocess has real work to do (crop 1:1,
resize to 64). They carry no captions: CaptionDataset writes them, and the demo then removes the concept's words,
as users fix BLIP's captions before training.

The demo's concept is held out from the learning test's (`bench/toy_learning.py`), so the two show different things.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from services.toyworld.concept import Concept, training_scenes
from services.toyworld.world import render

__all__ = ["SAMPLE_CONCEPT", "write_sample_dataset"]

SAMPLE_CONCEPT = Concept("heart", "purple")
_SIZES = [(96, 80), (80, 96), (112, 84), (90, 90), (120, 100), (84, 120)]  # (width, height) before Preprocess


def write_sample_dataset(
    folder: Path, *, count: int = 12, seed: int = 7, concept: Concept = SAMPLE_CONCEPT
) -> list[Path]:
    """`count` PNGs of `concept` into `folder` (created); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, scene in enumerate(training_scenes(concept, count, seed)):
        width, height = _SIZES[index % len(_SIZES)]
        side = min(width, height)
        square = np.asarray(render(scene, side))
        across, down = width - side, height - side
        # Repeating the edge pixels keeps a two-tone background's rows and a plain one's colour.
        padded = np.pad(square, ((down // 2, down - down // 2), (across // 2, across - across // 2), (0, 0)), "edge")
        path = folder / f"{index + 1:03d}.png"
        Image.fromarray(padded).save(path)
        paths.append(path)
    return paths
