"""What the caption operations report as they run, in domain form (the servicer turns them into protobuf)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.caption.hygiene import CleanCaption
from services.common.diagnostics import Diagnostic

__all__ = [
    "Progress",
    "ImageOutcome",
    "PreprocessSummary",
    "CaptionAction",
    "CaptionedImage",
    "CaptionDatasetSummary",
]


@dataclass(frozen=True)
class Progress:
    completed: int
    total: int


@dataclass(frozen=True)
class ImageOutcome:
    """The fate of one source image in a Preprocess run."""

    source_key: str
    kept: bool
    reason: Diagnostic | None = None  # why it was skipped (kept=False)
    derived_keys: tuple[str, ...] = ()  # every object written for it: images, captions, alpha masks
    notes: tuple[Diagnostic, ...] = ()  # what was done to a kept image that the user may want to know
    caption: CleanCaption | None = None  # the caption written beside the main image, when one was


@dataclass(frozen=True)
class PreprocessSummary:
    destination: str  # the processed dataset's prefix
    kept: int
    skipped: int
    images_written: int
    manifest_key: str


class CaptionAction(enum.IntEnum):
    WRITTEN = 1
    SKIPPED_EXISTING = 2
    FAILED = 3


@dataclass(frozen=True)
class CaptionedImage:
    """What CaptionDataset did for one image."""

    image_key: str
    caption_key: str
    action: CaptionAction
    caption: CleanCaption | None = None  # the new caption (WRITTEN), or the recorded one of an earlier run
    error: Diagnostic | None = None  # FAILED: what went wrong and what to change


@dataclass(frozen=True)
class CaptionDatasetSummary:
    written: int
    skipped: int
    failed: int
