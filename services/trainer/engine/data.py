"""The dataset as training sees it: images at the training size, their filewords, batches and the data-order cursor.

A1111 (`modules/textual_inversion/dataset.py`, PersonalizedBase + GroupedBatchSampler + the loop in
`textual_inversion.py` train_embedding), which we follow:
- every readable image is resized (bicubic) to the training width x height; an unreadable one is skipped (A1111
  skips it silently, we report it);
- filewords are the `<stem>.txt` caption, else the file name without leading numbers (`templates.filewords_for`);
- batch_size is clamped to the image count and gradient accumulation to images // batch_size;
- each epoch shuffles the images, cuts them into images // batch_size full batches (the rest of the images wait
  for a later epoch), and stops after the last *complete* accumulation group (the `j == max_steps_per_epoch` break,
  a drop_last for accumulation), so an epoch is images // batch // accumulation optimizer steps;
- prompts: without tag shuffle or dropout A1111 draws each image's prompt once when it loads the dataset and keeps
  it for the whole run; with them it draws a template line and the tags anew for every sample. We do the same.
Where we differ: an image whose aspect differs from the training size is centre-cropped to that aspect before the
resize instead of stretched, and transparent pixels are composited on white by the safe decoder.

The data order is a pure function of (seed, epoch), so the cursor (epoch, batch) is all a savepoint needs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from services.caption.images import ImageRejected, decode_image
from services.common.datasets import DatasetItem, list_dataset, read_caption
from services.common.diagnostics import Diagnostic, Severity
from services.common.errors import InvalidArgument
from services.common.storage import Store
from services.trainer.templates import PromptSampler, filewords_for

__all__ = [
    "BatchPlan",
    "DataCursor",
    "LoadedImage",
    "PromptSource",
    "TrainingImages",
    "crop_box",
    "epoch_batches",
    "list_training_images",
    "load_image",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingImages:
    prefix: str
    items: tuple[DatasetItem, ...]  # the images that will train, sorted by key
    filewords: tuple[str, ...]  # per item: caption text or file-name words
    notes: tuple[Diagnostic, ...]  # skipped images, missing captions (as A1111 would not say)

    def __len__(self) -> int:
        return len(self.items)


def list_training_images(store: Store, prefix: str) -> TrainingImages:
    """The dataset's images and their filewords; refuses an empty dataset."""
    dataset = list_dataset(store, prefix, field="spec.dataset")
    if not dataset.items:
        raise InvalidArgument(
            f"no images under '{dataset.prefix}' in the store: upload PNG/JPEG/WebP images with <stem>.txt "
            "captions there, or fix the dataset prefix",
            field="spec.dataset",
            reason="DATASET_EMPTY",
        )
    filewords = []
    notes = []
    for item in dataset.items:
        caption = read_caption(store, item)
        if caption is None:
            notes.append(
                Diagnostic(
                    Severity.INFO,
                    "CAPTION_MISSING",
                    f"{item.image_key} has no caption; its file name gives [filewords]",
                    "Write a <stem>.txt caption beside it (the caption service can draft one).",
                    key=item.image_key,
                )
            )
        filewords.append(filewords_for(item.image_key, caption))
    return TrainingImages(dataset.prefix, dataset.items, tuple(filewords), tuple(notes))


