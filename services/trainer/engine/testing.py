"""Helpers for tests and benchmarks of the engine: a tiny dataset in a store and the tiny model, loaded once.

components = tiny_components(tiny_models["sd"])        # cached per path for the process: treat as read-only
keys = write_dataset(store, "ds/", 4)                    # 4 seeded 48 px PNGs with <stem>.txt captions
spec = tiny_spec(max_steps=4, flip=True)                 # a short run on that dataset at 32 px
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from services.common.storage import Store

__all__ = ["png_bytes", "tiny_components", "tiny_spec", "write_dataset"]

CAPTIONS = (
    "a woman, red hat, smiling",
    "a woman, blue dress, standing",
    "a woman, green background, sitting",
    "a woman, black hair, close up",
    "a woman, white shirt, holding a cat",
    "a woman, gold ring, looking left",
)


@functools.cache
def tiny_components(path: str | Path) -> Any:
    """The tiny SD1.x model's components, loaded once per process (they are frozen; do not mutate them)."""
    from services.common.models import resolve_model
    from services.common.models.loading import load_stable_diffusion

    return load_stable_diffusion(resolve_model(str(path)))


def tiny_spec(**changes: Any) -> Any:
    """A short run on `write_dataset(store, "ds/", ...)` at 32 px: 6 steps of batch 2 at a constant 0.01."""
    from services.trainer.engine.spec import TrainingSpec

    base = dict(
        model="tiny",
        embedding_key="",
        dataset="ds/",
        width=32,
        height=32,
        batch_size=2,
        max_steps=6,
        learning_rate="0.01",
    )
    return TrainingSpec(**(base | changes))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_dataset(
    store: Store,
    prefix: str,
    count: int,
    *,
    size: int = 48,
    captions: bool = True,
    alpha: bool = False,
    seed: int = 0,
) -> list[str]:
    """`count` seeded images (smooth colour fields plus noise, so the VAE sees structure), with captions and, when
    `alpha`, a `<stem>.alpha.png` mask (a left-to-right ramp). Returns the image keys."""
    rng = np.random.default_rng(seed)
    keys = []
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for i in range(count):
        colour = rng.random(3, dtype=np.float32)
        field = colour[None, None, :] * ramp[None, :, None] + (1 - colour)[None, None, :] * ramp[:, None, None]
        noisy = np.clip(field + 0.1 * rng.standard_normal((size, size, 3)), 0, 1)
        key = f"{prefix}{i:03d}.png"
        store.put(key, png_bytes((noisy * 255).astype(np.uint8)))
        if captions:
            store.put(f"{prefix}{i:03d}.txt", CAPTIONS[i % len(CAPTIONS)].encode())
        if alpha:
            mask = np.tile((ramp * 255).astype(np.uint8), (size, 1))
            store.put(f"{prefix}{i:03d}.alpha.png", png_bytes(mask))
        keys.append(key)
    return keys
