"""Captions as the operations need them: BLIP's text, then hygiene, with every rewrite recorded.

Preprocess, CaptionDataset and the Caption RPC all caption the same way; `CaptionSettings` is everything a
caller can choose, and `describe` runs it on a list of images through the shared (batching) captioner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from services.caption.captioning import Captioner, GenerationSettings
from services.caption.hygiene import CleanCaption, HygieneSettings, clean_caption

__all__ = ["CaptionSettings", "describe"]


@dataclass(frozen=True)
class CaptionSettings:
    model: str = ""  # BLIP model reference; "" is the server's default captioner
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    hygiene: HygieneSettings = field(default_factory=HygieneSettings)

    def validate(self) -> CaptionSettings:
        self.generation.validate()
        return self


def describe(captioner: Captioner, images: Sequence[Image.Image], settings: CaptionSettings) -> list[CleanCaption]:
    """One cleaned caption per image, in order. Images are submitted together so the captioner can batch them
    with each other and with other callers' images."""
    if not images:
        return []
    raw = captioner.caption(images, settings.generation, model=settings.model)
    return [clean_caption(text, settings.hygiene) for text in raw]