def crop_box(size: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The centred box of `size` with the aspect of width x height (the whole image when the aspects agree)."""
    w, h = size
    if w * height == h * width:
        return (0, 0, w, h)
    if w * height > h * width:  # too wide
        new_w = round(h * width / height)
        left = (w - new_w) // 2
        return (left, 0, left + new_w, h)
    new_h = round(w * height / width)
    top = (h - new_h) // 2
    return (0, top, w, top + new_h)


@dataclass(frozen=True)
class LoadedImage:
    pixels: torch.Tensor  # [3, height, width] float32 in [-1, 1]
    alpha: np.ndarray | None  # [height // f, width // f] float32 loss weights (min 0, mean 1), None when opaque
    digest: str  # sha256 over the image, caption and alpha bytes: one line of the dataset hash


def load_image(
    store: Store,
    item: DatasetItem,
    *,
    width: int,
    height: int,
    latent_scale: int,
    with_alpha: bool,
) -> LoadedImage | Diagnostic:
    """The image at training size (A1111: PIL bicubic resize, x / 127.5 - 1), or a diagnostic why it is skipped."""
    data = store.get(item.image_key)
    digest = hashlib.sha256(data)
    try:
        decoded = decode_image(data, name=item.image_key)
    except ImageRejected as rejected:
        return rejected.diagnostic.for_key(item.image_key)
    box = crop_box(decoded.rgb.size, width, height)
    rgb = decoded.rgb.crop(box).resize((width, height), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy((np.asarray(rgb, dtype=np.uint8) / 127.5 - 1.0).astype(np.float32))
    pixels = pixels.permute(2, 0, 1).contiguous()  # [3, H, W]
    if item.caption_key is not None:
        digest.update(b"\0caption\0" + store.get(item.caption_key))
    alpha_image = decoded.alpha
    if item.alpha_key is not None:
        alpha_bytes = store.get(item.alpha_key)
        digest.update(b"\0alpha\0" + alpha_bytes)
        if with_alpha:
            try:
                alpha_image = decode_image(alpha_bytes, name=item.alpha_key).rgb.convert("L")
            except ImageRejected as rejected:
                return rejected.diagnostic.for_key(item.alpha_key)
            if alpha_image.size != decoded.rgb.size:
                alpha_image = alpha_image.resize(decoded.rgb.size, Image.Resampling.BICUBIC)
    alpha = None
    if with_alpha and alpha_image is not None:
        alpha = alpha_weights(alpha_image.crop(box), width // latent_scale, height // latent_scale)
    return LoadedImage(pixels, alpha, f"{item.image_key}\0{digest.hexdigest()}")


def alpha_weights(alpha: Image.Image, latent_width: int, latent_height: int) -> np.ndarray | None:
    """A1111's alpha loss weights: alpha resized to the latent size (bicubic), shifted to min 0, scaled to mean 1.
    A constant alpha carries no information (A1111 would divide by zero there): None, i.e. weight 1 everywhere."""
    weight = np.asarray(alpha.resize((latent_width, latent_height), Image.Resampling.BICUBIC), dtype=np.float32)
    weight = weight - weight.min()
    mean = float(weight.mean())
    if mean <= 0:
        return None
    return weight / np.float32(mean)


@dataclass(frozen=True)
class BatchPlan:
    """How the images are cut into steps (A1111's clamps and drop rules)."""

    images: int
    batch_size: int  # effective: min(requested, images)
    accumulation: int  # effective: min(requested, images // batch_size)
    requested_batch_size: int
    requested_accumulation: int

    @classmethod
    def for_images(cls, images: int, batch_size: int, accumulation: int) -> BatchPlan:
        batch = min(batch_size, images)
        return cls(images, batch, min(accumulation, images // batch), batch_size, accumulation)

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches an epoch uses: the complete accumulation groups of the images // batch full batches."""
        return self.steps_per_epoch * self.accumulation

    @property
    def steps_per_epoch(self) -> int:
        return self.images // self.batch_size // self.accumulation

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.accumulation

    def notes(self) -> list[Diagnostic]:
        out = []
        if self.batch_size < self.requested_batch_size:
            out.append(
                Diagnostic(
                    Severity.WARNING,
                    "BATCH_CLAMPED",
                    f"batch size {self.requested_batch_size} is more than the {self.images} images; it trains "
                    f"with batch size {self.batch_size} (as A1111 does)",
                    f"Set batch_size to {self.batch_size} or add images.",
                    field="spec.batch_size",
                )
            )
        if self.accumulation < self.requested_accumulation:
            out.append(
                Diagnostic(
                    Severity.WARNING,
                    "ACCUMULATION_CLAMPED",
                    f"gradient accumulation {self.requested_accumulation} needs more than {self.images} images at "
                    f"batch size {self.batch_size}; it trains with {self.accumulation} (as A1111 does)",
                    f"Set gradient_accumulation to {self.accumulation} or add images.",
                    field="spec.gradient_accumulation",
                )
            )
        unused = self.images - self.batches_per_epoch * self.batch_size
        if unused:
            out.append(
                Diagnostic(
                    Severity.INFO,
                    "IMAGES_LEFT_OVER",
                    f"{unused} of {self.images} images sit out each epoch (batch {self.batch_size} x accumulation "
                    f"{self.accumulation} = {self.samples_per_step} per step); which ones changes every epoch",
                    "Users' guides pick batch x accumulation = image count (full-cycle).",
                )
            )
        return out


def epoch_batches(seed: int, epoch: int, plan: BatchPlan) -> list[list[int]]:
    """The epoch's micro-batches: a seeded shuffle of the images cut into full batches, complete groups only."""
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    order = torch.randperm(plan.images, generator=generator).tolist()
    b = plan.batch_size
    return [order[i * b : (i + 1) * b] for i in range(plan.batches_per_epoch)]


def _mix(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch); sha256 keeps nearby pairs unrelated."""
    digest = hashlib.sha256(f"tistudio-data-order:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class DataCursor:
    """Where the data stream is: the epoch and the next micro-batch in it. Saved in every savepoint."""

    def __init__(self, seed: int, plan: BatchPlan, epoch: int = 0, batch: int = 0) -> None:
        self.seed = seed
        self.plan = plan
        self.epoch = epoch
        self.batch = batch
        self._batches: list[list[int]] | None = None

    def next(self) -> list[int]:
        if self._batches is None:
            self._batches = epoch_batches(self.seed, self.epoch, self.plan)
        indices = self._batches[self.batch]
        self.batch += 1
        if self.batch == len(self._batches):
            self.epoch, self.batch, self._batches = self.epoch + 1, 0, None
        return indices

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}


class PromptSource:
    """Each sample's prompt: fixed per image (drawn once, in image order) or drawn per sample, as A1111."""

    def __init__(self, sampler: PromptSampler, name: str, filewords: tuple[str, ...]) -> None:
        self.sampler = sampler
        self.name = name
        self.filewords = filewords
        self.fixed: tuple[str, ...] | None = None
        if not sampler.processing.varies:
            self.fixed = tuple(sampler.prompt(name, words) for words in filewords)

    def prompts(self, indices: list[int]) -> list[str]:
        if self.fixed is not None:
            return [self.fixed[i] for i in indices]
        return [self.sampler.prompt(self.name, self.filewords[i]) for i in indices]

    def examples(self, limit: int = 3) -> Iterator[str]:
        """Prompts as the run builds them, for plans and logs (draws from a copy, never from the run's RNG)."""
        if self.fixed is not None:
            yield from self.fixed[:limit]
            return
        copy = PromptSampler(self.sampler.template, self.sampler.processing, 0)
        copy.set_state(self.sampler.state())
        for words in self.filewords[:limit]:
            yield copy.prompt(self.name, words)
